"""The bot's REST hook (contract section 1)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .authentication import BotKeyAuthentication, IsBot
from .events import message_view, ticket_view
from .models import Message, Ticket
from .selectors import ticket_messages
from .serializers import CsatSerializer, EscalationSerializer, MessageInSerializer


class BotApi(APIView):
    authentication_classes = [BotKeyAuthentication]
    permission_classes = [IsBot]

    def get_ticket(self, ticket_id) -> Ticket:
        """The ticket, if this bot escalated it; any other id is a 404."""
        return get_object_or_404(
            Ticket.objects.select_related("agent"), pk=ticket_id, integration=self.request.auth
        )


class EscalationCreateApi(BotApi):
    @extend_schema(
        request=EscalationSerializer, responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}
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
        return Response(
            ticket_view(ticket), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class TicketDetailApi(BotApi):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, ticket_id):
        return Response(ticket_view(self.get_ticket(ticket_id)))


class TicketMessagesApi(BotApi):
    class AfterSerializer(serializers.Serializer):
        after = serializers.UUIDField(required=False)

    @extend_schema(parameters=[AfterSerializer], responses=OpenApiTypes.OBJECT)
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

    @extend_schema(request=MessageInSerializer, responses={201: OpenApiTypes.OBJECT})
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
    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, ticket_id):
        ticket = services.ticket_cancel(ticket_id=self.get_ticket(ticket_id).pk)
        return Response(ticket_view(ticket))


class TicketCsatApi(BotApi):
    @extend_schema(request=CsatSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request, ticket_id):
        ticket = self.get_ticket(ticket_id)
        serializer = CsatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = services.ticket_set_csat(ticket_id=ticket.pk, **serializer.validated_data)
        return Response(ticket_view(ticket))
