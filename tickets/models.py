import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models

from agents.models import Agent, Skill


class BotIntegration(models.Model):
    """An AI bot allowed to escalate; its API key is stored only as a SHA-256 hash."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    key_prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    signing_secret = models.CharField(max_length=128)
    is_active = models.BooleanField(default=True)
    requests_per_minute = models.PositiveIntegerField(
        default=600, help_text="Requests this bot may make per minute before getting 429."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def hash_key(key: str) -> str:
        # The keys are 256-bit random tokens, so a fast hash is enough: there is nothing to
        # brute-force, and authentication stays one indexed lookup.
        return hashlib.sha256(key.encode()).hexdigest()

    @staticmethod
    def new_key() -> str:
        return f"gd_{secrets.token_urlsafe(32)}"

    @staticmethod
    def new_signing_secret() -> str:
        return secrets.token_urlsafe(32)

    def set_key(self, key: str | None = None) -> str:
        """Give the integration `key` (a new random one by default), kept only as its prefix
        and hash; returns the key, which nothing can show again. The caller saves."""
        key = key or self.new_key()
        self.key_prefix = key[:10]
        self.key_hash = self.hash_key(key)
        return key


class Ticket(models.Model):
    """One escalated conversation, from the bot's hand-over to its resolution."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        OFFERED = "offered"
        ASSIGNED = "assigned"
        RESOLVED = "resolved"
        CANCELLED = "cancelled"

    class Priority(models.IntegerChoices):
        LOW = 0, "low"
        NORMAL = 1, "normal"
        HIGH = 2, "high"
        URGENT = 3, "urgent"

    class Reason(models.TextChoices):
        CUSTOMER_REQUESTED = "customer_requested"
        LOW_CONFIDENCE = "low_confidence"
        POLICY = "policy"
        SENTIMENT = "sentiment"
        OTHER = "other"

    class Outcome(models.TextChoices):
        SOLVED = "solved"
        HANDBACK = "handback"
        UNRESOLVED = "unresolved"

    OPEN_STATUSES = (Status.QUEUED, Status.OFFERED, Status.ASSIGNED)
    FINAL_STATUSES = (Status.RESOLVED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    integration = models.ForeignKey(
        BotIntegration, on_delete=models.PROTECT, related_name="tickets"
    )
    external_id = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    language = models.CharField(max_length=2)
    skills = models.ManyToManyField(Skill, blank=True, related_name="tickets")
    reason = models.CharField(
        max_length=20, choices=Reason.choices, default=Reason.CUSTOMER_REQUESTED
    )
    summary = models.TextField(blank=True, max_length=4000)
    customer_id = models.CharField(max_length=200)
    customer_name = models.CharField(max_length=200, blank=True)
    customer_tier = models.CharField(max_length=50, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="tickets"
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    resolution_note = models.TextField(blank=True)
    sla_breached = models.BooleanField(default=False)
    sla_breached_at = models.DateTimeField(null=True, blank=True)
    csat_score = models.PositiveSmallIntegerField(null=True, blank=True)
    csat_comment = models.TextField(blank=True)
    message_count = models.PositiveIntegerField(default=0, editable=False)
    webhook_sequence = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    first_assigned_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Idempotency of escalations holds in the database, so two racing replays of
            # one conversation cannot both create a ticket.
            models.UniqueConstraint(
                fields=["integration", "external_id"], name="ticket_external_id_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "language", "-priority", "created_at"]),
            models.Index(fields=["agent", "status"]),
            # The wait estimate reads a language's latest first assignments.
            models.Index(fields=["language", "-first_assigned_at"]),
            # The other half of an agent's load (see Offer's pending index).
            models.Index(
                fields=["agent"],
                condition=models.Q(status="assigned"),
                name="ticket_assigned_by_agent",
            ),
            # Routing's quality inputs: the ratings that enter or leave the quality window as
            # it moves, read from the rated tickets alone, not from every ticket the pool ever
            # resolved.
            models.Index(
                fields=["resolved_at"],
                include=["csat_score"],
                condition=models.Q(status="resolved", csat_score__isnull=False),
                name="ticket_rated",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


class Message(models.Model):
    class Role(models.TextChoices):
        CUSTOMER = "customer"
        BOT = "bot"
        AGENT = "agent"
        SYSTEM = "system"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField(max_length=10000)
    sent_at = models.DateTimeField()
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["ticket", "position"]
        constraints = [
            models.UniqueConstraint(fields=["ticket", "position"], name="message_position_unique")
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"


class TicketEvent(models.Model):
    """The audit trail: one row for every transition of a ticket, written in its transaction."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40)
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10, blank=True)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    detail = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket", "occurred_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_status}->{self.to_status}"


class WebhookDelivery(models.Model):
    """One event for a bot's callback URL, delivered at least once."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    sequence = models.PositiveIntegerField()
    url = models.URLField(max_length=2000)
    body = models.TextField(help_text="The exact bytes sent and signed.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next attempt is due while pending."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["ticket", "sequence"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["ticket", "sequence"], name="delivery_sequence_unique")
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.sequence}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    attempted_at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField()

    class Meta:
        ordering = ["delivery", "attempted_at"]

    def __str__(self) -> str:
        return f"{self.status_code or self.error[:40]}"
