"""exchange_mock: a stand-in stock exchange, run as its own process.

``python -m exchange_mock`` serves an HTTP/JSON venue protocol (README.md in this
package): market and limit orders with day/gtc/ioc, cancels, per-session
execution-report feeds read by long-poll, epoch fencing of sessions, market hours
on an accelerated clock, and operator controls with fault injection.

The exchange is the source of truth for executions and deduplicates orders by
``client_order_id``: a caller may resend an order any number of times and gets the
one order (and the executions) the exchange already holds. Only the standard
library is used so the simulator can run anywhere the project's Python runs.
"""
