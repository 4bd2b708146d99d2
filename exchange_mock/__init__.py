"""exchange_mock: a stand-in stock exchange, run as its own process.

``python -m exchange_mock`` serves an HTTP/JSON API (see :mod:`exchange_mock.server`)
backed by a seeded quote random walk (:mod:`exchange_mock.quotes`), a matching
engine (:mod:`exchange_mock.engine`, :mod:`exchange_mock.orders`) and a SQLite store
(:mod:`exchange_mock.store`).

The exchange is the source of truth for executions and deduplicates orders by
``client_order_id``: a caller may resend an order any number of times and gets the
one order (and the executions) the exchange already holds. Only the standard
library is used so the simulator can run anywhere the project's Python runs.
"""
