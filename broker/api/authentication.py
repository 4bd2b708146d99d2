from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from broker.services.tokens import token_use


class BearerTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>``; the token belongs to a customer's user and
    is looked up by its hash. Unknown, revoked and expired tokens are refused
    alike; a token in use has its expiry slid (broker.services.tokens)."""

    keyword = b"bearer"

    def authenticate(self, request) -> tuple[AbstractBaseUser, str] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("malformed token") from exc
        record = token_use(token=token)
        if record is None or not record.user.is_active:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        return record.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "broker.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
