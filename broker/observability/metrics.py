"""Every Prometheus metric of the project, in one place, so names stay consistent.
The api runs under gunicorn in prometheus_client's multiprocess mode (see
``broker/management/commands/api.py``); the workers are single processes."""

from prometheus_client import Counter, Gauge, Histogram

# --- api ----------------------------------------------------------------------
EXCHANGE_LATENCY = Histogram(
    "broker_exchange_request_seconds",
    "Latency of the exchange's HTTP side (quotes) by operation",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HTTP_REQUESTS = Counter(
    "broker_http_requests_total",
    "API requests by method, route and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "broker_http_request_seconds",
    "API request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# --- relay --------------------------------------------------------------------
OUTBOX_UNPUBLISHED = Gauge(
    "broker_outbox_unpublished_rows", "Outbox rows not yet published (all shards)"
)
OUTBOX_LAG = Gauge(
    "broker_outbox_lag_seconds", "Age of the oldest unpublished outbox row"
)
OUTBOX_PUBLISHED = Counter(
    "broker_outbox_published_total", "Outbox rows published and acknowledged"
)
OUTBOX_ERRORS = Counter(
    "broker_outbox_publish_errors_total", "Outbox rows Kafka failed to take"
)
RELAY_SHARDS = Gauge("broker_relay_shards_held", "Outbox shards this relay works")

# --- executor -----------------------------------------------------------------
LEADER = Gauge(
    "broker_executor_leader", "1 while this executor leads the topic", ["topic"]
)
EPOCH = Gauge("broker_executor_epoch", "Leader epoch held for the topic", ["topic"])
MESSAGES = Counter(
    "broker_executor_messages_total",
    "Kafka messages processed by outcome",
    ["topic", "outcome"],
)
CONSUMER_LAG = Gauge(
    "broker_executor_consumer_lag",
    "Messages behind the topic's high watermark",
    ["topic", "partition"],
)
FIX_EVENTS = Counter(
    "broker_fix_events_total",
    "FIX session events (logon, logon_refused, gap, resend_request, duplicate, "
    "garbled, rejected, seq_too_low, test_request_timeout, ...)",
    ["topic", "event"],
)
FIX_QUARANTINED = Counter(
    "broker_fix_quarantined_total",
    "Execution reports that failed the trust checks and were not booked",
    ["topic"],
)
FIX_LOGGED_ON = Gauge(
    "broker_fix_logged_on",
    "1 while this executor's FIX session of the topic is logged on",
    ["topic"],
)
FIX_IN_FLIGHT = Gauge(
    "broker_fix_orders_in_flight",
    "Orders sent and not yet acknowledged by the exchange",
    ["topic"],
)
