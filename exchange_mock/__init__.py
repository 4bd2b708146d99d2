"""exchange_mock: a stand-in stock exchange, run as its own process.

``python -m exchange_mock`` serves a FIX 4.4 acceptor (docs/FIX.md; README.md
in this package), the only way orders come in: market and limit orders with
day/gtc/ioc, cancels, status requests, per-session ExecutionReports, epoch
fencing of sessions. Next to it, HTTP/JSON serves the quotes, market hours on an
accelerated clock, read-only introspection (orders, FIX sessions) and operator
controls with fault injection reaching both.

The exchange is the source of truth for executions and deduplicates orders by
``client_order_id`` (ClOrdID): a caller may resend an order any number of times
and gets the one order (and the executions) the exchange already holds. Apart
from simplefix (the FIX tag=value codec, pure Python) only the standard library
is used, so the simulator runs anywhere the project's Python runs.
"""
