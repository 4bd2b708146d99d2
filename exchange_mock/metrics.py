"""Prometheus text exposition of the simulator's counters (standard library only):
orders by status, executions, open orders, the faults it injected, and the FIX
acceptor's session events."""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(exchange: Any, faults: Any, fix: Any = None) -> bytes:
    lines = [
        "# HELP exchange_orders_total Orders accepted, by current status",
        "# TYPE exchange_orders_total gauge",
    ]
    for status, count in sorted(exchange.store.counts_by_status().items()):
        lines.append(f'exchange_orders_total{{status="{status}"}} {count}')
    lines += [
        "# HELP exchange_executions_total Executions (fills) reported",
        "# TYPE exchange_executions_total counter",
        f"exchange_executions_total {exchange.store.execution_count()}",
        "# HELP exchange_open_orders Orders resting on the book",
        "# TYPE exchange_open_orders gauge",
        f"exchange_open_orders {exchange.stats()['open_orders']}",
        "# HELP exchange_injected_faults_total Faults injected, by kind",
        "# TYPE exchange_injected_faults_total counter",
    ]
    for kind, count in sorted(faults.snapshot()["counters"].items()):
        lines.append(f'exchange_injected_faults_total{{kind="{kind}"}} {count}')
    if fix is not None:
        stats = fix.stats()
        lines += [
            "# HELP exchange_fix_sessions_logged_on FIX sessions logged on now",
            "# TYPE exchange_fix_sessions_logged_on gauge",
            f"exchange_fix_sessions_logged_on {stats['sessions_logged_on']}",
            "# HELP exchange_fix_events_total FIX session events (logons, refused "
            "logons, garbled frames, session rejects...)",
            "# TYPE exchange_fix_events_total counter",
        ]
        for event, count in sorted(stats["events"].items()):
            lines.append(f'exchange_fix_events_total{{event="{event}"}} {count}')
    return ("\n".join(lines) + "\n").encode()
