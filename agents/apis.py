"""The agent REST API (contract sections 3 and 4)."""

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from dispatch import services as dispatch_services
from dispatch.events import offer_view
from tickets import services as ticket_services
from tickets.events import message_view, ticket_for_agent

from . import services
from .events import agent_profile
from .models import Agent
from .serializers import (
    AgentMessageSerializer,
    DeclineSerializer,
    ReleaseSerializer,
    ResolveSerializer,
    StatusSerializer,
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


class AuthTokenApi(ObtainAuthToken):
    parser_classes = [JSONParser]


class AgentApi(APIView):
    # Token first, so an unauthenticated call is answered 401 with a WWW-Authenticate header.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsActiveAgent]


class AgentMeApi(AgentApi):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(agent_profile(request.agent))


class AgentStatusApi(AgentApi):
    @extend_schema(request=StatusSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        serializer = StatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = services.agent_set_status(
            agent=request.agent, status=serializer.validated_data["status"]
        )
        return Response(agent_profile(agent))


class AgentOffersApi(AgentApi):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(
            [offer_view(offer) for offer in dispatch_services.agent_offers(agent=request.agent)]
        )


class OfferAcceptApi(AgentApi):
    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, offer_id):
        ticket = dispatch_services.offer_accept(offer_id=parse_id(offer_id), agent=request.agent)
        return Response(ticket_for_agent(ticket))


class OfferDeclineApi(AgentApi):
    @extend_schema(request=DeclineSerializer, responses=OpenApiTypes.OBJECT)
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
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(
            [
                ticket_for_agent(ticket)
                for ticket in dispatch_services.agent_tickets(agent=request.agent)
            ]
        )


class AgentTicketMessagesApi(AgentApi):
    @extend_schema(request=AgentMessageSerializer, responses={201: OpenApiTypes.OBJECT})
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
    @extend_schema(request=ResolveSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request, ticket_id):
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = ticket_services.ticket_resolve(
            ticket_id=parse_id(ticket_id), agent=request.agent, **serializer.validated_data
        )
        return Response(ticket_for_agent(ticket))


class AgentTicketReleaseApi(AgentApi):
    @extend_schema(request=ReleaseSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request, ticket_id):
        serializer = ReleaseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = dispatch_services.ticket_release(
            ticket_id=parse_id(ticket_id),
            agent=request.agent,
            reason=serializer.validated_data["reason"],
        )
        return Response(ticket_for_agent(ticket))
