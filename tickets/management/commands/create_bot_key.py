from django.core.management.base import BaseCommand

from tickets.services import bot_integration_create


class Command(BaseCommand):
    help = "Create a bot integration; prints its API key (shown only once) on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--callback-secret", help="The webhook signing secret (default: random)."
        )

    def handle(self, *args, name: str, callback_secret: str | None, **options):
        integration, key = bot_integration_create(name=name, signing_secret=callback_secret)
        self.stdout.write(f"Created bot integration {integration.name!r} ({integration.pk}).")
        self.stdout.write(f"Webhook signing secret: {integration.signing_secret}")
        self.stdout.write(key)
