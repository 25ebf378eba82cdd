from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from .models import BotIntegration


class BotKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <api key>`; request.auth becomes the bot's integration."""

    keyword = "Bearer"

    def authenticate(self, request):
        scheme, _, key = authentication.get_authorization_header(request).partition(b" ")
        if scheme.decode("latin1").lower() != self.keyword.lower():
            return None
        key = key.strip()
        if not key:
            raise exceptions.AuthenticationFailed("The API key is missing.")
        try:
            key_text = key.decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("The API key is not valid.") from exc
        integration = BotIntegration.objects.filter(
            key_hash=BotIntegration.hash_key(key_text), is_active=True
        ).first()
        if integration is None:
            raise exceptions.AuthenticationFailed("The API key is unknown or revoked.")
        return AnonymousUser(), integration

    def authenticate_header(self, request) -> str:
        return self.keyword


class IsBot(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, BotIntegration)


class BotKeyScheme(OpenApiAuthenticationExtension):
    """Describes BotKeyAuthentication in the OpenAPI schema (registered by being defined)."""

    target_class = BotKeyAuthentication
    name = "botKey"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A bot integration's API key: `Authorization: Bearer <api key>`.",
        }
