from django.urls import path

from . import apis

urlpatterns = [
    path("escalations/", apis.EscalationCreateApi.as_view(), name="escalation-create"),
    path("tickets/<str:ticket_id>/", apis.TicketDetailApi.as_view(), name="ticket-detail"),
    path(
        "tickets/<str:ticket_id>/messages/",
        apis.TicketMessagesApi.as_view(),
        name="ticket-messages",
    ),
    path("tickets/<str:ticket_id>/cancel/", apis.TicketCancelApi.as_view(), name="ticket-cancel"),
    path("tickets/<str:ticket_id>/csat/", apis.TicketCsatApi.as_view(), name="ticket-csat"),
]
