"""A small kustomize for the subset ``k8s/`` uses, so the deploy tests render the
overlays with no binary and no network.

Supported kustomization fields: ``resources`` (files and directories), ``namespace``,
``patches`` (strategic merge, also ``$patch: delete``, and JSON 6902 with a
``target``), ``images`` and ``replicas``. Anything else raises
:class:`Unsupported`: use the real kustomize (``test_kustomize.py`` compares the two
whenever a binary is available) or extend this module.

Strategic merge follows Kubernetes for the fields k8s/ patches: lists of containers,
env, volumes, ... merge by their key; other lists are replaced. Custom resources
(Strimzi) get a JSON merge patch (RFC 7386), as in kustomize.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "patches",
    "images",
    "replicas",
}
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# x-kubernetes-patch-merge-key of the list fields a patch may touch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SCALABLE_KINDS = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}


class Unsupported(NotImplementedError):
    """The kustomization uses a feature this renderer does not implement."""


class RenderError(ValueError):
    """The kustomization is wrong (a patch without target, a duplicate, ...)."""


Resource = dict[str, Any]


def load_yaml_documents(path: Path) -> list[Resource]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def resource_id(resource: Resource) -> tuple[str, str, str, str]:
    meta = resource.get("metadata", {})
    return (
        group_of(resource.get("apiVersion", "")),
        resource.get("kind", ""),
        meta.get("namespace", ""),
        meta.get("name", ""),
    )


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def is_builtin(resource: Resource) -> bool:
    """A Kubernetes API kind (core, apps, ..., *.k8s.io), not a custom resource."""
    group = group_of(resource.get("apiVersion", ""))
    return "." not in group or group.endswith(".k8s.io")


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise RenderError(f"{directory}: no kustomization.yaml")


def render(directory: Path | str) -> list[Resource]:
    """The resources ``kustomize build <directory>`` would print."""
    directory = Path(directory)
    path = kustomization_file(directory)
    kustomization = yaml.safe_load(path.read_text()) or {}
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise Unsupported(f"{path}: fields {sorted(unknown)}")

    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(render(target))
        elif target.is_file():
            resources.extend(load_yaml_documents(target))
        else:
            raise RenderError(f"{path}: resource {entry!r} not found")
    _check_unique(resources, path)

    for patch in kustomization.get("patches", []):
        resources = _apply_patch_entry(resources, patch, directory)
    for image in kustomization.get("images", []):
        _apply_image(resources, image, path)
    for replica in kustomization.get("replicas", []):
        _apply_replicas(resources, replica, path)
    namespace = kustomization.get("namespace")
    if namespace:
        _apply_namespace(resources, namespace, path)
    _check_unique(resources, path)
    return resources


def _check_unique(resources: list[Resource], path: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        rid = resource_id(resource)
        if rid in seen:
            raise RenderError(f"{path}: duplicate resource {rid}")
        seen.add(rid)


# --- patches


def _apply_patch_entry(
    resources: list[Resource], entry: dict, directory: Path
) -> list[Resource]:
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown:
        raise Unsupported(f"patch options {sorted(unknown)}")
    if "path" in entry:
        text = (directory / entry["path"]).read_text()
    else:
        text = entry["patch"]
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if len(documents) == 1 and isinstance(documents[0], list):
        if "target" not in entry:
            raise RenderError("a JSON 6902 patch needs a target")
        matches = _select(resources, entry["target"])
        for resource in matches:
            _json6902(resource, documents[0])
        return resources
    for document in documents:
        if not isinstance(document, dict):
            raise RenderError(f"not a patch: {document!r}")
        if "target" in entry:
            matches = _select(resources, entry["target"])
        else:
            matches = _select(
                resources,
                {
                    "group": group_of(document.get("apiVersion", "")),
                    "kind": document.get("kind"),
                    "name": document.get("metadata", {}).get("name"),
                },
            )
        if document.get("$patch") == "delete":
            doomed = {id(resource) for resource in matches}
            resources = [r for r in resources if id(r) not in doomed]
            continue
        body = {k: v for k, v in document.items() if k != "$patch"}
        for resource in matches:
            merged = (
                strategic_merge(resource, body)
                if is_builtin(resource)
                else json_merge(resource, body)
            )
            # The patch's own name (or its absence) never renames the target.
            merged["metadata"]["name"] = resource["metadata"]["name"]
            resource.clear()
            resource.update(merged)
    return resources


def _select(resources: list[Resource], target: dict) -> list[Resource]:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unknown:
        raise Unsupported(f"patch target fields {sorted(unknown)}")
    found = []
    for resource in resources:
        api_version = resource.get("apiVersion", "")
        meta = resource.get("metadata", {})
        if target.get("group") is not None and group_of(api_version) != target["group"]:
            continue
        if target.get("version") and api_version.split("/")[-1] != target["version"]:
            continue
        if target.get("kind") and resource.get("kind") != target["kind"]:
            continue
        if target.get("name") and meta.get("name") != target["name"]:
            continue
        if target.get("namespace") and meta.get("namespace") != target["namespace"]:
            continue
        found.append(resource)
    if not found:
        raise RenderError(f"patch target matches no resource: {target}")
    return found


def strategic_merge(original: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes strategic merge for the subset described in the module doc."""
    if isinstance(patch, dict) and isinstance(original, dict):
        if "$patch" in patch:
            raise Unsupported(f"$patch directive inside {field or 'a resource'}")
        result = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = strategic_merge(result[key], value, key)
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(patch, list) and isinstance(original, list):
        key = _merge_key(field, original + patch)
        if key is None:
            return copy.deepcopy(patch)
        # As Kubernetes orders them: the patch's items (merged into the original's
        # when the key matches) in the patch's order, then the untouched originals.
        by_key = {item.get(key): item for item in original}
        result = [
            strategic_merge(by_key[item.get(key)], item, field)
            if item.get(key) in by_key
            else copy.deepcopy(item)
            for item in patch
        ]
        patched = {item.get(key) for item in patch}
        result.extend(
            copy.deepcopy(item) for item in original if item.get(key) not in patched
        )
        return result
    return copy.deepcopy(patch)


def _merge_key(field: str, items: list) -> str | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field == "ports":  # containers: containerPort; Services: port
        return "containerPort" if "containerPort" in items[0] else "port"
    return None


def json_merge(original: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge(result.get(key), value)
    return result


def _json6902(resource: Resource, operations: list[dict]) -> None:
    for operation in operations:
        op = operation.get("op")
        parts = [
            p.replace("~1", "/").replace("~0", "~")
            for p in operation["path"].split("/")[1:]
        ]
        parent: Any = resource
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op in ("add", "replace"):
            value = copy.deepcopy(operation["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                elif op == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if op == "replace" and last not in parent:
                    raise RenderError(f"replace of a missing path {operation['path']}")
                parent[last] = value
        elif op == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise Unsupported(f"JSON 6902 op {op!r}")


# --- images, replicas, namespace


def pod_spec(resource: Resource) -> dict | None:
    """The pod template's spec of a workload, or None."""
    if resource.get("kind") == "Pod":
        return resource.get("spec")
    if resource.get("kind") == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if resource.get("kind") in WORKLOAD_KINDS:
        return resource["spec"]["template"]["spec"]
    return None


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of an image reference (a registry port is not a tag)."""
    name, _, digest = image.partition("@")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _apply_image(resources: list[Resource], rule: dict, path: Path) -> None:
    unknown = set(rule) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise Unsupported(f"{path}: image fields {sorted(unknown)}")
    for resource in resources:
        spec = pod_spec(resource)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, tag, digest = split_image(container["image"])
            if name != rule["name"]:
                continue
            name = rule.get("newName", name)
            if "newTag" in rule:
                tag = str(rule["newTag"])
            if "digest" in rule:
                tag, digest = None, rule["digest"]
            image = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            container["image"] = image


def _apply_replicas(resources: list[Resource], rule: dict, path: Path) -> None:
    matched = False
    for resource in resources:
        if (
            resource.get("kind") in SCALABLE_KINDS
            and resource["metadata"]["name"] == rule["name"]
        ):
            resource.setdefault("spec", {})["replicas"] = int(rule["count"])
            matched = True
    if not matched:
        raise RenderError(f"{path}: replicas for unknown workload {rule['name']!r}")


def _apply_namespace(resources: list[Resource], namespace: str, path: Path) -> None:
    for resource in resources:
        kind = resource.get("kind")
        if kind == "Namespace":
            if resource["metadata"]["name"] != namespace:
                raise Unsupported(
                    f"{path}: Namespace {resource['metadata']['name']!r} inside a "
                    f"kustomization with namespace {namespace!r}"
                )
            continue
        if kind in CLUSTER_SCOPED_KINDS:
            continue
        resource.setdefault("metadata", {})["namespace"] = namespace
