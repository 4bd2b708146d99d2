"""k8s/: the overlays render (with the real kustomize, pinned and installed by
devstack/kustomize.py), every built-in resource is valid against the Kubernetes API
schemas (kubernetes-validate, offline, strict), and the Strimzi custom resources are
checked structurally."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.deploy.netpol import Pod, selects
from tests.deploy.project import (
    OVERLAYS,
    app_workloads,
    by_kind,
    config_map_data,
    is_builtin,
    overlay,
    rendered,
)

# The oldest Kubernetes the manifests support (autoscaling/v2, policy/v1, Job TTL,
# ...) and the newest the installed kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
STRIMZI_GROUP = "kafka.strimzi.io"
STRIMZI_SPEC_FIELDS = {
    "Kafka": {
        "kafka",
        "entityOperator",
        "cruiseControl",
        "kafkaExporter",
        "clusterCa",
        "clientsCa",
        "maintenanceTimeWindows",
    },
    "KafkaNodePool": {"replicas", "roles", "storage", "resources", "jvmOptions"}
    | {"template"},
    "KafkaTopic": {"partitions", "replicas", "config", "topicName"},
}
RENDER_TARGETS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]


# --- rendering


@pytest.mark.parametrize("target", RENDER_TARGETS)
def test_renders(target):
    resources = rendered(target)
    assert resources
    for resource in resources:
        assert resource.get("apiVersion") and resource.get("kind")
        assert resource.get("metadata", {}).get("name")


def test_base_is_namespace_less_and_overlays_set_one_namespace():
    for resource in rendered("base"):
        assert "namespace" not in resource["metadata"], resource["metadata"]["name"]
    for name in OVERLAYS:
        resources = overlay(name)
        (namespace,) = by_kind(resources, "Namespace")
        for resource in resources:
            if resource["kind"] != "Namespace":
                assert resource["metadata"]["namespace"] == namespace


# --- schemas


def builtin_resources() -> list:
    return [
        pytest.param(
            resource, id=f"{name}-{resource['kind']}-{resource['metadata']['name']}"
        )
        for name in OVERLAYS
        for resource in overlay(name)
        if is_builtin(resource)
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("resource", builtin_resources())
def test_builtin_resources_match_the_kubernetes_schema(resource, version):
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{resource['kind']} {resource['metadata']['name']}: {exc}")


def test_every_custom_resource_is_a_known_strimzi_kind():
    for name in OVERLAYS:
        for resource in overlay(name):
            if is_builtin(resource):
                continue
            assert resource["apiVersion"] == f"{STRIMZI_GROUP}/v1beta2", resource
            assert resource["kind"] in STRIMZI_SPEC_FIELDS, resource["kind"]
            unknown = set(resource["spec"]) - STRIMZI_SPEC_FIELDS[resource["kind"]]
            assert not unknown, f"{resource['kind']}: unknown fields {unknown}"


# --- Strimzi: Kafka in KRaft mode, its node pool, the trade topics


def kafka_parts(name: str):
    resources = overlay(name)
    (kafka,) = by_kind(resources, "Kafka").values()
    pools = [
        p
        for p in by_kind(resources, "KafkaNodePool").values()
        if p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    ]
    topics = by_kind(resources, "KafkaTopic")
    return resources, kafka, pools, topics


@pytest.mark.parametrize("name", OVERLAYS)
def test_kafka_runs_in_kraft_mode_with_node_pools(name):
    _, kafka, pools, _ = kafka_parts(name)
    annotations = kafka["metadata"].get("annotations", {})
    assert annotations.get("strimzi.io/kraft") == "enabled"
    assert annotations.get("strimzi.io/node-pools") == "enabled"
    spec = kafka["spec"]
    assert "zookeeper" not in spec, "KRaft: no ZooKeeper for Kafka"
    assert "replicas" not in spec["kafka"] and "storage" not in spec["kafka"], (
        "the node pools own replicas and storage"
    )
    assert "topicOperator" in spec["entityOperator"], "KafkaTopic needs it"
    assert pools, "a KafkaNodePool labelled strimzi.io/cluster"
    roles = {role for pool in pools for role in pool["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    for pool in pools:
        assert set(pool["spec"]["roles"]) <= {"controller", "broker"}
        assert pool["spec"]["replicas"] >= 1
        storage = pool["spec"]["storage"]
        assert storage["type"] == "jbod"
        ids = [volume["id"] for volume in storage["volumes"]]
        assert len(ids) == len(set(ids))
        for volume in storage["volumes"]:
            assert volume["type"] in ("persistent-claim", "ephemeral")
            if volume["type"] == "persistent-claim":
                assert volume["size"]
        shared = [v for v in storage["volumes"] if v.get("kraftMetadata") == "shared"]
        assert len(shared) == 1, "one volume holds the KRaft metadata log"


@pytest.mark.parametrize("name", OVERLAYS)
def test_kafka_replication_fits_the_brokers(name):
    _, kafka, pools, topics = kafka_parts(name)
    brokers = sum(
        p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]
    )
    controllers = sum(
        p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"]
    )
    assert controllers % 2 == 1, "an odd number of KRaft controllers"
    config = kafka["spec"]["kafka"]["config"]
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert int(config[key]) <= brokers, key
    assert int(config["min.insync.replicas"]) <= int(
        config["default.replication.factor"]
    )
    assert config["auto.create.topics.enable"] is False
    for topic in topics.values():
        assert topic["spec"]["replicas"] <= brokers
        insync = int(topic["spec"]["config"]["min.insync.replicas"])
        assert insync <= topic["spec"]["replicas"]
    if name == "prod":
        assert brokers >= 3 and controllers >= 3
        for topic in topics.values():
            assert topic["spec"]["replicas"] >= 3
            # One broker down: writes with acks=all still succeed.
            assert int(topic["spec"]["config"]["min.insync.replicas"]) == (
                topic["spec"]["replicas"] - 1
            )


@pytest.mark.parametrize("name", OVERLAYS)
def test_trade_topics_match_the_configuration(name):
    resources, kafka, _, topics = kafka_parts(name)
    config = config_map_data(resources)
    prefix = config["TRADE_TOPIC_PREFIX"]
    expected = {f"{prefix}.{i}" for i in range(int(config["TRADE_TOPICS"]))}
    expected.add(f"{prefix}.dlq")  # broker.topics.dead_letter_topic()
    declared = {t["spec"].get("topicName", n) for n, t in topics.items()}
    assert declared == expected
    for topic in topics.values():
        cluster = topic["metadata"]["labels"]["strimzi.io/cluster"]
        assert cluster == kafka["metadata"]["name"]
        assert topic["spec"]["partitions"] == int(config["TRADE_TOPIC_PARTITIONS"])


@pytest.mark.parametrize("name", OVERLAYS)
def test_bootstrap_servers_are_the_plain_listener(name):
    resources, kafka, _, _ = kafka_parts(name)
    listeners = kafka["spec"]["kafka"]["listeners"]
    names = [listener["name"] for listener in listeners]
    assert len(names) == len(set(names))
    for listener in listeners:
        assert listener["name"].isalnum() and len(listener["name"]) <= 11
        assert listener["port"] >= 9092 and listener["port"] not in (9404, 9999)
        assert listener["type"] in ("internal", "cluster-ip", "loadbalancer")
    bootstrap = config_map_data(resources)["KAFKA_BOOTSTRAP_SERVERS"]
    host, port = bootstrap.split(":")
    assert host == f"{kafka['metadata']['name']}-kafka-bootstrap"
    (listener,) = [x for x in listeners if x["port"] == int(port)]
    assert listener["tls"] is False, "the clients have no TLS configuration"
    # Strimzi turns networkPolicyPeers into the Kafka pods' ingress policy.
    allowed = set()
    for component, workload in app_workloads(resources).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        pod = Pod(namespace="x", labels=labels)
        if any(
            selects(peer.get("podSelector"), pod.labels)
            for peer in listener["networkPolicyPeers"]
        ):
            allowed.add(component)
    assert allowed == {"relay", "executor"}
