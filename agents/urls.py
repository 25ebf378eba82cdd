from django.urls import path

from . import apis

urlpatterns = [
    path("auth/token/", apis.AuthTokenApi.as_view(), name="auth-token"),
    path("agent/me/", apis.AgentMeApi.as_view(), name="agent-me"),
    path("agent/status/", apis.AgentStatusApi.as_view(), name="agent-status"),
    path("agent/offers/", apis.AgentOffersApi.as_view(), name="agent-offers"),
    path("offers/<str:offer_id>/accept/", apis.OfferAcceptApi.as_view(), name="offer-accept"),
    path("offers/<str:offer_id>/decline/", apis.OfferDeclineApi.as_view(), name="offer-decline"),
    path("agent/tickets/", apis.AgentTicketsApi.as_view(), name="agent-tickets"),
    path(
        "agent/tickets/<str:ticket_id>/messages/",
        apis.AgentTicketMessagesApi.as_view(),
        name="agent-ticket-messages",
    ),
    path(
        "agent/tickets/<str:ticket_id>/resolve/",
        apis.AgentTicketResolveApi.as_view(),
        name="agent-ticket-resolve",
    ),
    path(
        "agent/tickets/<str:ticket_id>/release/",
        apis.AgentTicketReleaseApi.as_view(),
        name="agent-ticket-release",
    ),
]
