"""The OpenAPI schema at /api/schema/ (contract section 7): valid OpenAPI 3 without a warning,
describing every bot and agent endpoint with its answers, and served with interactive docs."""

import io

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("post", "/api/v1/escalations/"): {"200", "201", "400", "401", "413", "415", "429"},
    ("get", "/api/v1/tickets/{ticket_id}/"): {"200", "401", "404", "429"},
    ("get", "/api/v1/tickets/{ticket_id}/messages/"): {"200", "400", "401", "404", "429"},
    ("post", "/api/v1/tickets/{ticket_id}/messages/"): {
        "201",
        "400",
        "401",
        "404",
        "409",
        "413",
        "415",
        "429",
    },
    ("post", "/api/v1/tickets/{ticket_id}/cancel/"): {"200", "401", "404", "409", "429"},
    ("post", "/api/v1/tickets/{ticket_id}/csat/"): {
        "200",
        "400",
        "401",
        "404",
        "409",
        "413",
        "415",
        "429",
    },
    ("post", "/api/v1/auth/token/"): {"200", "400", "413", "415", "429"},
    ("get", "/api/v1/agent/me/"): {"200", "401", "403"},
    ("post", "/api/v1/agent/status/"): {"200", "400", "401", "403", "413", "415"},
    ("get", "/api/v1/agent/offers/"): {"200", "401", "403"},
    ("post", "/api/v1/offers/{offer_id}/accept/"): {"200", "401", "403", "404", "409"},
    ("post", "/api/v1/offers/{offer_id}/decline/"): {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
    },
    ("get", "/api/v1/agent/tickets/"): {"200", "401", "403"},
    ("post", "/api/v1/agent/tickets/{ticket_id}/messages/"): {
        "201",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
    },
    ("post", "/api/v1/agent/tickets/{ticket_id}/resolve/"): {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
    },
    ("post", "/api/v1/agent/tickets/{ticket_id}/release/"): {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
    },
}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_the_schema_generates_without_a_warning(tmp_path):
    # when (--fail-on-warn raises on any warning or error)
    out = io.StringIO()
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
        stdout=out,
        stderr=out,
    )

    # then
    assert yaml.safe_load((tmp_path / "schema.yaml").read_text())["openapi"].startswith("3.")


def test_the_schema_describes_every_endpoint_with_its_answers(schema):
    # when
    described = {
        (method, path): set(operation["responses"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }

    # then
    assert described == OPERATIONS


def test_bots_authenticate_with_a_bearer_key_and_agents_with_a_token(schema):
    # given
    schemes = schema["components"]["securitySchemes"]
    operation = schema["paths"]

    # then
    assert schemes["botKey"]["type"] == "http"
    assert schemes["botKey"]["scheme"] == "bearer"
    assert (schemes["tokenAuth"]["type"], schemes["tokenAuth"]["name"]) == (
        "apiKey",
        "Authorization",
    )
    assert operation["/api/v1/escalations/"]["post"]["security"] == [{"botKey": []}]
    assert {"tokenAuth": []} in operation["/api/v1/agent/me/"]["get"]["security"]
    assert operation["/api/v1/auth/token/"]["post"].get("security", []) in ([], [{}])


def test_the_ticket_shape_and_the_contracts_examples_are_in_the_schema(schema):
    # given
    escalation = schema["paths"]["/api/v1/escalations/"]["post"]
    ticket = schema["components"]["schemas"]["Ticket"]

    # then
    assert set(ticket["required"]) == {
        "id",
        "external_id",
        "status",
        "priority",
        "language",
        "skills",
        "queue_position",
        "estimated_wait_seconds",
        "agent",
        "sla_breached",
        "created_at",
        "assigned_at",
        "resolved_at",
        "resolution",
    }
    request_example = escalation["requestBody"]["content"]["application/json"]["examples"]
    assert request_example["Escalation"]["value"]["external_id"] == "conv-8812"
    created = escalation["responses"]["201"]["content"]["application/json"]
    assert created["schema"] == {"$ref": "#/components/schemas/Ticket"}
    assert created["examples"]["QueuedTicket"]["value"]["queue_position"] == 3
    throttled = escalation["responses"]["429"]
    assert throttled["headers"]["Retry-After"]["schema"] == {"type": "integer"}


def test_the_interactive_docs_load_the_schema(client):
    # when
    response = client.get("/api/docs/")

    # then
    assert response.status_code == 200
    assert "/api/schema/" in response.content.decode()
