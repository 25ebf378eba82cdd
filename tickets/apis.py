"""The bot's REST hook (contract section 1)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from dispatch.exceptions import RETRY_AFTER, error_responses

from . import services
from .authentication import BotKeyAuthentication, IsBot
from .events import message_view, ticket_view
from .models import Message, Ticket
from .selectors import ticket_messages
from .serializers import (
    CsatSerializer,
    EscalationSerializer,
    MessageInSerializer,
    MessageSerializer,
    TicketSerializer,
)
from .throttling import BotIntegrationRateThrottle

TAGS = ["bot"]
TICKET_ID = OpenApiParameter("ticket_id", OpenApiTypes.UUID, OpenApiParameter.PATH)

ESCALATION_EXAMPLE = OpenApiExample(
    "Escalation",
    request_only=True,
    value={
        "external_id": "conv-8812",
        "language": "sv",
        "skills": ["refunds"],
        "priority": "normal",
        "reason": "customer_requested",
        "summary": "Customer disputes a double charge on order 5531 and asked for a person.",
        "customer": {"id": "cust-77", "name": "Anna", "tier": "standard"},
        "transcript": [
            {"role": "customer", "text": "I was charged twice", "sent_at": "2026-11-25T10:00:00Z"},
            {"role": "bot", "text": "I can help with that...", "sent_at": "2026-11-25T10:00:02Z"},
        ],
        "callback_url": "https://bot.example.com/hooks/dispatch",
    },
)

QUEUED_TICKET = {
    "id": "7b0c6f4e-2d1a-4c8e-9f3b-5a6d7e8f9a0b",
    "external_id": "conv-8812",
    "status": "queued",
    "priority": "normal",
    "language": "sv",
    "skills": ["refunds"],
    "queue_position": 3,
    "estimated_wait_seconds": 45,
    "agent": None,
    "sla_breached": False,
    "created_at": "2026-11-25T10:00:03+00:00",
    "assigned_at": None,
    "resolved_at": None,
    "resolution": None,
}

QUEUED_TICKET_EXAMPLE = OpenApiExample(
    "Queued ticket", response_only=True, status_codes=["200", "201"], value=QUEUED_TICKET
)

RESOLVED_TICKET_EXAMPLE = OpenApiExample(
    "Resolved ticket",
    response_only=True,
    value={
        **QUEUED_TICKET,
        "status": "resolved",
        "queue_position": None,
        "estimated_wait_seconds": None,
        "agent": {"display_name": "Maja"},
        "assigned_at": "2026-11-25T10:00:41+00:00",
        "resolved_at": "2026-11-25T10:09:12+00:00",
        "resolution": {"outcome": "solved", "note": "Refunded the second charge."},
    },
)

CANCELLED_TICKET_EXAMPLE = OpenApiExample(
    "Cancelled ticket",
    response_only=True,
    value={
        **QUEUED_TICKET,
        "status": "cancelled",
        "queue_position": None,
        "estimated_wait_seconds": None,
    },
)

MESSAGES_EXAMPLE = OpenApiExample(
    "Conversation",
    response_only=True,
    value=[
        {
            "id": "0d9e3b5c-8f1a-4d2e-a6b7-c8d9e0f1a2b3",
            "role": "customer",
            "text": "I was charged twice",
            "sent_at": "2026-11-25T10:00:00+00:00",
        },
        {
            "id": "5f2a7c1e-3b4d-4e6f-8a9b-0c1d2e3f4a5b",
            "role": "agent",
            "text": "Hi Anna, I can see both charges. Refunding one now.",
            "sent_at": "2026-11-25T10:01:15+00:00",
        },
    ],
)


class BotApi(APIView):
    authentication_classes = [BotKeyAuthentication]
    permission_classes = [IsBot]
    throttle_classes = [BotIntegrationRateThrottle]

    def get_ticket(self, ticket_id) -> Ticket:
        """The ticket, if this bot escalated it; any other id is a 404."""
        return get_object_or_404(
            Ticket.objects.select_related("agent"), pk=ticket_id, integration=self.request.auth
        )


class EscalationCreateApi(BotApi):
    @extend_schema(
        tags=TAGS,
        summary="Hand a conversation over to a human",
        description="Idempotent per `external_id`: a replay (even racing) never makes a second "
        "ticket.",
        request=EscalationSerializer,
        responses={
            201: OpenApiResponse(TicketSerializer, description="A new ticket."),
            200: OpenApiResponse(
                TicketSerializer,
                description="This integration escalated this `external_id` before: its ticket.",
            ),
            **error_responses(400, 401, 413, 415, 429),
        },
        parameters=[RETRY_AFTER],
        examples=[ESCALATION_EXAMPLE, QUEUED_TICKET_EXAMPLE],
    )
    def post(self, request):
        serializer = EscalationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        ticket, created = services.ticket_escalate(
            integration=request.auth,
            external_id=data["external_id"],
            language=data["language"],
            customer_id=data["customer"]["id"],
            customer_name=data["customer"]["name"],
            customer_tier=data["customer"]["tier"],
            skills=data["skills"],
            priority=data["priority"],
            reason=data["reason"],
            summary=data["summary"],
            transcript=[services.TranscriptEntry(**entry) for entry in data.get("transcript", [])],
            callback_url=data["callback_url"],
        )
        if not created:
            return Response(ticket_view(ticket), status=status.HTTP_200_OK)
        # A new ticket's skills are the ones just validated: no need to read them back.
        return Response(ticket_view(ticket, skills=data["skills"]), status=status.HTTP_201_CREATED)


class TicketDetailApi(BotApi):
    @extend_schema(
        tags=TAGS,
        summary="A ticket of this bot's",
        responses={200: TicketSerializer, **error_responses(401, 404, 429)},
        parameters=[TICKET_ID, RETRY_AFTER],
        examples=[QUEUED_TICKET_EXAMPLE, RESOLVED_TICKET_EXAMPLE],
    )
    def get(self, request, ticket_id):
        return Response(ticket_view(self.get_ticket(ticket_id)))


class TicketMessagesApi(BotApi):
    class AfterSerializer(serializers.Serializer):
        after = serializers.UUIDField(
            required=False, help_text="Only the messages after this message of the ticket."
        )

    @extend_schema(
        tags=TAGS,
        summary="The conversation so far",
        parameters=[TICKET_ID, AfterSerializer, RETRY_AFTER],
        responses={200: MessageSerializer(many=True), **error_responses(400, 401, 404, 429)},
        examples=[MESSAGES_EXAMPLE],
    )
    def get(self, request, ticket_id):
        ticket = self.get_ticket(ticket_id)
        query = self.AfterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = None
        if "after" in query.validated_data:
            after = Message.objects.filter(ticket=ticket, pk=query.validated_data["after"]).first()
            if after is None:
                raise serializers.ValidationError({"after": ["No such message in this ticket."]})
        return Response(
            [message_view(message) for message in ticket_messages(ticket=ticket, after=after)]
        )

    @extend_schema(
        tags=TAGS,
        summary="Relay a customer message",
        description="Pushed live to the assigned agent.",
        request=MessageInSerializer,
        responses={
            201: MessageSerializer,
            **error_responses(400, 401, 404, 409, 413, 415, 429),
        },
        parameters=[TICKET_ID, RETRY_AFTER],
        examples=[
            OpenApiExample(
                "Customer message",
                request_only=True,
                value={"text": "Are you still there?", "sent_at": "2026-11-25T10:05:00Z"},
            )
        ],
    )
    def post(self, request, ticket_id):
        ticket = self.get_ticket(ticket_id)
        serializer = MessageInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = services.ticket_add_customer_message(
            ticket_id=ticket.pk,
            text=serializer.validated_data["text"],
            sent_at=serializer.validated_data.get("sent_at"),
        )
        return Response(message_view(message), status=status.HTTP_201_CREATED)


class TicketCancelApi(BotApi):
    @extend_schema(
        tags=TAGS,
        summary="The customer left",
        description="A pending offer is revoked at once and the assigned agent told live. "
        "Cancelling a cancelled ticket changes nothing; a resolved one is a 409.",
        request=None,
        responses={200: TicketSerializer, **error_responses(401, 404, 409, 429)},
        parameters=[TICKET_ID, RETRY_AFTER],
        examples=[CANCELLED_TICKET_EXAMPLE],
    )
    def post(self, request, ticket_id):
        ticket = services.ticket_cancel(ticket_id=self.get_ticket(ticket_id).pk)
        return Response(ticket_view(ticket))


class TicketCsatApi(BotApi):
    @extend_schema(
        tags=TAGS,
        summary="The customer's rating, after resolution",
        description="The last score wins.",
        request=CsatSerializer,
        responses={200: TicketSerializer, **error_responses(400, 401, 404, 409, 413, 415, 429)},
        parameters=[TICKET_ID, RETRY_AFTER],
        examples=[
            OpenApiExample(
                "Rating", request_only=True, value={"score": 5, "comment": "Quick and kind."}
            ),
            RESOLVED_TICKET_EXAMPLE,
        ],
    )
    def post(self, request, ticket_id):
        ticket = self.get_ticket(ticket_id)
        serializer = CsatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = services.ticket_set_csat(ticket_id=ticket.pk, **serializer.validated_data)
        return Response(ticket_view(ticket))
