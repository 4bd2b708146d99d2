"""Production: every address and secret must come from the environment."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

_REQUIRED = (
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "ZOOKEEPER_HOSTS",
    "REDIS_URL",
    "EXCHANGE_URL",
    "DJANGO_ALLOWED_HOSTS",
)
_missing = [name for name in _REQUIRED if not env.str(name, default="")]
if _missing:
    raise ImproperlyConfigured(f"missing environment variables: {', '.join(_missing)}")

DEBUG = False
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

# TLS ends at the ingress; it tells us the original scheme.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
