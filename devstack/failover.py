"""What a process exit did to the trading, as the demo tells it: which topics
changed leader, to whom and how long after the exit, and how long until the next
fill. Read from PostgreSQL — the leaders table the executors claim their epochs in
and the trades' timelines — so it shows what the system did, not what the demo
expected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError, close_old_connections
from django.db.models import Max
from django.utils import timezone

from broker.models import TopicLeader, TradeEvent
from broker.topics import topic_for_customer
from devstack.launcher import AppProcess

# TradeEvent rows looked at per query while searching for the first fill.
FILL_SCAN_BATCH = 200


@dataclass
class _Exit:
    name: str
    at: datetime
    led: dict[str, int]  # topic -> the epoch it held when it exited
    after_event: int  # the newest TradeEvent id when it exited
    fill_reported: bool = False

    def done(self, leaders: dict[str, tuple[str, int]]) -> bool:
        moved = all(leaders.get(t, ("", 0))[1] > e for t, e in self.led.items())
        return moved and self.fill_reported


class FailoverReport:
    """Fed with process exits (``process_exited``) and polled (``poll``) from the
    supervising loop's thread; says one line per leadership change and one per
    exit for the first fill after it (on the topics the process led, if any)."""

    def __init__(
        self, *, topics: list[str], say: Callable[[str], None], interval: float = 0.5
    ) -> None:
        self._topics = topics
        self._say = say
        self._interval = interval
        self._leaders: dict[str, tuple[str, int]] = {}
        self._exits: list[_Exit] = []
        self._next_poll = 0.0
        self._db_down = False

    def start(self) -> None:
        """Take the current leaders as the baseline (no line is said for them)."""
        self._leaders = self._read_leaders()

    def process_exited(self, process: AppProcess) -> None:
        self._guarded(self._changed_leaders)  # what happened before it, unattributed
        led = {
            topic: epoch
            for topic, (holder, epoch) in self._leaders.items()
            if holder == process.name
        }
        newest = self._guarded(
            lambda: TradeEvent.objects.aggregate(newest=Max("id"))["newest"]
        )
        self._exits.append(_Exit(process.name, timezone.now(), led, newest or 0))
        if led:
            self._say(
                f"{process.name} led {', '.join(sorted(led))}: the other executors "
                "take over once its ZooKeeper session expires"
            )

    def poll(self) -> None:
        """At most every ``interval`` seconds: report new leaders and first fills."""
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + self._interval
        self._guarded(self._changed_leaders)
        if self._exits:
            self._guarded(self._first_fills)
            self._exits = [e for e in self._exits if not e.done(self._leaders)]

    def _guarded(self, read: Callable[[], object]) -> object:
        """Run a read; a database that is down is said once, not raised: the
        demo keeps supervising (and restarting) while PostgreSQL is away."""
        close_old_connections()
        try:
            result = read()
        except DatabaseError as exc:
            if not self._db_down:
                self._say(f"failover report paused: database unavailable ({exc})")
            self._db_down = True
            return None
        self._db_down = False
        return result

    def _read_leaders(self) -> dict[str, tuple[str, int]]:
        return {
            leader.topic: (leader.holder, leader.epoch)
            for leader in TopicLeader.objects.filter(topic__in=self._topics)
        }

    def _changed_leaders(self) -> None:
        for topic, (holder, epoch) in sorted(self._read_leaders().items()):
            before, before_epoch = self._leaders.get(topic, ("nobody", 0))
            if epoch == before_epoch:
                continue
            self._leaders[topic] = (holder, epoch)
            cause = next(
                (
                    e
                    for e in reversed(self._exits)
                    if e.led.get(topic, epoch) < epoch and e.name == before
                ),
                None,
            )
            if cause is None:
                self._say(f"{topic}: {before} → {holder} (epoch {epoch})")
                continue
            restarted = "restarted, " if holder == cause.name else ""
            self._say(
                f"{topic}: {before} → {holder} ({restarted}epoch {epoch}), "
                f"{(timezone.now() - cause.at).total_seconds():.1f} s after "
                f"{cause.name} exited"
            )

    def _first_fills(self) -> None:
        for exit_ in self._exits:
            if exit_.fill_reported:
                continue
            fills = (
                TradeEvent.objects.filter(
                    id__gt=exit_.after_event,
                    kind=TradeEvent.Kind.FILL,
                    created_at__gt=exit_.at,
                )
                .select_related("trade__account")
                .order_by("id")[:FILL_SCAN_BATCH]
            )
            for fill in fills:
                exit_.after_event = fill.id
                topic = topic_for_customer(fill.trade.account.customer_id)
                if exit_.led and topic not in exit_.led:
                    continue
                after = (fill.created_at - exit_.at).total_seconds()
                placed = (fill.trade.created_at - exit_.at).total_seconds()
                where = " (a topic it led)" if exit_.led else ""
                when = (
                    f"placed {placed:.1f} s after the exit"
                    if placed >= 0
                    else "placed before the exit"
                )
                self._say(
                    f"next fill after {exit_.name} exited: {after:.1f} s later, on "
                    f"{topic}{where} (trade {fill.trade_id}, {when})"
                )
                exit_.fill_reported = True
                break
