"""What the relay hands to Kafka and to PostgreSQL, built without per-row JSON or
psycopg's per-element adapters."""

from __future__ import annotations

import pytest
from django.db import connection

from broker.events import Event, encode_envelope
from relay.db import array_literal


def test_an_envelope_around_payload_text_decodes_to_the_event():
    raw = encode_envelope(42, 'odd "type"', '{"trade_id": "t-1", "n": [1, 2]}')

    assert Event.decode(raw) == Event(
        event_id=42, event_type='odd "type"', payload={"trade_id": "t-1", "n": [1, 2]}
    )


def test_event_encode_is_the_same_envelope():
    event = Event(event_id=7, event_type="trade.placed", payload={"a": "é"})

    assert Event.decode(event.encode()) == event


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("values", "cast"),
    [
        ([1, 22, 9_000_000_000], "bigint[]"),
        (
            ["trades.0", 'quo"te', "back\\slash", "com,ma", "{brace}", "NULL", ""],
            "text[]",
        ),
        ([], "bigint[]"),
    ],
)
def test_array_literals_read_back_as_the_same_values(values, cast):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{cast}", [array_literal(values)])
        assert cursor.fetchone()[0] == values
