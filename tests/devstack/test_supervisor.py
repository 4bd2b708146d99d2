"""The demo's supervisor on real (tiny) processes: a killed process is restarted
with backoff after what is left of its process group is killed, and shutdown goes
tier by tier, SIGKILLing the group of one that ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator

import pytest

from devstack import procfs
from devstack.launcher import AppLauncher, describe_exit
from devstack.supervisor import Backoff, Supervisor
from devstack.wait import wait_until

# Forks a child (like a pre-fork server's worker), then both wait to be killed.
FORKING = "import os, time\nos.fork()\ntime.sleep(120)"
# Ignores SIGTERM: only a SIGKILL ends it.
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)"
)
# Records the SIGTERM it got (with the time), then exits 0.
POLITE = (
    "import pathlib, signal, sys, time\n"
    "def stop(*_):\n"
    "    pathlib.Path(sys.argv[1]).write_text(repr(time.monotonic()))\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "time.sleep(120)"
)


@pytest.fixture
def launcher(tmp_path) -> Iterator[AppLauncher]:
    launcher = AppLauncher(env={}, log_dir=tmp_path / "logs")
    yield launcher
    for process in launcher.processes:
        process.kill()
        process.reap_group()


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def test_exits_are_described_for_people():
    assert describe_exit(0) == "status 0"
    assert describe_exit(3) == "status 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(None) == "running"


def test_backoff_doubles_up_to_its_maximum():
    backoff = Backoff(initial=1.0, maximum=5.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_killed_process_is_restarted_and_its_orphans_killed(launcher):
    said: list[str] = []
    exited: list[str] = []
    supervisor = Supervisor(
        launcher,
        say=said.append,
        stop_order=["forking"],
        backoff=Backoff(initial=0.2, maximum=1.0),
        on_exit=lambda p: exited.append(p.name),
    )
    first = launcher.start("forking", python(FORKING), extra_env={"MARK": "x"})
    wait_until(lambda: len(first.group_members()) == 2, timeout=10, what="the fork")
    (orphan,) = [pid for pid in first.group_members() if pid != first.pid]

    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: not first.alive(), timeout=10, what="the kill")
    supervisor.poll()

    assert exited == ["forking"]
    assert said[0].startswith("forking exited (killed by SIGKILL, pid ")
    assert said[0].endswith("restarting it in 0.2 s")
    assert procfs.stat(orphan) is None or procfs.stat(orphan).zombie

    def restarted():
        supervisor.poll()
        return launcher.processes[0] is not first

    wait_until(restarted, timeout=10, interval=0.05, what="the restart")
    second = launcher.processes[0]
    assert said[-1] == f"forking restarted (pid {second.pid})"
    assert second.alive() and second.argv == first.argv
    assert second.extra_env["MARK"] == "x"
    assert second.metrics_port == first.metrics_port
    assert launcher.processes == [second]

    # A second exit soon after: the delay doubles.
    os.kill(second.pid, signal.SIGKILL)
    wait_until(lambda: not second.alive(), timeout=10, what="the second kill")
    supervisor.poll()
    assert said[-1].endswith("restarting it in 0.4 s")


def test_shutdown_goes_tier_by_tier_and_kills_what_ignores_sigterm(launcher, tmp_path):
    said: list[str] = []
    supervisor = Supervisor(launcher, say=said.append, stop_order=["first", "last"])
    last = launcher.start("last", python(POLITE, str(tmp_path / "last")))
    stubborn = launcher.start("first-stubborn", python(STUBBORN))
    first = launcher.start("first", python(POLITE, str(tmp_path / "first")))
    wait_until(
        lambda: "ready" in stubborn.log_path.read_text(), timeout=10, what="ready"
    )

    outcomes = supervisor.shutdown(timeout=1.0)

    assert outcomes[0].startswith("first-stubborn killed by SIGKILL (still running")
    assert outcomes[1:] == ["first status 0", "last status 0"]
    # "last" got its SIGTERM only once its tier's turn came.
    assert float((tmp_path / "last").read_text()) > float(
        (tmp_path / "first").read_text()
    )
    assert launcher.processes == []
    for process in (last, stubborn, first):
        assert not process.alive() and process.group_members() == []


def test_listening_pids_names_the_holder_of_a_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert procfs.listening_pids(port) == [os.getpid()]
    assert procfs.listening_pids(port) == []
