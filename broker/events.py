"""The wire format of outbox events on Kafka: a JSON envelope, key = customer id."""

from __future__ import annotations

import json
from dataclasses import dataclass


class UndecodableEvent(ValueError):
    """The message is not an event envelope this code understands."""


@dataclass(frozen=True)
class Event:
    event_id: int
    event_type: str
    payload: dict

    def encode(self) -> bytes:
        return json.dumps(
            {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "payload": self.payload,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Event:
        try:
            body = json.loads(raw or b"")
            event = cls(
                event_id=int(body["event_id"]),
                event_type=str(body["event_type"]),
                payload=dict(body["payload"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UndecodableEvent(str(exc)) from exc
        return event
