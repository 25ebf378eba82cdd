import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Skill(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Agent(models.Model):
    """A freelance support agent: who they are, what they can do, and where they are now."""

    class AccountState(models.TextChoices):
        APPLICANT = "applicant"
        ACTIVE = "active"
        SUSPENDED = "suspended"

    class Status(models.TextChoices):
        OFFLINE = "offline"
        AVAILABLE = "available"
        AWAY = "away"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent"
    )
    display_name = models.CharField(max_length=100)
    capacity = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    account_state = models.CharField(
        max_length=10, choices=AccountState.choices, default=AccountState.APPLICANT
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OFFLINE)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    idle_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the agent last received work; routing favours the longest idle.",
    )
    consecutive_misses = models.PositiveSmallIntegerField(
        default=0, help_text="Offers in a row that expired unanswered."
    )
    pay_rate = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        default=Decimal("0.00"),
        help_text="Paid per resolved ticket.",
    )
    skills = models.ManyToManyField(Skill, through="AgentSkill", related_name="agents")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["display_name"]
        indexes = [models.Index(fields=["account_state", "status"])]

    def __str__(self) -> str:
        return self.display_name

    @property
    def language_codes(self) -> list[str]:
        return [language.code for language in self.languages.all()]


class AgentLanguage(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="languages")
    code = models.CharField(max_length=2, help_text="ISO 639-1, lower-case.")
    is_primary = models.BooleanField(default=True)

    class Meta:
        ordering = ["-is_primary", "code"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "code"], name="agent_language_unique")
        ]
        indexes = [models.Index(fields=["code"])]

    def __str__(self) -> str:
        return self.code


class AgentSkill(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="agent_skills")
    skill = models.ForeignKey(Skill, on_delete=models.CASCADE, related_name="agent_skills")
    proficiency = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "skill"], name="agent_skill_unique")
        ]

    def __str__(self) -> str:
        return f"{self.skill.slug} ({self.proficiency})"


class AgentConnection(models.Model):
    """One open websocket of an agent (a tab or a device); presence is computed from these."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="connections")
    channel_name = models.CharField(max_length=200, unique=True)
    connected_at = models.DateTimeField(auto_now_add=True)
    last_heartbeat_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["agent", "last_heartbeat_at"])]

    def __str__(self) -> str:
        return self.channel_name
