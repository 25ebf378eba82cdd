from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from agents.models import Agent, Skill
from agents.services import agent_create
from tickets.models import BotIntegration
from tickets.services import bot_integration_create

DEMO_PASSWORD = "demo-pass-2026"
DEMO_BOT = "Demo bot"
# The demo bot's key is fixed so that repeated runs print the same, working key.
DEMO_BOT_KEY = "gd_demo_key_for_local_use_only"
SKILLS = {"refunds": "Refunds", "billing": "Billing", "technical": "Technical support"}
AGENTS = [
    ("maja", "Maja", ["sv", "en"], ["refunds", "billing"], 3, "4.50"),
    ("liam", "Liam", ["en"], ["technical", "billing"], 2, "4.00"),
    ("sofia", "Sofia", ["es", "en"], ["refunds"], 2, "3.80"),
]


class Command(BaseCommand):
    help = "Load demo data for a first look: a coordinator, a bot key, skills and agents."

    @transaction.atomic
    def handle(self, *args, **options):
        users = get_user_model().objects
        if not users.filter(username="coordinator").exists():
            users.create_superuser("coordinator", "coordinator@example.com", DEMO_PASSWORD)
        for slug, name in SKILLS.items():
            Skill.objects.get_or_create(slug=slug, defaults={"name": name})
        for username, display_name, languages, skills, capacity, pay_rate in AGENTS:
            if not Agent.objects.filter(user__username=username).exists():
                agent_create(
                    username=username,
                    password=DEMO_PASSWORD,
                    languages=languages,
                    skills=skills,
                    capacity=capacity,
                    display_name=display_name,
                    pay_rate=Decimal(pay_rate),
                )
        if not BotIntegration.objects.filter(
            key_hash=BotIntegration.hash_key(DEMO_BOT_KEY)
        ).exists():
            bot_integration_create(name=DEMO_BOT, key=DEMO_BOT_KEY)
        self.stdout.write("Demo data is ready.")
        self.stdout.write(f"  Coordinator (admin): coordinator / {DEMO_PASSWORD}")
        for username, display_name, languages, *_ in AGENTS:
            self.stdout.write(
                f"  Agent {display_name} ({','.join(languages)}): {username} / {DEMO_PASSWORD}"
            )
        self.stdout.write(f"  Bot API key: {DEMO_BOT_KEY}")
