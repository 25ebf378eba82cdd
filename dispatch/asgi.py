import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dispatch.settings.base")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents.middleware import OriginValidator, TokenAuthMiddleware  # noqa: E402
from agents.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginValidator(
            AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)

# What start-up loaded lives as long as the process: frozen out of the collector's reach, so a
# full collection walks only what came after (with 1,000 sockets open, ~230,000 objects and a
# 160-180 ms pause of every socket).
gc.freeze()
# Python collects its youngest generation every 700 net new objects: several times within one
# request at 20 escalations/s, so the objects of requests in flight were promoted, ~9,000 a
# second, and a full collection followed every 6-8 s. Every 10,000, a request's objects are
# mostly gone by the next collection; see the README's performance section for the measure.
GC_THRESHOLDS = (10_000, 10, 10)
gc.set_threshold(*GC_THRESHOLDS)
