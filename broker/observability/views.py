"""The api's own health and metrics endpoints (outside DRF: no auth, no throttle)."""

from __future__ import annotations

import logging
import os

from django.db import connection
from django.http import HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

logger = logging.getLogger(__name__)


def healthz(request) -> JsonResponse:
    """Live: the process answers."""
    return JsonResponse({"status": "ok"})


def readyz(request) -> JsonResponse:
    """Ready: the database answers (every api request needs it)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        # The reason goes to the log, not to whoever can reach the probe.
        logger.warning("readiness: database unavailable", exc_info=True)
        return JsonResponse({"status": "unavailable", "database": "down"}, status=503)
    return JsonResponse({"status": "ok"})


def metrics(request) -> HttpResponse:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
