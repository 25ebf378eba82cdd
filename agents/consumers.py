"""The agent websocket (`/ws/agent/`): authenticate, join the agent's group, forward frames."""

import uuid

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dispatch import services as dispatch_services
from tickets.exceptions import Conflict

from . import services
from .models import Agent
from .push import agent_group

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_AN_AGENT = 4403


@database_sync_to_async
def active_agent_of(user) -> Agent | None:
    if not user.is_authenticated:
        return None
    agent = Agent.objects.filter(user=user).select_related("user").first()
    if agent is None or agent.account_state != Agent.AccountState.ACTIVE or not user.is_active:
        return None
    return agent


class AgentConsumer(AsyncJsonWebsocketConsumer):
    agent: Agent | None = None

    async def connect(self) -> None:
        # Accept first and close with an application code, so a client can tell "log in
        # again" (4401) from "you are not allowed" (4403); a refused handshake cannot.
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.agent = await active_agent_of(user)
        if self.agent is None:
            await self.close(code=CLOSE_NOT_AN_AGENT)
            return
        await self.channel_layer.group_add(agent_group(self.agent.pk), self.channel_name)
        await database_sync_to_async(services.agent_connect)(
            agent=self.agent, channel_name=self.channel_name
        )
        await self.send_json(
            await database_sync_to_async(dispatch_services.agent_snapshot)(agent=self.agent)
        )

    async def disconnect(self, code: int) -> None:
        if self.agent is None:
            return
        await self.channel_layer.group_discard(agent_group(self.agent.pk), self.channel_name)
        await database_sync_to_async(services.agent_disconnect)(channel_name=self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        # A frame that is not JSON text is the client's mistake: answer it with an error
        # instead of letting the decoder's exception tear the socket down.
        try:
            content = await self.decode_json(text_data or "")
        except ValueError:
            if self.agent is not None:
                await self.send_error("Frames must be JSON text.")
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs) -> None:
        if self.agent is None:
            return
        kind = content.get("type") if isinstance(content, dict) else None
        handler = self.handlers.get(kind)
        if handler is None:
            await self.send_error(f"Unknown frame type: {kind!r}.")
            return
        await handler(self, content)

    async def send_error(self, detail: str) -> None:
        await self.send_json({"type": "error", "detail": detail})

    async def on_heartbeat(self, content: dict) -> None:
        await database_sync_to_async(services.agent_heartbeat)(
            agent=self.agent, channel_name=self.channel_name
        )
        await self.send_json({"type": "heartbeat.ack"})

    async def on_status_set(self, content: dict) -> None:
        status = content.get("status")
        if status not in Agent.Status.values:
            await self.send_error(f"Unknown status: {status!r}.")
            return
        await database_sync_to_async(services.agent_set_status)(agent=self.agent, status=status)

    async def _offer_action(self, content: dict, action) -> None:
        try:
            offer_id = uuid.UUID(str(content.get("offer_id")))
        except ValueError:
            await self.send_error("offer_id must be an offer's id.")
            return
        try:
            await database_sync_to_async(action)(offer_id=offer_id)
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
