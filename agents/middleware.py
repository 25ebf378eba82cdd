"""Agent tokens, `Authorization: Token <token>`: one authentication for REST calls and for
websocket handshakes (beside the session cookie).

The tokens are django-rest-knox's: the database keeps only a digest of each, a token is found by
its first characters and then compared in constant time, an expired one is deleted when it is
next presented, and an inactive user's token does not authenticate.
"""

from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator as ChannelsOriginValidator
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from rest_framework import exceptions

from .socket_db import socket_db


class AgentTokenAuthentication(TokenAuthentication):
    """knox's token authentication, refusing a token that is not ASCII with a 401 (knox would
    fail to decode it and answer 500)."""

    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        return super().authenticate_credentials(token)


class AgentTokenScheme(OpenApiAuthenticationExtension):
    """Describes AgentTokenAuthentication in the OpenAPI schema (registered by being defined)."""

    target_class = AgentTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=self.target.authenticate_header(None)
        )


@socket_db
def user_for_token(token: bytes):
    """The user a token authenticates, or None (unknown, expired, or the user is inactive)."""
    try:
        user, _ = AgentTokenAuthentication().authenticate_credentials(token)
    except exceptions.AuthenticationFailed:
        return None
    return user


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from a token header; leaves the session's user otherwise."""

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers", []))
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"token" and token.strip():
            user = await user_for_token(token.strip())
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
