"""The exchange with its FIX acceptor in the test process (real sockets, a real
SQLite file, frozen quotes moved by the test), restartable on the same store."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from devstack.wait import wait_until
from exchange_mock.engine import Exchange
from exchange_mock.faults import FaultConfig, Faults
from exchange_mock.fixserver import FixAcceptor
from exchange_mock.quotes import QuoteBook
from exchange_mock.store import OrderStore
from tests.exchange_mock.fixclient import FixTestClient


class Venue:
    def __init__(self, store_path: Path, **acceptor_options) -> None:
        self.store_path = store_path
        self.acceptor_options = acceptor_options
        self.faults = Faults()
        self._start()

    def _start(self) -> None:
        self.store = OrderStore(str(self.store_path))
        self.quotes = QuoteBook(seed=42)
        self.set_quote("190.00")
        self.exchange = Exchange(self.quotes, self.store, faults=self.faults)
        self.acceptor = FixAcceptor(
            ("127.0.0.1", 0), self.exchange, self.faults, **self.acceptor_options
        )
        self.acceptor.start()
        self.port = self.acceptor.address[1]

    def stop(self) -> None:
        # Test clients do not answer the Logout: do not wait long for it.
        self.acceptor.stop(timeout=0.2)
        self.store.close()

    def restart(self) -> None:
        self.stop()
        self._start()

    def client(self, sender: str = "BROKER-0", **kwargs) -> FixTestClient:
        return FixTestClient(self.port, sender=sender, **kwargs)

    def set_quote(self, last: str, size: str | None = None) -> None:
        """AAPL's mid: bid = last - 0.02, ask = last + 0.02 around 190."""
        self.quotes.set(
            "AAPL", last=Decimal(last), size=None if size is None else Decimal(size)
        )

    def set_faults(self, **fields) -> None:
        self.faults.configure(FaultConfig.parse(fields))

    def counters(self) -> dict[str, int]:
        return self.faults.snapshot()["counters"]

    def session_state(self, sender: str = "BROKER-0"):
        return self.acceptor.store.load_or_create(sender)

    def wait_logged_off(self, sender: str = "BROKER-0") -> None:
        wait_until(
            lambda: self.acceptor.session(sender).connection is None,
            timeout=5,
            what=f"{sender} to be disconnected",
        )
