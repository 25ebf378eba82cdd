from django.urls import path

from .consumers import AgentConsumer, BoardConsumer

websocket_urlpatterns = [
    path("ws/agent/", AgentConsumer.as_asgi()),
    path("ws/board/", BoardConsumer.as_asgi()),
]
