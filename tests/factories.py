import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from agents.models import Agent, AgentConnection, AgentLanguage, AgentSkill, Skill
from tickets.models import BotIntegration, Ticket
from tickets.services import bot_integration_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass-word-1")


class SkillFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Skill
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"skill-{n}")
    name = factory.LazyAttribute(lambda skill: skill.slug.title())


class AgentFactory(factory.django.DjangoModelFactory):
    """An active agent; `languages` and `skills` ({slug: proficiency} or a list of slugs)."""

    class Meta:
        model = Agent
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    display_name = factory.Sequence(lambda n: f"Agent {n}")
    capacity = 2
    account_state = Agent.AccountState.ACTIVE
    status = Agent.Status.OFFLINE

    @factory.post_generation
    def languages(agent, create, codes, **kwargs):
        for code in codes if codes is not None else ["en"]:
            AgentLanguage.objects.create(agent=agent, code=code)

    @factory.post_generation
    def skills(agent, create, skills, **kwargs):
        if not skills:
            return
        levels = skills if isinstance(skills, dict) else dict.fromkeys(skills, 3)
        for slug, proficiency in levels.items():
            AgentSkill.objects.create(
                agent=agent, skill=SkillFactory(slug=slug), proficiency=proficiency
            )

    @factory.post_generation
    def online(agent, create, online, **kwargs):
        """online=True: available with one fresh connection, as a connected browser leaves it."""
        if online:
            agent.status = Agent.Status.AVAILABLE
            agent.save(update_fields=["status"])
            AgentConnection.objects.create(
                agent=agent,
                channel_name=f"test-channel-{agent.pk}",
                last_heartbeat_at=timezone.now(),
            )


class BotIntegrationFactory(factory.django.DjangoModelFactory):
    """A bot integration made by the real service; its API key is on `.api_key`."""

    class Meta:
        model = BotIntegration

    name = factory.Sequence(lambda n: f"Bot {n}")
    signing_secret = "test-signing-secret"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        integration, key = bot_integration_create(**kwargs)
        integration.api_key = key
        return integration


class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ticket
        skip_postgeneration_save = True

    integration = factory.SubFactory(BotIntegrationFactory)
    external_id = factory.Sequence(lambda n: f"conv-{n}")
    language = "en"
    customer_id = factory.Sequence(lambda n: f"cust-{n}")
    customer_name = "Anna"

    @factory.post_generation
    def skills(ticket, create, slugs, **kwargs):
        if slugs:
            ticket.skills.set([SkillFactory(slug=slug) for slug in slugs])
