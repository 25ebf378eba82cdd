from decimal import Decimal, InvalidOperation

import pycountry
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from agents.services import agent_create


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class Command(BaseCommand):
    help = "Create an active freelance agent (skills that do not exist yet are created)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--languages", required=True, type=comma_list, help="e.g. sv,en")
        parser.add_argument("--skills", type=comma_list, default=[], help="e.g. refunds,billing")
        parser.add_argument("--capacity", type=int, default=2)
        parser.add_argument("--display-name", default="")
        parser.add_argument("--pay-rate", default="0.00", help="Paid per resolved ticket.")

    def handle(
        self,
        *args,
        username,
        password,
        languages,
        skills,
        capacity,
        display_name,
        pay_rate,
        **options,
    ):
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        unknown = [
            code for code in languages if pycountry.languages.get(alpha_2=code.lower()) is None
        ]
        if not languages or unknown:
            raise CommandError(
                f"--languages needs ISO 639-1 codes; unknown: {', '.join(unknown) or 'none given'}."
            )
        if not 1 <= capacity <= 20:
            raise CommandError("--capacity must be between 1 and 20.")
        try:
            rate = Decimal(pay_rate)
        except InvalidOperation as exc:
            raise CommandError(f"--pay-rate must be a number, not {pay_rate!r}.") from exc
        agent = agent_create(
            username=username,
            password=password,
            languages=languages,
            skills=skills,
            capacity=capacity,
            display_name=display_name,
            pay_rate=rate,
        )
        self.stdout.write(f"Created agent {agent.display_name!r} ({username}).")
