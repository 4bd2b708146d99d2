"""Facts about the repository the deploy tests check the deployment files against:
the manage.py commands, the required production settings, the environment variable
names the code reads, the Dockerfile, and the rendered Kubernetes overlays."""

from __future__ import annotations

import ast
import base64
import functools
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
import yaml
from django.core.management import find_commands

from devstack.kustomize import kustomize_build

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("local", "prod")
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# The pods that run the project's image carry this label (k8s/base).
APP_LABEL = ("app.kubernetes.io/name", "trade-execution-backend")
COMPONENT_LABEL = "app.kubernetes.io/component"
APP_UID = 10001
# The image's name in k8s/base (the overlays' `images:` rename and tag it).
BASE_IMAGE_NAME = "trade-execution-backend"

# manage.py commands run by hand (operations: `kubectl exec deploy/api -- python
# manage.py <command>`), never deployed as a role.
ONE_SHOT_COMMANDS = {
    "audit",
    "create_customer",
    "fix_reset",
    "leadership",
    "reconcile",
}
# The project's apps the image ships and production installs, and the local
# tooling only the local and test settings install (never in the image).
IMAGE_APPS = ("broker", "relay", "executor")
LOCAL_ONLY_APPS = ("devstack",)
# The deployed roles (as manage.py commands, plus the exchange simulator).
LONG_RUNNING_ROLES = {
    "api",
    "relay",
    "executor",
    "celery_worker",
    "celery_beat",
    "exchange_mock",
}
EXCHANGE_MOCK_ARGV = ["python", "-m", "exchange_mock"]


# --- manage.py commands


def custom_commands(apps: tuple[str, ...] = IMAGE_APPS) -> set[str]:
    """The project's own commands of ``apps`` (each app owns its command)."""
    return {
        command
        for app in apps
        for command in find_commands(str(REPO / app / "management"))
    }


def manage_commands(*, local: bool = False) -> set[str]:
    """Every command ``python manage.py`` knows with the image's INSTALLED_APPS, or
    with the local settings' (``local``: the demo too), without configuring
    Django: the apps' management folders are read directly."""
    django_dir = Path(django.__file__).parent
    commands = custom_commands(IMAGE_APPS + (LOCAL_ONLY_APPS if local else ()))
    commands |= set(find_commands(str(django_dir / "core" / "management")))
    for app in ("staticfiles", "auth", "contenttypes", "sessions"):
        commands |= set(find_commands(str(django_dir / "contrib" / app / "management")))
    return commands


def role_of(argv: list[str]) -> str:
    """``python manage.py <command> ...`` → the command; ``python -m exchange_mock``
    → exchange_mock."""
    if argv[:3] == EXCHANGE_MOCK_ARGV:
        return "exchange_mock"
    if argv[:2] == ["python", "manage.py"] and len(argv) > 2:
        return argv[2]
    raise AssertionError(f"not a command of this project: {argv}")


# --- settings and code


def required_production_env() -> tuple[str, ...]:
    """``_REQUIRED`` of broker/settings/production.py (what production refuses to
    start without)."""
    tree = ast.parse((REPO / "broker" / "settings" / "production.py").read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(
                isinstance(t, ast.Name) and t.id == "_REQUIRED" for t in node.targets
            )
            and isinstance(node.value, ast.Tuple | ast.List)
        ):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("broker/settings/production.py: no _REQUIRED tuple")


@functools.cache
def code_string_literals() -> frozenset[str]:
    """Every string constant in the project's code: an environment variable the
    deployment sets must be one of them (a typo would be silently ignored)."""
    files = [REPO / "manage.py"]
    for package in ("broker", "executor", "exchange_mock"):
        files.extend((REPO / package).rglob("*.py"))
    found: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return frozenset(found)


# --- Dockerfile


@dataclass
class Stage:
    base: str
    alias: str | None
    instructions: list[dict[str, Any]]

    def all(self, instruction: str) -> list[str]:
        return [
            i["value"] for i in self.instructions if i["instruction"] == instruction
        ]

    def last(self, instruction: str) -> str | None:
        values = self.all(instruction)
        return values[-1] if values else None


@functools.cache
def dockerfile_stages() -> tuple[Stage, ...]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(DOCKERFILE))
    stages: list[Stage] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], alias=alias, instructions=[]))
        elif stages:
            stages[-1].instructions.append(instruction)
    return tuple(stages)


def exec_form(value: str | None) -> list[str] | None:
    """An ENTRYPOINT/CMD value in exec form (JSON); shell form is refused."""
    if value is None:
        return None
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"not exec form: {value}"
    return parsed


def image_entrypoint_and_cmd() -> tuple[list[str], list[str]]:
    final = dockerfile_stages()[-1]
    return exec_form(final.last("ENTRYPOINT")) or [], exec_form(final.last("CMD")) or []


def k8s_argv(container: dict) -> list[str]:
    """What a container runs: Kubernetes' command/args over the image's
    ENTRYPOINT/CMD (a command without args drops the image's CMD)."""
    entrypoint, cmd = image_entrypoint_and_cmd()
    if "command" in container:
        return list(container["command"]) + list(container.get("args", []))
    return entrypoint + list(container.get("args", cmd))


def compose_argv(service: dict) -> list[str]:
    """The same for a compose service (an entrypoint override drops CMD too)."""
    entrypoint, cmd = image_entrypoint_and_cmd()

    def words(value: Any) -> list[str]:
        return shlex.split(value) if isinstance(value, str) else list(value)

    if "entrypoint" in service:
        return words(service["entrypoint"]) + words(service.get("command", []))
    return entrypoint + words(service.get("command", cmd))


# --- compose


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_app_services() -> dict[str, dict]:
    """The services that run the project's image."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if "build" in service
    }


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


# --- Kubernetes

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Pod templates at spec.template (CronJob: spec.jobTemplate.spec.template).
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


@functools.cache
def _rendered(path: str) -> tuple[dict, ...]:
    return tuple(kustomize_build(K8S / path))


def rendered(path: str) -> list[dict]:
    """The resources of k8s/<path> (an overlay: ``overlays/local``), rendered once
    per test session by the real kustomize (devstack/kustomize.py installs it)."""
    return list(_rendered(path))


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise AssertionError(f"{directory}: no kustomization.yaml")


def is_builtin(resource: dict) -> bool:
    """A Kubernetes API kind (core, apps, ..., *.k8s.io), not a custom resource."""
    api_version = resource.get("apiVersion", "")
    group = api_version.split("/")[0] if "/" in api_version else ""
    return "." not in group or group.endswith(".k8s.io")


def pod_spec(resource: dict) -> dict | None:
    """The pod template's spec of a workload, or None."""
    if resource.get("kind") == "Pod":
        return resource.get("spec")
    if resource.get("kind") == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if resource.get("kind") in WORKLOAD_KINDS:
        return resource["spec"]["template"]["spec"]
    return None


def overlay(name: str) -> list[dict]:
    return rendered(f"overlays/{name}")


def by_kind(resources: list[dict], kind: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def one(resources: list[dict], kind: str, name: str) -> dict:
    found = by_kind(resources, kind)
    assert name in found, f"no {kind} {name!r}; have {sorted(found)}"
    return found[name]


def workloads(resources: list[dict]) -> list[dict]:
    return [r for r in resources if pod_spec(r) is not None]


def pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def is_app_workload(workload: dict) -> bool:
    return pod_labels(workload).get(APP_LABEL[0]) == APP_LABEL[1]


def app_workloads(resources: list[dict]) -> dict[str, dict]:
    """component → workload, for the pods of the project's image."""
    return {
        pod_labels(w)[COMPONENT_LABEL]: w
        for w in workloads(resources)
        if is_app_workload(w)
    }


def containers(workload: dict, *, init: bool = True) -> list[dict]:
    spec = pod_spec(workload)
    found = list(spec.get("containers", []))
    if init:
        found += spec.get("initContainers", [])
    return found


def config_map_data(resources: list[dict], name: str = "broker-config") -> dict:
    return dict(one(resources, "ConfigMap", name).get("data", {}))


def container_env(resources: list[dict], container: dict) -> dict[str, str]:
    """The container's environment from its envFrom ConfigMaps and literal env
    (Secret values and downward-API fields are not known: they map to None)."""
    env: dict[str, Any] = {}
    config_maps = by_kind(resources, "ConfigMap")
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]].get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def secret_ref(item: dict) -> tuple[str, str] | None:
    """(Secret name, key) of an env item read from a Secret, or None."""
    ref = item.get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def secret_values(resources: list[dict]) -> dict[tuple[str, str], str]:
    """(Secret name, key) → value, for the Secrets the overlay itself holds."""
    found: dict[tuple[str, str], str] = {}
    for name, secret in by_kind(resources, "Secret").items():
        for key, value in (secret.get("data") or {}).items():
            found[(name, key)] = base64.b64decode(value).decode()
        for key, value in (secret.get("stringData") or {}).items():
            found[(name, key)] = value
    return found


def resolved_env(resources: list[dict], container: dict) -> dict[str, str | None]:
    """:func:`container_env` with the values read from the overlay's own Secrets
    filled in (a Secret the overlay does not hold stays None)."""
    env = container_env(resources, container)
    secrets = secret_values(resources)
    for item in container.get("env", []):
        ref = secret_ref(item)
        if ref is not None:
            env[item["name"]] = secrets.get(ref)
    return env
