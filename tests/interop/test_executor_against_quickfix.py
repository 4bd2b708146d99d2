"""Our executor against the reference FIX engine: a plain QuickFIX acceptor that
knows nothing of this project (no epoch, no custom tag) stands in for the venue,
and the executor connects to it with only the environment of docs/FIX.md. Real
relay, executor, Kafka, ZooKeeper and PostgreSQL; the trades are placed through
the placement service and must come back filled, money booked."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from broker.models import FixSession, Trade
from broker.services.placement import trade_place
from devstack.launcher import AppLauncher, AppProcess, free_port
from devstack.wait import wait_until
from tests.factories import fixed_price, make_customer
from tests.integration.conftest import database_url
from tests.stack_cleanup import drop_topics_and_znodes

quickfix = pytest.importorskip("quickfix", reason="quickfix is a dev dependency")
pytestmark = pytest.mark.integration

VENUE = Path(__file__).with_name("quickfix_venue.py")
PREFIX = f"{settings.TRADE_TOPIC_PREFIX}-qf"
ZOOKEEPER_ROOT = f"{settings.ZOOKEEPER_ROOT}-qf"


class Venue:
    def __init__(self, process: AppProcess) -> None:
        self.process = process

    def events(self) -> list[dict]:
        lines = self.process.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture
def qf_system(live_db, tmp_path, settings) -> Iterator[Venue]:
    """A QuickFIX venue, a relay and one executor on a topic of their own."""
    settings.TRADE_TOPIC_PREFIX = PREFIX
    settings.TRADE_TOPICS = 1
    port = free_port()
    launcher = AppLauncher(
        env={
            "DJANGO_SETTINGS_MODULE": "broker.settings.local",
            "DATABASE_URL": database_url(),
            "TRADE_TOPIC_PREFIX": PREFIX,
            "TRADE_TOPICS": "1",
            "ZOOKEEPER_ROOT": ZOOKEEPER_ROOT,
            "ZOOKEEPER_HOSTS": settings.ZOOKEEPER_HOSTS,
            "KAFKA_BOOTSTRAP_SERVERS": settings.KAFKA_BOOTSTRAP_SERVERS,
            "RELAY_POLL_SECONDS": "0.5",
            # Only what docs/FIX.md names: where the venue is, who we are.
            "EXCHANGE_FIX_HOST": "127.0.0.1",
            "EXCHANGE_FIX_PORT": str(port),
            # A CompID of its own: the integration system's sessions (BROKER-n)
            # have their numbers in the same test database.
            "FIX_SENDER_COMP_ID": "QF",
            "FIX_TARGET_COMP_ID": "EXCHANGE",
            "FIX_HEARTBEAT_SECONDS": "5",
            "FIX_USERNAME": "broker-user",
            "FIX_PASSWORD": "venue-secret",
        },
        log_dir=tmp_path / "logs",
    )
    try:
        process = launcher.start(
            "quickfix_venue",
            [sys.executable, str(VENUE)],
            extra_env={
                "VENUE_PORT": str(port),
                "VENUE_WORKDIR": str(tmp_path / "venue"),
                "VENUE_SESSIONS": "QF-0",
                "VENUE_USERNAME": "broker-user",
                "VENUE_PASSWORD": "venue-secret",
            },
        )
        venue = Venue(process)
        wait_until(
            lambda: any(e["event"] == "listening" for e in venue.events()),
            timeout=30,
            what="the QuickFIX venue to listen",
            alive=process.alive,
            retry_on=(ValueError,),
        )
        launcher.start_relay()
        launcher.start_executor("qf-executor")
        wait_until(
            lambda: any(e["event"] == "logon" for e in venue.events()),
            timeout=60,
            what="the executor's logon at the QuickFIX venue",
            retry_on=(ValueError,),
        )
        yield venue
    finally:
        launcher.stop_all()
        drop_topics_and_znodes([f"{PREFIX}.0", f"{PREFIX}.dlq"], ZOOKEEPER_ROOT)


def test_limit_orders_fill_against_a_plain_quickfix_acceptor(qf_system):
    customer, _ = make_customer("100000.00")
    trades = [
        trade_place(
            customer=customer,
            symbol=symbol,
            side="buy",
            quantity=Decimal("3"),
            order_type="limit",
            limit_price=Decimal(price),
            time_in_force="gtc",
            price_source=fixed_price("100.00"),
        )
        for symbol, price in (("AAPL", "101.5"), ("MSFT", "99"), ("AAPL", "100"))
    ]

    def all_filled() -> bool:
        return all(
            Trade.objects.get(id=t.id).status == Trade.Status.FILLED for t in trades
        )

    wait_until(all_filled, timeout=60, what="every limit order filled")
    for trade in trades:
        trade.refresh_from_db()
        assert trade.filled_quantity == 3
        assert trade.average_price == trade.limit_price
        assert trade.exchange_order_id.startswith("QF-")
        assert trade.hold_remaining == 0 and trade.review_reason == ""
    account = customer.account
    account.refresh_from_db()
    assert account.cash == Decimal("100000.00") - 3 * Decimal("300.5")
    assert account.reserved_cash == 0
    received = [e for e in qf_system.events() if e["event"] == "received"]
    assert [e["cl_ord_id"] for e in received] == [str(t.id) for t in trades]
    session = FixSession.objects.get(sender_comp_id="QF-0")
    assert session.next_out_seq > 4 and session.next_in_seq > 7
