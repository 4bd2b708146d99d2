"""The NetworkPolicies of the overlays, evaluated for every pair of roles and
dependencies (tests/deploy/netpol.py): each role reaches exactly what it uses,
only the api is reachable from outside, Prometheus reaches the metrics ports."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest

from tests.deploy import netpol
from tests.deploy.netpol import External, Pod, connection_allowed
from tests.deploy.project import (
    OVERLAYS,
    app_workloads,
    by_kind,
    config_map_data,
    containers,
    overlay,
    pod_labels,
    workloads,
)

# What each role talks to (DESIGN.md; broker/quotes.py: the api asks the exchange for
# quotes, at its market-data address; broker/ops.py: the admin reads the elections
# from ZooKeeper; docs/FIX.md: the executors send orders over FIX, to the exchange's
# FIX port, and use nothing else of it). The simulator's `http` port (introspection,
# /admin/*) is a dependency of no role: operators port-forward to it.
DEPENDENCIES = {
    "api": {"postgresql", "redis", "exchange-quotes", "zookeeper"},
    "relay": {"postgresql", "kafka"},
    "executor": {"postgresql", "kafka", "zookeeper", "exchange-fix"},
    "celery-worker": {"postgresql", "redis"},
    "celery-beat": {"redis"},
    "migrate": {"postgresql"},
    "exchange-mock": set(),
}
PORTS = {
    "postgresql": 5432,
    "redis": 6379,
    "zookeeper": 2181,
    "kafka": 9092,
}
INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
STRANGER = Pod("default", {"app": "curl"})
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
INTERNET = External("198.51.100.7")


def namespace_of(name: str) -> str:
    (namespace,) = by_kind(overlay(name), "Namespace")
    return namespace


def pod_of(workload: dict, namespace: str) -> Pod:
    names = {
        p["name"]: p["containerPort"]
        for c in containers(workload, init=False)
        for p in c.get("ports", [])
        if "name" in p
    }
    return Pod(
        namespace, pod_labels(workload), names, name=workload["metadata"]["name"]
    )


def strimzi_policies(name: str) -> list[dict]:
    """The policy Strimzi writes for the Kafka pods from the listeners."""
    namespace = namespace_of(name)
    policies = []
    for kafka in by_kind(overlay(name), "Kafka").values():
        rules = []
        for listener in kafka["spec"]["kafka"]["listeners"]:
            rule = {"ports": [{"protocol": "TCP", "port": listener["port"]}]}
            if "networkPolicyPeers" in listener:
                rule["from"] = listener["networkPolicyPeers"]
            rules.append(rule)
        policies.append(
            {
                "metadata": {"name": "strimzi", "namespace": namespace},
                "spec": {
                    "podSelector": {
                        "matchLabels": {
                            "strimzi.io/cluster": kafka["metadata"]["name"],
                            "strimzi.io/kind": "Kafka",
                        }
                    },
                    "policyTypes": ["Ingress"],
                    "ingress": rules,
                },
            }
        )
    return policies


def policies_of(name: str) -> list[dict]:
    return list(by_kind(overlay(name), "NetworkPolicy").values()) + strimzi_policies(
        name
    )


def kafka_pod(name: str) -> Pod:
    (kafka,) = by_kind(overlay(name), "Kafka")
    labels = {
        "strimzi.io/cluster": kafka,
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": f"{kafka}-kafka",
        "strimzi.io/broker-role": "true",
    }
    return Pod(namespace_of(name), labels)


def first_address(policy: dict) -> External:
    cidr = policy["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"]
    return External(str(next(ipaddress.ip_network(cidr).hosts())))


def dependency_targets(name: str) -> dict[str, tuple[Pod | External, int]]:
    """Where each dependency is in this overlay, and its port."""
    namespace = namespace_of(name)
    resources = overlay(name)
    pods = {w["metadata"]["name"]: pod_of(w, namespace) for w in workloads(resources)}
    policies = by_kind(resources, "NetworkPolicy")
    targets: dict[str, tuple[Pod | External, int]] = {
        "zookeeper": (pods["zookeeper"], PORTS["zookeeper"]),
        "kafka": (kafka_pod(name), PORTS["kafka"]),
    }
    if name == "local":
        for dependency in ("postgresql", "redis"):
            targets[dependency] = (pods[dependency], PORTS[dependency])
        exchange = pods["exchange-mock"]
        for dependency, port in (
            ("exchange-fix", "fix"),
            ("exchange-quotes", "quotes"),
            ("exchange-http", "http"),
        ):
            targets[dependency] = (exchange, exchange.port_names[port])
    else:
        targets["postgresql"] = (
            first_address(policies["allow-postgresql-egress"]),
            PORTS["postgresql"],
        )
        targets["redis"] = (first_address(policies["allow-redis-egress"]), 6379)
        # The real exchange: somewhere in the networks its policies name (the
        # names in the config are not resolved here), on the ports the CONFIG
        # says the roles use: a policy opening another port fails.
        targets["exchange-fix"] = (
            first_address(policies["allow-exchange-egress"]),
            fix_port(name),
        )
        targets["exchange-quotes"] = (
            first_address(policies["allow-exchange-quotes-egress"]),
            quotes_port(name),
        )
    return targets


def fix_port(name: str) -> int:
    """The port the executors connect to for FIX (broker-config)."""
    return int(config_map_data(overlay(name))["EXCHANGE_FIX_PORT"])


def quotes_port(name: str) -> int:
    """The port the api asks for quotes at (EXCHANGE_QUOTES_URL, else
    EXCHANGE_URL: broker/settings/base.py)."""
    config = config_map_data(overlay(name))
    url = urlsplit(config.get("EXCHANGE_QUOTES_URL") or config["EXCHANGE_URL"])
    return url.port or {"http": 80, "https": 443}[url.scheme]


def app_pods(name: str) -> dict[str, Pod]:
    namespace = namespace_of(name)
    return {c: pod_of(w, namespace) for c, w in app_workloads(overlay(name)).items()}


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_role_reaches_exactly_its_dependencies(name):
    policies = policies_of(name)
    targets = dependency_targets(name)
    wrong = []
    for component, source in app_pods(name).items():
        for dependency, (target, port) in targets.items():
            # Dependencies at one address and port (the real exchange's orders
            # and quotes in prod) are one endpoint: a role using either reaches it.
            same = {d for d, t in targets.items() if t == (target, port)}
            expected = bool(same & DEPENDENCIES[component])
            if connection_allowed(policies, source, target, port) != expected:
                wrong.append((component, dependency, "denied" if expected else "open"))
    assert not wrong


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_pod_is_isolated_for_ingress(name):
    namespace = namespace_of(name)
    policies = policies_of(name)
    pods = [pod_of(w, namespace) for w in workloads(overlay(name))]
    pods.append(kafka_pod(name))
    for pod in pods:
        assert any(
            netpol.applies_to(p, pod) and "Ingress" in netpol.policy_types(p)
            for p in policies
        ), pod


@pytest.mark.parametrize("name", OVERLAYS)
def test_app_pods_are_isolated_for_egress_and_resolve_names(name):
    policies = policies_of(name)
    for component, pod in app_pods(name).items():
        assert any(
            netpol.applies_to(p, pod) and "Egress" in netpol.policy_types(p)
            for p in policies
        ), component
        assert connection_allowed(policies, pod, KUBE_DNS, 53, "UDP"), component
        assert connection_allowed(policies, pod, KUBE_DNS, 53, "TCP"), component
        assert not connection_allowed(policies, pod, INTERNET, 443), component
        assert not connection_allowed(policies, pod, STRANGER, 80), component


@pytest.mark.parametrize("name", OVERLAYS)
def test_only_the_api_is_reachable_from_outside(name):
    policies = policies_of(name)
    namespace = namespace_of(name)
    everything = {w["metadata"]["name"]: w for w in workloads(overlay(name))}
    for workload_name, workload in everything.items():
        pod = pod_of(workload, namespace)
        component = pod.labels.get("app.kubernetes.io/component")
        for port in {p for p in pod.port_names.values()} | {80, 443, 8000}:
            from_ingress = connection_allowed(policies, INGRESS_CONTROLLER, pod, port)
            assert from_ingress == (component == "api" and port == 8000), (
                workload_name,
                port,
            )
            assert not connection_allowed(policies, STRANGER, pod, port)
            assert not connection_allowed(policies, INTERNET, pod, port)
    kafka = kafka_pod(name)
    assert not connection_allowed(policies, INGRESS_CONTROLLER, kafka, 9092)
    assert not connection_allowed(policies, STRANGER, kafka, 9092)


@pytest.mark.parametrize("name", OVERLAYS)
def test_prometheus_reaches_the_metrics_ports_only(name):
    policies = policies_of(name)
    namespace = namespace_of(name)
    for workload in workloads(overlay(name)):
        pod = pod_of(workload, namespace)
        metrics = pod.port_names.get("metrics")
        if pod.labels.get("app.kubernetes.io/component") == "api":
            metrics = pod.port_names["http"]
        for port in pod.port_names.values():
            allowed = connection_allowed(policies, PROMETHEUS, pod, port)
            assert allowed == (port == metrics), (workload["metadata"]["name"], port)


@pytest.mark.parametrize("name", OVERLAYS)
def test_zookeeper_members_reach_each_other(name):
    namespace = namespace_of(name)
    zookeeper = next(
        w for w in workloads(overlay(name)) if w["metadata"]["name"] == "zookeeper"
    )
    member = pod_of(zookeeper, namespace)
    policies = policies_of(name)
    for port in (2888, 3888, 2181):
        assert connection_allowed(policies, member, member, port) == (port != 2181)


def test_the_api_reaches_the_exchange_simulator_only_on_its_quotes_port():
    """The internet-facing api may ask for prices (`quotes`), never reach order
    entry (`fix`) or the simulator's introspection and /admin/* routes (`http`);
    the executors reach `fix` and nothing else of it; no other role reaches it."""
    policies = policies_of("local")
    pods = app_pods("local")
    exchange = pods["exchange-mock"]
    assert {"http", "quotes", "fix"} <= set(exchange.port_names)
    for port in exchange.port_names.values():
        assert connection_allowed(policies, pods["api"], exchange, port) == (
            port == exchange.port_names["quotes"]
        ), port
        assert connection_allowed(policies, pods["executor"], exchange, port) == (
            port == exchange.port_names["fix"]
        ), port
        for component in ("relay", "celery-worker", "celery-beat", "migrate"):
            assert not connection_allowed(policies, pods[component], exchange, port)


def test_the_simulators_fix_port_admits_only_the_executors_on_its_own():
    """Its ingress rules alone (whatever any egress policy says) admit only the
    executors on `fix`: a pod of the namespace left without an egress policy, or
    one given too wide a rule, still cannot place orders."""
    policies = policies_of("local")
    pods = app_pods("local")
    exchange = pods["exchange-mock"]
    fix = exchange.port_names["fix"]
    for component, pod in pods.items():
        admitted = netpol.ingress_allowed(policies, exchange, pod, fix)
        assert admitted == (component == "executor"), component
    assert not netpol.ingress_allowed(policies, exchange, STRANGER, fix)
    assert not netpol.ingress_allowed(policies, exchange, INGRESS_CONTROLLER, fix)


@pytest.mark.parametrize("name", OVERLAYS)
def test_only_the_executors_may_send_to_the_exchanges_fix_endpoint(name):
    """Egress alone: of the project's pods only the executors may open a
    connection to the exchange's FIX endpoint (the simulator's `fix` port, or the
    real venue's address and EXCHANGE_FIX_PORT in prod)."""
    policies = policies_of(name)
    target, port = dependency_targets(name)["exchange-fix"]
    for component, pod in app_pods(name).items():
        if component == "exchange-mock":
            continue
        allowed = netpol.egress_allowed(policies, pod, target, port)
        assert allowed == (component == "executor"), component
