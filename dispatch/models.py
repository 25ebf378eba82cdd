import itertools
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from agents.models import Agent
from tickets.models import Ticket

from .rows import RowByKey


class DispatchPolicy(models.Model):
    """The routing knobs coordinators may turn; a single row (pk=1), created on first use."""

    offer_timeout_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(5), MaxValueValidator(600)],
        help_text="How long an agent has to accept an offer before it goes to the next agent.",
    )
    heartbeat_timeout_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(10), MaxValueValidator(600)],
        help_text="A connection with no heartbeat for this long no longer counts as present.",
    )
    offline_grace_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(0), MaxValueValidator(600)],
        help_text="After its last connection is gone, an agent stays as it was this long, then is "
        "offline and its pending offers go to others.",
    )
    reconnect_window_seconds = models.PositiveIntegerField(
        default=120,
        validators=[MinValueValidator(0), MaxValueValidator(3600)],
        help_text="An agent's assigned tickets wait this long for it to reconnect, then are "
        "requeued.",
    )
    max_consecutive_misses = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="After this many offers in a row expire unanswered, the agent is set away.",
    )
    weight_quality = models.FloatField(
        default=0.40,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Weight of the agent's quality (recent CSAT, shrunk toward the pool mean).",
    )
    weight_proficiency = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Weight of the agent's proficiency in the ticket's skills.",
    )
    weight_idle = models.FloatField(
        default=0.20,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Weight of idle time (the longest idle first, for fairness).",
    )
    weight_load = models.FloatField(
        default=0.10,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Weight of spare capacity (the less loaded first).",
    )
    weight_cost = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Weight of cost (the lower pay rate first).",
    )
    quality_window_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text="CSAT scores older than this do not count toward quality.",
    )
    quality_prior_ratings = models.PositiveSmallIntegerField(
        default=5,
        validators=[MaxValueValidator(100)],
        help_text="How many ratings' worth of the pool mean an agent's own mean is blended with.",
    )
    min_proficiency = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="The proficiency (1-5) an agent needs in each of a ticket's skills.",
    )
    aging_seconds_per_priority = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(1)],
        help_text="A waiting ticket is ordered as one priority higher for every this many "
        "seconds it has waited, so low priority never starves.",
    )
    sla_low_seconds = models.PositiveIntegerField(
        default=900, help_text="First-assignment target for low priority."
    )
    sla_normal_seconds = models.PositiveIntegerField(
        default=300, help_text="First-assignment target for normal priority."
    )
    sla_high_seconds = models.PositiveIntegerField(
        default=120, help_text="First-assignment target for high priority."
    )
    sla_urgent_seconds = models.PositiveIntegerField(
        default=60, help_text="First-assignment target for urgent priority."
    )
    relax_proficiency_after_seconds = models.PositiveIntegerField(
        default=120,
        help_text="After waiting this long, a ticket accepts any proficiency in its skills.",
    )
    relax_language_after_seconds = models.PositiveIntegerField(
        default=300,
        help_text="After waiting this long, a ticket accepts agents who speak its language as "
        "a secondary language.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "dispatch policy"

    def __str__(self) -> str:
        return "Dispatch policy"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Refuse a policy that would contradict the platform's promises."""
        weights = [
            self.weight_quality,
            self.weight_proficiency,
            self.weight_idle,
            self.weight_load,
            self.weight_cost,
        ]
        errors = {}
        # A missing value has its own field error already; the checks below compare values.
        if None not in weights:
            if sum(weights) <= 0:
                errors["weight_quality"] = "At least one weight must be above zero."
            elif self.weight_quality <= self.weight_cost:
                errors["weight_cost"] = "Quality leads routing: its weight must exceed cost's."
        if (
            self.relax_proficiency_after_seconds is not None
            and self.relax_language_after_seconds is not None
            and self.relax_language_after_seconds < self.relax_proficiency_after_seconds
        ):
            errors["relax_language_after_seconds"] = (
                "Secondary languages are the second relaxation step: relax proficiency first."
            )
        targets = [
            (priority, getattr(self, f"sla_{priority}_seconds"))
            for priority in ("urgent", "high", "normal", "low")
        ]
        for (higher, higher_target), (lower, lower_target) in itertools.pairwise(targets):
            if None not in (higher_target, lower_target) and higher_target > lower_target:
                errors[f"sla_{higher}_seconds"] = (
                    f"The {higher} target cannot be longer than the {lower} one."
                )
        if errors:
            raise ValidationError(errors)

    @classmethod
    def load(cls) -> "DispatchPolicy":
        policy = _THE_POLICY.get(1)
        if policy is None:
            policy, _ = cls.objects.get_or_create(pk=1)
        return policy


# Read on every routing step and answer.
_THE_POLICY = RowByKey(lambda: DispatchPolicy.objects.all())


class Offer(models.Model):
    """A ticket offered to one agent, who may accept it until it expires."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        DECLINED = "declined"
        EXPIRED = "expired"
        REVOKED = "revoked"

    class RevokeReason(models.TextChoices):
        EXPIRED = "expired"
        CANCELLED = "cancelled"
        REASSIGNED = "reassigned"
        OFFLINE = "offline"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="offers")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="offers")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    responded_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When an accepted ticket left this agent (released or requeued).",
    )
    decline_reason = models.CharField(max_length=500, blank=True)
    score = models.FloatField(null=True, blank=True, help_text="The agent's routing score.")
    score_parts = models.JSONField(
        default=dict, blank=True, help_text="Each weighted part of the score, to see why."
    )
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The coordinator who offered or assigned it by hand.",
    )
    revoke_reason = models.CharField(max_length=10, choices=RevokeReason.choices, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Invariant 1: a ticket is never held by two agents at once.
            models.UniqueConstraint(
                fields=["ticket"],
                condition=Q(status="pending") | Q(status="accepted", released_at__isnull=True),
                name="offer_one_holder_per_ticket",
            ),
        ]
        indexes = [
            models.Index(fields=["agent", "status"]),
            models.Index(fields=["status", "expires_at"]),
            # An agent's load counts its pending offers for every candidate of every routing
            # step; without an index that holds only them, the planner may walk all pending
            # offers per candidate, a step that slows as the queue grows.
            models.Index(
                fields=["agent"], condition=Q(status="pending"), name="offer_pending_by_agent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticket_id} → {self.agent} ({self.status})"


class BoardSample(models.Model):
    """The queue depth and the agents online at one moment, taken periodically by beat for the
    live board's history charts (neither can be read back from other rows: presence keeps no
    history). Old samples are pruned as new ones are taken."""

    taken_at = models.DateTimeField(db_index=True)
    queue_depth = models.PositiveIntegerField(help_text="Tickets waiting (queued or offered).")
    agents_online = models.PositiveIntegerField(
        help_text="Active agents connected and not offline."
    )

    class Meta:
        ordering = ["taken_at"]

    def __str__(self) -> str:
        return f"{self.taken_at:%Y-%m-%d %H:%M}: {self.queue_depth} waiting"


class RatingsWindow(models.Model):
    """Where the quality window starts for the counts in AgentRatings: each agent's row counts
    exactly the rated tickets it resolved from `start` on. A single row (pk=1); the sweep moves
    it to the policy's window as time passes or the policy changes, taking ratings that left the
    window out of the counts (and those that entered it in)."""

    start = models.DateTimeField()

    def __str__(self) -> str:
        return f"ratings from {self.start:%Y-%m-%d %H:%M:%S}"


class AgentRatings(models.Model):
    """An agent's ratings in the quality window, kept as they arrive so that routing reads two
    numbers per agent instead of summing every rating of every eligible agent on every step
    (a busy pool has hundreds per agent in the window)."""

    agent = models.OneToOneField(
        Agent, primary_key=True, on_delete=models.CASCADE, related_name="ratings_in_window"
    )
    ratings_count = models.PositiveIntegerField(default=0)
    ratings_sum = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.ratings_count} ratings, {self.ratings_sum} in sum"
