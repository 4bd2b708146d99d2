"""Who can reach an admin, as deployed: no ingress routes the broker's /admin/
(operators port-forward; the api refuses it outside ADMIN_ALLOWED_NETWORKS), and
every exchange_mock that listens beyond loopback has an admin token and starts
with the configuration it is given, its quotes port where the api looks."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from exchange_mock.config import Config, is_loopback
from tests.deploy.project import (
    OVERLAYS,
    app_workloads,
    by_kind,
    compose_app_services,
    compose_argv,
    compose_env,
    config_map_data,
    container_env,
    containers,
    overlay,
    role_of,
)


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_ingress_routes_the_admin(name):
    for ingress_name, ingress in by_kind(overlay(name), "Ingress").items():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert not path["path"].startswith("/admin"), (ingress_name, path)


def secret_values(resources: list[dict]) -> dict[tuple[str, str], str]:
    return {
        (secret_name, key): value
        for secret_name, secret in by_kind(resources, "Secret").items()
        for key, value in secret.get("stringData", {}).items()
    }


def exchange_mock_env(resources: list[dict], container: dict) -> dict[str, str]:
    """The container's environment with its Secret references resolved from the
    overlay's Secrets (a missing one stays missing)."""
    env = {k: v for k, v in container_env(resources, container).items() if v}
    secrets = secret_values(resources)
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref and (ref["name"], ref["key"]) in secrets:
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
    return env


def exchange_mock_deployments() -> list[tuple[str, dict[str, str]]]:
    found = [
        (f"compose:{service_name}", compose_env(service))
        for service_name, service in compose_app_services().items()
        if role_of(compose_argv(service)) == "exchange_mock"
    ]
    for name in OVERLAYS:
        resources = overlay(name)
        workload = app_workloads(resources).get("exchange-mock")
        if workload is None:
            continue
        for container in containers(workload):
            found.append((f"k8s:{name}", exchange_mock_env(resources, container)))
    return found


def test_exchange_mock_is_deployed_somewhere_to_check():
    assert {where for where, _ in exchange_mock_deployments()} >= {"k8s:local"}


@pytest.mark.parametrize(("where", "env"), exchange_mock_deployments())
def test_an_exchange_mock_beyond_loopback_guards_its_admin_routes(where, env):
    config = Config.from_env(env)  # it starts with what it is given
    if not is_loopback(config.host):
        assert config.admin_token, f"{where}: /admin/* open to the network"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_api_asks_for_quotes_where_only_market_data_is_served(name):
    resources = overlay(name)
    config = config_map_data(resources)
    quotes = urlsplit(config["EXCHANGE_QUOTES_URL"])
    orders = urlsplit(config["EXCHANGE_URL"])
    workload = app_workloads(resources).get("exchange-mock")
    if workload is None:  # prod: the real exchange's market-data address
        assert quotes.hostname not in ("exchange-mock", "localhost", "127.0.0.1")
        return
    (container,) = containers(workload)
    env = exchange_mock_env(resources, container)
    exchange = Config.from_env(env)
    assert quotes.hostname == orders.hostname == "exchange-mock"
    assert (orders.port, quotes.port) == (exchange.port, exchange.quotes_port)
    service = by_kind(resources, "Service")["exchange-mock"]
    assert quotes.port in [p["port"] for p in service["spec"]["ports"]]
