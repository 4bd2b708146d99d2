"""The venue protocol over real HTTP against the real process: sessions and epoch
fencing, resting limit orders, cancel, the long-poll report feed, the admin
controls and fault injection, and a restart."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from decimal import Decimal

import pytest

from devstack.wait import wait_until
from tests.exchange_mock.process import (
    ExchangeProcess,
    Response,
    assert_problem,
    fence,
    new_id,
    order_body,
)

CONNECTION_LOST = (OSError, http.client.HTTPException)


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    """One exchange with frozen quotes, shared: every test uses its own session
    and order ids, and sets the AAPL quote it needs."""
    tmp = tmp_path_factory.mktemp("venue")
    process = ExchangeProcess(tmp / "venue.db", tmp / "venue.log", "0")
    yield process
    assert process.terminate() == 0, process.logs()


@pytest.fixture(autouse=True)
def clear_faults(request):
    yield
    if "venue" in request.fixturenames:
        venue = request.getfixturevalue("venue")
        assert venue.request("POST", "/admin/faults", {}).status == 200


@pytest.fixture
def fresh(tmp_path):
    """An exchange of its own, for tests that change the market session."""
    process = ExchangeProcess(tmp_path / "x.db", tmp_path / "log", "0")
    yield process
    assert process.terminate() == 0, process.logs()


def new_session() -> str:
    return f"trades.{uuid.uuid4().hex[:8]}"


def set_quote(venue: ExchangeProcess, last: str = "190.00", size: str = "1000"):
    """AAPL at ``last`` (bid last-0.02, ask last+0.02 around 190)."""
    response = venue.request("POST", "/admin/quotes/AAPL", {"last": last, "size": size})
    assert response.status == 200, response.raw_body
    return response.json()


def limit_body(cid: str, limit_price: str = "189.00", **overrides) -> dict:
    return order_body(cid, type="limit", limit_price=limit_price, **overrides)


def reports(venue, session, after=0, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in {"after": after, **params}.items())
    response = venue.request("GET", f"/sessions/{session}/reports?{query}")
    assert response.status == 200, response.raw_body
    return response.json()


def summary(feed: dict) -> list[tuple]:
    return [(r["seq"], r["type"], r["order"]["status"]) for r in feed["reports"]]


def test_logon_and_epoch_fencing(venue):
    set_quote(venue)
    session = new_session()
    logon = venue.request("POST", f"/sessions/{session}/logon", {"epoch": 5})
    assert logon.json() == {"session_id": session, "epoch": 5, "last_seq": 0}

    # Lower epoch: 409 and nothing done.
    stale_cid = new_id()
    stale = venue.request(
        "POST", "/orders", order_body(stale_cid), headers=fence(session, 4)
    )
    problem = assert_problem(stale, 409, "stale_epoch")
    assert (problem["epoch"], problem["current_epoch"]) == (4, 5)
    assert_problem(venue.request("GET", f"/orders/{stale_cid}"), 404, "unknown_order")
    assert reports(venue, session) == {"reports": [], "last_seq": 0}

    # Equal: fine. Higher: the new highest, 5 is stale from then on.
    same = venue.request(
        "POST", "/orders", order_body(new_id()), headers=fence(session, 5)
    )
    assert same.status == 201
    assert same.json()["session_id"] == session
    higher = venue.request(
        "POST", "/orders", order_body(new_id()), headers=fence(session, 6)
    )
    assert higher.status == 201
    assert_problem(
        venue.request("POST", f"/sessions/{session}/logon", {"epoch": 5}),
        409,
        "stale_epoch",
    )
    relogon = venue.request("POST", f"/sessions/{session}/logon", {"epoch": 6})
    assert relogon.json()["last_seq"] == 2
    assert_problem(
        venue.request("GET", f"/sessions/{session}/reports", headers=fence(session, 5)),
        409,
        "stale_epoch",
    )
    # Unfenced orders keep working and belong to the "default" session.
    unfenced = venue.request("POST", "/orders", order_body(new_id())).json()
    assert unfenced["session_id"] == "default"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Session": "trades.0"},
        {"X-Epoch": "1"},
        {"X-Session": "trades.0", "X-Epoch": "-1"},
        {"X-Session": "trades.0", "X-Epoch": "1.5"},
        {"X-Session": "trades.0", "X-Epoch": "abc"},
        {"X-Session": "trades.0", "X-Epoch": "99999999999999999999"},
        {"X-Session": "has space", "X-Epoch": "1"},
        {"X-Session": "x" * 129, "X-Epoch": "1"},
    ],
)
def test_malformed_session_headers_are_400(venue, headers):
    cid = new_id()
    response = venue.request("POST", "/orders", order_body(cid), headers=headers)
    assert_problem(response, 400, "invalid_session")
    assert_problem(venue.request("GET", f"/orders/{cid}"), 404, "unknown_order")


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/sessions/s1/logon", {"epoch": "x"}, "invalid_session"),
        ("/sessions/s1/logon", {"epoch": True}, "invalid_session"),
        ("/sessions/s1/logon", {"epoch": -1}, "invalid_session"),
        ("/sessions/s1/logon", {}, "invalid_session"),
        ("/sessions/s1/logon", {"epoch": 1, "extra": 1}, "invalid_session"),
        ("/sessions/s1/logon", [], "invalid_session"),
        ("/sessions/a%20b/logon", {"epoch": 1}, "invalid_session"),
        ("/admin/quotes/AAPL", {"last": "0.5"}, "invalid_quote"),
        ("/admin/quotes/AAPL", {"last": "190.001"}, "invalid_quote"),
        ("/admin/quotes/AAPL", {"size": "-1"}, "invalid_quote"),
        ("/admin/quotes/AAPL", {"price": "1"}, "invalid_quote"),
        ("/admin/faults", {"error_rate": 2}, "invalid_faults"),
        ("/admin/faults", {"paths": "/orders"}, "invalid_faults"),
    ],
)
def test_malformed_control_requests_are_400(venue, path, body, code):
    assert_problem(venue.request("POST", path, body), 400, code)


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("after=-1", {}),
        ("after=x", {}),
        ("limit=0", {}),
        ("wait=soon", {}),
        ("wait=-1", {}),
        ("", fence("someone.else", 1)),  # the header must name the path's session
    ],
)
def test_malformed_feed_reads_are_400(venue, query, headers):
    response = venue.request("GET", f"/sessions/s1/reports?{query}", headers=headers)
    assert response.status == 400
    assert response.json()["code"] in {"invalid_query", "invalid_session"}


def test_unknown_session_feed_is_empty_and_admin_unknown_symbol_404(venue):
    assert reports(venue, new_session()) == {"reports": [], "last_seq": 0}
    assert_problem(
        venue.request("POST", "/admin/quotes/NOPE", {"last": "10"}),
        404,
        "unknown_symbol",
    )


def test_resting_limit_fills_when_the_price_moves_and_wakes_the_long_poll(venue):
    set_quote(venue)  # ask 190.02
    session = new_session()
    cid = new_id()
    placed = venue.request(
        "POST", "/orders", limit_body(cid), headers=fence(session, 1)
    )
    assert placed.status == 201
    order = placed.json()
    assert (order["status"], order["leaves_quantity"]) == ("new", "10")
    assert summary(reports(venue, session)) == [(1, "new", "new")]

    polled: dict[str, Response] = {}

    def long_poll() -> None:
        polled["response"] = venue.request(
            "GET",
            f"/sessions/{session}/reports?after=1&wait=10",
            headers=fence(session, 1),
            timeout=20,
        )

    started = time.monotonic()
    poller = threading.Thread(target=long_poll)
    poller.start()
    wait_until(
        lambda: venue.request("GET", "/admin/stats").json()["feed_waiters"] >= 1,
        timeout=10,
        what="the long-poll to block",
    )
    set_quote(venue, "188.50")  # ask 188.52 <= 189: crosses
    poller.join(15)
    assert not poller.is_alive()
    assert time.monotonic() - started < 10  # woken, not timed out
    feed = polled["response"].json()
    [fill] = feed["reports"]
    assert (fill["seq"], fill["type"], feed["last_seq"]) == (2, "fill", 2)
    assert fill["execution"]["price"] == "188.52"  # the ask, better than 189
    assert fill["execution"]["exec_id"] == order["order_id"] + "-1"
    assert fill["order"]["status"] == "filled"
    assert venue.request("GET", f"/orders/{cid}").json() == fill["order"]


def test_long_poll_times_out_empty(venue):
    session = new_session()
    started = time.monotonic()
    assert reports(venue, session, wait="0.2") == {"reports": [], "last_seq": 0}
    assert time.monotonic() - started >= 0.2


def test_partial_fills_by_touch_size(venue):
    set_quote(venue, size="400")
    session = new_session()
    cid = new_id()
    placed = venue.request(
        "POST",
        "/orders",
        limit_body(cid, "191", quantity="1000"),
        headers=fence(session, 1),
    ).json()
    assert placed["status"] == "partially_filled"
    assert (placed["filled_quantity"], placed["leaves_quantity"]) == ("400", "600")
    set_quote(venue, size="400")  # a tick: another 400
    set_quote(venue, size="1000")  # the last 200
    feed = reports(venue, session)
    assert summary(feed) == [
        (1, "fill", "partially_filled"),
        (2, "fill", "partially_filled"),
        (3, "fill", "filled"),
    ]
    executions = [r["execution"] for r in feed["reports"]]
    assert [e["quantity"] for e in executions] == ["400", "400", "200"]
    assert [e["exec_id"] for e in executions] == [
        f"{placed['order_id']}-{n}" for n in (1, 2, 3)
    ]
    final = venue.request("GET", f"/orders/{cid}").json()
    assert (final["status"], final["leaves_quantity"]) == ("filled", "0")

    # ioc: what does not fill at once is canceled at once.
    ioc = venue.request(
        "POST",
        "/orders",
        limit_body(new_id(), "191", quantity="1500", time_in_force="ioc"),
        headers=fence(session, 1),
    ).json()
    assert (ioc["status"], ioc["filled_quantity"]) == ("canceled", "1000")
    assert [t for _, t, _ in summary(reports(venue, session, after=3))] == [
        "fill",
        "canceled",
    ]


def test_cancel(venue):
    set_quote(venue)
    session = new_session()
    headers = fence(session, 1)
    resting = new_id()
    venue.request("POST", "/orders", limit_body(resting), headers=headers)

    canceled = venue.request("POST", f"/orders/{resting}/cancel", headers=headers)
    assert canceled.status == 200
    assert (canceled.json()["status"], canceled.json()["leaves_quantity"]) == (
        "canceled",
        "0",
    )
    again = venue.request("POST", f"/orders/{resting}/cancel", headers=headers)
    assert (again.status, again.json()) == (200, canceled.json())
    assert summary(reports(venue, session)) == [
        (1, "new", "new"),
        (2, "canceled", "canceled"),
    ]

    filled = new_id()
    venue.request("POST", "/orders", order_body(filled), headers=headers)
    lost_race = venue.request("POST", f"/orders/{filled}/cancel", headers=headers)
    assert (lost_race.status, lost_race.json()["status"]) == (200, "filled")
    assert reports(venue, session)["last_seq"] == 3  # the fill; no cancel report

    other = new_id()
    venue.request("POST", "/orders", limit_body(other), headers=headers)
    for wrong in (fence(new_session(), 1), {}):  # another session, or unfenced
        assert_problem(
            venue.request("POST", f"/orders/{other}/cancel", headers=wrong),
            404,
            "unknown_order",
        )
    assert_problem(
        venue.request("POST", f"/orders/{new_id()}/cancel", headers=headers),
        404,
        "unknown_order",
    )
    venue.request("POST", f"/sessions/{session}/logon", {"epoch": 2})
    assert_problem(
        venue.request("POST", f"/orders/{other}/cancel", headers=headers),
        409,
        "stale_epoch",
    )
    assert venue.request("GET", f"/orders/{other}").json()["status"] == "new"


def test_duplicate_reports(venue):
    set_quote(venue)
    session = new_session()
    venue.request("POST", "/admin/faults", {"duplicate_reports": True})
    venue.request("POST", "/orders", order_body(new_id()), headers=fence(session, 1))
    first, second = reports(venue, session)["reports"]
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["type"] == second["type"] == "fill"
    assert first["execution"] == second["execution"]  # same exec_id
    counters = venue.request("GET", "/admin/faults").json()["counters"]
    assert counters["duplicated_reports"] == 1


def test_dropped_and_held_responses_still_process_the_order(venue):
    set_quote(venue)
    for faults in (
        {"drop_response_rate": 1, "paths": ["/orders"]},
        {"timeout_rate": 1, "timeout_hold_s": 0.3},
    ):
        assert venue.request("POST", "/admin/faults", faults).status == 200
        cid = new_id()
        started = time.monotonic()
        with pytest.raises(CONNECTION_LOST):
            venue.request("POST", "/orders", order_body(cid), timeout=5)
        if "timeout_rate" in faults:
            assert time.monotonic() - started >= 0.3
        counters = venue.request("GET", "/admin/faults").json()["counters"]
        assert counters["dropped_responses"] + counters["timeouts"] == 1
        venue.request("POST", "/admin/faults", {})

        stored = venue.request("GET", f"/orders/{cid}")
        assert stored.status == 200
        resent = venue.request("POST", "/orders", order_body(cid))
        assert resent.status == 200
        assert resent.headers["Idempotent-Replayed"] == "true"
        assert resent.json() == stored.json()
        assert stored.json()["status"] == "filled"


def test_error_rate_answers_503_without_processing(venue):
    venue.request("POST", "/admin/faults", {"error_rate": 1, "seed": 1})
    cid = new_id()
    assert_problem(
        venue.request("POST", "/orders", order_body(cid)), 503, "injected_error"
    )
    # Not faulted: health, admin, and paths outside "paths".
    assert venue.request("GET", "/healthz").status == 200
    assert venue.request("GET", "/quotes/AAPL").status == 200
    assert venue.request("GET", "/admin/faults").json()["counters"]["errors"] == 1
    venue.request("POST", "/admin/faults", {})
    assert_problem(venue.request("GET", f"/orders/{cid}"), 404, "unknown_order")


def test_latency_is_added(venue):
    venue.request("POST", "/admin/faults", {"latency_ms": 200, "paths": ["/quotes"]})
    started = time.monotonic()
    assert venue.request("GET", "/quotes/AAPL").status == 200
    assert time.monotonic() - started >= 0.2
    assert venue.request("GET", "/admin/faults").json()["counters"]["delayed"] == 1


def test_refuse_connections(venue):
    venue.request("POST", "/admin/faults", {"refuse_connections": True})
    cid = new_id()
    with pytest.raises(CONNECTION_LOST):
        venue.request("POST", "/orders", order_body(cid))
    assert venue.request("GET", "/healthz").status == 200
    counters = venue.request("GET", "/admin/faults").json()["counters"]
    assert counters["refused_connections"] == 1
    venue.request("POST", "/admin/faults", {})
    assert_problem(venue.request("GET", f"/orders/{cid}"), 404, "unknown_order")
    assert venue.request("POST", "/orders", order_body(cid)).status == 201


def test_session_close_and_open(fresh):
    session = new_session()
    headers = fence(session, 1)
    day, gtc, crossing = new_id(), new_id(), new_id()
    fresh.request("POST", "/orders", limit_body(day), headers=headers)
    fresh.request(
        "POST", "/orders", limit_body(gtc, time_in_force="gtc"), headers=headers
    )

    closed = fresh.request("POST", "/admin/session/close").json()
    assert closed["is_open"] is False
    assert fresh.request("GET", "/clock").json()["is_open"] is False
    assert fresh.request("GET", f"/orders/{day}").json()["status"] == "expired"
    assert fresh.request("GET", f"/orders/{gtc}").json()["status"] == "new"
    assert summary(reports(fresh, session, after=2)) == [(3, "expired", "expired")]

    market = fresh.request("POST", "/orders", order_body(new_id()), headers=headers)
    assert (market.status, market.json()["reject_reason"]) == (201, "market_closed")
    rests = fresh.request(
        "POST", "/orders", limit_body(crossing, "195"), headers=headers
    )
    assert rests.json()["status"] == "new"  # would cross, but the market is closed

    opened = fresh.request("POST", "/admin/session/open").json()
    assert opened["is_open"] is True
    assert fresh.request("GET", f"/orders/{crossing}").json()["status"] == "filled"


def test_scheduled_close_with_an_accelerated_clock(tmp_path):
    # Monday 15:59:00 at 40x: the 16:00 close comes 1.5 s of real time after
    # the start.
    process = ExchangeProcess(
        tmp_path / "x.db",
        tmp_path / "log",
        "0",
        env={
            "EXCHANGE_ALWAYS_OPEN": "0",
            "EXCHANGE_CLOCK_START": "2024-05-06T15:59:00Z",
            "EXCHANGE_CLOCK_SPEED": "40",
        },
    )
    try:
        clock = process.request("GET", "/clock").json()
        assert clock["is_open"] is True
        assert clock["next_close"] == "2024-05-06T16:00:00.000000Z"
        day, gtc = new_id(), new_id()
        process.request("POST", "/orders", limit_body(day))
        process.request("POST", "/orders", limit_body(gtc, time_in_force="gtc"))
        closed = wait_until(
            lambda: not process.request("GET", "/clock").json()["is_open"],
            timeout=10,
            what="the scheduled close",
        )
        assert closed
        clock = process.request("GET", "/clock").json()
        assert clock["session_date"] == "2024-05-07"
        assert clock["next_open"] == "2024-05-07T09:30:00.000000Z"
        assert process.request("GET", f"/orders/{day}").json()["status"] == "expired"
        assert process.request("GET", f"/orders/{gtc}").json()["status"] == "new"
    finally:
        assert process.terminate() == 0, process.logs()


def test_restart_keeps_open_orders_feed_and_epochs(tmp_path):
    store = tmp_path / "x.db"
    session = new_session()
    first = ExchangeProcess(store, tmp_path / "first.log", "0")
    try:
        assert (
            first.request("POST", f"/sessions/{session}/logon", {"epoch": 7}).status
            == 200
        )
        for cid, tif in (("keep-gtc", "gtc"), ("keep-day", "day")):
            placed = first.request(
                "POST",
                "/orders",
                limit_body(cid, time_in_force=tif),
                headers=fence(session, 7),
            )
            assert placed.json()["status"] == "new"
    finally:
        assert first.terminate() == 0, first.logs()

    second = ExchangeProcess(store, tmp_path / "second.log", "0")
    try:
        assert second.request("GET", "/orders/keep-gtc").json()["status"] == "new"
        assert_problem(
            second.request("POST", f"/sessions/{session}/logon", {"epoch": 6}),
            409,
            "stale_epoch",
        )
        logon = second.request("POST", f"/sessions/{session}/logon", {"epoch": 7})
        assert logon.json()["last_seq"] == 2
        # The open orders keep matching after the restart.
        set_quote(second, "188.50")
        feed = reports(second, session, after=2)
        assert summary(feed) == [(3, "fill", "filled"), (4, "fill", "filled")]
        assert [r["execution"]["price"] for r in feed["reports"]] == ["188.52"] * 2
        fresh = second.request("POST", "/orders", order_body("after-restart"))
        assert fresh.json()["order_id"] == "EX-000003"
        assert Decimal(fresh.json()["filled_quantity"]) == 10
    finally:
        assert second.terminate() == 0, second.logs()


def test_sigterm_answers_a_blocked_long_poll_at_once(tmp_path):
    process = ExchangeProcess(tmp_path / "x.db", tmp_path / "log", "0")
    polled: dict[str, Response] = {}

    def long_poll() -> None:
        polled["response"] = process.request(
            "GET", "/sessions/s1/reports?wait=30", timeout=40
        )

    poller = threading.Thread(target=long_poll)
    poller.start()
    wait_until(
        lambda: process.request("GET", "/admin/stats").json()["feed_waiters"] == 1,
        timeout=10,
        what="the long-poll to block",
    )
    started = time.monotonic()
    assert process.terminate() == 0, process.logs()
    poller.join(10)
    assert time.monotonic() - started < 5  # not the 30 s of the wait
    assert polled["response"].json() == {"reports": [], "last_seq": 0}
