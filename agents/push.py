"""Live pushes over the channel layer, to agents' sockets and to the coordinators' board, sent
only after commit."""

import asyncio
import logging
import os
import threading
import uuid

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# Every staff socket on /ws/board/ joins this group: the live board hears of every ticket
# transition and every agent status and presence change.
BOARD_GROUP = "coordinators"

# A push that Redis has not taken by then is given up (and logged); the caller's change is
# committed and a client resyncs on its next `hello`.
PUSH_TIMEOUT_SECONDS = 5

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_loop_lock = threading.Lock()


def _pushing_loop() -> asyncio.AbstractEventLoop:
    """One event loop for the life of the process, on a thread of its own.

    async_to_sync from a worker thread makes a new loop, and with it a new Redis connection, on
    every call (STACK_NOTES.md: 1.9 ms a push, against 0.26 ms on a kept loop; on a busy
    machine here 9-13 ms against 0.22 ms). Every push of a process goes through this loop and
    its connection pool instead. Made per process: a forked worker does not inherit the thread.
    """
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop = asyncio.new_event_loop()
            _loop_pid = os.getpid()
            threading.Thread(
                target=_loop.run_forever, name="channel-layer-pushes", daemon=True
            ).start()
        return _loop


def agent_group(agent_id: uuid.UUID | str) -> str:
    return f"agent.{agent_id}"


def _group_send(group: str, message: dict) -> None:
    """Send one message to a group, in order with this thread's other pushes.

    Delivery is at most once either way: a lost frame is recovered by a resync (`hello` when
    an agent's socket connects or revives), so a channel-layer failure is logged and never
    undoes the committed change behind it.
    """
    try:
        asyncio.run_coroutine_threadsafe(
            get_channel_layer().group_send(group, message), _pushing_loop()
        ).result(timeout=PUSH_TIMEOUT_SECONDS)
    except Exception:
        logger.exception("Could not push %s to %s", message["payload"].get("type"), group)


def push_to_agent(agent_id: uuid.UUID | str, payload: dict) -> None:
    """Send one frame to every open socket (tab, device) of an agent."""
    _group_send(agent_group(agent_id), {"type": "agent.event", "payload": payload})


def push_to_agent_on_commit(agent_id: uuid.UUID | str, payload: dict) -> None:
    transaction.on_commit(lambda: push_to_agent(agent_id, payload))


def close_agent_sockets_on_commit(agent_id: uuid.UUID | str) -> None:
    """Once the transaction commits, close every open socket of the agent with 4403 (see
    AgentConsumer.agent_close); a socket that misses it is closed on its next heartbeat."""
    # The payload only names the message in the log should the channel layer refuse it.
    message = {"type": "agent.close", "payload": {"type": "agent.close"}}
    transaction.on_commit(lambda: _group_send(agent_group(agent_id), message))


def push_to_board(payload: dict) -> None:
    """Send one frame to every coordinator watching the live board."""
    _group_send(BOARD_GROUP, {"type": "board.event", "payload": payload})


def push_to_board_on_commit(payload: dict) -> None:
    transaction.on_commit(lambda: push_to_board(payload))
