import pytest

from dispatch.models import Offer
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

ESCALATION = {
    "external_id": "conv-8812",
    "language": "SV",
    "skills": ["refunds"],
    "priority": "high",
    "reason": "customer_requested",
    "summary": "Customer disputes a double charge.",
    "customer": {"id": "cust-77", "name": "Anna", "tier": "standard"},
    "transcript": [
        {"role": "customer", "text": "I was charged twice", "sent_at": "2026-11-25T10:00:00Z"},
        {"role": "bot", "text": "I can help with that...", "sent_at": "2026-11-25T10:00:02Z"},
    ],
}


def test_escalation_is_offered_to_the_matching_agent(bot_client, agent_factory):
    agent_factory(languages=["en"], skills=["refunds"], online=True)
    swede = agent_factory(languages=["sv"], skills=["refunds"], online=True)

    response = bot_client.post("/api/v1/escalations/", ESCALATION, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["language"] == "sv"
    assert body["priority"] == "high"
    assert body["skills"] == ["refunds"]
    ticket = Ticket.objects.get(pk=body["id"])
    assert ticket.status == Ticket.Status.OFFERED
    assert list(ticket.offers.values_list("agent", "status")) == [(swede.pk, Offer.Status.PENDING)]
    assert [m.text for m in ticket.messages.order_by("position")] == [
        "I was charged twice",
        "I can help with that...",
    ]
