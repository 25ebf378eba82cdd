"""The freelancer portal's pages."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from .models import Agent


@login_required
def home(request):
    agent = Agent.objects.filter(user=request.user, account_state=Agent.AccountState.ACTIVE).first()
    return render(request, "agents/portal.html", {"agent": agent})
