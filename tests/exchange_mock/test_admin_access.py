"""Who reaches the exchange's admin routes: loopback by default; beyond it only
with EXCHANGE_ADMIN_TOKEN, sent as a bearer token; and the quotes port
(EXCHANGE_QUOTES_PORT) serves market data and nothing else."""

from __future__ import annotations

import http.client

import pytest

from devstack.launcher import free_port
from exchange_mock.admin import admin_headers
from exchange_mock.config import Config, ConfigError
from tests.exchange_mock.process import ExchangeProcess, Response, assert_problem

TOKEN = "test-admin-token-0123456789"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """An exchange with an admin token and a quotes port."""
    tmp = tmp_path_factory.mktemp("guarded")
    quotes_port = free_port()
    process = ExchangeProcess(
        tmp / "x.db",
        tmp / "x.log",
        "0",
        env={"EXCHANGE_ADMIN_TOKEN": TOKEN, "EXCHANGE_QUOTES_PORT": str(quotes_port)},
    )
    process.quotes_port = quotes_port
    yield process
    assert process.terminate() == 0, process.logs()


ADMIN_REQUESTS = [
    ("GET", "/admin/faults", None),
    ("POST", "/admin/faults", {"error_rate": 1}),
    ("POST", "/admin/quotes/AAPL", {"last": "5"}),
    ("POST", "/admin/session/close", None),
    ("GET", "/admin/stats", None),
    ("GET", "/admin/no-such-thing", None),
    ("GET", "/admin", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_REQUESTS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", "Bearer", TOKEN],
)
def test_admin_routes_refuse_a_request_without_the_token(
    guarded, method, path, body, authorization
):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = guarded.request(method, path, body, headers=headers, admin_auth=False)
    problem = assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in problem["detail"]
    # Nothing was done: no fault configured, the market still open.
    faults = guarded.request("GET", "/admin/faults").json()
    assert faults["config"]["error_rate"] == 0
    assert guarded.request("GET", "/clock").json()["is_open"] is True


def test_admin_routes_answer_with_the_token(guarded):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert admin_headers({"EXCHANGE_ADMIN_TOKEN": TOKEN}) == headers
    response = guarded.request(
        "POST", "/admin/quotes/AAPL", {"last": "123.45"}, headers=headers
    )
    assert response.status == 200, response.raw_body
    assert guarded.request("GET", "/quotes/AAPL").json()["last"] == "123.45"
    assert guarded.request("GET", "/admin/stats", headers=headers).status == 200


def test_public_routes_need_no_token(guarded):
    for path in ["/quotes/AAPL", "/orders", "/fix/sessions", "/metrics"]:
        response = guarded.request("GET", path)
        assert response.status == 200, (path, response.raw_body)


def quotes_port_request(process, method: str, path: str) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", process.quotes_port, timeout=10)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
        return Response(conn.getresponse())
    finally:
        conn.close()


def test_the_quotes_port_serves_market_data_and_nothing_else(guarded):
    for path in ["/healthz", "/symbols", "/quotes", "/quotes/AAPL", "/clock"]:
        assert quotes_port_request(guarded, "GET", path).status == 200, path
    for method, path in [
        ("GET", "/orders"),
        ("GET", "/orders/x"),
        ("GET", "/fix/sessions"),
        ("GET", "/admin/faults"),
        ("POST", "/admin/quotes/AAPL"),
        ("GET", "/metrics"),
    ]:
        assert_problem(quotes_port_request(guarded, method, path), 404, "not_found")


def test_an_exchange_beyond_loopback_without_a_token_does_not_start(tmp_path):
    # ExchangeProcess fails the test with the exit status and the log.
    with pytest.raises(pytest.fail.Exception, match=r"(?s)exit 2.*ADMIN_TOKEN"):
        ExchangeProcess(
            tmp_path / "x.db",
            tmp_path / "x.log",
            env={"EXCHANGE_HOST": "0.0.0.0", "EXCHANGE_ADMIN_TOKEN": ""},
        )


# --- configuration -----------------------------------------------------------


def test_config_binds_loopback_unless_told_otherwise():
    assert Config.from_env({}).host == "127.0.0.1"
    # A URL naming another host says how clients reach the exchange (a Service,
    # a port mapping); it does not open the exchange beyond loopback.
    config = Config.from_env({"EXCHANGE_URL": "http://exchange-mock:8200"})
    assert (config.host, config.port) == ("127.0.0.1", 8200)
    assert Config.from_env({"EXCHANGE_URL": "http://[::1]:8200"}).host == "::1"
    assert Config.from_env({"EXCHANGE_URL": "http://localhost:8200"}).host == (
        "localhost"
    )
    assert Config.from_env({}).admin_token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "exchange-mock"])
def test_config_requires_a_token_to_bind_beyond_loopback(host):
    with pytest.raises(ConfigError, match="EXCHANGE_ADMIN_TOKEN"):
        Config.from_env({"EXCHANGE_HOST": host})
    config = Config.from_env({"EXCHANGE_HOST": host, "EXCHANGE_ADMIN_TOKEN": TOKEN})
    assert (config.host, config.admin_token) == (host, TOKEN)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXCHANGE_ADMIN_TOKEN", "short"),
        ("EXCHANGE_ADMIN_TOKEN", "sixteen chars\nwith a newline"),
        ("EXCHANGE_QUOTES_PORT", "8100"),  # the main port
        ("EXCHANGE_QUOTES_PORT", "70000"),
        ("EXCHANGE_QUOTES_PORT", "-1"),
        ("EXCHANGE_QUOTES_PORT", "quotes"),
    ],
)
def test_config_refuses_bad_access_settings(name, value):
    with pytest.raises(ConfigError):
        Config.from_env({name: value})


def test_config_reads_the_quotes_port():
    assert Config.from_env({}).quotes_port is None
    assert Config.from_env({"EXCHANGE_QUOTES_PORT": "8102"}).quotes_port == 8102
