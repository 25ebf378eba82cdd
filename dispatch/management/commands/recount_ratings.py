from django.core.management.base import BaseCommand
from django.db.models import Count, Sum
from django.utils import timezone

from dispatch.models import AgentRatings, DispatchPolicy
from dispatch.services import ratings_count_afresh


class Command(BaseCommand):
    help = (
        "Count every agent's ratings in the quality window anew from the rated tickets, for "
        "counts that no longer match them (tickets changed outside the platform, a restore)."
    )

    def handle(self, *args, **options):
        policy = DispatchPolicy.load()
        ratings_count_afresh(now=timezone.now(), policy=policy)
        counted = AgentRatings.objects.aggregate(agents=Count("pk"), ratings=Sum("ratings_count"))
        self.stdout.write(
            f"Counted {counted['ratings'] or 0} ratings of {counted['agents']} agents in the "
            f"last {policy.quality_window_days} days."
        )
