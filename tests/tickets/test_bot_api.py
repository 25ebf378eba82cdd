"""The bot's REST hook (contract section 1), in process: every rule, with its exact answer."""

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from dispatch import services as dispatch_services
from dispatch.models import AgentRatings, DispatchPolicy, Offer
from tickets import services as ticket_services
from tickets.models import Message, Ticket, WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)

MINIMAL = {"external_id": "conv-1", "language": "en", "customer": {"id": "cust-1"}}
TRANSCRIPT = [
    {"role": "customer", "text": "I was charged twice", "sent_at": "2026-11-25T10:00:00Z"},
    {"role": "bot", "text": "I can help with that...", "sent_at": "2026-11-25T10:00:02Z"},
]


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def escalate(client: APIClient, **fields):
    return client.post("/api/v1/escalations/", {**MINIMAL, **fields}, format="json")


def without(body: dict, field: str) -> dict:
    return {key: value for key, value in body.items() if key != field}


# --- POST /api/v1/escalations/ ------------------------------------------------------------


def test_a_minimal_escalation_creates_a_queued_ticket_with_the_defaults(bot_client):
    # when
    response = escalate(bot_client)

    # then
    assert response.status_code == 201
    ticket = Ticket.objects.get()
    assert response.json() == {
        "id": str(ticket.id),
        "external_id": "conv-1",
        "status": "queued",
        "priority": "normal",
        "language": "en",
        "skills": [],
        "queue_position": 1,
        "estimated_wait_seconds": None,
        "agent": None,
        "sla_breached": False,
        "created_at": iso(ticket.created_at),
        "assigned_at": None,
        "resolved_at": None,
        "resolution": None,
    }
    assert (
        ticket.priority,
        ticket.reason,
        ticket.summary,
        ticket.customer_id,
        ticket.customer_name,
        ticket.customer_tier,
        ticket.callback_url,
        ticket.messages.count(),
    ) == (Ticket.Priority.NORMAL, "customer_requested", "", "cust-1", "", "", "", 0)


def test_a_full_escalation_is_stored_as_sent(bot_client, skill_factory):
    # given
    skill_factory(slug="refunds")
    skill_factory(slug="billing")

    # when
    response = escalate(
        bot_client,
        external_id="conv-8812",
        language="SV",
        skills=["refunds", "billing", "refunds"],
        priority="urgent",
        reason="sentiment",
        summary="Customer disputes a double charge.",
        customer={"id": "cust-77", "name": "Anna", "tier": "gold"},
        transcript=TRANSCRIPT,
        callback_url="https://bot.example.com/hooks/dispatch",
    )

    # then
    assert response.status_code == 201
    body = response.json()
    assert (body["language"], body["skills"], body["priority"]) == (
        "sv",
        ["billing", "refunds"],
        "urgent",
    )
    ticket = Ticket.objects.get(pk=body["id"])
    assert ticket.language == "sv"
    assert ticket.priority == Ticket.Priority.URGENT
    assert ticket.reason == "sentiment"
    assert ticket.summary == "Customer disputes a double charge."
    assert (ticket.customer_id, ticket.customer_name, ticket.customer_tier) == (
        "cust-77",
        "Anna",
        "gold",
    )
    assert ticket.callback_url == "https://bot.example.com/hooks/dispatch"
    assert sorted(ticket.skills.values_list("slug", flat=True)) == ["billing", "refunds"]
    assert [
        (m.position, m.role, m.text, iso(m.sent_at)) for m in ticket.messages.order_by("position")
    ] == [
        (1, "customer", "I was charged twice", "2026-11-25T10:00:00+00:00"),
        (2, "bot", "I can help with that...", "2026-11-25T10:00:02+00:00"),
    ]


@pytest.mark.django_db  # one transaction: the routing it asks for would run on commit
@pytest.mark.parametrize(
    "skills, transcript",
    [(["refunds"], TRANSCRIPT[:1]), (["refunds", "billing"], TRANSCRIPT * 5)],
    ids=["one skill, one message", "two skills, ten messages"],
)
def test_an_escalation_takes_12_queries_however_many_skills_and_messages(
    bot_client, skill_factory, django_assert_num_queries, skills, transcript
):
    # given: the skills, and the policy's one row, which the first read of it creates
    skill_factory(slug="refunds")
    skill_factory(slug="billing")
    DispatchPolicy.load()

    # when / then: the key, the skills, the replay check; in a savepoint, the ticket, its
    # skills, its messages and its event; for the answer, the policy, the queue position and
    # the like tickets' recent assignments (the skills it lists are the ones just validated)
    with django_assert_num_queries(12):
        response = escalate(bot_client, skills=skills, transcript=transcript)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param(
            without(MINIMAL, "external_id"),
            {"external_id": ["This field is required."]},
            id="external_id missing",
        ),
        pytest.param(
            {**MINIMAL, "external_id": ""},
            {"external_id": ["This field may not be blank."]},
            id="external_id empty",
        ),
        pytest.param(
            {**MINIMAL, "external_id": "x" * 201},
            {"external_id": ["Ensure this field has no more than 200 characters."]},
            id="external_id too long",
        ),
        pytest.param(
            without(MINIMAL, "language"),
            {"language": ["This field is required."]},
            id="language missing",
        ),
        pytest.param(
            {**MINIMAL, "language": "XX"},
            {"language": ["Unknown ISO 639-1 language code: 'XX'."]},
            id="language unknown",
        ),
        pytest.param(
            {**MINIMAL, "language": "swe"},
            {"language": ["Ensure this field has no more than 2 characters."]},
            id="language not ISO 639-1",
        ),
        pytest.param(
            {**MINIMAL, "skills": ["refunds", "no-such-skill", "gone"]},
            {"skills": ["Unknown skill: no-such-skill, gone."]},
            id="skill unknown",
        ),
        pytest.param(
            {**MINIMAL, "priority": "critical"},
            {"priority": ['"critical" is not a valid choice.']},
            id="priority unknown",
        ),
        pytest.param(
            {**MINIMAL, "reason": "angry"},
            {"reason": ['"angry" is not a valid choice.']},
            id="reason unknown",
        ),
        pytest.param(
            {**MINIMAL, "summary": "s" * 4001},
            {"summary": ["Ensure this field has no more than 4000 characters."]},
            id="summary too long",
        ),
        pytest.param(
            without(MINIMAL, "customer"),
            {"customer": ["This field is required."]},
            id="customer missing",
        ),
        pytest.param(
            {**MINIMAL, "customer": {"name": "Anna"}},
            {"customer": {"id": ["This field is required."]}},
            id="customer.id missing",
        ),
        pytest.param(
            {**MINIMAL, "customer": {"id": "c" * 201}},
            {"customer": {"id": ["Ensure this field has no more than 200 characters."]}},
            id="customer.id too long",
        ),
        pytest.param(
            {**MINIMAL, "transcript": [{"role": "customer", "text": "hi"}] * 501},
            {
                "transcript": {
                    "non_field_errors": ["Ensure this field has no more than 500 elements."]
                }
            },
            id="transcript over 500 entries",
        ),
        pytest.param(
            {**MINIMAL, "transcript": [TRANSCRIPT[0], {"role": "agent", "text": "hi"}]},
            {"transcript": {"1": {"role": ['"agent" is not a valid choice.']}}},
            id="transcript role not customer or bot",
        ),
        pytest.param(
            {**MINIMAL, "transcript": [{"role": "customer", "text": ""}]},
            {"transcript": {"0": {"text": ["This field may not be blank."]}}},
            id="transcript text empty",
        ),
        pytest.param(
            {**MINIMAL, "transcript": [{"role": "customer", "text": "t" * 10001}]},
            {
                "transcript": {
                    "0": {"text": ["Ensure this field has no more than 10000 characters."]}
                }
            },
            id="transcript text too long",
        ),
        pytest.param(
            {**MINIMAL, "callback_url": "http://bot.example.com/hooks"},
            {"callback_url": ["Must be an https:// URL (plain http:// only to a loopback host)."]},
            id="callback_url http to a remote host",
        ),
        pytest.param(
            {**MINIMAL, "callback_url": "http://localhost.example.com/hooks"},
            {"callback_url": ["Must be an https:// URL (plain http:// only to a loopback host)."]},
            id="callback_url http to a host named like localhost",
        ),
        pytest.param(
            {**MINIMAL, "callback_url": "ftp://bot.example.com/hooks"},
            {"callback_url": ["Must be an https:// URL (plain http:// only to a loopback host)."]},
            id="callback_url ftp",
        ),
        pytest.param(
            {**MINIMAL, "callback_url": "not a url"},
            {"callback_url": ["Enter a valid URL."]},
            id="callback_url not a URL",
        ),
    ],
)
def test_an_invalid_escalation_is_a_400_naming_the_field(bot_client, skill_factory, body, errors):
    # given
    skill_factory(slug="refunds")

    # when
    response = bot_client.post("/api/v1/escalations/", body, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == errors
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "answer"),
    [
        pytest.param(
            b"{not json",
            {
                "detail": "JSON parse error - Expecting property name enclosed in double quotes: "
                "line 1 column 2 (char 1)"
            },
            id="malformed JSON",
        ),
        pytest.param(
            b"[]",
            {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]},
            id="not an object",
        ),
        pytest.param(
            json.dumps({**MINIMAL, "summary": "a\x00b"}).encode(),
            {"summary": ["Null characters are not allowed."]},
            id="NUL in text",
        ),
        pytest.param(
            json.dumps({**MINIMAL, "skills": "refunds"}).encode(),
            {"skills": ['Expected a list of items but got type "str".']},
            id="skills not a list",
        ),
        pytest.param(
            json.dumps(
                {**MINIMAL, "transcript": [{"role": "bot", "text": "Hi", "sent_at": "yesterday"}]}
            ).encode(),
            {
                "transcript": {
                    "0": {
                        "sent_at": [
                            "Datetime has wrong format. Use one of these formats instead: "
                            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                        ]
                    }
                }
            },
            id="transcript sent_at not a time",
        ),
    ],
)
def test_a_malformed_body_is_a_400(bot_client, raw, answer):
    # when
    response = bot_client.generic(
        "POST", "/api/v1/escalations/", raw, content_type="application/json"
    )

    # then
    assert response.status_code == 400
    assert response.json() == answer
    assert Ticket.objects.count() == 0


def test_a_body_that_is_not_json_is_a_415(bot_client):
    # when
    response = bot_client.generic(
        "POST", "/api/v1/escalations/", b"external_id=conv-1", content_type="text/plain"
    )

    # then
    assert response.status_code == 415
    assert response.json() == {"detail": 'Unsupported media type "text/plain" in request.'}


@pytest.mark.parametrize(
    "callback_url",
    [
        "https://bot.example.com/hooks/dispatch",
        "http://127.0.0.1:9000/hooks",
        "http://localhost:9000/hooks",
        "http://[::1]:9000/hooks",
    ],
)
def test_a_callback_url_is_https_or_plain_http_to_loopback(bot_client, callback_url):
    # when
    response = escalate(bot_client, callback_url=callback_url)

    # then
    assert response.status_code == 201
    assert Ticket.objects.get().callback_url == callback_url


def test_a_transcript_of_500_entries_is_accepted(bot_client):
    # when
    response = escalate(bot_client, transcript=[{"role": "bot", "text": "hi"}] * 500)

    # then
    assert response.status_code == 201
    assert Message.objects.filter(ticket_id=response.json()["id"]).count() == 500


def test_a_body_over_1_mib_is_refused_with_413(bot_client):
    # given a valid escalation whose transcript makes the body just over 1 MiB
    transcript = [{"role": "customer", "text": "t" * 10000}] * 105

    # when
    response = escalate(bot_client, transcript=transcript)

    # then
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 1048576 bytes."}
    assert Ticket.objects.count() == 0


def test_a_body_just_under_1_mib_is_accepted(bot_client):
    # given a valid escalation of about 1,004,000 bytes
    transcript = [{"role": "customer", "text": "t" * 10000}] * 100

    # when
    response = escalate(bot_client, transcript=transcript)

    # then
    assert response.status_code == 201


def test_a_replay_answers_200_with_the_same_ticket(bot_client):
    # given
    first = escalate(bot_client, summary="First hand-over.")

    # when the bot sends the same conversation again, even with other content
    replay = escalate(bot_client, summary="Second hand-over.", priority="urgent")

    # then
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == first.json()["id"]
    assert Ticket.objects.count() == 1
    assert Ticket.objects.get().summary == "First hand-over."


def test_the_same_external_id_from_another_bot_is_another_ticket(bot_client, bot_factory):
    # given
    first = escalate(bot_client)

    # when
    other = escalate(bearer(bot_factory().api_key))

    # then
    assert (first.status_code, other.status_code) == (201, 201)
    assert other.json()["id"] != first.json()["id"]
    assert Ticket.objects.count() == 2


def test_racing_replays_create_one_ticket(bot):
    # given eight clients ready to send the same escalation at once
    racers = 8
    barrier = threading.Barrier(racers)
    answers: list[tuple[int, str]] = []

    def replay() -> None:
        try:
            client = bearer(bot.api_key)
            barrier.wait()
            response = escalate(client)
            answers.append((response.status_code, response.json()["id"]))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=replay) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    ticket = Ticket.objects.get()
    assert sorted(answers) == sorted([(201, str(ticket.id))] + [(200, str(ticket.id))] * 7)


# --- authentication -------------------------------------------------------------------------


def test_a_request_without_a_key_is_a_401():
    # when
    response = APIClient().post("/api/v1/escalations/", MINIMAL, format="json")

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_an_unknown_key_is_a_401(bot):
    # when
    response = escalate(bearer("gd_not-a-key-anyone-was-given"))

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": "The API key is unknown or revoked."}
    assert Ticket.objects.count() == 0


def test_a_revoked_key_is_a_401(bot, ticket_factory):
    # given a bot whose key was revoked after it escalated a ticket
    ticket = ticket_factory(integration=bot)
    bot.is_active = False
    bot.save(update_fields=["is_active"])
    client = bearer(bot.api_key)

    # when
    escalation = escalate(client)
    detail = client.get(f"/api/v1/tickets/{ticket.id}/")

    # then
    assert (escalation.status_code, detail.status_code) == (401, 401)
    assert escalation.json() == {"detail": "The API key is unknown or revoked."}
    assert detail.json() == {"detail": "The API key is unknown or revoked."}


def test_an_agent_token_is_not_a_bot_key(agent, ticket_factory):
    # given an agent's own credentials, which are for the agent API
    ticket = ticket_factory()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=agent.user)[1]}")

    # when
    response = client.get(f"/api/v1/tickets/{ticket.id}/")

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


# --- another bot's tickets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "", None),
        ("get", "messages/", None),
        ("post", "messages/", {"text": "hello"}),
        ("post", "cancel/", None),
        ("post", "csat/", {"score": 5}),
    ],
)
def test_another_bots_ticket_is_a_404(bot_client, bot_factory, ticket_factory, method, path, body):
    # given a ticket another bot escalated
    ticket = ticket_factory(integration=bot_factory())

    # when
    response = getattr(bot_client, method)(
        f"/api/v1/tickets/{ticket.id}/{path}", body, format="json"
    )

    # then
    assert response.status_code == 404
    assert response.json() == {"detail": "No Ticket matches the given query."}
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.QUEUED


@pytest.mark.parametrize("ticket_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_ticket_id_is_a_404(bot_client, ticket_id):
    # when
    response = bot_client.get(f"/api/v1/tickets/{ticket_id}/")

    # then
    assert response.status_code == 404


# --- GET /api/v1/tickets/{id}/ --------------------------------------------------------------


def test_get_ticket_shows_its_place_in_the_queue(bot_client, ticket_factory, bot):
    # given two waiting English tickets ahead, one behind, and one of another language
    now = timezone.now()
    ticket_factory(integration=bot, priority=Ticket.Priority.HIGH)
    ticket_factory(integration=bot)
    ticket = ticket_factory(integration=bot, external_id="conv-mine")
    ticket_factory(integration=bot)
    ticket_factory(integration=bot, language="sv", priority=Ticket.Priority.URGENT)
    # and two English tickets first assigned in the last hour: a rate of 2 per 3,600 s
    for _ in range(2):
        ticket_factory(
            integration=bot, status=Ticket.Status.ASSIGNED, assigned_at=now, first_assigned_at=now
        )

    # when
    response = bot_client.get(f"/api/v1/tickets/{ticket.id}/")

    # then
    assert response.status_code == 200
    assert response.json() == {
        "id": str(ticket.id),
        "external_id": "conv-mine",
        "status": "queued",
        "priority": "normal",
        "language": "en",
        "skills": [],
        "queue_position": 3,
        "estimated_wait_seconds": 5400,
        "agent": None,
        "sla_breached": False,
        "created_at": iso(ticket.created_at),
        "assigned_at": None,
        "resolved_at": None,
        "resolution": None,
    }


def test_get_ticket_shows_the_agent_by_display_name_and_the_resolution(
    bot_client, bot, ticket_factory, agent_factory
):
    # given a resolved ticket
    maja = agent_factory(display_name="Maja")
    now = timezone.now()
    ticket = ticket_factory(
        integration=bot,
        status=Ticket.Status.RESOLVED,
        agent=maja,
        assigned_at=now - timedelta(minutes=5),
        resolved_at=now,
        outcome=Ticket.Outcome.HANDBACK,
        resolution_note="Back to the bot for the tracking number.",
    )

    # when
    response = bot_client.get(f"/api/v1/tickets/{ticket.id}/")

    # then
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "resolved"
    assert body["agent"] == {"display_name": "Maja"}
    assert body["queue_position"] is None
    assert body["estimated_wait_seconds"] is None
    assert body["assigned_at"] == iso(now - timedelta(minutes=5))
    assert body["resolved_at"] == iso(now)
    assert body["resolution"] == {
        "outcome": "handback",
        "note": "Back to the bot for the tracking number.",
    }


# --- messages -------------------------------------------------------------------------------


def test_a_customer_message_is_appended_and_listed(bot_client):
    # given
    ticket_id = escalate(bot_client, transcript=TRANSCRIPT).json()["id"]

    # when
    posted = bot_client.post(
        f"/api/v1/tickets/{ticket_id}/messages/",
        {"text": "Are you there?", "sent_at": "2026-11-25T10:05:00Z"},
        format="json",
    )

    # then
    assert posted.status_code == 201
    message = Message.objects.get(ticket_id=ticket_id, position=3)
    assert posted.json() == {
        "id": str(message.id),
        "role": "customer",
        "text": "Are you there?",
        "sent_at": "2026-11-25T10:05:00+00:00",
    }
    listed = bot_client.get(f"/api/v1/tickets/{ticket_id}/messages/")
    assert listed.status_code == 200
    assert [(m["role"], m["text"], m["sent_at"]) for m in listed.json()] == [
        ("customer", "I was charged twice", "2026-11-25T10:00:00+00:00"),
        ("bot", "I can help with that...", "2026-11-25T10:00:02+00:00"),
        ("customer", "Are you there?", "2026-11-25T10:05:00+00:00"),
    ]
    assert listed.json()[2] == posted.json()


def test_a_customer_message_without_sent_at_is_stamped_now(bot_client):
    # given
    ticket_id = escalate(bot_client).json()["id"]
    before = timezone.now()

    # when
    posted = bot_client.post(
        f"/api/v1/tickets/{ticket_id}/messages/", {"text": "Hello?"}, format="json"
    )

    # then
    assert posted.status_code == 201
    message = Message.objects.get(ticket_id=ticket_id)
    assert posted.json()["sent_at"] == iso(message.sent_at)
    assert before <= message.sent_at <= timezone.now()


def test_messages_after_a_message_are_only_the_later_ones(bot_client):
    # given a conversation of four messages
    ticket_id = escalate(bot_client, transcript=TRANSCRIPT).json()["id"]
    for text in ("third", "fourth"):
        bot_client.post(f"/api/v1/tickets/{ticket_id}/messages/", {"text": text}, format="json")
    first, second, _, last = Message.objects.filter(ticket_id=ticket_id).order_by("position")

    # when
    after_second = bot_client.get(f"/api/v1/tickets/{ticket_id}/messages/?after={second.id}")
    after_first = bot_client.get(f"/api/v1/tickets/{ticket_id}/messages/?after={first.id}")
    after_last = bot_client.get(f"/api/v1/tickets/{ticket_id}/messages/?after={last.id}")

    # then
    assert after_second.status_code == 200
    assert [m["text"] for m in after_second.json()] == ["third", "fourth"]
    assert [m["text"] for m in after_first.json()] == ["I can help with that...", "third", "fourth"]
    assert after_last.json() == []


@pytest.mark.parametrize(
    ("after", "errors"),
    [
        (str(uuid.uuid4()), {"after": ["No such message in this ticket."]}),
        ("other-ticket", {"after": ["No such message in this ticket."]}),
        ("nope", {"after": ["Must be a valid UUID."]}),
    ],
)
def test_messages_after_a_message_not_of_this_ticket_is_a_400(bot_client, after, errors):
    # given a ticket, and another ticket's message
    ticket_id = escalate(bot_client, transcript=TRANSCRIPT).json()["id"]
    other_id = escalate(bot_client, external_id="conv-2", transcript=TRANSCRIPT).json()["id"]
    if after == "other-ticket":
        after = Message.objects.filter(ticket_id=other_id).first().id

    # when
    response = bot_client.get(f"/api/v1/tickets/{ticket_id}/messages/?after={after}")

    # then
    assert response.status_code == 400
    assert response.json() == errors


def test_an_empty_customer_message_is_a_400(bot_client):
    # given
    ticket_id = escalate(bot_client).json()["id"]

    # when
    response = bot_client.post(
        f"/api/v1/tickets/{ticket_id}/messages/", {"text": ""}, format="json"
    )

    # then
    assert response.status_code == 400
    assert response.json() == {"text": ["This field may not be blank."]}


@pytest.mark.parametrize("status", [Ticket.Status.RESOLVED, Ticket.Status.CANCELLED])
def test_a_message_to_a_closed_ticket_is_a_409(bot_client, bot, ticket_factory, status):
    # given
    ticket = ticket_factory(integration=bot, status=status)

    # when
    response = bot_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"text": "Hello?"}, format="json"
    )

    # then
    assert response.status_code == 409
    assert response.json() == {"detail": f"The ticket is {status}."}
    assert Message.objects.count() == 0


# --- cancel ---------------------------------------------------------------------------------


def test_cancelling_an_offered_ticket_revokes_the_offer_at_once(bot_client, agent):
    # given a ticket offered to an online agent, with a webhook the bot's own cancel must not
    # echo back
    ticket_id = escalate(bot_client, callback_url="https://bot.example.com/hooks").json()["id"]
    offer = Offer.objects.get(ticket_id=ticket_id)
    assert offer.status == Offer.Status.PENDING

    # when
    response = bot_client.post(f"/api/v1/tickets/{ticket_id}/cancel/")

    # then
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["queue_position"] is None
    offer.refresh_from_db()
    assert (offer.status, offer.revoke_reason) == (Offer.Status.REVOKED, "cancelled")
    assert Ticket.objects.get(pk=ticket_id).cancelled_at is not None
    assert WebhookDelivery.objects.count() == 0


def test_cancelling_a_cancelled_ticket_is_a_200_no_op(bot_client, bot, ticket_factory):
    # given
    cancelled_at = timezone.now() - timedelta(minutes=3)
    ticket = ticket_factory(
        integration=bot, status=Ticket.Status.CANCELLED, cancelled_at=cancelled_at
    )

    # when
    response = bot_client.post(f"/api/v1/tickets/{ticket.id}/cancel/")

    # then
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    ticket.refresh_from_db()
    assert ticket.cancelled_at == cancelled_at
    assert ticket.events.count() == 0


def test_cancelling_a_resolved_ticket_is_a_409(bot_client, bot, ticket_factory):
    # given
    ticket = ticket_factory(integration=bot, status=Ticket.Status.RESOLVED, outcome="solved")

    # when
    response = bot_client.post(f"/api/v1/tickets/{ticket.id}/cancel/")

    # then
    assert response.status_code == 409
    assert response.json() == {"detail": "The ticket is resolved."}
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.RESOLVED


# --- csat -----------------------------------------------------------------------------------


def test_csat_before_resolution_is_a_409(bot_client):
    # given
    ticket_id = escalate(bot_client).json()["id"]

    # when
    response = bot_client.post(f"/api/v1/tickets/{ticket_id}/csat/", {"score": 5}, format="json")

    # then
    assert response.status_code == 409
    assert response.json() == {"detail": "A ticket can be rated only once it is resolved."}
    assert Ticket.objects.get(pk=ticket_id).csat_score is None


def test_csat_after_resolution_is_stored_and_the_last_score_wins(bot_client, agent):
    # given a ticket escalated, accepted and resolved through the real services
    ticket_id = escalate(bot_client).json()["id"]
    offer = Offer.objects.get(ticket_id=ticket_id)
    dispatch_services.offer_accept(offer_id=offer.pk, agent=agent)
    ticket_services.ticket_resolve(ticket_id=ticket_id, agent=agent, outcome="solved")

    # when
    first = bot_client.post(
        f"/api/v1/tickets/{ticket_id}/csat/", {"score": 5, "comment": "Great"}, format="json"
    )
    second = bot_client.post(
        f"/api/v1/tickets/{ticket_id}/csat/", {"score": 2, "comment": "Not fixed"}, format="json"
    )

    # then
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "resolved"
    ticket = Ticket.objects.get(pk=ticket_id)
    assert (ticket.csat_score, ticket.csat_comment) == (2, "Not fixed")
    assert AgentRatings.objects.filter(agent=agent).values_list(
        "ratings_count", "ratings_sum"
    ).get() == (1, 2)
    assert list(
        ticket.events.filter(kind="csat").order_by("id").values_list("detail", flat=True)
    ) == [{"score": 5}, {"score": 2}]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"score": 0}, {"score": ["Ensure this value is greater than or equal to 1."]}),
        ({"score": 6}, {"score": ["Ensure this value is less than or equal to 5."]}),
        ({}, {"score": ["This field is required."]}),
    ],
)
def test_a_csat_score_outside_1_to_5_is_a_400(bot_client, bot, ticket_factory, body, errors):
    # given
    ticket = ticket_factory(integration=bot, status=Ticket.Status.RESOLVED, outcome="solved")

    # when
    response = bot_client.post(f"/api/v1/tickets/{ticket.id}/csat/", body, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == errors
