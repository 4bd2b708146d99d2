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


@pytest.mark.django_db
def test_readiness_fails_without_the_database_and_keeps_the_reason_to_the_log(
    monkeypatch, caplog
):
    from django.db import OperationalError, connection

    def refuse():
        raise OperationalError("connection to server failed: password=hunter2")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = Client(HTTP_HOST="10.1.2.3:8000").get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "down"}
    assert "hunter2" in caplog.text


@pytest.mark.django_db
def test_beat_is_ready_with_redis_alone(django_assert_num_queries):
    """Beat's NetworkPolicy keeps it from PostgreSQL: its readiness must not ask."""
    from broker.management.commands import celery_beat
    from broker.observability.server import celery_broker_ready

    with django_assert_num_queries(0):
        assert celery_broker_ready()
    assert celery_beat.celery_broker_ready is celery_broker_ready
