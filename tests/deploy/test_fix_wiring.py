"""The executors' FIX order entry, as deployed (docs/FIX.md): every executor
connects to a FIX acceptor that is really served where it looks — the simulator's
`fix` port through its Service (k8s local) or its service name (compose), the real
venue's address in prod, open for egress — with the CompIDs and the Logon
credentials the acceptor expects, and the credentials reach the executors only,
from a Secret.

EXCHANGE_FIX_HOST / EXCHANGE_FIX_PORT mean "connect to" for an executor and "bind"
for exchange_mock: each reads its own (the simulator's from its own environment,
never from what the roles share)."""

from __future__ import annotations

import pytest

from exchange_mock.config import Config, is_loopback
from tests.deploy.netpol import selects
from tests.deploy.project import (
    OVERLAYS,
    app_workloads,
    by_kind,
    compose_app_services,
    compose_argv,
    compose_env,
    config_map_data,
    containers,
    overlay,
    pod_labels,
    pod_spec,
    resolved_env,
    role_of,
    secret_ref,
    workloads,
)

# The Logon credentials, as the executor and the simulator read them.
EXECUTOR_CREDENTIALS = ("FIX_USERNAME", "FIX_PASSWORD")
SIMULATOR_CREDENTIALS = ("EXCHANGE_FIX_USERNAME", "EXCHANGE_FIX_PASSWORD")
# The shared settings every role loads (k8s) / the roles' shared environment.
SHARED_CONFIG = "broker-config"
SHARED_SECRET = "broker-secrets"
# broker/settings/base.py's defaults.
DEFAULT_TARGET_COMP_ID = "EXCHANGE"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# k8s/base/exchange-mock.yaml's Service (the prod overlay deletes it).
SIMULATOR_SERVICE = "exchange-mock"


def executor_container(resources: list[dict]) -> dict:
    (container,) = containers(app_workloads(resources)["executor"], init=False)
    return container


def simulator(resources: list[dict]) -> tuple[dict, dict[str, str]] | None:
    """The simulator's container and its environment (Secrets resolved)."""
    workload = app_workloads(resources).get("exchange-mock")
    if workload is None:
        return None
    (container,) = containers(workload)
    env = {k: v for k, v in resolved_env(resources, container).items() if v}
    return container, env


def service_target(resources: list[dict], host: str, port: int) -> tuple[dict, dict]:
    """The workload and container port a Service's port leads to."""
    services = by_kind(resources, "Service")
    assert host in services, f"EXCHANGE_FIX_HOST={host}: no such Service"
    service = services[host]
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    (workload,) = [
        w
        for w in workloads(resources)
        if selects({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
    ]
    target = service_port.get("targetPort", port)
    (container_port,) = [
        p
        for c in containers(workload, init=False)
        for p in c.get("ports", [])
        if target in (p.get("name"), p["containerPort"])
    ]
    return workload, container_port


# --- Kubernetes


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_executor_connects_to_a_fix_port_that_is_served(name):
    resources = overlay(name)
    env = resolved_env(resources, executor_container(resources))
    host, port = env.get("EXCHANGE_FIX_HOST"), env.get("EXCHANGE_FIX_PORT")
    assert host and port, "the executors would try 127.0.0.1:8101 (the default)"
    assert host not in LOOPBACK_NAMES
    port = int(port)
    found = simulator(resources)
    if found is None:  # prod: the real venue, open for egress on that port
        assert host != SIMULATOR_SERVICE, "the simulator is not deployed here"
        assert host not in by_kind(resources, "Service"), host
        egress = by_kind(resources, "NetworkPolicy")["allow-exchange-egress"]
        assert selects(
            egress["spec"]["podSelector"],
            pod_labels(app_workloads(resources)["executor"]),
        )
        allowed = [p["port"] for r in egress["spec"]["egress"] for p in r["ports"]]
        assert port in allowed, "the venue's FIX port is open for egress"
        return
    # local: the Service leads to the simulator's `fix` port, where it listens
    # on every interface of its pod, as the acceptor the executors name.
    workload, container_port = service_target(resources, host, port)
    assert pod_labels(workload)["app.kubernetes.io/component"] == "exchange-mock"
    assert container_port.get("name") == "fix"
    _, mock_env = found
    acceptor = Config.from_env(mock_env)
    assert acceptor.fix_port == container_port["containerPort"]
    assert acceptor.fix_host == "0.0.0.0", "bound on every interface of the pod"
    target = env.get("FIX_TARGET_COMP_ID") or DEFAULT_TARGET_COMP_ID
    assert acceptor.fix_comp_id == target


def test_the_simulator_never_loads_the_roles_shared_config():
    """broker-config's EXCHANGE_FIX_HOST/PORT say where the executors connect:
    loaded into the simulator they would say where to bind (and its own env would
    be all that stands between it and listening on the Service's name)."""
    container, _ = simulator(overlay("local"))
    for source in container.get("envFrom", []):
        assert source.get("configMapRef", {}).get("name") != SHARED_CONFIG
        assert source.get("secretRef", {}).get("name") != SHARED_SECRET


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_fix_identity_is_shared_by_every_role(name):
    """The SenderCompID prefix names the sessions for the executors and for the
    command run in an api pod (fix_reset): one value, in the ConfigMap every
    role loads, never only in the executors' env."""
    config = config_map_data(overlay(name))
    assert config.get("FIX_SENDER_COMP_ID")
    assert config.get("FIX_TARGET_COMP_ID")
    for component, workload in app_workloads(overlay(name)).items():
        for container in containers(workload):
            names = {item["name"] for item in container.get("env", [])}
            assert not names & {"FIX_SENDER_COMP_ID", "FIX_TARGET_COMP_ID"}, component


@pytest.mark.parametrize("name", OVERLAYS)
def test_fix_credentials_come_from_a_secret_to_the_executors_only(name):
    resources = overlay(name)
    config = config_map_data(resources)
    credentials = EXECUTOR_CREDENTIALS + SIMULATOR_CREDENTIALS
    assert not set(config) & set(credentials), "credentials in the ConfigMap"
    refs: dict[str, set[tuple[str, str]]] = {}
    for component, workload in app_workloads(resources).items():
        for container in containers(workload):
            for item in container.get("env", []):
                if item["name"] in credentials:
                    assert "value" not in item, (component, item["name"])
                    ref = secret_ref(item)
                    assert ref is not None, (component, item["name"])
                    refs.setdefault(component, set()).add(ref)
    executor = executor_container(resources)
    by_name = {item["name"]: item for item in executor.get("env", [])}
    for variable in EXECUTOR_CREDENTIALS:
        ref = by_name[variable]["valueFrom"]["secretKeyRef"]
        # A venue without credentials needs no Secret (prod holds none).
        assert ref.get("optional") is True, variable
        # Not the Secret every role loads whole (envFrom).
        assert ref["name"] != SHARED_SECRET, variable
    assert set(refs) <= {"executor", "exchange-mock"}, refs
    # Its init container (migrate --check) needs no Logon.
    for init in pod_spec(app_workloads(resources)["executor"]).get(
        "initContainers", []
    ):
        assert not {i["name"] for i in init.get("env", [])} & set(credentials)
    # Nobody else loads the credentials' Secret whole.
    credential_secrets = {name for refs_ in refs.values() for name, _ in refs_}
    for component, workload in app_workloads(resources).items():
        for container in containers(workload):
            for source in container.get("envFrom", []):
                loaded = source.get("secretRef", {}).get("name")
                assert loaded not in credential_secrets, (component, loaded)


def test_the_local_simulator_accepts_the_executors_logon():
    """The simulator asks for credentials (it listens beyond loopback) and the
    executors send the very ones it asks for: the same Secret's keys."""
    resources = overlay("local")
    env = resolved_env(resources, executor_container(resources))
    _, mock_env = simulator(resources)
    acceptor = Config.from_env(mock_env)
    assert acceptor.fix_username and acceptor.fix_password
    assert (env.get("FIX_USERNAME"), env.get("FIX_PASSWORD")) == (
        acceptor.fix_username,
        acceptor.fix_password,
    )


# --- docker-compose.yml


def compose_roles() -> dict[str, list[tuple[str, dict]]]:
    found: dict[str, list[tuple[str, dict]]] = {}
    for service_name, service in compose_app_services().items():
        found.setdefault(role_of(compose_argv(service)), []).append(
            (service_name, service)
        )
    return found


def test_compose_executors_connect_to_the_simulators_fix_port():
    ((mock_name, mock),) = compose_roles()["exchange_mock"]
    acceptor = Config.from_env(compose_env(mock))
    assert not is_loopback(acceptor.fix_host), "reachable from the other containers"
    exposed = [str(p).split("/")[0] for p in mock.get("expose", [])]
    assert str(acceptor.fix_port) in exposed, "the FIX port is exposed"
    executors = compose_roles()["executor"]
    assert executors
    for service_name, service in executors:
        env = compose_env(service)
        assert env.get("EXCHANGE_FIX_HOST") == mock_name, service_name
        assert int(env["EXCHANGE_FIX_PORT"]) == acceptor.fix_port, service_name
        target = env.get("FIX_TARGET_COMP_ID") or DEFAULT_TARGET_COMP_ID
        assert target == acceptor.fix_comp_id, service_name
        assert (env.get("FIX_USERNAME") or None) == acceptor.fix_username
        assert (env.get("FIX_PASSWORD") or None) == acceptor.fix_password
        depends = service.get("depends_on") or {}
        assert depends.get(mock_name, {}).get("condition") == "service_healthy"


def test_compose_fix_identity_is_one_and_credentials_go_to_the_executors_only():
    senders = set()
    for role, services in compose_roles().items():
        for service_name, service in services:
            env = compose_env(service)
            if role == "exchange_mock":
                continue
            senders.add(env.get("FIX_SENDER_COMP_ID"))
            if role != "executor":
                assert not set(env) & set(EXECUTOR_CREDENTIALS), service_name
                # The bind/connect names mean nothing to the other roles.
                assert "EXCHANGE_FIX_HOST" not in env, service_name
    assert len(senders) == 1, f"one SenderCompID prefix for every role: {senders}"
