"""The agent payloads pushed to browsers and returned by the agent API."""

from .models import Agent


def agent_profile(agent: Agent) -> dict:
    return {
        "username": agent.user.get_username(),
        "display_name": agent.display_name,
        "status": agent.status,
        "languages": agent.language_codes,
        "skills": sorted(agent_skill.skill.slug for agent_skill in agent.agent_skills.all()),
        "capacity": agent.capacity,
        "active_tickets": agent.tickets.filter(status="assigned").count(),
    }


def status_frame(agent: Agent) -> dict:
    return {"type": "status", "status": agent.status}
