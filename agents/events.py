"""The agent payloads pushed to browsers (agents' own and the coordinators' board) and returned
by the agent API."""

from .models import Agent


def agent_profile(agent: Agent) -> dict:
    return {
        "username": agent.user.get_username(),
        "display_name": agent.display_name,
        "status": agent.status,
        "languages": agent.language_codes,
        "skills": sorted(skill.slug for skill in agent.skills.all()),
        "capacity": agent.capacity,
        "active_tickets": agent.tickets.filter(status="assigned").count(),
    }


def status_frame(agent: Agent) -> dict:
    return {"type": "status", "status": agent.status}


def agent_status_board_frame(agent: Agent) -> dict:
    """The coordinators' board frame for an agent's status change."""
    return {
        "type": "agent.status",
        "agent_id": str(agent.pk),
        "display_name": agent.display_name,
        "status": agent.status,
    }


def agent_presence_board_frame(agent: Agent, *, connections: int) -> dict:
    """The coordinators' board frame for a change in an agent's live connections: `connections`
    counts only those that still count (fresh heartbeat); `last_seen_at` is when the agent last
    counted as present, so with 0 connections the board can tell how long it has been gone."""
    return {
        "type": "agent.presence",
        "agent_id": str(agent.pk),
        "display_name": agent.display_name,
        "connections": connections,
        "last_seen_at": agent.last_seen_at.isoformat() if agent.last_seen_at else None,
    }
