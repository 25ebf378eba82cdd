"""The websockets: `/ws/agent/` for agents (contract section 5) and `/ws/board/` for the
coordinators' live board. They authenticate, join a group and forward frames; presence and every
other write are services."""

import uuid

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dispatch import presence
from dispatch import services as dispatch_services
from tickets.exceptions import Conflict
from tickets.validators import UnsafeJSON, decode_json

from . import services
from .models import Agent
from .push import BOARD_GROUP, agent_group
from .socket_db import socket_db

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# RFC 6455 "message too big". The largest client frame (`offer.decline` with a 500-character
# reason) is well under 1 KiB; the web server refuses frames over this size itself (uvicorn
# --ws-max-size in the Procfile), and the consumer holds the same limit on any other server.
CLOSE_TOO_BIG = 1009
MAX_FRAME_BYTES = 64 * 1024


@socket_db
def active_agent_of(user) -> Agent | None:
    agent = Agent.objects.filter(user=user).select_related("user").first()
    if agent is None or agent.account_state != Agent.AccountState.ACTIVE or not user.is_active:
        return None
    return agent


class FrameConsumer(AsyncJsonWebsocketConsumer):
    """JSON frames with a `type`, for a user who is authenticated and allowed here.

    The socket is accepted first and then closed with an application code, so a client can tell
    "log in again" (4401) from "you are not allowed" (4403); a refused handshake cannot. A frame
    that cannot be carried out is answered with an `error` frame, and the socket stays open.
    """

    handlers: dict = {}
    # The group this socket joined, once it was allowed in.
    group: str | None = None

    async def authorize(self, user) -> str | None:
        """The group an authenticated user's socket joins; None when the user may not."""
        raise NotImplementedError

    async def joined(self) -> None:
        pass

    async def left(self) -> None:
        pass

    async def dispatch(self, message: dict) -> None:
        # Channels' own dispatch first closes stale database connections, for every message,
        # in the one thread all of its sync calls share: a thread hop per frame, queued behind
        # every other socket's. This consumer touches the database only through socket_db,
        # which closes them around each call in its own thread.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        group = await self.authorize(user)
        if group is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)
        await self.joined()

    async def disconnect(self, code: int) -> None:
        if self.group is None:
            return
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.left()

    async def rejoin(self) -> None:
        # The channel layer drops a member that has not joined again within its group_expiry
        # (settings: CHANNEL_LAYERS), so a live socket joins again on every heartbeat.
        await self.channel_layer.group_add(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        # A frame that is not JSON text is the client's mistake: answer it with an error
        # instead of letting the decoder's exception tear the socket down.
        try:
            content = await self.decode_json(text_data or "")
        except UnsafeJSON as exc:
            if self.group is not None:
                await self.send_error(f"Frame refused: {exc}")
            return
        except ValueError:
            if self.group is not None:
                await self.send_error("Frames must be JSON text.")
            return
        await self.receive_json(content, **kwargs)

    @classmethod
    async def decode_json(cls, text_data):
        # Deep nesting and lone surrogates would otherwise end the socket with a server error.
        return decode_json(text_data)

    async def receive_json(self, content, **kwargs) -> None:
        if self.group is None:
            return
        kind = content.get("type") if isinstance(content, dict) else None
        # A type that is a list or an object cannot be looked up (it is unhashable).
        handler = self.handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self.send_error(f"Unknown frame type: {kind!r}.")
            return
        await handler(self, content)

    async def send_error(self, detail: str) -> None:
        await self.send_json({"type": "error", "detail": detail})


class AgentConsumer(FrameConsumer):
    """One tab or device of an agent; each open socket is a connection that presence counts
    while it heartbeats (dispatch.presence)."""

    agent: Agent | None = None

    async def authorize(self, user) -> str | None:
        self.agent = await active_agent_of(user)
        return agent_group(self.agent.pk) if self.agent is not None else None

    async def joined(self) -> None:
        # The group was joined first: a frame sent after the snapshot below is read, and it
        # comes after `hello`, since frames wait until this handler returns.
        await socket_db(presence.agent_connect)(agent=self.agent, channel_name=self.channel_name)
        await self.send_hello()

    async def left(self) -> None:
        await socket_db(presence.agent_disconnect)(agent=self.agent, channel_name=self.channel_name)

    async def send_hello(self) -> None:
        await self.send_json(await socket_db(self.snapshot)())

    def snapshot(self) -> dict:
        # Read afresh: the status may have changed since this socket loaded its agent (the
        # sweep may have taken it offline while the socket connected or was stale).
        self.agent = Agent.objects.select_related("user").get(pk=self.agent.pk)
        return dispatch_services.agent_snapshot(agent=self.agent)

    def heartbeat(self) -> tuple[presence.Heartbeat, presence.Holding | None]:
        beat = presence.agent_heartbeat(agent=self.agent, channel_name=self.channel_name)
        if beat is presence.Heartbeat.REFUSED:
            return beat, None
        return beat, presence.agent_holding(agent=self.agent)

    async def on_heartbeat(self, content: dict) -> None:
        beat, holding = await socket_db(self.heartbeat)()
        if beat is presence.Heartbeat.REFUSED:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.rejoin()
        if beat is presence.Heartbeat.REVIVED:
            # The connection had stopped counting (a frozen tab, a stalled server): the agent
            # may have been taken offline and frames lost meanwhile, so resync as on connect.
            await self.send_hello()
        # Named in the answer, so that a client can tell it missed an offer or a ticket's
        # frame and read its state again (the portal does, over HTTP).
        await self.send_json(
            {"type": "heartbeat.ack", "offers": holding.offers, "tickets": holding.tickets}
        )

    async def on_status_set(self, content: dict) -> None:
        status = content.get("status")
        if status not in Agent.Status.values:
            await self.send_error(f"Unknown status: {status!r}.")
            return
        await socket_db(services.agent_set_status)(agent=self.agent, status=status)

    async def _offer_action(self, content: dict, action) -> None:
        try:
            offer_id = uuid.UUID(str(content.get("offer_id")))
        except ValueError:
            await self.send_error("offer_id must be an offer's id.")
            return
        try:
            await socket_db(action)(offer_id=offer_id)
        except Conflict as exc:
            await self.send_error(str(exc))
        except dispatch_services.OfferDoesNotExist:
            await self.send_error("No such offer.")

    async def on_offer_accept(self, content: dict) -> None:
        await self._offer_action(
            content,
            lambda offer_id: dispatch_services.offer_accept(offer_id=offer_id, agent=self.agent),
        )

    async def on_offer_decline(self, content: dict) -> None:
        reason = content.get("reason") or ""
        if not isinstance(reason, str) or len(reason) > 500:
            await self.send_error("reason must be text of at most 500 characters.")
            return
        if "\x00" in reason:
            # PostgreSQL text cannot hold NUL; the REST decline refuses it the same way.
            await self.send_error("reason must not contain NUL characters.")
            return
        await self._offer_action(
            content,
            lambda offer_id: dispatch_services.offer_decline(
                offer_id=offer_id, agent=self.agent, reason=reason
            ),
        )

    handlers = {
        "heartbeat": on_heartbeat,
        "status.set": on_status_set,
        "offer.accept": on_offer_accept,
        "offer.decline": on_offer_decline,
    }

    async def agent_event(self, event: dict) -> None:
        """A frame pushed to the agent's group by a service (see agents.push)."""
        await self.send_json(event["payload"])

    async def agent_close(self, event: dict) -> None:
        """The account was suspended (agents.services.agent_suspend): close as a socket of a
        user who is not an active agent is closed on connect."""
        await self.close(code=CLOSE_FORBIDDEN)


class BoardConsumer(FrameConsumer):
    """The coordinators' live board: staff only. Every ticket transition (`ticket.event`) and
    every agent status (`agent.status`) and presence (`agent.presence`) change arrives as a small
    frame; the board loads its state over HTTP and again after a reconnect, since frames only
    keep it current. A client sends `heartbeat` (answered with `heartbeat.ack`) at least every
    few minutes to stay in the group."""

    async def authorize(self, user) -> str | None:
        return BOARD_GROUP if user.is_active and user.is_staff else None

    async def on_heartbeat(self, content: dict) -> None:
        await self.rejoin()
        await self.send_json({"type": "heartbeat.ack"})

    handlers = {"heartbeat": on_heartbeat}

    async def board_event(self, event: dict) -> None:
        """A frame pushed to the coordinators' group by a service (see agents.push)."""
        await self.send_json(event["payload"])
