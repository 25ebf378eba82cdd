import functools
import uuid
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


@functools.cache
def time_zone_names() -> frozenset[str]:
    # available_timezones() reads the whole tz database from disk on every call.
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value not in time_zone_names():
        raise ValidationError("%(value)s is not a known time zone.", params={"value": value})


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
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA name, e.g. Europe/Stockholm: the agent's days, weeks and availability "
        "windows are in this zone.",
    )
    skills = models.ManyToManyField(Skill, through="AgentSkill", related_name="agents")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["display_name"]
        indexes = [
            models.Index(fields=["account_state", "status"]),
            # A drain finds the longest idle eligible agent by reading agents in this order.
            models.Index(fields=["idle_since"]),
        ]

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


class AgentAvailability(models.Model):
    """A weekly window in which the agent means to work, in the agent's own time zone.

    Coordinators plan with these; routing does not read them (presence decides who gets work).
    A shift past midnight is two windows, one on each day, so a window never wraps.
    """

    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="availability")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    start_time = models.TimeField()
    end_time = models.TimeField()

    class Meta:
        ordering = ["agent", "weekday", "start_time"]
        verbose_name_plural = "availability"
        constraints = [
            models.CheckConstraint(
                condition=Q(start_time__lt=F("end_time")), name="availability_starts_before_end"
            ),
            models.CheckConstraint(
                condition=Q(weekday__gte=0, weekday__lte=6), name="availability_weekday_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start_time:%H:%M}–{self.end_time:%H:%M}"

    def clean(self) -> None:
        if None not in (self.start_time, self.end_time) and self.start_time >= self.end_time:
            raise ValidationError(
                {
                    "end_time": "The window must end after it starts (split a shift past "
                    "midnight into two windows)."
                }
            )

    def overlaps(self, other: "AgentAvailability") -> bool:
        return (
            self.weekday == other.weekday
            and self.start_time < other.end_time
            and other.start_time < self.end_time
        )
