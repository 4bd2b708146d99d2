"""The NetworkPolicies of the overlays, evaluated for every pair of roles and
dependencies (tests/deploy/netpol.py): each role reaches exactly what it uses,
only the api is reachable from outside, Prometheus reaches the metrics ports."""

from __future__ import annotations

import ipaddress

import pytest

from tests.deploy import netpol
from tests.deploy.netpol import External, Pod, connection_allowed
from tests.deploy.project import (
    OVERLAYS,
    app_workloads,
    by_kind,
    containers,
    overlay,
    pod_labels,
    workloads,
)

# What each role talks to (DESIGN.md; broker/quotes.py: the api asks the exchange for
# quotes, at its market-data address; broker/ops.py: the admin reads the elections
# from ZooKeeper).
DEPENDENCIES = {
    "api": {"postgresql", "redis", "exchange-quotes", "zookeeper"},
    "relay": {"postgresql", "kafka"},
    "executor": {"postgresql", "kafka", "zookeeper", "exchange"},
    "celery-worker": {"postgresql", "redis"},
    "celery-beat": {"redis"},
    "migrate": {"postgresql"},
    "exchange-mock": set(),
}
PORTS = {
    "postgresql": 5432,
    "redis": 6379,
    "exchange": 8100,
    "exchange-quotes": 8102,
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
        targets["exchange"] = (pods["exchange-mock"], PORTS["exchange"])
        targets["exchange-quotes"] = (
            pods["exchange-mock"],
            PORTS["exchange-quotes"],
        )
    else:
        targets["postgresql"] = (
            first_address(policies["allow-postgresql-egress"]),
            PORTS["postgresql"],
        )
        targets["redis"] = (first_address(policies["allow-redis-egress"]), 6379)
        exchange = policies["allow-exchange-egress"]["spec"]["egress"][0]
        targets["exchange"] = (first_address(policies["allow-exchange-egress"]), 0)
        targets["exchange"] = (targets["exchange"][0], exchange["ports"][0]["port"])
        quotes = policies["allow-exchange-quotes-egress"]
        targets["exchange-quotes"] = (
            first_address(quotes),
            quotes["spec"]["egress"][0]["ports"][0]["port"],
        )
    return targets


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
    """The internet-facing api may ask for prices, never reach order entry or the
    simulator's /admin/* routes (8100): only the executors may."""
    policies = policies_of("local")
    pods = app_pods("local")
    exchange = pods["exchange-mock"]
    for port in exchange.port_names.values():
        assert connection_allowed(policies, pods["api"], exchange, port) == (
            port == exchange.port_names["quotes"]
        ), port
        assert connection_allowed(policies, pods["executor"], exchange, port) == (
            port == exchange.port_names["http"]
        ), port
        for component in ("relay", "celery-worker", "celery-beat", "migrate"):
            assert not connection_allowed(policies, pods[component], exchange, port)
