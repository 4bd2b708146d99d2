"""What a leader already booked to a terminal state, or is booking right now, so
the execution-report feed can pass over the reports that only repeat it.

Every order's answer also comes back through the session's feed (the exchange
publishes each execution and end state there), usually before the leader has
booked the answer it got: booking it from the feed as well costs a second
transaction on the same account. So the feed waits, briefly, while the leader has
the report's order in flight, and then passes over a report that is covered: its
order's trade was booked terminal by this process, in a committed transaction,
with every execution the report carries. Anything else (an execution not seen, an
order never booked here, a leader that takes too long) is applied as before.
Bounded: the oldest entries go first, and an entry that is gone only costs the
replay it would have saved.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable

from broker.exchange_client import ExchangeOrder, ExecutionReport


class BookedOrders:
    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._orders: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._in_flight: Counter[str] = Counter()
        self._changed = threading.Condition()

    def begin(self, client_order_ids: Iterable[str]) -> None:
        """The leader is about to send these orders and book the answers."""
        with self._changed:
            self._in_flight.update(client_order_ids)

    def end(self, client_order_ids: Iterable[str]) -> None:
        """The leader is done with these (booked, or gave up: either way the feed
        need not wait any longer)."""
        with self._changed:
            self._in_flight.subtract(client_order_ids)
            self._in_flight += Counter()  # drop the zeros
            self._changed.notify_all()

    def add(self, order: ExchangeOrder) -> None:
        """Record ``order`` as booked terminal; call only after the commit."""
        exec_ids = frozenset(e.exec_id for e in order.executions)
        with self._changed:
            self._orders[order.client_order_id] = exec_ids
            self._orders.move_to_end(order.client_order_id)
            while len(self._orders) > self._capacity:
                self._orders.popitem(last=False)

    def wait_settled(self, reports: list[ExecutionReport], timeout: float) -> None:
        """Wait (at most ``timeout``) until the leader has none of these reports'
        orders in flight."""
        deadline = time.monotonic() + timeout
        ids = {report.client_order_id for report in reports}
        with self._changed:
            while ids & self._in_flight.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    def covers(self, report: ExecutionReport) -> bool:
        with self._changed:
            known = self._orders.get(report.client_order_id)
        return known is not None and all(
            e.exec_id in known for e in report.order.executions
        )
