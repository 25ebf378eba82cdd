"""Rate limits: each bot integration at its own requests_per_minute, token log-ins per client
address; both answer 429 with Retry-After."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.live import free_port
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

ESCALATION = {"external_id": "conv-1", "language": "en", "customer": {"id": "cust-1"}}


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def limited_bot(bot_factory):
    def create(requests_per_minute: int):
        bot = bot_factory()
        bot.requests_per_minute = requests_per_minute
        bot.save(update_fields=["requests_per_minute"])
        return bot

    return create


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_bot_over_its_requests_per_minute_gets_429_with_retry_after(limited_bot):
    # given a bot allowed 3 requests a minute
    client = bearer(limited_bot(3).api_key)

    # when it makes four
    answers = [
        client.post(
            "/api/v1/escalations/", {**ESCALATION, "external_id": f"conv-{n}"}, format="json"
        )
        for n in range(4)
    ]

    # then the fourth is refused, and says when to come back
    assert [answer.status_code for answer in answers] == [201, 201, 201, 429]
    assert answers[3].headers["Retry-After"] == "60"
    assert answers[3].json() == {
        "detail": "Request was throttled. Expected available in 60 seconds."
    }
    assert Ticket.objects.count() == 3


def test_each_bot_has_its_own_limit(limited_bot):
    # given a bot that used up its minute
    busy = bearer(limited_bot(1).api_key)
    busy.post("/api/v1/escalations/", ESCALATION, format="json")
    other = bearer(limited_bot(1).api_key)

    # when another bot escalates
    response = other.post("/api/v1/escalations/", ESCALATION, format="json")

    # then it is not held back by the first one's requests
    assert response.status_code == 201
    assert busy.get("/api/v1/tickets/00000000-0000-0000-0000-000000000000/").status_code == 429


def test_a_raised_limit_applies_at_once(limited_bot):
    # given a bot that used up its one request a minute
    bot = limited_bot(1)
    client = bearer(bot.api_key)
    client.post("/api/v1/escalations/", ESCALATION, format="json")

    # when a coordinator raises its limit
    bot.requests_per_minute = 2
    bot.save(update_fields=["requests_per_minute"])

    # then its next request goes through
    assert client.post("/api/v1/escalations/", ESCALATION, format="json").status_code == 200


def test_requests_without_a_valid_key_are_401_not_counted(limited_bot):
    # given a bot allowed one request a minute
    bot = limited_bot(1)

    # when requests with a wrong key come first
    wrong = [
        bearer("gd_wrong").post("/api/v1/escalations/", ESCALATION, format="json") for _ in range(3)
    ]
    right = bearer(bot.api_key).post("/api/v1/escalations/", ESCALATION, format="json")

    # then they are refused as unauthenticated, and the bot's own request still goes through
    assert [answer.status_code for answer in wrong] == [401, 401, 401]
    assert right.status_code == 201


def test_the_limit_fails_open_when_redis_is_down(limited_bot, settings):
    # given the shared cache is a Redis that does not answer
    settings.CACHES = {
        "default": {
            "BACKEND": "dispatch.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    client = bearer(limited_bot(1).api_key)

    # when the bot escalates twice
    first = client.post("/api/v1/escalations/", ESCALATION, format="json")
    second = client.post(
        "/api/v1/escalations/", {**ESCALATION, "external_id": "conv-2"}, format="json"
    )

    # then neither is refused: an uncounted request is better than a lost customer
    assert (first.status_code, second.status_code) == (201, 201)


def test_token_log_ins_are_limited_to_10_a_minute_per_address(agent):
    # given someone guessing passwords, trying a fresh X-Forwarded-For each time
    client = APIClient()

    # when they try 11 times
    answers = [
        client.post(
            "/api/v1/auth/token/",
            {"username": agent.user.username, "password": f"guess-{n}"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        )
        for n in range(11)
    ]

    # then the eleventh is refused, even with the right password
    assert [answer.status_code for answer in answers] == [400] * 10 + [429]
    assert answers[10].headers["Retry-After"] == "60"
    right = client.post(
        "/api/v1/auth/token/",
        {"username": agent.user.username, "password": "pass-word-1"},
        format="json",
    )
    assert right.status_code == 429


def test_token_log_ins_from_another_address_are_not_held_back(agent):
    # given an address that used up its log-ins
    for n in range(10):
        APIClient().post(
            "/api/v1/auth/token/",
            {"username": agent.user.username, "password": f"guess-{n}"},
            format="json",
        )

    # when the agent logs in from another address
    response = APIClient(REMOTE_ADDR="198.51.100.7").post(
        "/api/v1/auth/token/",
        {"username": agent.user.username, "password": "pass-word-1"},
        format="json",
    )

    # then
    assert response.status_code == 200
