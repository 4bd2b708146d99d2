"""Who may reach the operations admin (``/admin/``), checked before anything else
looks at the request:

- **Networks.** Only clients inside ``ADMIN_ALLOWED_NETWORKS`` (CIDRs; default
  loopback, which is where ``kubectl port-forward`` and a local run come from)
  reach it; anyone else gets the same 404 as a path that does not exist, so the
  admin cannot be found from outside, let alone guessed at. The client address is
  the API's (``broker.api.throttling.client_ip``: the peer, or with
  ``TRUSTED_PROXY_COUNT`` the entry the trusted proxy wrote).
- **Login attempts.** POSTs to the admin login are counted per client address
  (``ADMIN_LOGIN_IP_RATE``) and per username (``ADMIN_LOGIN_USERNAME_RATE``) in
  Redis, successful or not: 429 with Retry-After beyond either. If Redis does not
  answer, admin logins are refused (503): without the counters every attempt
  would be an unlimited password guess at a staff account.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from broker.api.errors import not_found_view
from broker.api.throttling import (
    client_ip,
    ip_ident,
    parse_rate,
    sliding_window_hits,
    username_ident,
)

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Retry-After of a login refused because the counters are unreachable.
UNAVAILABLE_RETRY_SECONDS = 5


def parse_networks(values: list[str] | tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) as networks; raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


@functools.cache
def _allowed_networks(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return parse_networks(values)


def admin_client_allowed(address: str) -> bool:
    """True if ``address`` is inside ``ADMIN_ALLOWED_NETWORKS``. An address that
    does not parse (no peer address) is outside."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    networks = _allowed_networks(tuple(settings.ADMIN_ALLOWED_NETWORKS))
    return any(parsed in network for network in networks)


def admin_login_wait(*, address: str, username: str) -> float | None:
    """Count one admin login attempt: None if within both rates, else the seconds
    until one more would be. Raises redis.RedisError if Redis does not answer."""
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    checks = []
    for scope, rate, ident in (
        ("admin-login-ip", settings.ADMIN_LOGIN_IP_RATE, ip_ident(address)),
        (
            "admin-login-user",
            settings.ADMIN_LOGIN_USERNAME_RATE,
            username_ident(username),
        ),
    ):
        limit, window = parse_rate(rate)
        checks.append((f"{prefix}:throttle:{scope}:{ident}", limit, window))
    return sliding_window_hits(checks)


class AdminAccessMiddleware:
    """Refuses ``/admin/`` outside the allowed networks (404) and throttles its
    login (429; 503 while Redis is down). Place it before anything that answers
    admin paths (CommonMiddleware's slash redirect would reveal the admin)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    @functools.cached_property
    def _prefix(self) -> str:
        return reverse("admin:index")

    @functools.cached_property
    def _login_path(self) -> str:
        return reverse("admin:login")

    def __call__(self, request: HttpRequest):
        path = request.path_info
        if path != self._prefix.rstrip("/") and not path.startswith(self._prefix):
            return self.get_response(request)
        address = client_ip(request)
        if not admin_client_allowed(address):
            logger.info(
                "admin refused: client=%s outside ADMIN_ALLOWED_NETWORKS", address
            )
            return not_found_view(request)
        if request.method == "POST" and path == self._login_path:
            refused = self._throttle_login(request, address)
            if refused is not None:
                return refused
        return self.get_response(request)

    def _throttle_login(self, request: HttpRequest, address: str):
        username = str(request.POST.get("username", ""))[:256]
        try:
            wait = admin_login_wait(address=address, username=username)
        except redis.RedisError as exc:
            logger.warning("throttle store unavailable, refusing admin login: %r", exc)
            response = HttpResponse(
                "Admin logins are paused while the rate limiter is unavailable.",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
            return response
        if wait is None:
            return None
        seconds = max(1, math.ceil(wait))
        logger.warning(
            "admin login throttled: client=%s retry_after=%s", address, seconds
        )
        response = HttpResponse(
            f"Too many login attempts; retry in {seconds} s.",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(seconds)
        return response
