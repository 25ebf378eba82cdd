"""Agent API tokens: issued per log-in, stored only as a digest, and refused once expired, for
an inactive user, or when the header is garbage; the same on REST and on the websocket."""

import hashlib
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from agents.models import Agent
from dispatch.asgi import application
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5
INVALID_TOKEN = {"detail": "Invalid token."}


def log_in(username: str, password: str = "pass-word-1"):
    return APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json"
    )


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


async def close_code_for(authorization: bytes) -> dict:
    """Connect to /ws/agent/ with this Authorization header; the first output frame."""
    socket = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"authorization", authorization)]
    )
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    assert accepted is True
    output = await socket.receive_output(timeout=TIMEOUT)
    await socket.disconnect()
    return output


def test_each_log_in_issues_its_own_token_and_both_work(agent):
    # when
    first = log_in(agent.user.username).json()["token"]
    second = log_in(agent.user.username).json()["token"]

    # then
    assert first != second
    assert AuthToken.objects.filter(user=agent.user).count() == 2
    assert token_client(first).get("/api/v1/agent/me/").status_code == 200
    assert token_client(second).get("/api/v1/agent/me/").status_code == 200


def test_the_database_keeps_only_a_digest_of_the_token(agent):
    # when
    token = log_in(agent.user.username).json()["token"]

    # then: 64 hex characters, of which the row keeps a SHA-512 digest and a lookup prefix
    assert len(token) == 64
    assert set(token) <= set("0123456789abcdef")
    row = AuthToken.objects.get(user=agent.user)
    assert row.digest == hashlib.sha512(token.encode()).hexdigest()
    assert row.token_key == token[:15]
    assert token not in {str(value) for value in AuthToken.objects.values_list().get()}


def test_a_token_expires_a_day_after_its_last_use_and_is_then_refused_and_deleted(agent):
    # given
    token = log_in(agent.user.username).json()["token"]
    row = AuthToken.objects.get(user=agent.user)
    assert timedelta(hours=23, minutes=59) < row.expiry - timezone.now() <= timedelta(hours=24)
    AuthToken.objects.filter(pk=row.pk).update(expiry=timezone.now() - timedelta(seconds=1))

    # when
    response = token_client(token).get("/api/v1/agent/me/")

    # then
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN
    assert response["WWW-Authenticate"] == "Token"
    assert not AuthToken.objects.exists()


def test_using_a_token_extends_its_life(agent):
    # given: a token that would expire in an hour
    token = log_in(agent.user.username).json()["token"]
    AuthToken.objects.update(expiry=timezone.now() + timedelta(hours=1))

    # when
    assert token_client(token).get("/api/v1/agent/me/").status_code == 200

    # then
    remaining = AuthToken.objects.get().expiry - timezone.now()
    assert timedelta(hours=23, minutes=59) < remaining <= timedelta(hours=24)


def test_an_inactive_user_gets_no_token_and_an_issued_one_stops_working(agent):
    # given
    token = log_in(agent.user.username).json()["token"]
    agent.user.is_active = False
    agent.user.save(update_fields=["is_active"])

    # when
    logged_in = log_in(agent.user.username)
    used = token_client(token).get("/api/v1/agent/me/")

    # then
    assert logged_in.status_code == 400
    assert logged_in.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    assert used.status_code == 401
    assert used.json() == {"detail": "User inactive or deleted."}


def test_a_suspended_agents_token_is_refused_with_403(agent):
    # given
    token = log_in(agent.user.username).json()["token"]
    Agent.objects.filter(pk=agent.pk).update(account_state=Agent.AccountState.SUSPENDED)

    # when
    response = token_client(token).post("/api/v1/agent/status/", {"status": "away"}, "json")

    # then
    assert response.status_code == 403
    assert response.json() == {"detail": "Only active agents may use this endpoint."}
    assert Agent.objects.get(pk=agent.pk).status == Agent.Status.AVAILABLE


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        # Servers hand headers over as Latin-1 text.
        ("Token \xff\xfe\xfd", "Invalid token."),
        ("Token " + "a" * 5000, "Invalid token."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token two parts", "Invalid token header. Token string should not contain spaces."),
    ],
    ids=["not ASCII", "far too long", "no token", "with a space"],
)
def test_a_malformed_token_header_is_a_401(agent, authorization, detail):
    # when
    response = APIClient().get("/api/v1/agent/me/", HTTP_AUTHORIZATION=authorization)

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": detail}


@pytest.mark.asyncio
async def test_the_websocket_takes_the_same_tokens():
    # given
    agent = await database_sync_to_async(AgentFactory)(status=Agent.Status.AVAILABLE)
    token = await database_sync_to_async(lambda: AuthToken.objects.create(user=agent.user)[1])()
    socket = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"authorization", f"Token {token}".encode())]
    )

    # when
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    hello = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert accepted is True
    assert (hello["type"], hello["agent"]["username"]) == ("hello", agent.user.username)
    await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("case", ["expired", "inactive user", "not ASCII"])
async def test_the_websocket_refuses_a_token_that_rest_refuses_with_4401(case):
    # given
    @database_sync_to_async
    def authorization() -> bytes:
        agent = AgentFactory(status=Agent.Status.AVAILABLE)
        token = AuthToken.objects.create(user=agent.user)[1]
        if case == "expired":
            AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
        elif case == "inactive user":
            agent.user.is_active = False
            agent.user.save(update_fields=["is_active"])
        else:
            return b"Token \xff" + token.encode()
        return f"Token {token}".encode()

    # when
    output = await close_code_for(await authorization())

    # then
    assert output == {"type": "websocket.close", "code": 4401}
