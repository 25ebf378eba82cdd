"""The freelancer portal's pages (the workspace itself is the site's root, `portal`)."""

from django.urls import path

from . import views

urlpatterns = [
    path("today/", views.today, name="portal-today"),
    path("history/", views.history, name="portal-history"),
    path("earnings/", views.earnings, name="portal-earnings"),
    path("earnings.csv", views.earnings_csv, name="portal-earnings-csv"),
    path("availability/", views.availability, name="portal-availability"),
    path(
        "availability/<int:window_id>/remove/",
        views.availability_remove,
        name="portal-availability-remove",
    ),
    path("profile/", views.profile, name="portal-profile"),
]
