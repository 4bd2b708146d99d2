"""Per-customer and per-IP rate limits, counted in Redis (the default cache) so all
api processes share them. Rates are read from settings at request time.

If Redis is unreachable the request is let through (and logged): an outage of the
rate limiter must not become an outage of trading.
"""

from __future__ import annotations

import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class _FailOpenThrottle(SimpleRateThrottle):
    setting_name = ""

    def get_rate(self) -> str:
        return getattr(settings, self.setting_name)

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # redis.ConnectionError, TimeoutError, ...
            logger.warning("throttle store unavailable, allowing request: %r", exc)
            return True


class CustomerRateThrottle(_FailOpenThrottle):
    scope = "customer"
    setting_name = "THROTTLE_CUSTOMER_RATE"

    def get_cache_key(self, request, view) -> str | None:
        if request.user is None or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class IpRateThrottle(_FailOpenThrottle):
    scope = "ip"
    setting_name = "THROTTLE_IP_RATE"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {
            "scope": self.scope,
            "ident": self.get_ident(request),
        }


class LoginRateThrottle(_FailOpenThrottle):
    """Password guessing gets its own, much lower, per-IP budget."""

    scope = "login"
    setting_name = "THROTTLE_LOGIN_RATE"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {
            "scope": self.scope,
            "ident": self.get_ident(request),
        }
