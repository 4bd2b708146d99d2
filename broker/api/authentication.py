from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from broker.models import ApiToken
from broker.services.tokens import token_hash


class BearerTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>``; the token belongs to a customer's user and
    is looked up by its hash."""

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
        record = (
            # The customer too: every customer endpoint needs it next.
            ApiToken.objects.select_related("user", "user__customer")
            .filter(key_hash=token_hash(token), revoked_at__isnull=True)
            .first()
        )
        if record is None or not record.user.is_active:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        return record.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "broker.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
