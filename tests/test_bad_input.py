"""Hostile and broken input, picked by hand: every case is a client mistake, answered with its
exact 4xx and error shape, and nothing of it reaches the database. On PostgreSQL, which refuses
NUL characters in text (a 500 if one got through)."""

import json
from functools import partial

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from knox.models import AuthToken
from rest_framework.test import APIClient
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from agents.models import Agent
from dispatch.asgi import application
from dispatch.models import Offer
from dispatch.services import offer_accept, ticket_route
from tests.factories import AgentFactory, TicketFactory
from tickets.models import Message, Ticket, TicketEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

ESCALATIONS = "/api/v1/escalations/"
MINIMAL = {"external_id": "conv-1", "language": "en", "customer": {"id": "cust-1"}}
MIB = 1024 * 1024
TIMEOUT = 5


def post_raw(client: APIClient, path: str, body: bytes | str):
    return client.post(path, data=body, content_type="application/json")


def nothing_written() -> bool:
    return not (Ticket.objects.exists() or Message.objects.exists() or TicketEvent.objects.exists())


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- bodies that are too big or not JSON ------------------------------------------------------


def test_a_body_over_one_mib_is_a_413(bot_client):
    # given: valid JSON, one byte over the limit
    padding = "x" * (MIB - len(json.dumps({**MINIMAL, "summary": ""})) + 1)
    body = json.dumps({**MINIMAL, "summary": padding})
    assert len(body) == MIB + 1

    # when
    response = post_raw(bot_client, ESCALATIONS, body)

    # then
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 1048576 bytes."}
    assert nothing_written()


def test_a_transcript_of_the_largest_entries_is_over_the_body_limit(bot_client):
    # given: 500 entries of 10,000 characters, each within the field limits, 5 MB together
    transcript = [{"role": "customer", "text": "t" * 10_000}] * 500

    # when
    response = bot_client.post(ESCALATIONS, {**MINIMAL, "transcript": transcript}, format="json")

    # then
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 1048576 bytes."}
    assert nothing_written()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            b'{"external_id": "\xff\xfe", "language": "en", "customer": {"id": "c"}}',
            "JSON parse error - 'utf-8' codec can't decode byte 0xff in position 17: "
            "invalid start byte",
        ),
        (b'{"external_id": ', "JSON parse error - Expecting value: line 1 column 17 (char 16)"),
        (b"", None),
        (
            b'{"external_id": NaN}',
            "JSON parse error - Out of range float values are not JSON compliant: 'NaN'",
        ),
        (
            b'{"external_id": "\\ud800", "language": "en", "customer": {"id": "c"}}',
            "JSON parse error - a string holds a lone UTF-16 surrogate.",
        ),
        (
            b'{"customer": {"\\udfff": 1}}',
            "JSON parse error - a string holds a lone UTF-16 surrogate.",
        ),
        (
            nested(21).encode(),
            "JSON parse error - nested deeper than 20 levels.",
        ),
        (
            ('{"external_id": ' + nested(200_000) + "}").encode(),
            "JSON parse error - nested deeper than 20 levels.",
        ),
        (
            b'{"priority": ' + b"9" * 5000 + b"}",
            "JSON parse error - Exceeds the limit (4300 digits) for integer string conversion: "
            "value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit",
        ),
    ],
    ids=[
        "invalid UTF-8",
        "truncated",
        "empty",
        "NaN",
        "lone surrogate in a value",
        "lone surrogate in a key",
        "nested 21 deep",
        "nested 200,000 deep",
        "a 5,000-digit number",
    ],
)
def test_a_body_that_is_not_acceptable_json_is_a_400(bot_client, body, detail):
    # when
    response = post_raw(bot_client, ESCALATIONS, body)

    # then
    assert response.status_code == 400
    if detail is None:
        # An empty body is an empty object: every required field is missing.
        assert response.json() == {
            "external_id": ["This field is required."],
            "language": ["This field is required."],
            "customer": ["This field is required."],
        }
    else:
        assert response.json() == {"detail": detail}
    assert nothing_written()


def test_a_body_that_is_not_json_is_a_415(bot_client):
    # when
    response = bot_client.post(ESCALATIONS, data="external_id=conv-1", content_type="text/plain")

    # then
    assert response.status_code == 415
    assert response.json() == {"detail": 'Unsupported media type "text/plain" in request.'}
    assert nothing_written()


@pytest.mark.parametrize("body", [[MINIMAL], "conv-1", 42, None])
def test_a_body_that_is_not_an_object_is_a_400(bot_client, body):
    # when
    response = post_raw(bot_client, ESCALATIONS, json.dumps(body))

    # then
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": [
            f"Invalid data. Expected a dictionary, but got {type(body).__name__}."
            if body is not None
            else "No data provided"
        ]
    }
    assert nothing_written()


# --- wrong JSON types, field by field ----------------------------------------------------------

NOT_A_STRING = ["Not a valid string."]
NOT_A_LIST = ['Expected a list of items but got type "{}".']
NOT_AN_OBJECT = "Invalid data. Expected a dictionary, but got {}."


@pytest.mark.parametrize(
    ("field", "value", "errors"),
    [
        ("external_id", 8812, NOT_A_STRING),
        ("external_id", ["conv-1"], NOT_A_STRING),
        ("external_id", {"id": "conv-1"}, NOT_A_STRING),
        ("external_id", True, NOT_A_STRING),
        ("external_id", None, ["This field may not be null."]),
        ("language", 12, NOT_A_STRING),
        ("language", ["en"], NOT_A_STRING),
        ("skills", "refunds", [NOT_A_LIST[0].format("str")]),
        ("skills", {"refunds": 1}, [NOT_A_LIST[0].format("dict")]),
        ("skills", [7], {"0": NOT_A_STRING}),
        ("skills", [["refunds"]], {"0": NOT_A_STRING}),
        ("priority", 10**30, ['"1000000000000000000000000000000" is not a valid choice.']),
        ("priority", ["high"], ["\"['high']\" is not a valid choice."]),
        ("reason", False, ['"False" is not a valid choice.']),
        ("summary", 3.5, NOT_A_STRING),
        ("customer", "cust-1", {"non_field_errors": [NOT_AN_OBJECT.format("str")]}),
        ("customer", ["cust-1"], {"non_field_errors": [NOT_AN_OBJECT.format("list")]}),
        ("customer", {"id": 77}, {"id": NOT_A_STRING}),
        ("customer", {"id": "c", "name": ["Anna"]}, {"name": NOT_A_STRING}),
        ("customer", {"id": "c", "tier": 1}, {"tier": NOT_A_STRING}),
        ("transcript", "hi", {"non_field_errors": [NOT_A_LIST[0].format("str")]}),
        (
            "transcript",
            {"role": "customer", "text": "hi"},
            {"non_field_errors": [NOT_A_LIST[0].format("dict")]},
        ),
        ("transcript", ["hi"], {"0": {"non_field_errors": [NOT_AN_OBJECT.format("str")]}}),
        ("transcript", [{"role": "customer", "text": 5}], {"0": {"text": NOT_A_STRING}}),
        (
            "transcript",
            [{"role": "customer", "text": "hi", "sent_at": 1764064800}],
            {
                "0": {
                    "sent_at": [
                        "Datetime has wrong format. Use one of these formats instead: "
                        "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                    ]
                }
            },
        ),
        ("callback_url", 443, NOT_A_STRING),
        ("callback_url", {"url": "https://bot.example.com"}, NOT_A_STRING),
    ],
)
def test_a_wrong_json_type_is_a_400_naming_the_field(bot_client, field, value, errors):
    # when
    response = bot_client.post(ESCALATIONS, {**MINIMAL, field: value}, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == {field: errors}
    assert nothing_written()


@pytest.mark.parametrize(
    ("field", "errors"),
    [
        ("priority", ['"inf" is not a valid choice.']),
        ("external_id", ["Not a valid string."]),
        ("customer", {"non_field_errors": [NOT_AN_OBJECT.format("float")]}),
    ],
)
def test_a_number_too_large_for_a_float_is_a_400_naming_the_field(bot_client, field, errors):
    # given: 1e400 decodes to infinity
    body = json.dumps({**MINIMAL, field: "INFINITY"}).replace('"INFINITY"', "1e400")

    # when
    response = post_raw(bot_client, ESCALATIONS, body)

    # then
    assert response.status_code == 400
    assert response.json() == {field: errors}
    assert nothing_written()


def test_an_enormous_transcript_is_refused_by_its_count_before_its_entries(bot_client):
    # given: 35,000 one-letter entries, under the body limit
    entries = [{"role": "bot", "text": "a"}] * 35_000
    body = json.dumps({**MINIMAL, "transcript": entries}, separators=(",", ":"))
    assert len(body) < MIB

    # when
    response = post_raw(bot_client, ESCALATIONS, body)

    # then
    assert response.status_code == 400
    assert response.json() == {
        "transcript": {"non_field_errors": ["Ensure this field has no more than 500 elements."]}
    }
    assert nothing_written()


def test_too_many_skills_are_refused(bot_client):
    # when
    response = bot_client.post(ESCALATIONS, {**MINIMAL, "skills": ["a"] * 100_000}, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == {"skills": ["Ensure this field has no more than 50 elements."]}
    assert nothing_written()


def test_unknown_fields_are_ignored(bot_client):
    # given: the contract names the fields it reads; others (a newer bot's) are left unread
    body = {
        **MINIMAL,
        "customer": {"id": "cust-1", "email": "anna@example.com"},
        "agent": {"display_name": "Mallory"},
        "status": "resolved",
        "id": "00000000-0000-0000-0000-000000000000",
    }

    # when
    response = bot_client.post(ESCALATIONS, body, format="json")

    # then
    assert response.status_code == 201
    ticket = Ticket.objects.get()
    assert response.json()["id"] == str(ticket.id) != body["id"]
    assert (response.json()["status"], response.json()["agent"]) == ("queued", None)
    assert ticket.customer_id == "cust-1"


# --- characters the database cannot hold, or that do not belong in an id ----------------------


# NUL is a control character too: an id or a name gets both messages.
NUL_IN_AN_ID = ["Null characters are not allowed.", "Control characters are not allowed."]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {**MINIMAL, "external_id": "conv\x00-1"},
            {"external_id": NUL_IN_AN_ID},
        ),
        ({**MINIMAL, "language": "e\x00"}, {"language": ["Null characters are not allowed."]}),
        ({**MINIMAL, "summary": "a\x00b"}, {"summary": ["Null characters are not allowed."]}),
        (
            {**MINIMAL, "customer": {"id": "c\x00"}},
            {"customer": {"id": NUL_IN_AN_ID}},
        ),
        (
            {**MINIMAL, "customer": {"id": "c", "name": "An\x00na"}},
            {"customer": {"name": NUL_IN_AN_ID}},
        ),
        (
            {**MINIMAL, "transcript": [{"role": "customer", "text": "\x00"}]},
            {"transcript": {"0": {"text": ["Null characters are not allowed."]}}},
        ),
        (
            {**MINIMAL, "callback_url": "https://bot.example.com/\x00"},
            {"callback_url": ["Null characters are not allowed."]},
        ),
        (
            {**MINIMAL, "external_id": "conv\x1b[31m-1"},
            {"external_id": ["Control characters are not allowed."]},
        ),
        (
            {**MINIMAL, "customer": {"id": "c\x07", "tier": "go\x85ld"}},
            {
                "customer": {
                    "id": ["Control characters are not allowed."],
                    "tier": ["Control characters are not allowed."],
                }
            },
        ),
    ],
    ids=[
        "NUL in external_id",
        "NUL in language",
        "NUL in summary",
        "NUL in customer.id",
        "NUL in customer.name",
        "NUL in transcript text",
        "NUL in callback_url",
        "escape sequence in external_id",
        "bell and NEL in customer fields",
    ],
)
def test_nul_and_control_characters_are_a_400_naming_the_field(bot_client, body, errors):
    # when
    response = bot_client.post(ESCALATIONS, body, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == errors
    assert nothing_written()


def test_free_text_keeps_line_breaks_tabs_and_other_controls(bot_client):
    # given
    text = "line one\nline two\ttabbed\r\nbell \x07 and escape \x1b[0m"

    # when
    response = bot_client.post(
        ESCALATIONS,
        {**MINIMAL, "summary": text, "transcript": [{"role": "customer", "text": text}]},
        format="json",
    )

    # then
    assert response.status_code == 201
    ticket = Ticket.objects.get()
    assert ticket.summary == text
    assert list(ticket.messages.values_list("text", flat=True)) == [text]


# --- the bot's other calls ---------------------------------------------------------------------


@pytest.fixture
def own_ticket(bot):
    return TicketFactory(integration=bot)


@pytest.mark.parametrize(
    ("body", "status", "errors"),
    [
        ({"text": "hi\x00"}, 400, {"text": ["Null characters are not allowed."]}),
        ({"text": 42}, 400, {"text": ["Not a valid string."]}),
        ({"text": ["hi"]}, 400, {"text": ["Not a valid string."]}),
        (
            {"text": "t" * 10_001},
            400,
            {"text": ["Ensure this field has no more than 10000 characters."]},
        ),
        (
            {"text": "hi", "sent_at": "yesterday"},
            400,
            {
                "sent_at": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        (
            {"text": "\ud800"},
            400,
            {"detail": "JSON parse error - a string holds a lone UTF-16 surrogate."},
        ),
    ],
    ids=["NUL", "number", "list", "too long", "sent_at not a time", "lone surrogate"],
)
def test_a_bad_customer_message_is_refused(bot_client, own_ticket, body, status, errors):
    # when
    response = post_raw(bot_client, f"/api/v1/tickets/{own_ticket.pk}/messages/", json.dumps(body))

    # then
    assert response.status_code == status
    assert response.json() == errors
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"score": 10**30}, {"score": ["Ensure this value is less than or equal to 5."]}),
        ({"score": -(10**30)}, {"score": ["Ensure this value is greater than or equal to 1."]}),
        ({"score": "5"}, {"score": ["A valid integer is required."]}),
        ({"score": 4.0}, {"score": ["A valid integer is required."]}),
        ({"score": True}, {"score": ["A valid integer is required."]}),
        ('{"score": 1e400}', {"score": ["A valid integer is required."]}),
        ({"score": [5]}, {"score": ["A valid integer is required."]}),
        ({"score": 5, "comment": "\x00"}, {"comment": ["Null characters are not allowed."]}),
        ({"score": 5, "comment": 5}, {"comment": ["Not a valid string."]}),
    ],
)
def test_a_bad_rating_is_a_400(bot_client, own_ticket, body, errors):
    # given: a resolved ticket, which takes a rating
    Ticket.objects.filter(pk=own_ticket.pk).update(status=Ticket.Status.RESOLVED)

    # when
    response = post_raw(
        bot_client,
        f"/api/v1/tickets/{own_ticket.pk}/csat/",
        body if isinstance(body, str) else json.dumps(body),
    )

    # then
    assert response.status_code == 400
    assert response.json() == errors
    assert Ticket.objects.get(pk=own_ticket.pk).csat_score is None


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("after=not-a-uuid", {"after": ["Must be a valid UUID."]}),
        ("after=%00", {"after": ["Must be a valid UUID."]}),
        (
            "after=00000000-0000-0000-0000-000000000000",
            {"after": ["No such message in this ticket."]},
        ),
    ],
)
def test_a_bad_after_is_a_400(bot_client, own_ticket, query, errors):
    # when
    response = bot_client.get(f"/api/v1/tickets/{own_ticket.pk}/messages/?{query}")

    # then
    assert response.status_code == 400
    assert response.json() == errors


@pytest.mark.parametrize("ticket_id", ["not-a-uuid", "%00", "1" * 5000, "../../admin"])
def test_a_ticket_id_that_is_not_a_uuid_is_a_404(bot_client, ticket_id):
    # when
    response = bot_client.get(f"/api/v1/tickets/{ticket_id}/")

    # then
    assert response.status_code == 404


# --- the agent's calls -------------------------------------------------------------------------


@pytest.fixture
def agent_token_client(agent) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=agent.user)[1]}")
    return client


@pytest.fixture
def assigned(agent) -> Ticket:
    ticket = TicketFactory()
    offer_accept(offer_id=ticket_route(ticket_id=ticket.pk).pk, agent=agent)
    return ticket


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        ("messages", {"text": "hi\x00"}, {"text": ["Null characters are not allowed."]}),
        ("messages", {"text": {"t": 1}}, {"text": ["Not a valid string."]}),
        (
            "messages",
            {"text": "t" * 10_001},
            {"text": ["Ensure this field has no more than 10000 characters."]},
        ),
        (
            "resolve",
            {"outcome": "solved", "note": "\x00"},
            {"note": ["Null characters are not allowed."]},
        ),
        ("resolve", {"outcome": 1}, {"outcome": ['"1" is not a valid choice.']}),
        ("release", {"reason": "\x00"}, {"reason": ["Null characters are not allowed."]}),
        (
            "release",
            {"reason": "r" * 501},
            {"reason": ["Ensure this field has no more than 500 characters."]},
        ),
    ],
)
def test_a_bad_agent_call_on_a_ticket_is_a_400(agent_token_client, assigned, path, body, errors):
    # given
    messages_before = Message.objects.count()

    # when
    response = agent_token_client.post(
        f"/api/v1/agent/tickets/{assigned.pk}/{path}/", body, format="json"
    )

    # then
    assert response.status_code == 400
    assert response.json() == errors
    assert Message.objects.count() == messages_before
    assert Ticket.objects.get(pk=assigned.pk).status == Ticket.Status.ASSIGNED


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"status": "busy"}, {"status": ['"busy" is not a valid choice.']}),
        ({"status": ["available"]}, {"status": ["\"['available']\" is not a valid choice."]}),
        ({"status": None}, {"status": ["This field may not be null."]}),
    ],
)
def test_a_bad_status_is_a_400(agent_token_client, agent, body, errors):
    # when
    response = agent_token_client.post("/api/v1/agent/status/", body, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == errors
    assert Agent.objects.get(pk=agent.pk).status == Agent.Status.AVAILABLE


@pytest.mark.parametrize(
    ("body", "status", "payload"),
    [
        (
            {"username": "a\x00", "password": "p"},
            400,
            {"username": ["Null characters are not allowed."]},
        ),
        (
            {"username": ["maja"], "password": "p"},
            400,
            {"username": ["Not a valid string."]},
        ),
        (
            nested(5000),
            400,
            {"detail": "JSON parse error - nested deeper than 20 levels."},
        ),
    ],
    ids=["NUL", "list", "deeply nested"],
)
def test_a_bad_log_in_is_a_400_and_issues_no_token(agent, body, status, payload):
    # when
    response = post_raw(
        APIClient(), "/api/v1/auth/token/", body if isinstance(body, str) else json.dumps(body)
    )

    # then
    assert response.status_code == status
    assert response.json() == payload
    assert not AuthToken.objects.exists()


# --- websocket frames --------------------------------------------------------------------------


async def agent_socket() -> tuple[WebsocketCommunicator, Agent]:
    agent = await database_sync_to_async(AgentFactory)(status=Agent.Status.AVAILABLE)
    token = await database_sync_to_async(lambda: AuthToken.objects.create(user=agent.user)[1])()
    socket = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"authorization", f"Token {token}".encode())]
    )
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    assert accepted
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    return socket, agent


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ("not json", "Frames must be JSON text."),
        ('{"type": "heartbeat"', "Frames must be JSON text."),
        (nested(30), "Frame refused: nested deeper than 20 levels."),
        (nested(20_000), "Frame refused: nested deeper than 20 levels."),
        (
            '{"type": "offer.decline", "offer_id": "x", "reason": "\\ud800"}',
            "Frame refused: a string holds a lone UTF-16 surrogate.",
        ),
        ('["offer.accept"]', "Unknown frame type: None."),
        ('{"type": ["heartbeat"]}', "Unknown frame type: ['heartbeat']."),
        ('{"type": "offer.accept", "offer_id": 10e400}', "offer_id must be an offer's id."),
        (
            '{"type": "offer.decline", "offer_id": "x", "reason": 5}',
            "reason must be text of at most 500 characters.",
        ),
        ('{"type": "status.set", "status": {"a": 1}}', "Unknown status: {'a': 1}."),
    ],
)
async def test_a_frame_that_cannot_be_carried_out_is_answered_with_an_error(frame, detail):
    # given
    socket, _ = await agent_socket()

    # when
    await socket.send_to(text_data=frame)

    # then: an error frame, and the socket still works
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "error", "detail": detail}
    await socket.send_json_to({"type": "heartbeat"})
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "heartbeat.ack",
        "offers": [],
        "tickets": [],
    }
    await socket.disconnect()
    assert await database_sync_to_async(Offer.objects.exists)() is False


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [64 * 1024 + 1, 4 * MIB])
async def test_a_frame_over_64_kib_closes_the_socket_with_1009(size):
    # given
    socket, _ = await agent_socket()

    # when
    await socket.send_to(text_data=json.dumps({"type": "heartbeat", "pad": "x" * size}))

    # then
    assert await socket.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 1009}
    await socket.disconnect()


@pytest.mark.live
def test_the_web_server_closes_a_socket_that_sends_a_multi_megabyte_frame(live_platform, agent):
    # given
    token = AuthToken.objects.create(user=agent.user)[1]
    open_agent_socket = partial(
        connect,
        f"{live_platform.ws_url}/ws/agent/",
        additional_headers={"Authorization": f"Token {token}"},
        open_timeout=10,
    )
    with open_agent_socket() as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        # a frame just under the limit is read, and answered
        socket.send(json.dumps({"type": "heartbeat", "pad": "x" * 60_000}))
        assert json.loads(socket.recv(timeout=10)) == {
            "type": "heartbeat.ack",
            "offers": [],
            "tickets": [],
        }

        # when the server closes while the frame is still being written, send
        # itself sees the close; otherwise the next recv does
        with pytest.raises(ConnectionClosedError) as closed:
            socket.send(json.dumps({"type": "heartbeat", "pad": "x" * (3 * MIB)}))
            socket.recv(timeout=10)

    # then the socket is closed; its 1009 close frame may itself be lost to the
    # TCP reset that discards the unread rest of the frame
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    # and the server goes on serving other sockets
    with open_agent_socket() as again:
        assert json.loads(again.recv(timeout=10))["type"] == "hello"
