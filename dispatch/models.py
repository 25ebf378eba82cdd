import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from agents.models import Agent
from tickets.models import Ticket


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
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "dispatch policy"

    def __str__(self) -> str:
        return "Dispatch policy"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> "DispatchPolicy":
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy


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
        ]

    def __str__(self) -> str:
        return f"{self.ticket_id} → {self.agent} ({self.status})"
