"""Live pushes to agents' browsers over the channel layer, sent only after commit."""

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def agent_group(agent_id: uuid.UUID | str) -> str:
    return f"agent.{agent_id}"


def push_to_agent(agent_id: uuid.UUID | str, payload: dict) -> None:
    """Send one frame to every open socket of an agent.

    Delivery is at most once; a lost frame is recovered by the `hello` resync on reconnect, so
    a channel-layer failure is logged and never undoes the committed change behind it.
    """
    try:
        async_to_sync(get_channel_layer().group_send)(
            agent_group(agent_id), {"type": "agent.event", "payload": payload}
        )
    except Exception:
        logger.exception("Could not push %s to agent %s", payload.get("type"), agent_id)


def push_to_agent_on_commit(agent_id: uuid.UUID | str, payload: dict) -> None:
    transaction.on_commit(lambda: push_to_agent(agent_id, payload))
