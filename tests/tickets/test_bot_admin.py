"""Bot integrations in the admin (contract section 1): the API key is shown once, stored only
hashed, and can be revoked."""

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from tickets.models import BotIntegration

pytestmark = pytest.mark.django_db(transaction=True)

ESCALATION = {"external_id": "conv-1", "language": "en", "customer": {"id": "cust-1"}}


@pytest.fixture
def coordinator_client(client):
    client.force_login(
        get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-admin-1")
    )
    return client


@pytest.fixture
def viewer_client():
    """A client logged in as a staff member who may only view bot integrations."""
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_botintegration"))
    client = Client()
    client.force_login(viewer)
    return client


def escalate_with(key: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client.post("/api/v1/escalations/", ESCALATION, format="json")


def test_a_coordinator_creates_an_integration_and_sees_its_key_once(coordinator_client):
    # given the add form, which proposes a signing secret
    form = coordinator_client.get("/admin/tickets/botintegration/add/")
    secret = form.context["adminform"].form.initial["signing_secret"]

    # when the coordinator saves it
    response = coordinator_client.post(
        "/admin/tickets/botintegration/add/",
        {
            "name": "Acme bot",
            "signing_secret": secret,
            "is_active": "on",
            "requests_per_minute": "120",
        },
        follow=True,
    )

    # then the key is shown once, works, and only its hash and prefix are stored
    [key] = [
        match[1]
        for message in response.context["messages"]
        if (
            match := re.fullmatch(
                r"The API key of Acme bot, shown only this once: (\S+)", str(message)
            )
        )
    ]
    integration = BotIntegration.objects.get()
    assert (integration.name, integration.signing_secret, integration.requests_per_minute) == (
        "Acme bot",
        secret,
        120,
    )
    assert (integration.key_hash, integration.key_prefix) == (
        BotIntegration.hash_key(key),
        key[:10],
    )
    assert escalate_with(key).status_code == 201
    change_page = coordinator_client.get(f"/admin/tickets/botintegration/{integration.pk}/change/")
    assert key not in change_page.content.decode()


def test_a_revoked_key_is_refused(coordinator_client, bot):
    # when a coordinator revokes the bot's key
    response = coordinator_client.post(
        "/admin/tickets/botintegration/",
        {"action": "revoke", "_selected_action": [str(bot.pk)]},
        follow=True,
    )

    # then the bot's requests are refused, and the admin's history says who revoked it
    assert [str(m) for m in response.context["messages"]] == ["Revoked 1 API key(s)."]
    bot.refresh_from_db()
    assert bot.is_active is False
    assert bot.revoked_at is not None
    assert escalate_with(bot.api_key).status_code == 401
    entry = LogEntry.objects.get(object_id=str(bot.pk))
    assert (entry.user.username, entry.get_change_message()) == ("admin", "Revoked the API key.")


def test_revoking_again_changes_nothing(coordinator_client, bot):
    # given a revoked key
    coordinator_client.post(
        "/admin/tickets/botintegration/",
        {"action": "revoke", "_selected_action": [str(bot.pk)]},
        follow=True,
    )
    bot.refresh_from_db()
    revoked_at = bot.revoked_at

    # when it is revoked once more
    response = coordinator_client.post(
        "/admin/tickets/botintegration/",
        {"action": "revoke", "_selected_action": [str(bot.pk)]},
        follow=True,
    )

    # then
    assert [str(m) for m in response.context["messages"]] == ["Revoked 0 API key(s)."]
    bot.refresh_from_db()
    assert bot.revoked_at == revoked_at
    assert LogEntry.objects.filter(object_id=str(bot.pk)).count() == 1


def test_a_staff_member_who_may_only_view_integrations_cannot_revoke_a_key(viewer_client, bot):
    # when
    response = viewer_client.post(
        "/admin/tickets/botintegration/",
        {"action": "revoke", "_selected_action": [str(bot.pk)]},
        follow=True,
    )

    # then the admin offers no action on integrations at all, and the key still works
    assert response.status_code == 200
    assert response.context["action_form"] is None
    bot.refresh_from_db()
    assert (bot.is_active, bot.revoked_at) == (True, None)
    assert escalate_with(bot.api_key).status_code == 201


def test_the_signing_secret_is_shown_to_who_may_change_the_integration_only(
    coordinator_client, viewer_client, bot
):
    # given
    page = f"/admin/tickets/botintegration/{bot.pk}/change/"

    # when
    viewed = viewer_client.get(page)
    changed = coordinator_client.get(page)

    # then: the viewer sees the integration but not its secret; the coordinator sees both
    assert viewed.status_code == changed.status_code == 200
    assert bot.name in viewed.content.decode()
    assert bot.signing_secret not in viewed.content.decode()
    assert bot.signing_secret in changed.content.decode()


def test_rotating_a_key_shows_the_new_one_once_and_refuses_the_old_at_once(
    coordinator_client, bot_factory
):
    # given: two bots, one of them revoked
    bot = bot_factory(name="Acme bot")
    revoked = bot_factory(name="Old bot")
    BotIntegration.objects.filter(pk=revoked.pk).update(is_active=False)

    # when
    response = coordinator_client.post(
        "/admin/tickets/botintegration/",
        {"action": "rotate_key", "_selected_action": [str(bot.pk), str(revoked.pk)]},
        follow=True,
    )

    # then
    shown = [str(message) for message in response.context["messages"]]
    assert shown[1] == "Old bot is revoked: its key cannot be rotated."
    [key] = re.fullmatch(
        r"The new API key of Acme bot, shown only this once: (\S+)", shown[0]
    ).groups()
    bot.refresh_from_db()
    assert (bot.key_hash, bot.key_prefix, bot.is_active) == (
        BotIntegration.hash_key(key),
        key[:10],
        True,
    )
    assert escalate_with(bot.api_key).status_code == 401
    assert escalate_with(key).status_code == 201
    assert LogEntry.objects.get(object_id=str(bot.pk)).get_change_message() == (
        "Rotated the API key."
    )
    assert not LogEntry.objects.filter(object_id=str(revoked.pk)).exists()
    change_page = coordinator_client.get(f"/admin/tickets/botintegration/{bot.pk}/change/")
    assert key not in change_page.content.decode()


def test_someone_who_is_not_staff_cannot_rotate_a_key(client, bot):
    # given
    client.force_login(get_user_model().objects.create_user("someone", password="pw-some-1"))
    before = BotIntegration.objects.values_list("key_hash", flat=True).get(pk=bot.pk)

    # when
    response = client.post(
        "/admin/tickets/botintegration/",
        {"action": "rotate_key", "_selected_action": [str(bot.pk)]},
    )

    # then
    assert (response.status_code, response["Location"]) == (
        302,
        "/admin/login/?next=/admin/tickets/botintegration/",
    )
    assert BotIntegration.objects.values_list("key_hash", flat=True).get(pk=bot.pk) == before
    assert escalate_with(bot.api_key).status_code == 201
