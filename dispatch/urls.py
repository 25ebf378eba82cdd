from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agents import views as portal

from . import ops
from . import views as coordinators

urlpatterns = [
    path("", portal.home, name="portal"),
    path("", include("agents.urls_portal")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tickets.urls")),
    path("api/v1/", include("agents.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("board/", coordinators.board_page, name="board"),
    path("board/figures/", coordinators.board_figures, name="board-figures"),
    path("board/charts/", coordinators.board_charts, name="board-charts"),
    path("board/charts/<slug:chart>.svg", coordinators.board_chart, name="board-chart"),
    path("board/coverage/", coordinators.coverage_page, name="board-coverage"),
]
