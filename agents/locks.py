import uuid

from dispatch.rows import RowByKey

from .models import Agent

_LOCKED = RowByKey(lambda: Agent.objects.select_for_update(no_key=True))


def lock_agent(agent_id: uuid.UUID) -> Agent | None:
    """The agent, locked for the rest of the transaction (FOR NO KEY UPDATE, so offers and
    events that reference the agent can still be inserted by others)."""
    return _LOCKED.get(agent_id)
