"""Evaluate Kubernetes NetworkPolicies for a connection, as the API defines them.

A connection from a source to a destination pod on a port is allowed when the
source's egress policies allow it (or none isolates the source for egress) and the
destination's ingress policies allow it (or none isolates it for ingress).
``ipBlock`` peers match only addresses outside the cluster (:class:`External`):
whether they also match pod IPs is up to the CNI, so the tests never rely on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    # Named container ports (a policy may name its port).
    port_names: Mapping[str, int] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] | None = None
    name: str = ""

    def ns_labels(self) -> Mapping[str, str]:
        if self.namespace_labels is not None:
            return self.namespace_labels
        return {NAMESPACE_NAME_LABEL: self.namespace}


@dataclass(frozen=True)
class External:
    """An address outside the cluster (a client on the internet, a managed DB)."""

    ip: str


Peer = Pod | External


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions); {} selects everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {operator!r}")
    return True


def policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def applies_to(policy: Mapping[str, Any], pod: Pod) -> bool:
    return policy["metadata"].get("namespace", "") == pod.namespace and selects(
        policy["spec"].get("podSelector"), pod.labels
    )


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, other: Peer) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, External):
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if isinstance(other, External):
        return False
    pod_selector = peer.get("podSelector")
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        in_namespace = other.namespace == policy_ns
    else:
        in_namespace = selects(ns_selector, other.ns_labels())
    return in_namespace and (
        pod_selector is None or selects(pod_selector, other.labels)
    )


def _port_matches(
    ports: Iterable[Mapping[str, Any]] | None,
    port: int,
    protocol: str,
    named: Mapping[str, int],
) -> bool:
    ports = list(ports or [])
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        value = entry.get("port")
        if value is None:
            return True
        number = named.get(value) if isinstance(value, str) else value
        if number is None:
            continue
        end = entry.get("endPort", number)
        if number <= port <= end:
            return True
    return False


def _allowed(
    policies: Iterable[Mapping[str, Any]],
    subject: Pod,
    other: Peer,
    port: int,
    protocol: str,
    direction: str,
    named: Mapping[str, int],
) -> bool:
    if direction == "Ingress":
        rules_key, peers_key = "ingress", "from"
    else:
        rules_key, peers_key = "egress", "to"
    isolating = [
        p for p in policies if applies_to(p, subject) and direction in policy_types(p)
    ]
    if not isolating:
        return True
    for policy in isolating:
        namespace = policy["metadata"].get("namespace", "")
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key) or []
            if peers and not any(_peer_matches(p, namespace, other) for p in peers):
                continue
            if _port_matches(rule.get("ports"), port, protocol, named):
                return True
    return False


def ingress_allowed(
    policies: Iterable[Mapping[str, Any]],
    destination: Pod,
    source: Peer,
    port: int,
    protocol: str = "TCP",
) -> bool:
    return _allowed(
        list(policies),
        destination,
        source,
        port,
        protocol,
        "Ingress",
        destination.port_names,
    )


def egress_allowed(
    policies: Iterable[Mapping[str, Any]],
    source: Pod,
    destination: Peer,
    port: int,
    protocol: str = "TCP",
) -> bool:
    named = destination.port_names if isinstance(destination, Pod) else {}
    return _allowed(
        list(policies), source, destination, port, protocol, "Egress", named
    )


def connection_allowed(
    policies: Iterable[Mapping[str, Any]],
    source: Peer,
    destination: Peer,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Both ends agree: the source may send, the destination may receive."""
    policies = list(policies)
    if isinstance(source, Pod) and not egress_allowed(
        policies, source, destination, port, protocol
    ):
        return False
    return not isinstance(destination, Pod) or ingress_allowed(
        policies, destination, source, port, protocol
    )
