import uuid

from .models import Agent


def lock_agent(agent_id: uuid.UUID) -> Agent | None:
    """The agent, locked for the rest of the transaction (FOR NO KEY UPDATE, so offers and
    events that reference the agent can still be inserted by others)."""
    return Agent.objects.select_for_update(no_key=True).filter(pk=agent_id).first()
