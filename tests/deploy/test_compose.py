"""docker-compose.yml: valid against the Compose Specification's schema (vendored,
offline), and every role wired as the project runs it."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

import jsonschema
import pytest

from tests.deploy.project import (
    APP_UID,
    LONG_RUNNING_ROLES,
    SCHEMAS,
    compose,
    compose_app_services,
    compose_argv,
    compose_env,
    dockerfile_stages,
    manage_commands,
    required_production_env,
    role_of,
)

SCHEMA_FILE = SCHEMAS / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
ENGINES = {"postgres": "postgres:16", "redis": "redis:7"}
# Roles that use the database: they wait for the migrations.
DATABASE_ROLES = {"api", "relay", "executor", "celery_worker"}


def services() -> dict[str, dict]:
    return compose()["services"]


def roles() -> dict[str, list[str]]:
    """role → the app services running it."""
    found: dict[str, list[str]] = {}
    for name, service in compose_app_services().items():
        found.setdefault(role_of(compose_argv(service)), []).append(name)
    return found


def replicas(service: dict) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def test_vendored_schema_is_the_one_we_checked():
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256, "schema changed: review it, update the checksum"


def test_compose_file_is_valid_against_the_compose_spec():
    schema = json.loads(SCHEMA_FILE.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(
        validator_class(schema).iter_errors(compose()), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
    )


def test_engines():
    svc = services()
    for name, image in ENGINES.items():
        assert svc[name]["image"] == image
    assert svc["zookeeper"]["image"].startswith("zookeeper:3.9")
    kafka = svc["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = compose_env(kafka)
    assert "controller" in env["KAFKA_PROCESS_ROLES"], "KRaft mode"
    assert "broker" in env["KAFKA_PROCESS_ROLES"]
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["CLUSTER_ID"]


def test_every_app_service_runs_the_one_image():
    app = compose_app_services()
    images = {service["image"] for service in app.values()}
    assert len(images) == 1, images
    for name, service in app.items():
        build = service["build"]
        context = build if isinstance(build, str) else build["context"]
        assert context == ".", name


def test_every_role_is_there_with_its_replicas():
    found = roles()
    assert set(found) == LONG_RUNNING_ROLES | {"migrate"}
    svc = services()
    # Several relays share the outbox; three executor candidates; ONE beat.
    assert sum(replicas(svc[n]) for n in found["relay"]) >= 2
    assert sum(replicas(svc[n]) for n in found["executor"]) >= 3
    assert [replicas(svc[n]) for n in found["celery_beat"]] == [1]
    assert len(found["api"]) == 1
    for argv in (compose_argv(s) for s in compose_app_services().values()):
        if argv[:2] == ["python", "manage.py"]:
            assert role_of(argv) in manage_commands(), argv


def test_executors_have_distinct_names():
    names = [
        compose_env(services()[n]).get("EXECUTOR_NAME") for n in roles()["executor"]
    ]
    assert all(names) and len(set(names)) == len(names), names


def test_production_settings_get_everything_they_require():
    for name, service in compose_app_services().items():
        env = compose_env(service)
        if role_of(compose_argv(service)) == "exchange_mock":
            continue
        assert env["DJANGO_SETTINGS_MODULE"] == "broker.settings.production", name
        for required in required_production_env():
            assert env.get(required), f"{name}: {required} missing"
        assert env.get("LOG_FORMAT") == "json"


def test_addresses_point_at_the_services():
    svc = services()
    for name, service in compose_app_services().items():
        env = compose_env(service)
        if "DATABASE_URL" not in env:
            continue
        for variable, target, port in [
            ("DATABASE_URL", "postgres", 5432),
            ("REDIS_URL", "redis", 6379),
            ("EXCHANGE_URL", "exchange-mock", 8100),
        ]:
            url = urlsplit(env[variable])
            assert (url.hostname, url.port) == (target, port), (name, variable)
            assert target in svc
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["ZOOKEEPER_HOSTS"] == "zookeeper:2181"


def test_api_is_published_and_listens_on_all_interfaces():
    (api,) = (services()[n] for n in roles()["api"])
    env = compose_env(api)
    assert env["API_HOST"] == "0.0.0.0"
    assert f"8000:{env.get('API_PORT', '8000')}" in [str(p) for p in api["ports"]]
    allowed = env["DJANGO_ALLOWED_HOSTS"].split(",")
    assert "localhost" in allowed and "127.0.0.1" in allowed
    # Published with no proxy in front: X-Forwarded-For is the client's own.
    assert env.get("TRUSTED_PROXY_COUNT", "0") == "0"
    for name, service in services().items():
        if name not in roles()["api"]:
            assert "ports" not in service, f"{name} is published"


def test_exchange_mock_listens_on_its_container_and_keeps_its_store():
    (name,) = roles()["exchange_mock"]
    service = services()[name]
    env = compose_env(service)
    assert env["EXCHANGE_HOST"] == "0.0.0.0"
    store_dir = env["EXCHANGE_STORE"].rsplit("/", 1)[0]
    assert any(v.split(":")[1] == store_dir for v in service["volumes"])


def test_beat_schedule_file_is_writable():
    (name,) = roles()["celery_beat"]
    service = services()[name]
    schedule = (
        compose_env(service).get("CELERY_BEAT_SCHEDULE_FILE")
        or next(
            v
            for i in dockerfile_stages()[-1].all("ENV")
            for v in i.split()
            if v.startswith("CELERY_BEAT_SCHEDULE_FILE=")
        ).split("=", 1)[1]
    )
    assert schedule.startswith("/tmp/")
    assert "/tmp" in service["tmpfs"]


def test_app_services_are_locked_down():
    for name, service in compose_app_services().items():
        assert service["user"].split(":")[0] == str(APP_UID), name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_healthchecks_and_start_order():
    svc = services()
    migrate = roles()["migrate"]
    assert svc[migrate[0]]["restart"] == "no"
    for name, service in svc.items():
        if name not in migrate:
            assert "healthcheck" in service, f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in svc, (name, dependency)
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in svc[dependency], (name, dependency)
            elif condition == "service_completed_successfully":
                assert dependency in migrate, (name, dependency)
            else:
                pytest.fail(f"{name} → {dependency}: {condition}")
    for role in DATABASE_ROLES:
        for name in roles()[role]:
            depends = svc[name]["depends_on"]
            assert depends[migrate[0]]["condition"] == (
                "service_completed_successfully"
            ), f"{name} must wait for the migrations"


@pytest.mark.parametrize("role", ["relay", "executor", "api", "celery_worker"])
def test_graceful_stop_gets_time(role):
    for name in roles()[role]:
        grace = services()[name].get("stop_grace_period", "10s")
        assert int(grace.rstrip("s")) >= 30, name


def test_worker_healthchecks_use_the_metrics_port():
    for role in ("relay", "executor", "celery_worker", "celery_beat"):
        for name in roles()[role]:
            service = services()[name]
            port = compose_env(service)["METRICS_PORT"]
            test = " ".join(service["healthcheck"]["test"])
            assert f"127.0.0.1:{port}/" in test, name
            assert "/readyz" in test or "/healthz" in test
