from rest_framework import serializers

from tickets.models import Ticket

from .models import Agent


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Agent.Status.values)


class DeclineSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ReleaseSerializer(DeclineSerializer):
    pass


class AgentMessageSerializer(serializers.Serializer):
    text = serializers.CharField(min_length=1, max_length=10000, trim_whitespace=False)


class ResolveSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=Ticket.Outcome.values)
    note = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")
