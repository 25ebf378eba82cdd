"""The management commands operators script (contract section 6)."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents.models import Agent, Skill
from tickets.models import BotIntegration, Ticket

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


# --- create_bot_key -------------------------------------------------------------------------


def test_create_bot_key_prints_a_key_that_authenticates_on_its_last_line():
    # when
    lines = run("create_bot_key", "Acme bot")

    # then the last line is the key alone, stored only hashed
    key = lines[-1]
    integration = BotIntegration.objects.get()
    assert integration.name == "Acme bot"
    assert integration.is_active is True
    assert integration.key_hash == BotIntegration.hash_key(key)
    assert integration.key_prefix == key[:10]
    assert key not in "\n".join(lines[:-1])
    # and the key works
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.post(
        "/api/v1/escalations/",
        {"external_id": "conv-1", "language": "en", "customer": {"id": "cust-1"}},
        format="json",
    )
    assert response.status_code == 201
    assert Ticket.objects.get().integration == integration


def test_create_bot_key_takes_the_webhook_signing_secret():
    # when
    lines = run("create_bot_key", "Acme bot", "--callback-secret", "s3cret-for-hooks")

    # then
    assert BotIntegration.objects.get().signing_secret == "s3cret-for-hooks"
    assert lines[-2] == "Webhook signing secret: s3cret-for-hooks"


def test_each_bot_key_is_new():
    # when
    first = run("create_bot_key", "Acme bot")[-1]
    second = run("create_bot_key", "Acme bot")[-1]

    # then
    assert first != second
    assert BotIntegration.objects.count() == 2


# --- create_agent ---------------------------------------------------------------------------


def test_create_agent_creates_an_active_agent(skill_factory):
    # given one of the two skills exists already
    skill_factory(slug="refunds", name="Refunds")

    # when
    lines = run(
        "create_agent",
        "maja",
        "--password",
        "pw-for-maja-1",
        "--languages",
        "sv,EN",
        "--skills",
        "refunds,billing",
        "--capacity",
        "3",
        "--display-name",
        "Maja",
    )

    # then
    assert lines == ["Created agent 'Maja' (maja)."]
    agent = Agent.objects.select_related("user").get()
    assert agent.user.username == "maja"
    assert agent.user.check_password("pw-for-maja-1")
    assert (agent.account_state, agent.status) == (Agent.AccountState.ACTIVE, "offline")
    assert (agent.display_name, agent.capacity) == ("Maja", 3)
    assert sorted(agent.language_codes) == ["en", "sv"]
    assert sorted(agent.skills.values_list("slug", flat=True)) == ["billing", "refunds"]
    assert list(Skill.objects.values_list("slug", "name")) == [
        ("billing", "Billing"),
        ("refunds", "Refunds"),
    ]


def test_create_agent_defaults_to_capacity_2_and_the_username_as_display_name():
    # when
    run("create_agent", "liam", "--password", "pw-for-liam-1", "--languages", "en")

    # then
    agent = Agent.objects.get()
    assert (agent.display_name, agent.capacity, agent.language_codes) == ("liam", 2, ["en"])
    assert agent.skills.count() == 0


def test_create_agent_takes_a_repeated_language_or_skill_once():
    # when
    run(
        "create_agent",
        "maja",
        "--password",
        "pw-for-maja-1",
        "--languages",
        "sv,SV,en",
        "--skills",
        "refunds,Refunds",
    )

    # then
    agent = Agent.objects.get()
    assert sorted(agent.language_codes) == ["en", "sv"]
    assert list(agent.skills.values_list("slug", flat=True)) == ["refunds"]


def test_create_agent_refuses_an_unknown_language():
    # when
    with pytest.raises(CommandError) as error:
        run("create_agent", "maja", "--password", "pw-for-maja-1", "--languages", "sv,xx,qq")

    # then
    assert str(error.value) == "--languages needs ISO 639-1 codes; unknown: xx, qq."
    assert Agent.objects.count() == 0
    assert get_user_model().objects.count() == 0


def test_create_agent_refuses_a_taken_username(agent_factory):
    # given
    agent_factory(user__username="maja", display_name="First Maja")

    # when
    with pytest.raises(CommandError) as error:
        run("create_agent", "maja", "--password", "pw-for-maja-1", "--languages", "sv")

    # then
    assert str(error.value) == "A user named 'maja' already exists."
    assert list(Agent.objects.values_list("display_name", flat=True)) == ["First Maja"]


@pytest.mark.parametrize("capacity", ["0", "21"])
def test_create_agent_refuses_a_capacity_outside_1_to_20(capacity):
    # when
    with pytest.raises(CommandError) as error:
        run(
            "create_agent",
            "maja",
            "--password",
            "pw-for-maja-1",
            "--languages",
            "sv",
            "--capacity",
            capacity,
        )

    # then
    assert str(error.value) == "--capacity must be between 1 and 20."
    assert Agent.objects.count() == 0


# --- seed_demo ------------------------------------------------------------------------------

SEED_OUTPUT = [
    "Demo data is ready.",
    "  Coordinator (admin): coordinator / demo-pass-2026",
    "  Agent Maja (sv,en): maja / demo-pass-2026",
    "  Agent Liam (en): liam / demo-pass-2026",
    "  Agent Sofia (es,en): sofia / demo-pass-2026",
    "  Bot API key: gd_demo_key_for_local_use_only",
]


def demo_counts() -> dict[str, int]:
    return {
        "users": get_user_model().objects.count(),
        "agents": Agent.objects.count(),
        "skills": Skill.objects.count(),
        "bots": BotIntegration.objects.count(),
    }


def test_seed_demo_prints_the_log_ins_that_work():
    # when
    lines = run("seed_demo")

    # then
    assert lines == SEED_OUTPUT
    assert demo_counts() == {"users": 4, "agents": 3, "skills": 3, "bots": 1}
    users = get_user_model().objects
    assert users.get(username="coordinator").is_superuser is True
    for username in ("coordinator", "maja", "liam", "sofia"):
        assert users.get(username=username).check_password("demo-pass-2026")
    assert set(Agent.objects.values_list("account_state", flat=True)) == {"active"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer gd_demo_key_for_local_use_only")
    response = client.post(
        "/api/v1/escalations/",
        {"external_id": "conv-1", "language": "sv", "customer": {"id": "cust-1"}},
        format="json",
    )
    assert response.status_code == 201


def test_seed_demo_twice_changes_nothing():
    # given
    run("seed_demo")
    before = demo_counts()

    # when
    lines = run("seed_demo")

    # then
    assert lines == SEED_OUTPUT
    assert demo_counts() == before == {"users": 4, "agents": 3, "skills": 3, "bots": 1}
