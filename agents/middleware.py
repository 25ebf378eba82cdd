"""Websocket authentication by `Authorization: Token <token>`, beside the session cookie."""

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator as ChannelsOriginValidator
from django.conf import settings
from rest_framework.authtoken.models import Token


@database_sync_to_async
def user_for_token(key: str):
    token = Token.objects.select_related("user").filter(key=key).first()
    # An inactive user's token does not authenticate, as DRF's TokenAuthentication has it.
    if token is None or not token.user.is_active:
        return None
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from a token header; leaves the session's user otherwise."""

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers", []))
        authorization = headers.get(b"authorization", b"").decode("latin1")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() == "token" and key.strip():
            user = await user_for_token(key.strip())
            if user is not None:
                scope = dict(scope, user=user)
        return await super().__call__(scope, receive, send)


class OriginValidator(ChannelsOriginValidator):
    """Browsers must come from an allowed host; clients without an Origin header may connect
    (the contract lets token clients outside a browser omit it)."""

    def __init__(self, application) -> None:
        super().__init__(application, settings.ALLOWED_HOSTS)

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)
