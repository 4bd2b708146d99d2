"""API request metrics. The route label is the URL pattern (``trades/<uuid:...>``),
never the raw path, so label cardinality stays bounded."""

from __future__ import annotations

import time

from broker.observability.metrics import HTTP_LATENCY, HTTP_REQUESTS


class RequestMetricsMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        HTTP_LATENCY.labels(request.method, route).observe(
            time.perf_counter() - started
        )
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


class HealthEndpointsMiddleware:
    """Answer /healthz, /readyz and /metrics before anything looks at the Host
    header: kubelet probes and Prometheus address the pod by its IP, which is not
    (and should not be) in ALLOWED_HOSTS."""

    def __init__(self, get_response) -> None:
        from broker.observability import views

        self.get_response = get_response
        self._endpoints = {
            "/healthz": views.healthz,
            "/readyz": views.readyz,
            "/metrics": views.metrics,
        }

    def __call__(self, request):
        endpoint = self._endpoints.get(request.path_info)
        if endpoint is not None and request.method in ("GET", "HEAD"):
            return endpoint(request)
        return self.get_response(request)
