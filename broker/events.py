"""The wire format of outbox events on Kafka: a JSON envelope, key = customer id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class EventType(StrEnum):
    """The events of the outbox, one per thing the executor is asked to do."""

    TRADE_PLACED = "trade.placed"
    TRADE_CANCEL_REQUESTED = "trade.cancel_requested"
    TRADE_RECONCILE_REQUESTED = "trade.reconcile_requested"


class UndecodableEvent(ValueError):
    """The message is not an event envelope this code understands."""


@dataclass(frozen=True)
class Event:
    event_id: int
    event_type: str
    payload: dict

    def encode(self) -> bytes:
        return encode_envelope(
            self.event_id,
            self.event_type,
            json.dumps(self.payload, separators=(",", ":")),
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> Event:
        try:
            body = json.loads(raw or b"")
            event = cls(
                event_id=int(body["event_id"]),
                event_type=str(body["event_type"]),
                payload=dict(body["payload"]),
            )
        except (
            ValueError,
            KeyError,
            TypeError,
            # A number too large for an int ("1e999"), JSON nested too deep.
            OverflowError,
            RecursionError,
        ) as exc:
            raise UndecodableEvent(f"{type(exc).__name__}: {exc}") from exc
        return event


def encode_envelope(event_id: int, event_type: str, payload_json: str) -> bytes:
    """The envelope around a payload that is JSON already (the relay reads it as
    text from PostgreSQL): no parse and dump per message."""
    return b'{"event_id":%d,"event_type":%b,"payload":%b}' % (
        event_id,
        _json_string(event_type),
        payload_json.encode(),
    )


@lru_cache(maxsize=64)
def _json_string(value: str) -> bytes:
    # A handful of event types: quoted and escaped once each.
    return json.dumps(value).encode()
