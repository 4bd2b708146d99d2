"""The rules of the production shape, on the rendered overlays: every container
bounded, probed and locked down; the roles' replicas, disruption budgets and
graceful shutdown; configuration from the ConfigMap, secrets from a Secret."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.netpol import selects
from tests.deploy.project import (
    APP_UID,
    BASE_IMAGE_NAME,
    COMPONENT_LABEL,
    K8S,
    OVERLAYS,
    app_workloads,
    by_kind,
    compose,
    compose_app_services,
    config_map_data,
    container_env,
    containers,
    is_app_workload,
    kustomization_file,
    one,
    overlay,
    pod_labels,
    pod_spec,
    required_production_env,
    workloads,
)

WORKERS = ("relay", "executor", "celery-worker", "celery-beat")
DATABASE_ROLES = ("api", "relay", "executor", "celery-worker")
SECRET_KEYS = {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
_UNITS = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match, f"not a quantity: {value!r}"
    number, unit = match.groups()
    assert unit in ("", *_UNITS), f"unknown unit in {value!r}"
    return float(number) * _UNITS.get(unit, 1)


def all_containers(name: str):
    """(workload, container, is_init) of every pod template of an overlay."""
    for workload in workloads(overlay(name)):
        spec = pod_spec(workload)
        for container in spec.get("containers", []):
            yield workload, container, False
        for container in spec.get("initContainers", []):
            yield workload, container, True


def ids(name: str) -> list:
    return [
        pytest.param(name, w, c, init, id=f"{name}-{w['metadata']['name']}-{c['name']}")
        for w, c, init in all_containers(name)
    ]


CONTAINERS = [p for name in OVERLAYS for p in ids(name)]


def effective_security(workload: dict, container: dict) -> dict:
    pod = pod_spec(workload).get("securityContext", {})
    own = container.get("securityContext", {})
    keys = ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile")
    return {**{k: pod[k] for k in keys if k in pod}, **own}


def port_number(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


# --- every container


@pytest.mark.parametrize(("name", "workload", "container", "init"), CONTAINERS)
def test_every_container_has_requests_and_limits(name, workload, container, init):
    resources = container.get("resources", {})
    for resource in ("cpu", "memory"):
        request = resources.get("requests", {}).get(resource)
        limit = resources.get("limits", {}).get(resource)
        assert request is not None and limit is not None, resource
        assert quantity(request) <= quantity(limit), resource


@pytest.mark.parametrize(("name", "workload", "container", "init"), CONTAINERS)
def test_every_container_is_locked_down(name, workload, container, init):
    security = effective_security(workload, container)
    assert security.get("runAsNonRoot") is True
    assert security.get("runAsUser", 0) != 0
    assert security.get("readOnlyRootFilesystem") is True
    assert security.get("allowPrivilegeEscalation") is False
    assert "ALL" in security.get("capabilities", {}).get("drop", [])
    assert not security.get("privileged", False)
    assert not security.get("capabilities", {}).get("add")
    assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    if is_app_workload(workload):
        assert security["runAsUser"] == APP_UID
    pod = pod_spec(workload)
    assert pod.get("automountServiceAccountToken") is False, "no API access needed"
    assert not pod.get("hostNetwork") and not pod.get("hostPID")


@pytest.mark.parametrize(("name", "workload", "container", "init"), CONTAINERS)
def test_long_running_containers_have_probes(name, workload, container, init):
    if init or workload["kind"] == "Job":
        return
    assert "livenessProbe" in container and "readinessProbe" in container
    if not is_app_workload(workload):
        return  # engines: their own checks (ruok/srvr, pg_isready, redis-cli ping)
    component = pod_labels(workload)[COMPONENT_LABEL]
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    # Liveness never depends on another service (an outage must not restart us).
    assert liveness["path"] == "/healthz"
    expected_ready = "/healthz" if component == "exchange-mock" else "/readyz"
    assert readiness["path"] == expected_ready
    env = container_env(overlay(name), container)
    if component == "api":
        expected_port = int(env["API_PORT"])
    elif component == "exchange-mock":
        expected_port = int(env["EXCHANGE_PORT"])
    else:
        expected_port = int(env["METRICS_PORT"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in container:
            port = port_number(container, container[probe]["httpGet"]["port"])
            assert port == expected_port, probe
    if component == "api":
        # Django checks the Host header: the probe must send an allowed one.
        allowed = env["DJANGO_ALLOWED_HOSTS"].split(",")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            headers = {
                h["name"]: h["value"]
                for h in container[probe]["httpGet"].get("httpHeaders", [])
            }
            assert headers.get("Host") in allowed, probe


@pytest.mark.parametrize(("name", "workload", "container", "init"), CONTAINERS)
def test_writable_paths_are_volumes(name, workload, container, init):
    """The root filesystem is read-only: whatever a process writes is a volume."""
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": {}}
    for volume in mounts.values():
        assert volume in volumes
    if not is_app_workload(workload):
        return
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]]
    env = container_env(overlay(name), container)
    for variable in ("CELERY_BEAT_SCHEDULE_FILE", "EXCHANGE_STORE"):
        if env.get(variable):
            directory = str(PurePosixPath(env[variable]).parent)
            assert directory in mounts, f"{variable}={env[variable]} not writable"


@pytest.mark.parametrize("name", OVERLAYS)
def test_app_containers_run_the_overlays_image(name):
    kustomization = kustomization_file(K8S / "overlays" / name)
    (rule,) = [
        r
        for r in yaml.safe_load(kustomization.read_text())["images"]
        if r["name"] == BASE_IMAGE_NAME
    ]
    expected = f"{rule['newName']}:{rule['newTag']}"
    for workload in app_workloads(overlay(name)).values():
        for container in containers(workload):
            assert container["image"] == expected
    if name == "prod":
        assert rule["newTag"] not in ("latest", "dev"), "pin the release"
    else:
        # The image `docker compose build` makes is the one the local overlay runs.
        images = {s["image"] for s in compose_app_services().values()}
        assert images == {expected}


# --- the roles


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_role_is_deployed(name):
    components = set(app_workloads(overlay(name)))
    expected = {"api", "relay", "executor", "celery-worker", "celery-beat", "migrate"}
    if name == "local":
        expected.add("exchange-mock")
    assert components == expected


@pytest.mark.parametrize("name", OVERLAYS)
def test_celery_beat_is_exactly_one(name):
    beat = app_workloads(overlay(name))["celery-beat"]
    assert beat["kind"] == "Deployment"
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    for hpa in by_kind(overlay(name), "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] != beat["metadata"]["name"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_executors_keep_a_quorum_of_candidates(name):
    resources = overlay(name)
    executor = app_workloads(resources)["executor"]
    assert executor["spec"]["replicas"] >= 3
    budgets = [
        pdb
        for pdb in by_kind(resources, "PodDisruptionBudget").values()
        if selects(pdb["spec"]["selector"], pod_labels(executor))
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"]["minAvailable"] == 2
    assert budgets[0]["spec"]["minAvailable"] < executor["spec"]["replicas"], (
        "a drain must be possible"
    )
    (container,) = containers(executor, init=False)
    (name_env,) = [e for e in container["env"] if e["name"] == "EXECUTOR_NAME"]
    assert name_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    if executor["kind"] == "Deployment":
        rolling = executor["spec"]["strategy"]["rollingUpdate"]
        assert rolling["maxUnavailable"] == 0, "a candidate joins before one leaves"


@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("component", WORKERS)
def test_workers_get_time_for_a_graceful_shutdown(name, component):
    workload = app_workloads(overlay(name))[component]
    assert pod_spec(workload)["terminationGracePeriodSeconds"] >= 30


@pytest.mark.parametrize("name", OVERLAYS)
def test_relays_scale_out(name):
    relay = app_workloads(overlay(name))["relay"]
    assert relay["spec"]["replicas"] >= 2


@pytest.mark.parametrize("name", OVERLAYS)
def test_hpa_scales_the_api_on_cpu(name):
    resources = overlay(name)
    api = app_workloads(resources)["api"]
    (hpa,) = by_kind(resources, "HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", api["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "replicas" not in api["spec"], "the HPA owns the api's replica count"
    if name == "prod":
        assert hpa["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("name", OVERLAYS)
def test_migrations_run_once_and_gate_the_roles(name):
    resources = overlay(name)
    job = app_workloads(resources)["migrate"]
    assert job["kind"] == "Job"
    (container,) = containers(job)
    assert container["args"] == ["migrate", "--noinput"]
    for component in DATABASE_ROLES:
        workload = app_workloads(resources)[component]
        inits = pod_spec(workload).get("initContainers", [])
        assert [c["args"] for c in inits] == [["migrate", "--check"]], component


@pytest.mark.parametrize("name", OVERLAYS)
def test_services_select_pods_and_ports(name):
    resources = overlay(name)
    for service in by_kind(resources, "Service").values():
        matches = [
            w
            for w in workloads(resources)
            if selects({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        assert len(matches) == 1, service["metadata"]["name"]
        ports = {
            p.get("name"): p["containerPort"]
            for c in containers(matches[0], init=False)
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values()


@pytest.mark.parametrize("name", OVERLAYS)
def test_ingress_routes_to_the_api_on_an_allowed_host(name):
    resources = overlay(name)
    (ingress,) = by_kind(resources, "Ingress").values()
    api_service = one(resources, "Service", "api")
    allowed = config_map_data(resources)["DJANGO_ALLOWED_HOSTS"].split(",")
    assert "localhost" in allowed, "the probes' Host header"
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in allowed
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == api_service["metadata"]["name"]
            # Metrics and probes are not for the internet.
            assert path["path"] in ("/api/", "/admin/", "/static/"), path["path"]
    if name == "prod":
        tls_hosts = {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
        assert {rule["host"] for rule in ingress["spec"]["rules"]} <= tls_hosts


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_api_trusts_the_ingress_in_front_of_it_and_nothing_more(name):
    # ingress-nginx is the one proxy writing X-Forwarded-For before the api: one
    # trusted hop. More would let a client choose its address (and so its login
    # rate limit); fewer would put every client behind the ingress's address.
    resources = overlay(name)
    assert by_kind(resources, "Ingress")
    assert config_map_data(resources)["TRUSTED_PROXY_COUNT"] == "1"


# --- configuration


@pytest.mark.parametrize("name", OVERLAYS)
def test_configuration_from_the_configmap_secrets_from_a_secret(name):
    resources = overlay(name)
    config = config_map_data(resources)
    for key in config:
        assert key not in SECRET_KEYS and not re.search("SECRET|PASSWORD", key), key
    for key in SECRET_KEYS:
        assert key not in config
    assert set(required_production_env()) <= set(config) | SECRET_KEYS
    assert config["DJANGO_SETTINGS_MODULE"] == "broker.settings.production"
    assert config["LOG_FORMAT"] == "json"
    for component, workload in app_workloads(resources).items():
        if component == "exchange-mock":
            continue  # needs neither: its env is its own
        for container in containers(workload):
            sources = container.get("envFrom", [])
            assert {"configMapRef": {"name": "broker-config"}} in sources
            assert {"secretRef": {"name": "broker-secrets"}} in sources


def test_local_overlay_has_a_placeholder_secret_and_prod_none():
    (secret,) = [
        s
        for s in by_kind(overlay("local"), "Secret").values()
        if s["metadata"]["name"] == "broker-secrets"
    ]
    assert set(secret["stringData"]) == SECRET_KEYS
    assert "not-a-secret" in secret["stringData"]["DJANGO_SECRET_KEY"]
    assert not by_kind(overlay("prod"), "Secret"), "prod: the Secret exists already"
    readme = (K8S / "README.md").read_text()
    for key in SECRET_KEYS:
        assert key in readme, f"k8s/README.md must document {key}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_addresses_in_the_config_exist(name):
    resources = overlay(name)
    config = config_map_data(resources)
    services = by_kind(resources, "Service")
    exchange = urlsplit(config["EXCHANGE_URL"])
    if name == "local":
        assert exchange.hostname in services
        assert exchange.port in [
            p["port"] for p in services[exchange.hostname]["spec"]["ports"]
        ]
    else:
        assert exchange.hostname not in ("exchange-mock", "localhost", "127.0.0.1")
        assert "exchange-mock" not in services
        # HTTP is the api's quotes (EXCHANGE_QUOTES_URL, else EXCHANGE_URL); the
        # executors' orders go to EXCHANGE_FIX_HOST:EXCHANGE_FIX_PORT.
        quotes = urlsplit(config.get("EXCHANGE_QUOTES_URL") or config["EXCHANGE_URL"])
        for policy, port in (
            (
                "allow-exchange-quotes-egress",
                quotes.port or {"http": 80, "https": 443}[quotes.scheme],
            ),
            ("allow-exchange-egress", int(config["EXCHANGE_FIX_PORT"])),
        ):
            egress = one(resources, "NetworkPolicy", policy)
            allowed = [
                p["port"] for rule in egress["spec"]["egress"] for p in rule["ports"]
            ]
            assert port in allowed, f"{policy}: the real exchange's port {port}"
    zookeeper = one(resources, "StatefulSet", "zookeeper")
    headless = zookeeper["spec"]["serviceName"]
    expected = {
        f"zookeeper-{i}.{headless}:2181" for i in range(zookeeper["spec"]["replicas"])
    }
    assert set(config["ZOOKEEPER_HOSTS"].split(",")) == expected


@pytest.mark.parametrize("name", OVERLAYS)
def test_zookeeper_is_a_three_node_ensemble(name):
    resources = overlay(name)
    zookeeper = one(resources, "StatefulSet", "zookeeper")
    replicas = zookeeper["spec"]["replicas"]
    assert replicas >= 3 and replicas % 2 == 1
    headless = one(resources, "Service", zookeeper["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    zoo_cfg = config_map_data(resources, "zookeeper-config")["zoo.cfg"]
    servers = re.findall(r"^server\.(\d+)=([^:]+):2888:3888;2181$", zoo_cfg, re.M)
    assert servers == [
        (str(i + 1), f"zookeeper-{i}.{headless['metadata']['name']}")
        for i in range(replicas)
    ]
    budgets = [
        pdb
        for pdb in by_kind(resources, "PodDisruptionBudget").values()
        if selects(pdb["spec"]["selector"], pod_labels(zookeeper))
    ]
    assert [b["spec"].get("maxUnavailable") for b in budgets] == [1]


@pytest.mark.parametrize("name", OVERLAYS)
def test_prometheus_annotations_name_the_metrics_port(name):
    resources = overlay(name)
    for component, workload in app_workloads(resources).items():
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if component in ("migrate", "exchange-mock"):
            continue
        (container,) = containers(workload, init=False)
        env = container_env(resources, container)
        port = env["API_PORT"] if component == "api" else env["METRICS_PORT"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(port) in [p["containerPort"] for p in container["ports"]]


def test_compose_and_kubernetes_agree_on_the_topics():
    config = config_map_data(overlay("local"))
    for service in compose_app_services().values():
        env = service.get("environment") or {}
        for key in ("TRADE_TOPICS", "TRADE_TOPIC_PREFIX"):
            if key in env:
                assert str(env[key]) == config[key]
    assert compose()["services"]
