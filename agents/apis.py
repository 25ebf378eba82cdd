"""The agent REST API (contract sections 3 and 4)."""

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from knox.views import LoginView
from rest_framework import permissions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from dispatch import services as dispatch_services
from dispatch.events import offer_view
from dispatch.exceptions import RETRY_AFTER, error_responses
from tickets import services as ticket_services
from tickets.events import message_view, ticket_for_agent
from tickets.models import Ticket
from tickets.serializers import (
    AgentTicketSerializer,
    MessageSerializer,
    TicketCustomerSerializer,
)
from tickets.throttling import TokenLoginRateThrottle
from tickets.validators import JSONBodyParser

from . import services
from .events import agent_profile
from .middleware import AgentTokenAuthentication
from .models import Agent
from .serializers import (
    AgentMessageSerializer,
    DeclineSerializer,
    ReleaseSerializer,
    ResolveSerializer,
    StatusSerializer,
)

TAGS = ["agent"]
OFFER_ID = OpenApiParameter("offer_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
TICKET_ID = OpenApiParameter("ticket_id", OpenApiTypes.UUID, OpenApiParameter.PATH)

# --- Response shapes, for the OpenAPI schema (the payloads are built in the events modules) ---


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class AgentProfileSerializer(serializers.Serializer):
    username = serializers.CharField()
    display_name = serializers.CharField()
    status = serializers.ChoiceField(choices=Agent.Status.values)
    languages = serializers.ListField(child=serializers.CharField(min_length=2, max_length=2))
    skills = serializers.ListField(child=serializers.SlugField())
    capacity = serializers.IntegerField(min_value=1)
    active_tickets = serializers.IntegerField(min_value=0)


class OfferTicketSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    language = serializers.CharField(min_length=2, max_length=2)
    skills = serializers.ListField(child=serializers.SlugField())
    priority = serializers.ChoiceField(choices=[label for _, label in Ticket.Priority.choices])
    reason = serializers.ChoiceField(choices=Ticket.Reason.values)
    summary = serializers.CharField(allow_blank=True)
    customer = TicketCustomerSerializer()
    transcript = MessageSerializer(many=True)
    waiting_seconds = serializers.IntegerField(min_value=0)


class OfferSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    expires_at = serializers.DateTimeField()
    ticket = OfferTicketSerializer()


class OfferDeclinedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()


PROFILE_EXAMPLE = OpenApiExample(
    "Profile",
    response_only=True,
    value={
        "username": "maja",
        "display_name": "Maja",
        "status": "available",
        "languages": ["sv", "en"],
        "skills": ["billing", "refunds"],
        "capacity": 3,
        "active_tickets": 1,
    },
)


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound() from exc


class IsActiveAgent(permissions.BasePermission):
    message = "Only active agents may use this endpoint."

    def has_permission(self, request, view) -> bool:
        if not request.user.is_authenticated:
            return False
        agent = Agent.objects.select_related("user").filter(user=request.user).first()
        if agent is None or agent.account_state != Agent.AccountState.ACTIVE:
            return False
        request.agent = agent
        return True


@extend_schema_view(
    post=extend_schema(
        tags=TAGS,
        summary="Log in for a token",
        description="At most 10 log-ins a minute from one client address.",
        auth=[],
        responses={200: TokenSerializer, **error_responses(400, 413, 415, 429)},
        parameters=[RETRY_AFTER],
        examples=[
            OpenApiExample(
                "Log-in", request_only=True, value={"username": "maja", "password": "..."}
            ),
            OpenApiExample(
                "Token",
                response_only=True,
                value={"token": "3f9c1e0b7a5d4c2e8f6a1b3d5c7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e"},
            ),
        ],
    )
)
class AuthTokenApi(LoginView):
    """A new token for each log-in with a username and password (django-rest-knox keeps only
    its digest): the answer is the only time the token is seen."""

    authentication_classes = []
    permission_classes = [permissions.AllowAny]
    parser_classes = [JSONBodyParser]
    throttle_classes = [TokenLoginRateThrottle]
    serializer_class = AuthTokenSerializer

    def post(self, request, format=None):
        serializer = self.serializer_class(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        # knox issues the token to request.user; no session is opened.
        request.user = serializer.validated_data["user"]
        return super().post(request, format=format)

    def get_post_response_data(self, request, token, instance) -> dict:
        return {"token": token}


class AgentApi(APIView):
    # Token first, so an unauthenticated call is answered 401 with a WWW-Authenticate header.
    authentication_classes = [AgentTokenAuthentication, SessionAuthentication]
    permission_classes = [IsActiveAgent]


class AgentMeApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="The agent's profile",
        responses={200: AgentProfileSerializer, **error_responses(401, 403)},
        examples=[PROFILE_EXAMPLE],
    )
    def get(self, request):
        return Response(agent_profile(request.agent))


class AgentStatusApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="Set the agent's status",
        request=StatusSerializer,
        responses={200: AgentProfileSerializer, **error_responses(400, 401, 403, 413, 415)},
        examples=[
            OpenApiExample("Available", request_only=True, value={"status": "available"}),
            PROFILE_EXAMPLE,
        ],
    )
    def post(self, request):
        serializer = StatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = services.agent_set_status(
            agent=request.agent, status=serializer.validated_data["status"]
        )
        return Response(agent_profile(agent))


class AgentOffersApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="The agent's pending offers",
        responses={200: OfferSerializer(many=True), **error_responses(401, 403)},
    )
    def get(self, request):
        return Response(
            [offer_view(offer) for offer in dispatch_services.agent_offers(agent=request.agent)]
        )


class OfferAcceptApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="Accept an offer",
        parameters=[OFFER_ID],
        request=None,
        responses={
            200: OpenApiResponse(AgentTicketSerializer, description="The ticket, now assigned."),
            **error_responses(401, 403, 404, 409),
        },
    )
    def post(self, request, offer_id):
        ticket = dispatch_services.offer_accept(offer_id=parse_id(offer_id), agent=request.agent)
        return Response(ticket_for_agent(ticket))


class OfferDeclineApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="Decline an offer",
        parameters=[OFFER_ID],
        description="The ticket is offered to someone else, never again to this agent.",
        request=DeclineSerializer,
        responses={
            200: OfferDeclinedSerializer,
            **error_responses(400, 401, 403, 404, 409, 413, 415),
        },
    )
    def post(self, request, offer_id):
        serializer = DeclineSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        offer = dispatch_services.offer_decline(
            offer_id=parse_id(offer_id),
            agent=request.agent,
            reason=serializer.validated_data["reason"],
        )
        return Response({"id": str(offer.id), "status": offer.status})


class AgentTicketsApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="The agent's assigned tickets, with their messages",
        responses={200: AgentTicketSerializer(many=True), **error_responses(401, 403)},
    )
    def get(self, request):
        return Response(
            [
                ticket_for_agent(ticket)
                for ticket in dispatch_services.agent_tickets(agent=request.agent)
            ]
        )


class AgentTicketMessagesApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="Reply to the customer",
        parameters=[TICKET_ID],
        description="Relayed to the bot as the `ticket.message` webhook.",
        request=AgentMessageSerializer,
        responses={201: MessageSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request, ticket_id):
        serializer = AgentMessageSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = ticket_services.ticket_add_agent_message(
            ticket_id=parse_id(ticket_id),
            agent=request.agent,
            text=serializer.validated_data["text"],
        )
        return Response(message_view(message), status=status.HTTP_201_CREATED)


class AgentTicketResolveApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="Resolve a ticket",
        parameters=[TICKET_ID],
        request=ResolveSerializer,
        responses={
            200: AgentTicketSerializer,
            **error_responses(400, 401, 403, 404, 409, 413, 415),
        },
        examples=[
            OpenApiExample(
                "Solved",
                request_only=True,
                value={"outcome": "solved", "note": "Refunded the second charge."},
            )
        ],
    )
    def post(self, request, ticket_id):
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = ticket_services.ticket_resolve(
            ticket_id=parse_id(ticket_id), agent=request.agent, **serializer.validated_data
        )
        return Response(ticket_for_agent(ticket))


class AgentTicketReleaseApi(AgentApi):
    @extend_schema(
        tags=TAGS,
        summary="Hand a ticket back to the queue",
        parameters=[TICKET_ID],
        description="It is not offered to this agent again.",
        request=ReleaseSerializer,
        responses={
            200: AgentTicketSerializer,
            **error_responses(400, 401, 403, 404, 409, 413, 415),
        },
    )
    def post(self, request, ticket_id):
        serializer = ReleaseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = dispatch_services.ticket_release(
            ticket_id=parse_id(ticket_id),
            agent=request.agent,
            reason=serializer.validated_data["reason"],
        )
        return Response(ticket_for_agent(ticket))
