"""The freelancer portal's pages."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from .models import Agent


@login_required
def home(request):
    agent = Agent.objects.filter(user=request.user, account_state=Agent.AccountState.ACTIVE).first()
    if agent is None:
        return render(request, "agents/not_an_agent.html", status=403)
    return render(
        request,
        "agents/portal.html",
        {"agent": agent, "server_time_ms": round(timezone.now().timestamp() * 1000)},
    )
