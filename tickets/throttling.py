"""Rate limits (DRF throttles, counted in the shared cache): each bot integration at its own
`requests_per_minute`, and token log-ins per client address.

Both fail open: when the cache (Redis) cannot be reached the request is let through and the
failure logged, because refusing a customer's escalation is worse than an uncounted request.
"""

import logging

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from .models import BotIntegration

logger = logging.getLogger(__name__)


class FailOpenRateThrottle(SimpleRateThrottle):
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError:
            logger.warning("Rate limit %s not checked: the cache is unreachable", self.scope)
            return True


class BotIntegrationRateThrottle(FailOpenRateThrottle):
    """Each bot integration may make its `requests_per_minute` requests in any minute."""

    scope = "bot"

    def __init__(self) -> None:
        # The rate is the integration's own, known only once the request is authenticated.
        pass

    def allow_request(self, request, view) -> bool:
        if not isinstance(request.auth, BotIntegration):
            return True
        self.rate = f"{request.auth.requests_per_minute}/minute"
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class TokenLoginRateThrottle(FailOpenRateThrottle):
    """A few token log-ins a minute from one client address (AUTH_TOKEN_LOGIN_RATE, 10 a
    minute by default), against password guessing."""

    scope = "auth_token"
    rate = settings.AUTH_TOKEN_LOGIN_RATE

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def get_ident(self, request) -> str:
        # DRF trusts X-Forwarded-For when NUM_PROXIES is unset, so any client could pick a
        # fresh bucket per request; the header counts only behind a configured proxy count.
        if api_settings.NUM_PROXIES is None:
            return request.META.get("REMOTE_ADDR", "")
        return super().get_ident(request)
