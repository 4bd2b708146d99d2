"""One vocabulary of roles: every command the Dockerfile, docker-compose.yml, the
Kubernetes overlays and the Makefile run is a real ``manage.py`` command (or
``python -m exchange_mock``), each deployment runs the same roles, and every
environment variable they set is one the code reads."""

from __future__ import annotations

import re

import pytest

from tests.deploy.project import (
    COMPONENT_LABEL,
    EXCHANGE_MOCK_ARGV,
    LONG_RUNNING_ROLES,
    ONE_SHOT_COMMANDS,
    OVERLAYS,
    REPO,
    app_workloads,
    code_string_literals,
    compose_app_services,
    compose_argv,
    compose_env,
    config_map_data,
    containers,
    custom_commands,
    dockerfile_stages,
    image_entrypoint_and_cmd,
    k8s_argv,
    manage_commands,
    overlay,
    pod_labels,
    role_of,
)

# `python manage.py <command>` (Dockerfile) or `$(PY) manage.py <command>` (Makefile).
MANAGE_PY = re.compile(r"(?:python3?|\$\(PY\))\s+manage\.py\s+([a-z_]+)")
# Interpreter settings, not the project's.
INTERPRETER_ENV = {"PATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}


def k8s_roles(name: str, *, init: bool = False) -> dict[str, set[str]]:
    """component → the roles its containers run."""
    return {
        component: {role_of(k8s_argv(c)) for c in containers(workload, init=init)}
        for component, workload in app_workloads(overlay(name)).items()
    }


def compose_roles() -> set[str]:
    return {role_of(compose_argv(s)) for s in compose_app_services().values()}


def test_every_custom_command_is_deployed_or_one_shot():
    deployed = LONG_RUNNING_ROLES - {"exchange_mock"}
    assert custom_commands() == deployed | ONE_SHOT_COMMANDS, (
        "a new manage.py command: deploy it (compose + k8s) or list it as one-shot"
    )


def test_exchange_mock_is_a_runnable_module():
    assert (REPO / "exchange_mock" / "__main__.py").is_file()


@pytest.mark.parametrize("name", OVERLAYS)
def test_kubernetes_runs_only_real_commands(name):
    for component, workload in app_workloads(overlay(name)).items():
        for container in containers(workload):
            argv = k8s_argv(container)
            if argv[:3] != EXCHANGE_MOCK_ARGV:
                assert role_of(argv) in manage_commands(), (component, argv)


@pytest.mark.parametrize("name", OVERLAYS)
def test_kubernetes_components_are_named_after_their_role(name):
    for component, roles in k8s_roles(name).items():
        assert roles == {component.replace("-", "_")}, component


def test_compose_runs_only_real_commands():
    for service_name, service in compose_app_services().items():
        argv = compose_argv(service)
        if argv[:3] != EXCHANGE_MOCK_ARGV:
            assert role_of(argv) in manage_commands(), (service_name, argv)


def test_compose_and_kubernetes_run_the_same_roles():
    local = {role for roles in k8s_roles("local").values() for role in roles}
    prod = {role for roles in k8s_roles("prod").values() for role in roles}
    assert compose_roles() == local == LONG_RUNNING_ROLES | {"migrate"}
    # prod talks to the real exchange instead of the simulator.
    assert prod == local - {"exchange_mock"}


def test_dockerfile_runs_only_real_commands():
    entrypoint, cmd = image_entrypoint_and_cmd()
    assert role_of(entrypoint + cmd) in manage_commands()
    for stage in dockerfile_stages():
        for run in stage.all("RUN"):
            for command in MANAGE_PY.findall(run):
                assert command in manage_commands(), command


def test_makefile_runs_only_real_commands():
    makefile = (REPO / "Makefile").read_text()
    commands = MANAGE_PY.findall(makefile)
    assert commands, "the Makefile runs manage.py"
    for command in commands:
        assert command in manage_commands(local=True), command


def test_makefile_deployment_steps_are_deployed_too():
    """What `make migrate` does before the roles start (migrate, collectstatic) the
    image build, compose and Kubernetes do as well."""
    makefile = (REPO / "Makefile").read_text()
    steps = set(MANAGE_PY.findall(makefile)) - {"demo"}
    assert steps == {"migrate", "collectstatic"}
    dockerfile_runs = " ".join(dockerfile_stages()[-1].all("RUN"))
    assert "manage.py collectstatic" in dockerfile_runs
    assert "migrate" in compose_roles()
    for name in OVERLAYS:
        assert "migrate" in {r for roles in k8s_roles(name).values() for r in roles}


def _env_names() -> dict[str, set[str]]:
    """Where each environment variable is set, by name."""
    names: dict[str, set[str]] = {}
    for service_name, service in compose_app_services().items():
        for key in compose_env(service):
            names.setdefault(key, set()).add(f"compose:{service_name}")
    for name in OVERLAYS:
        resources = overlay(name)
        for key in config_map_data(resources):
            names.setdefault(key, set()).add(f"{name}:broker-config")
        for workload in app_workloads(resources).values():
            for container in containers(workload):
                for item in container.get("env", []):
                    names.setdefault(item["name"], set()).add(
                        f"{name}:{pod_labels(workload)[COMPONENT_LABEL]}"
                    )
    for value in dockerfile_stages()[-1].all("ENV"):
        for word in value.split():
            names.setdefault(word.split("=", 1)[0], set()).add("Dockerfile")
    return names


def test_every_environment_variable_set_is_read_by_the_code():
    unknown = {
        name: sorted(where)
        for name, where in _env_names().items()
        if name not in INTERPRETER_ENV and name not in code_string_literals()
    }
    assert not unknown, f"set but never read (typo?): {unknown}"
