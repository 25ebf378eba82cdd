"""Every write on a ticket that a bot or an agent makes, outside routing itself."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent, Skill
from agents.push import push_to_agent_on_commit
from dispatch import services as dispatch_services

from .audit import ticket_record_event, ticket_transition
from .events import ticket_message_frame
from .exceptions import Conflict, TicketClosed
from .locks import lock_ticket
from .models import BotIntegration, Message, Ticket
from .webhooks import webhook_enqueue


@dataclass(frozen=True)
class TranscriptEntry:
    role: str
    text: str
    sent_at: datetime | None = None


def lock_existing_ticket(ticket_id: uuid.UUID) -> Ticket:
    ticket = lock_ticket(ticket_id)
    if ticket is None:
        raise Ticket.DoesNotExist
    return ticket


def _message_append(
    *, ticket: Ticket, role: str, text: str, sent_at: datetime | None, agent: Agent | None = None
) -> Message:
    """Append a message to a locked ticket at the next position."""
    ticket.message_count += 1
    ticket.save(update_fields=["message_count"])
    return Message.objects.create(
        ticket=ticket,
        position=ticket.message_count,
        role=role,
        text=text,
        sent_at=sent_at or timezone.now(),
        agent=agent,
    )


def ticket_escalate(
    *,
    integration: BotIntegration,
    external_id: str,
    language: str,
    customer_id: str,
    skills: list[Skill] = (),
    priority: int = Ticket.Priority.NORMAL,
    reason: str = Ticket.Reason.CUSTOMER_REQUESTED,
    summary: str = "",
    customer_name: str = "",
    customer_tier: str = "",
    transcript: list[TranscriptEntry] = (),
    callback_url: str = "",
) -> tuple[Ticket, bool]:
    """Create the ticket for a bot's conversation, or return the one it already escalated.

    Returns the ticket and whether it was created. Racing replays meet at the database's
    unique constraint: the loser reads the winner's ticket.
    """
    existing = Ticket.objects.filter(integration=integration, external_id=external_id).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            ticket = Ticket.objects.create(
                integration=integration,
                external_id=external_id,
                language=language,
                priority=priority,
                reason=reason,
                summary=summary,
                customer_id=customer_id,
                customer_name=customer_name,
                customer_tier=customer_tier,
                callback_url=callback_url,
                message_count=len(transcript),
            )
            # A new ticket has no skills yet: add them, where set() would read them first.
            ticket.skills.add(*skills)
            now = timezone.now()
            Message.objects.bulk_create(
                Message(
                    ticket=ticket,
                    position=position,
                    role=entry.role,
                    text=entry.text,
                    sent_at=entry.sent_at or now,
                )
                for position, entry in enumerate(transcript, start=1)
            )
            # Asked first, so that after commit the routing task leaves before the board's nudge:
            # the customer waits on the one, nobody on the other.
            dispatch_services.ticket_request_routing(ticket=ticket)
            ticket_record_event(ticket=ticket, kind="escalated", from_status="")
    except IntegrityError:
        return Ticket.objects.get(integration=integration, external_id=external_id), False
    return ticket, True


@transaction.atomic
def ticket_add_customer_message(
    *, ticket_id: uuid.UUID, text: str, sent_at: datetime | None = None
) -> Message:
    """A customer message relayed by the bot; pushed live to the assigned agent."""
    ticket = lock_existing_ticket(ticket_id)
    if ticket.is_final:
        raise TicketClosed(ticket.status)
    message = _message_append(ticket=ticket, role=Message.Role.CUSTOMER, text=text, sent_at=sent_at)
    if ticket.status == Ticket.Status.ASSIGNED:
        push_to_agent_on_commit(ticket.agent_id, ticket_message_frame(message))
    return message


def _lock_agent_ticket(*, ticket_id: uuid.UUID, agent: Agent) -> Ticket:
    """Lock a ticket the agent is working; another agent's ticket does not exist for them."""
    ticket = lock_existing_ticket(ticket_id)
    if ticket.agent_id != agent.pk:
        raise Ticket.DoesNotExist
    if ticket.status != Ticket.Status.ASSIGNED:
        raise TicketClosed(ticket.status)
    # Its holder is the agent in hand: the views and webhooks built from it need not read them.
    ticket.agent = agent
    return ticket


@transaction.atomic
def ticket_add_agent_message(*, ticket_id: uuid.UUID, agent: Agent, text: str) -> Message:
    """An agent's reply, relayed to the bot by the `ticket.message` webhook and to the agent's
    other tabs, so each of them shows the whole conversation."""
    ticket = _lock_agent_ticket(ticket_id=ticket_id, agent=agent)
    message = _message_append(
        ticket=ticket, role=Message.Role.AGENT, text=text, sent_at=None, agent=agent
    )
    webhook_enqueue(ticket=ticket, event="ticket.message", message=message)
    push_to_agent_on_commit(agent.pk, ticket_message_frame(message))
    return message


@transaction.atomic
def ticket_resolve(*, ticket_id: uuid.UUID, agent: Agent, outcome: str, note: str = "") -> Ticket:
    """The agent closes the ticket; its capacity goes back to the waiting queue at once."""
    ticket = _lock_agent_ticket(ticket_id=ticket_id, agent=agent)
    ticket.outcome = outcome
    ticket.resolution_note = note
    ticket.resolved_at = timezone.now()
    ticket_transition(
        ticket=ticket,
        to_status=Ticket.Status.RESOLVED,
        kind="resolved",
        agent=agent,
        detail={"outcome": outcome},
        update_fields=("outcome", "resolution_note", "resolved_at"),
    )
    webhook_enqueue(ticket=ticket, event="ticket.resolved")
    dispatch_services.agent_request_drain(agent=agent)
    return ticket


@transaction.atomic
def ticket_cancel(*, ticket_id: uuid.UUID, actor: AbstractBaseUser | None = None) -> Ticket:
    """Cancel an open ticket (the customer left, or a coordinator closed it).

    Cancelling a cancelled ticket changes nothing. A coordinator's cancel is reported to the
    bot by webhook; the bot's own is not echoed back to it.
    """
    ticket = lock_existing_ticket(ticket_id)
    if ticket.status == Ticket.Status.CANCELLED:
        return ticket
    if ticket.status == Ticket.Status.RESOLVED:
        raise TicketClosed(ticket.status)
    dispatch_services.ticket_withdraw(ticket=ticket)
    ticket.cancelled_at = timezone.now()
    ticket_transition(
        ticket=ticket,
        to_status=Ticket.Status.CANCELLED,
        kind="cancelled",
        agent=ticket.agent,
        actor=actor,
        update_fields=("cancelled_at",),
    )
    if actor is not None:
        webhook_enqueue(ticket=ticket, event="ticket.cancelled")
    return ticket


@transaction.atomic
def ticket_set_csat(*, ticket_id: uuid.UUID, score: int, comment: str = "") -> Ticket:
    """The customer's rating after resolution; the last score wins."""
    ticket = lock_existing_ticket(ticket_id)
    if ticket.status != Ticket.Status.RESOLVED:
        raise Conflict("A ticket can be rated only once it is resolved.")
    dispatch_services.agent_ratings_record(ticket=ticket, score=score)
    ticket.csat_score = score
    ticket.csat_comment = comment
    ticket.save(update_fields=["csat_score", "csat_comment"])
    ticket_record_event(ticket=ticket, kind="csat", detail={"score": score})
    return ticket


def bot_integration_create(
    *, name: str, signing_secret: str | None = None, key: str | None = None
) -> tuple[BotIntegration, str]:
    """Create a bot integration; returns it and its API key, which is stored only hashed."""
    integration = BotIntegration(
        name=name, signing_secret=signing_secret or BotIntegration.new_signing_secret()
    )
    key = integration.set_key(key)
    integration.save()
    return integration, key


@transaction.atomic
def bot_integration_revoke(*, integration_id: uuid.UUID) -> bool:
    """Revoke an integration's API key, refused from the moment this commits; False when it
    was revoked already."""
    integration = BotIntegration.objects.select_for_update().get(pk=integration_id)
    if not integration.is_active:
        return False
    integration.is_active = False
    integration.revoked_at = timezone.now()
    integration.save(update_fields=["is_active", "revoked_at"])
    return True


class BotIntegrationRevoked(Conflict):
    def __init__(self, integration: BotIntegration) -> None:
        super().__init__(f"{integration} is revoked: its key cannot be rotated.")


@transaction.atomic
def bot_integration_rotate_key(*, integration_id: uuid.UUID) -> tuple[BotIntegration, str]:
    """Give an active integration a new API key; returns it and the key, which is stored only
    hashed. The old key is refused from the moment this commits."""
    integration = BotIntegration.objects.select_for_update().get(pk=integration_id)
    if not integration.is_active:
        raise BotIntegrationRevoked(integration)
    key = integration.set_key()
    integration.save(update_fields=["key_prefix", "key_hash"])
    return integration, key
