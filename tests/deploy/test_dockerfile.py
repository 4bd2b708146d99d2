"""The Dockerfile and .dockerignore: one multi-stage image for every role, non-root,
static files collected at build, the role chosen by the command."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest

from tests.deploy.project import (
    APP_UID,
    DOCKERIGNORE,
    REPO,
    dockerfile_stages,
    exec_form,
    image_entrypoint_and_cmd,
    manage_commands,
    required_production_env,
    role_of,
)

BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "libpq-dev")


def env_of(stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in stage.all("ENV"):
        for word in shlex.split(value):
            name, sep, val = word.partition("=")
            assert sep, f"ENV in legacy 'NAME value' form: {value!r}"
            env[name] = val
    return env


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(path: str) -> bool:
    """Docker's rule: a pattern excludes a path or any directory above it; a later
    ``!pattern`` brings it back."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def test_multi_stage_build_with_a_slim_final_stage_without_compilers():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    builder, final = stages[0], stages[-1]
    assert final.base == "python:3.11-slim"
    builder_runs = " ".join(builder.all("RUN"))
    assert any(tool in builder_runs for tool in BUILD_TOOLS), "builder has build tools"
    final_runs = " ".join(final.all("RUN"))
    assert "apt-get install" not in final_runs
    for tool in BUILD_TOOLS:
        assert tool not in final_runs
    copies = final.all("COPY")
    assert any(c.startswith(f"--from={builder.alias}") for c in copies), (
        "the final stage copies what the builder installed"
    )


def test_every_stage_uses_the_python_of_pyproject():
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]
    assert ">=3.11" in requires and "<3.12" in requires
    for stage in dockerfile_stages():
        assert stage.base.startswith("python:3.11-"), stage.base


def test_dependencies_come_from_pyproject():
    builder = dockerfile_stages()[0]
    runs = " ".join(builder.all("RUN"))
    assert "pyproject.toml" in " ".join(builder.all("COPY"))
    assert "tomllib" in runs and "pip install" in runs


def test_runs_as_a_fixed_non_root_user():
    final = dockerfile_stages()[-1]
    user = final.last("USER")
    assert user is not None, "USER missing: the image would run as root"
    uid, _, gid = user.partition(":")
    assert uid == str(APP_UID), "numeric UID, as Kubernetes' runAsUser says"
    assert gid in ("", str(APP_UID))
    assert f"--uid {APP_UID}" in " ".join(final.all("RUN"))
    # Nothing after USER switches back.
    index = [i["instruction"] for i in final.instructions].index("USER")
    assert "RUN" not in [i["instruction"] for i in final.instructions[index + 1 :]]


def test_runtime_environment():
    final = dockerfile_stages()[-1]
    env = env_of(final)
    assert final.last("WORKDIR") == "/app"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["DJANGO_SETTINGS_MODULE"] == "broker.settings.production"
    assert env["STATIC_ROOT"].startswith("/app/")
    assert env["API_HOST"] == "0.0.0.0", "reachable from outside the container"
    # No secret baked into the image.
    for name in env:
        assert not re.search("SECRET|PASSWORD|TOKEN", name), name
    for name in required_production_env():
        if name != "DJANGO_ALLOWED_HOSTS":
            assert name not in env, f"{name} belongs to the deployment, not the image"


def test_static_files_are_collected_at_build_with_placeholder_settings():
    final = dockerfile_stages()[-1]
    runs = [r for r in final.all("RUN") if "collectstatic" in r]
    assert len(runs) == 1
    run = runs[0]
    assert "manage.py collectstatic --noinput" in run
    # Production settings refuse to load without these: placeholders for this RUN.
    for name in required_production_env():
        assert f"{name}=" in run, f"collectstatic needs {name}"
    # After the source is copied, before the switch to the unprivileged user.
    order = [
        (i["instruction"], i["value"])
        for i in final.instructions
        if i["instruction"] in ("COPY", "RUN", "USER")
    ]
    run_at = order.index(("RUN", run))
    assert any(v.endswith("./broker") for k, v in order[:run_at] if k == "COPY")
    assert ("USER", final.last("USER")) in order[run_at:]


def test_the_role_is_the_command():
    entrypoint, cmd = image_entrypoint_and_cmd()
    assert entrypoint == ["python", "manage.py"]
    assert cmd == ["api"]
    assert role_of(entrypoint + cmd) in manage_commands()
    final = dockerfile_stages()[-1]
    assert exec_form(final.last("ENTRYPOINT")) == entrypoint, "exec form (signals)"


def test_exposes_the_roles_ports():
    final = dockerfile_stages()[-1]
    exposed = {int(p.split("/")[0]) for v in final.all("EXPOSE") for p in v.split()}
    env = env_of(final)
    assert int(env["API_PORT"]) in exposed
    assert int(env["METRICS_PORT"]) in exposed
    assert 8100 in exposed  # exchange_mock


@pytest.mark.parametrize("stage_index", [0, -1])
def test_copied_sources_exist_and_are_in_the_build_context(stage_index):
    stage = dockerfile_stages()[stage_index]
    sources = []
    for value in stage.all("COPY"):
        words = [w for w in value.split() if not w.startswith("--")]
        if value.startswith("--from="):
            continue
        sources.extend(words[:-1])
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".stack/env",
        ".pytest_cache/v/cache",
        ".ruff_cache/x",
        ".hypothesis/examples/x",
        ".schemathesis/x",
        "broker/__pycache__/models.cpython-311.pyc",
        "tests/conftest.py",
        "trade_execution_backend.egg-info/PKG-INFO",
        "k8s/base/kustomization.yaml",
    ],
)
def test_dockerignore_keeps_local_state_out(path):
    assert dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "manage.py",
        "pyproject.toml",
        "broker/settings/production.py",
        "broker/templates/admin/broker/index.html",
        "broker/migrations/__init__.py",
        "executor/runner.py",
        "exchange_mock/__main__.py",
    ],
)
def test_dockerignore_keeps_what_the_image_needs(path):
    assert (REPO / path).exists()
    assert not dockerignored(path)


def image_files() -> set[str]:
    """The repository files the final image receives: what its COPY instructions
    name (from the build context), minus what .dockerignore keeps out of it."""
    final = dockerfile_stages()[-1]
    files: set[str] = set()
    for value in final.all("COPY"):
        if value.startswith("--from="):
            continue
        words = [w for w in value.split() if not w.startswith("--")]
        for source in words[:-1]:
            root = REPO / source
            paths = [root] if root.is_file() else root.rglob("*")
            for path in paths:
                relative = path.relative_to(REPO).as_posix()
                if path.is_file() and not dockerignored(relative):
                    files.add(relative)
    return files


def test_the_image_ships_the_roles_and_never_the_local_tooling():
    files = image_files()
    top = {path.split("/")[0] for path in files}
    assert top == {
        "manage.py",
        "pyproject.toml",
        "broker",
        "relay",
        "executor",
        "exchange_mock",
    }
    assert not [path for path in files if path.startswith("devstack/")]
    # Production settings do not install it either: nothing in the image needs it.
    production = (REPO / "broker" / "settings" / "base.py").read_text()
    assert '"devstack"' not in production
