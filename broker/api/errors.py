"""One error shape everywhere: RFC 9457 problem details with a stable ``code``."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from broker.api.throttling import ThrottleUnavailable
from broker.errors import BrokerError

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_BASE = "https://errors.broker.example/"


_DRF_CODES = {
    ThrottleUnavailable: ("throttle_unavailable", "Service temporarily unavailable"),
    exceptions.ValidationError: ("invalid_request", "Invalid request"),
    exceptions.ParseError: ("malformed_request", "Malformed request"),
    exceptions.NotAuthenticated: ("not_authenticated", "Authentication required"),
    exceptions.AuthenticationFailed: ("authentication_failed", "Invalid credentials"),
    exceptions.PermissionDenied: ("permission_denied", "Permission denied"),
    exceptions.NotFound: ("not_found", "Not found"),
    exceptions.MethodNotAllowed: ("method_not_allowed", "Method not allowed"),
    exceptions.NotAcceptable: ("not_acceptable", "Not acceptable"),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", "Unsupported media"),
    exceptions.Throttled: ("throttled", "Too many requests"),
}


def problem(
    *, status_code: int, code: str, title: str, detail: str, **extra: object
) -> dict:
    body = {
        "type": _TYPE_BASE + code,
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return body


def problem_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF exception handler: BrokerError and every DRF APIException become problem
    details; anything else is a real server error and propagates."""
    if isinstance(exc, BrokerError):
        extra = dict(exc.extra)
        field = extra.pop("field", None)
        if field:
            extra["errors"] = {field: [exc.detail]}
        body = problem(
            status_code=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            **extra,
        )
        return Response(body, status=exc.status, content_type=PROBLEM_CONTENT_TYPE)

    if isinstance(exc, (OperationalError, InterfaceError)):
        # PostgreSQL unreachable or restarting: nothing was written (the request's
        # transaction is gone with the connection); the client may retry, with
        # the same Idempotency-Key.
        logger.warning("database unavailable: %s", exc)
        set_rollback()
        body = problem(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            code="database_unavailable",
            title="Service temporarily unavailable",
            detail="the database is unavailable; retry shortly",
        )
        return Response(
            body,
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            content_type=PROBLEM_CONTENT_TYPE,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    code, title = "error", "Request refused"
    for klass, (known_code, known_title) in _DRF_CODES.items():
        if isinstance(exc, klass):
            code, title = known_code, known_title
            break
    extra: dict[str, object] = {}
    if isinstance(exc, exceptions.ValidationError):
        errors = (
            exc.detail
            if isinstance(exc.detail, dict)
            else {"non_field_errors": exc.detail}
        )
        extra["errors"] = errors
        detail = "one or more fields are invalid"
    else:
        detail = str(getattr(exc, "detail", title))
    response.data = problem(
        status_code=response.status_code,
        code=code,
        title=title,
        detail=detail,
        **extra,
    )
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def _plain_problem(request, status_code: int, code: str, title: str) -> JsonResponse:
    return JsonResponse(
        problem(status_code=status_code, code=code, title=title, detail=title),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def not_found_view(request, exception=None) -> JsonResponse:
    return _plain_problem(request, status.HTTP_404_NOT_FOUND, "not_found", "Not found")


def server_error_view(request) -> JsonResponse:
    return _plain_problem(
        request, status.HTTP_500_INTERNAL_SERVER_ERROR, "server_error", "Server error"
    )


def bad_request_view(request, exception=None) -> JsonResponse:
    return _plain_problem(
        request, status.HTTP_400_BAD_REQUEST, "bad_request", "Bad request"
    )
