import os
import time

from django.core.management.base import BaseCommand, CommandError

from tickets.models import BotIntegration
from tickets.simulator import SimulatedBot

DEMO_KEY = "gd_demo_key_for_local_use_only"


class Command(BaseCommand):
    help = (
        "Play the AI bot: escalate realistic conversations through the HTTP API at a steady "
        "rate, receive and verify the webhooks, and answer agent replies now and then."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            default=os.environ.get("DISPATCH_URL", "http://127.0.0.1:8000"),
            help="The platform's base URL (default: $DISPATCH_URL or http://127.0.0.1:8000).",
        )
        parser.add_argument(
            "--key",
            default=os.environ.get("BOT_API_KEY", DEMO_KEY),
            help="The bot's API key (default: $BOT_API_KEY or the seed_demo key).",
        )
        parser.add_argument(
            "--secret",
            help="The webhook signing secret (default: read from this platform's database).",
        )
        parser.add_argument("--rate", type=float, default=4.0, help="Escalations per minute.")
        parser.add_argument("--count", type=int, help="Stop after this many escalations.")
        parser.add_argument("--duration", type=float, help="Stop escalating after these seconds.")
        parser.add_argument(
            "--linger",
            type=float,
            default=0.0,
            help="Keep answering webhooks this many seconds after the last escalation.",
        )
        parser.add_argument("--reply-probability", type=float, default=0.5)
        parser.add_argument("--seed", type=int, help="Make the conversations repeatable.")

    def handle(
        self,
        *args,
        url,
        key,
        secret,
        rate,
        count,
        duration,
        linger,
        reply_probability,
        seed,
        **options,
    ):
        if rate <= 0:
            raise CommandError("--rate must be above 0.")
        if not 0 <= reply_probability <= 1:
            raise CommandError("--reply-probability must be between 0 and 1.")
        if secret is None:
            integration = BotIntegration.objects.filter(
                key_hash=BotIntegration.hash_key(key)
            ).first()
            if integration is None:
                raise CommandError("No bot integration has that key here; pass --secret.")
            secret = integration.signing_secret
        bot = SimulatedBot(
            url=url,
            api_key=key,
            signing_secret=secret,
            reply_probability=reply_probability,
            seed=seed,
            say=lambda line: self.stdout.write(line),
        )
        try:
            if not bot.wait_until_up(timeout=60):
                raise CommandError(f"The platform at {url} did not answer /healthz.")
            self.stdout.write(f"Simulated bot escalating to {url}, webhooks at {bot.callback_url}")
            sent = bot.run(rate_per_minute=rate, count=count, duration=duration)
            time.sleep(linger)
            self.stdout.write(f"Escalated {sent}; received {len(bot.webhooks)} webhooks.")
        except KeyboardInterrupt:
            self.stdout.write(f"Stopped; received {len(bot.webhooks)} webhooks.")
        finally:
            bot.close()
