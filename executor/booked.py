"""What a leader already booked to a terminal state, so the execution-report feed
can pass over the reports that only repeat it.

Every order's answer also comes back through the session's feed (the exchange
publishes each execution and end state there); replaying it is harmless but costs
a transaction per report. A report is covered when its order's trade was booked
terminal by this process, in a committed transaction, with every execution the
report carries. Anything else (an execution not seen, an order never booked here)
is applied as before. Bounded: the oldest entries go first, and an entry that is
gone only costs the replay it would have saved.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from broker.exchange_client import ExchangeOrder, ExecutionReport


class BookedOrders:
    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._orders: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, order: ExchangeOrder) -> None:
        """Record ``order`` as booked terminal; call only after the commit."""
        exec_ids = frozenset(e.exec_id for e in order.executions)
        with self._lock:
            self._orders[order.client_order_id] = exec_ids
            self._orders.move_to_end(order.client_order_id)
            while len(self._orders) > self._capacity:
                self._orders.popitem(last=False)

    def covers(self, report: ExecutionReport) -> bool:
        with self._lock:
            known = self._orders.get(report.client_order_id)
        return known is not None and all(
            e.exec_id in known for e in report.order.executions
        )
