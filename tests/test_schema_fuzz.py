"""A schema-driven fuzz run: schemathesis generates requests from /api/schema/ for every bot
and agent endpoint, with valid credentials and without, and sends them to the application in
process. No answer may be a server error, and every answer must be one the schema documents,
in its documented shape.

Bounded (a fixed number of examples per operation, derandomised) so the suite stays fast and
a failure replays the same way."""

import hypothesis
import pytest
import schemathesis
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from knox.models import AuthToken
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dispatch.models import Offer
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # The fuzz run uses up the token log-in limit; the tests after it must not inherit that.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_schema():
    return schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def world(bot_factory, agent_factory, ticket_factory, skill_factory):
    """A bot with tickets in every state, and an agent holding an offer and a ticket, so that
    real ids are fuzzed as well as unknown ones."""
    skill_factory(slug="refunds")
    bot = bot_factory()
    bot.requests_per_minute = 100_000
    bot.save(update_fields=["requests_per_minute"])
    agent = agent_factory(online=True, capacity=5)
    tickets = {
        status: ticket_factory(integration=bot, status=status) for status in Ticket.Status.values
    }
    assigned = tickets[Ticket.Status.ASSIGNED]
    assigned.agent = agent
    assigned.save(update_fields=["agent"])
    offered = tickets[Ticket.Status.OFFERED]
    offer = Offer.objects.create(ticket=offered, agent=agent, expires_at=offered.created_at)
    return {
        "bot": {"Authorization": f"Bearer {bot.api_key}"},
        "agent": {"Authorization": f"Token {AuthToken.objects.create(user=agent.user)[1]}"},
        "ticket_ids": [str(ticket.pk) for ticket in tickets.values()],
        "offer_id": str(offer.pk),
        "agent_ticket_id": str(assigned.pk),
    }


def fuzz(operation, *, headers: dict, mode: GenerationMode, path_parameters=None) -> None:
    @hypothesis.given(case=operation.as_strategy(mode, path_parameters=path_parameters))
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def real_ids(operation, world) -> list[dict | None]:
    """The path parameters to fuzz an operation with: generated ones, and real ids."""
    path = operation.path
    if "{offer_id}" in path:
        return [None, {"offer_id": world["offer_id"]}]
    if "{ticket_id}" in path and path.startswith("/api/v1/agent/"):
        return [None, {"ticket_id": world["agent_ticket_id"]}]
    if "{ticket_id}" in path:
        return [None, *({"ticket_id": ticket_id} for ticket_id in world["ticket_ids"])]
    return [None]


def negatable(operation, path_parameters: dict | None) -> bool:
    """Whether the request has anything that can be made invalid: a body or a query, or path
    parameters that are generated rather than fixed."""
    raw = operation.definition.raw
    locations = {parameter["in"] for parameter in raw.get("parameters", [])}
    return (
        "requestBody" in raw
        or "query" in locations
        or ("path" in locations and path_parameters is None)
    )


@pytest.mark.parametrize("credentials", ["valid", "none"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error_or_an_undocumented_answer(
    api_schema, world, credentials, mode
):
    # given every operation of the bot and agent APIs
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 16

    # when each is fuzzed, then no check fails (a failure raises with the request to replay)
    for operation in operations:
        caller = "agent" if "agent" in operation.definition.raw.get("tags", []) else "bot"
        headers = world[caller] if credentials == "valid" else {}
        for path_parameters in real_ids(operation, world):
            if mode == GenerationMode.NEGATIVE and not negatable(operation, path_parameters):
                continue
            fuzz(operation, headers=headers, mode=mode, path_parameters=path_parameters)
