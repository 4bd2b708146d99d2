"""The FIX acceptor of the real process (``python -m exchange_mock``): its own
port next to HTTP, fills driven by ``POST /admin/quotes``, faults set through
``POST /admin/faults``, the journal across a process restart, Logouts on
SIGTERM, and its counters in ``/metrics``."""

from __future__ import annotations

import pytest

from exchange_mock.config import Config, ConfigError
from tests.exchange_mock.fixclient import FixTestClient
from tests.exchange_mock.process import ExchangeProcess


@pytest.fixture
def exchange(tmp_path):
    process = ExchangeProcess(
        tmp_path / "x.db",
        tmp_path / "exchange.log",
        "0",
        env={"EXCHANGE_FIX_USERNAME": "broker", "EXCHANGE_FIX_PASSWORD": "pw"},
    )
    yield process
    process.terminate()


def logon(process: ExchangeProcess, next_out: int = 1) -> FixTestClient:
    client = process.fix_client()
    client.next_out = next_out
    client.logon(epoch=1, username="broker", password="pw")
    return client


def test_order_filled_by_a_quote_move_and_http_introspection(exchange):
    client = logon(exchange)
    assert (
        exchange.request("POST", "/admin/quotes/AAPL", {"last": "190.00"}).status == 200
    )
    client.order("p-1", price="189.00")
    assert client.expect("8").get(150) == "0"
    exchange.request("POST", "/admin/quotes/AAPL", {"last": "188.00"})
    fill = client.expect("8")
    assert (fill.get(150), fill.get(39), fill.get(31)) == ("F", "2", "188.02")
    order = exchange.request("GET", "/orders/p-1").json()
    assert (order["session_id"], order["status"]) == ("BROKER-0", "filled")
    metrics = exchange.request("GET", "/metrics").raw_body.decode()
    assert 'exchange_fix_events_total{event="logons"} 1' in metrics
    assert "exchange_fix_sessions_logged_on 1" in metrics


def test_admin_faults_reach_the_fix_link(exchange):
    client = logon(exchange)
    faults = {
        "fix_refuse_logons": True,
        "fix_garble_rate": 1,
        "fix_fill_outside_limit": "0.5",
    }
    configured = exchange.request("POST", "/admin/faults", faults)
    assert configured.status == 200, configured.raw_body
    assert configured.json()["config"]["fix_fill_outside_limit"] == "0.5"
    client.order("f-1", price="100.00")
    assert not client.expect("8").checksum_ok
    refused = exchange.fix_client("BROKER-9")
    refused.logon(expect=False)
    assert refused.expect("5").get(58) == "logon refused (fault injection)"
    counters = exchange.request("GET", "/admin/faults").json()["counters"]
    assert counters["fix_garbled_reports"] == 1
    assert counters["fix_refused_logons"] == 1


def test_restart_resends_from_the_journal_and_stop_logs_out(tmp_path):
    store = tmp_path / "x.db"
    env = {"EXCHANGE_FIX_USERNAME": "broker", "EXCHANGE_FIX_PASSWORD": "pw"}
    first = ExchangeProcess(store, tmp_path / "first.log", "0", env=env)
    try:
        client = logon(first)
        client.order("keep-1", price="100.00")
        report = client.expect("8")
    finally:
        assert first.terminate() == 0, first.logs()
    assert client.expect("5").get(58) == "exchange stopping"

    second = ExchangeProcess(store, tmp_path / "second.log", "0", env=env)
    try:
        again = logon(second, next_out=client.next_out)
        assert again.received[-1].seq == 4  # A, 8, 5 were 1..3
        again.send("2", [(7, 2), (16, 2)])
        resent = again.expect("8")
        assert (resent.seq, resent.get(43), resent.get(17)) == (2, "Y", report.get(17))
    finally:
        assert second.terminate() == 0, second.logs()


def test_fix_configuration_defaults_and_checks():
    config = Config.from_env({})
    assert (config.fix_host, config.fix_port, config.fix_comp_id) == (
        "127.0.0.1",
        8101,
        "EXCHANGE",
    )
    assert config.fix_username is None and config.fix_password is None
    # The FIX port follows the HTTP interface unless told otherwise.
    token = {"EXCHANGE_ADMIN_TOKEN": "x" * 16}
    assert Config.from_env({**token, "EXCHANGE_HOST": "0.0.0.0"}).fix_host == "0.0.0.0"
    assert Config.from_env({"EXCHANGE_FIX_HOST": "::1"}).fix_host == "::1"
    for bad in (
        {"EXCHANGE_FIX_PORT": "8100"},  # the HTTP port
        {"EXCHANGE_FIX_PORT": "70000"},
        {"EXCHANGE_FIX_COMP_ID": "EX CHANGE"},
        {"EXCHANGE_FIX_PASSWORD": "a\x01b"},
    ):
        with pytest.raises(ConfigError):
            Config.from_env(bad)
