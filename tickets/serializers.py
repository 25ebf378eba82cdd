import pycountry
from rest_framework import serializers

from agents.models import Skill

from .models import Message, Ticket
from .validators import validate_callback_url, validate_no_control_characters

# --- Input fields: the contract's types, exactly ------------------------------------------------
# DRF's string fields take a JSON number as its digits (5 becomes "5") and its integer field a
# numeric string or a whole float; the contract says which JSON type each field is, and a
# different one is the client's mistake.


class JSONStringMixin:
    default_error_messages = {"not_a_string": "Not a valid string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class TextField(JSONStringMixin, serializers.CharField):
    pass


class IdentifierField(TextField):
    """An id or a name: it ends up in logs and admin lists, so no control characters."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validators.append(validate_no_control_characters)


class SlugTextField(JSONStringMixin, serializers.SlugField):
    pass


class URLTextField(JSONStringMixin, serializers.URLField):
    pass


class WholeNumberField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class CustomerSerializer(serializers.Serializer):
    id = IdentifierField(min_length=1, max_length=200)
    name = IdentifierField(max_length=200, required=False, allow_blank=True, default="")
    tier = IdentifierField(max_length=50, required=False, allow_blank=True, default="")


class TranscriptEntrySerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["customer", "bot"])
    text = TextField(min_length=1, max_length=10000, trim_whitespace=False)
    sent_at = serializers.DateTimeField(required=False)


class EscalationSerializer(serializers.Serializer):
    external_id = IdentifierField(min_length=1, max_length=200)
    language = TextField(max_length=2, min_length=2)
    skills = serializers.ListField(
        child=SlugTextField(max_length=50), required=False, default=list, max_length=50
    )
    priority = serializers.ChoiceField(
        choices=[label for _, label in Ticket.Priority.choices], default="normal"
    )
    reason = serializers.ChoiceField(
        choices=Ticket.Reason.values, default=Ticket.Reason.CUSTOMER_REQUESTED
    )
    summary = TextField(max_length=4000, required=False, allow_blank=True, default="")
    customer = CustomerSerializer()
    transcript = TranscriptEntrySerializer(many=True, required=False, max_length=500)
    callback_url = URLTextField(max_length=2000, required=False, allow_blank=True, default="")

    def validate_language(self, value: str) -> str:
        code = value.lower()
        if pycountry.languages.get(alpha_2=code) is None:
            raise serializers.ValidationError(f"Unknown ISO 639-1 language code: {value!r}.")
        return code

    def validate_skills(self, slugs: list[str]) -> list[Skill]:
        wanted = list(dict.fromkeys(slugs))
        found = {skill.slug: skill for skill in Skill.objects.filter(slug__in=wanted)}
        unknown = [slug for slug in wanted if slug not in found]
        if unknown:
            raise serializers.ValidationError(f"Unknown skill: {', '.join(unknown)}.")
        return [found[slug] for slug in wanted]

    def validate_priority(self, label: str) -> int:
        return {name: value for value, name in Ticket.Priority.choices}[label]

    def validate_callback_url(self, url: str) -> str:
        # After the URL's own syntax checks, so a malformed URL gets one message.
        validate_callback_url(url)
        return url


class MessageInSerializer(serializers.Serializer):
    text = TextField(min_length=1, max_length=10000, trim_whitespace=False)
    sent_at = serializers.DateTimeField(required=False)


class CsatSerializer(serializers.Serializer):
    score = WholeNumberField(min_value=1, max_value=5)
    comment = TextField(max_length=2000, required=False, allow_blank=True, default="")


# --- Response shapes ------------------------------------------------------------------------
# The payloads are built in tickets.events (one place for REST, webhooks and websockets); these
# serializers describe them for the OpenAPI schema, which the schema tests hold them to.


class AgentRefSerializer(serializers.Serializer):
    display_name = serializers.CharField()


class ResolutionSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=Ticket.Outcome.values)
    note = serializers.CharField(allow_blank=True)


class TicketSerializer(serializers.Serializer):
    """A ticket as its bot sees it (GET /api/v1/tickets/{id}/)."""

    id = serializers.UUIDField()
    external_id = serializers.CharField()
    status = serializers.ChoiceField(choices=Ticket.Status.values)
    priority = serializers.ChoiceField(choices=[label for _, label in Ticket.Priority.choices])
    language = serializers.CharField(min_length=2, max_length=2)
    skills = serializers.ListField(child=serializers.SlugField())
    queue_position = serializers.IntegerField(
        min_value=1,
        allow_null=True,
        help_text="1-based place among the waiting tickets of the same language, in dispatch "
        "order; null unless queued or offered.",
    )
    estimated_wait_seconds = serializers.IntegerField(
        min_value=0,
        allow_null=True,
        help_text="Queue position divided by the last hour's assignment rate of tickets of this "
        "language and skills; null when there is no such history or the ticket is not waiting.",
    )
    agent = AgentRefSerializer(allow_null=True)
    sla_breached = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    assigned_at = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolution = ResolutionSerializer(allow_null=True)


class MessageSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    role = serializers.ChoiceField(choices=Message.Role.values)
    text = serializers.CharField()
    sent_at = serializers.DateTimeField()


class TicketCustomerSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    tier = serializers.CharField(allow_blank=True)


class AgentTicketSerializer(TicketSerializer):
    """A ticket as its agent sees it: the bot's view plus the context and the conversation."""

    summary = serializers.CharField(allow_blank=True)
    reason = serializers.ChoiceField(choices=Ticket.Reason.values)
    customer = TicketCustomerSerializer()
    messages = MessageSerializer(many=True)
