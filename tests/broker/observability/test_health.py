import pytest
from django.test import Client


@pytest.mark.django_db
def test_health_endpoints_answer_whatever_the_host_header():
    """Probes and Prometheus address a pod by its IP, not an allowed host name."""
    client = Client(HTTP_HOST="10.1.2.3:8000")
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics["Content-Type"].startswith("text/plain")
    # Everything else still checks the host.
    assert client.get("/api/v1/account").status_code == 400
