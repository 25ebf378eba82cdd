import io
import threading

import httpx
import pytest
from django.core.management import call_command
from knox.models import AuthToken

from tickets.models import Message, Ticket

from ..live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_simulated_bot_escalates_verifies_webhooks_and_answers_replies(
    live_platform, bot, agent_factory
):
    agent = agent_factory(
        languages=["sv", "en", "es"],
        skills=["refunds", "billing", "technical"],
        capacity=5,
        online=True,
    )
    agent_api = httpx.Client(
        base_url=live_platform.url,
        headers={"Authorization": f"Token {AuthToken.objects.create(user=agent.user)[1]}"},
    )
    out = io.StringIO()
    command = threading.Thread(
        target=call_command,
        args=["simulate_bot"],
        kwargs={
            "url": live_platform.url,
            "key": bot.api_key,
            "count": 2,
            "rate": 600,
            "seed": 7,
            "linger": 8,
            "reply_probability": 1.0,
            "stdout": out,
        },
    )

    command.start()
    offers = wait_for(
        lambda: len(body := agent_api.get("/api/v1/agent/offers/").json()) == 2 and body,
        what="two offers",
    )
    ticket_id = offers[0]["ticket"]["id"]
    assert agent_api.post(f"/api/v1/offers/{offers[0]['id']}/accept/").status_code == 200
    reply = agent_api.post(f"/api/v1/agent/tickets/{ticket_id}/messages/", json={"text": "Hi!"})
    assert reply.status_code == 201
    follow_up = wait_for(
        lambda: Message.objects.filter(ticket_id=ticket_id, position=5).first(),
        what="the simulated customer's follow-up",
    )
    command.join(timeout=30)

    assert Ticket.objects.filter(integration=bot, external_id__startswith="sim-").count() == 2
    assert follow_up.role == "customer"
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(
        f"Simulated bot escalating to {live_platform.url}, webhooks at http://127.0.0.1:"
    )
    assert sum(line.startswith("→ escalated sim-") for line in lines) == 2
    assert any(
        line.startswith("← ticket.assigned sim-")
        and line.endswith(f" #1 to {agent.display_name} [signature ok]")
        for line in lines
    )
    assert any(line.endswith("#2: 'Hi!' [signature ok]") for line in lines)
    assert any(line == f"→ customer says {follow_up.text!r}: HTTP 201" for line in lines)
    assert lines[-1] == "Escalated 2; received 2 webhooks."
