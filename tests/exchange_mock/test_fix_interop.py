"""Conformance against the reference engine: a QuickFIX 1.16 initiator (PyPI
``quickfix``, validating everything it receives against its FIX 4.4
dictionary) logs on to the exchange's acceptor (the real process), places a
limit order that fills when the quote moves, a market order, cancels a
resting order and asks for an order's status — and never rejects a message of
ours. A second test starts QuickFIX before the exchange: its refused connects
number Logons, so its first real Logon is above the expected number."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devstack.launcher import free_port
from devstack.wait import wait_until
from tests.exchange_mock.process import ExchangeProcess

pytest.importorskip(
    "quickfix",
    reason="quickfix (the reference FIX engine, a dev dependency: "
    "pip install quickfix==1.16.0) is not installed",
)

SCRIPT = Path(__file__).with_name("qf_initiator.py")
CREDENTIALS = {"EXCHANGE_FIX_USERNAME": "broker", "EXCHANGE_FIX_PASSWORD": "pw"}


class QuickFixInitiator:
    """qf_initiator.py in a subprocess; its JSON events collected by a thread."""

    def __init__(self, port: int, workdir: Path, **env: str) -> None:
        self.events: list[dict] = []
        self.popen = subprocess.Popen(
            [sys.executable, str(SCRIPT)],
            env={
                "PATH": "/usr/bin:/bin",
                "FIX_PORT": str(port),
                "FIX_WORKDIR": str(workdir),
                "FIX_USERNAME": "broker",
                "FIX_PASSWORD": "pw",
                "FIX_EPOCH": "7",
                **env,
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda e: e["event"] == "started", 15)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            event = (
                json.loads(line)
                if line.startswith("{")
                else {"event": "output", "line": line.rstrip()}
            )
            self.events.append(event)

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        """The first event (seen before or arriving now) matching predicate."""
        return wait_until(
            lambda: next((e for e in list(self.events) if predicate(e)), None),
            timeout=timeout,
            what="a QuickFIX event",
            alive=lambda: self.popen.poll() is None,
            interval=0.02,
        )

    def command(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def report(self, **tags: str) -> dict[int, str]:
        """The first ExecutionReport received whose fields include ``tags``
        (given as ``t11="x"``)."""
        wanted = {int(name[1:]): value for name, value in tags.items()}

        def matches(event: dict) -> bool:
            if event["event"] != "fromApp":
                return False
            fields = fields_of(event["msg"])
            return all(fields.get(tag) == value for tag, value in wanted.items())

        return fields_of(self.wait_for(matches)["msg"])

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.command("quit")
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def sent_admin(self, msg_type: str) -> list[dict[int, str]]:
        return [
            fields_of(e["msg"])
            for e in self.events
            if e["event"] == "toAdmin" and fields_of(e["msg"]).get(35) == msg_type
        ]


def fields_of(text: str) -> dict[int, str]:
    fields: dict[int, str] = {}
    for pair in text.strip("|").split("|"):
        tag, _, value = pair.partition("=")
        fields.setdefault(int(tag), value)
    return fields


@pytest.fixture
def exchange(tmp_path):
    process = ExchangeProcess(
        tmp_path / "x.db", tmp_path / "exchange.log", "0", env=CREDENTIALS
    )
    yield process
    process.terminate()


def set_last(exchange: ExchangeProcess, last: str) -> None:
    response = exchange.request("POST", "/admin/quotes/AAPL", {"last": last})
    assert response.status == 200, response.raw_body


def test_quickfix_initiator_trades_through_the_acceptor(exchange, tmp_path):
    set_last(exchange, "190.00")  # bid 189.98, ask 190.02
    initiator = QuickFixInitiator(exchange.fix_port, tmp_path / "qf")
    try:
        initiator.wait_for(lambda e: e["event"] == "onLogon", 15)

        initiator.command("order L1 AAPL 1 10 189.00")
        new = initiator.report(t11="L1", t150="0")
        assert (new[39], new[151], new[55], new[38]) == ("0", "10", "AAPL", "10")
        set_last(exchange, "188.00")
        fill = initiator.report(t11="L1", t150="F")
        assert (fill[39], fill[32], fill[31], fill[14]) == ("2", "10", "188.02", "10")

        initiator.command("order M1 AAPL 2 5")
        market = initiator.report(t11="M1", t150="F")
        assert (market[39], market[31], market[151]) == ("2", "187.98", "0")

        initiator.command("order R1 AAPL 1 3 150.00")
        initiator.report(t11="R1", t150="0")
        initiator.command("cancel R1:C R1 AAPL 1")
        canceled = initiator.report(t11="R1:C", t150="4")
        assert (canceled[41], canceled[39], canceled[151]) == ("R1", "4", "0")

        initiator.command("status L1 AAPL 1")
        state = initiator.report(t11="L1", t150="I")
        assert (state[39], state[14], state[6]) == ("2", "10", "188.02")
        initiator.command("status NOPE AAPL 1")
        unknown = initiator.report(t11="NOPE", t150="I")
        assert (unknown[39], unknown[103]) == ("8", "5")
    finally:
        assert initiator.stop() == 0
    # QuickFIX checked every message of ours against its FIX 4.4 dictionary:
    # a Reject (3) from it would name what it refused.
    assert initiator.sent_admin("3") == []
    assert not [e for e in initiator.events if e["event"] == "error"]
    logs = exchange.logs()
    assert "fix_logon session=BROKER-0" in logs and "epoch=7" in logs
    assert "fix_reject_received" not in logs
    assert exchange.request("GET", "/orders/R1").json()["status"] == "canceled"


def test_quickfix_logon_numbered_past_refused_connects(tmp_path):
    """QuickFIX numbers a Logon for every refused connect: its first real Logon
    comes above 1. The acceptor takes it, then asks for the gap; QuickFIX
    fills it with a GapFill and the session trades."""
    fix_port = free_port()
    initiator = QuickFixInitiator(fix_port, tmp_path / "qf", FIX_RECONNECT="1")
    exchange = None
    try:
        # Nothing listens yet: wait for two Logons QuickFIX "sent" for nothing.
        initiator.wait_for(lambda e: len(initiator.sent_admin("A")) >= 2, 10)
        exchange = ExchangeProcess(
            tmp_path / "x.db",
            tmp_path / "exchange.log",
            "0",
            env={**CREDENTIALS, "EXCHANGE_FIX_PORT": str(fix_port)},
        )
        initiator.wait_for(lambda e: e["event"] == "onLogon", 15)
        logon = initiator.sent_admin("A")[-1]
        assert int(logon[34]) > 1
        gap_fill = initiator.wait_for(
            lambda e: e["event"] == "toAdmin" and "|35=4|" in e["msg"]
        )
        assert fields_of(gap_fill["msg"])[123] == "Y"
        initiator.command("order G1 AAPL 1 1")
        assert initiator.report(t11="G1", t150="F")[39] == "2"
    finally:
        assert initiator.stop() == 0
        if exchange is not None:
            exchange.terminate()
    assert initiator.sent_admin("3") == []
