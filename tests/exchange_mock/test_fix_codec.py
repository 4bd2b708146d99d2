"""Framing and codec of the FIX acceptor: well-formed frames out of any byte
stream, garbage dropped and reported (never raised), the session rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import simplefix

from exchange_mock.fixcodec import (
    DecodeError,
    Framer,
    Garbage,
    checksum,
    decode,
    encode,
    garble,
    parse_utc_timestamp,
    utc_timestamp,
)
from exchange_mock.fixrules import (
    INCORRECT_DATA_FORMAT,
    REQUIRED_TAG_MISSING,
    TAG_REPEATED,
    TAG_WITHOUT_VALUE,
    VALUE_OUT_OF_RANGE,
    check,
)

NOW = "20240506-12:00:00.000"


def frame(seq: int = 1, msg_type: str = "0", body=()) -> bytes:
    return encode(
        msg_type,
        sender="BROKER-0",
        target="EXCHANGE",
        seq_num=seq,
        sending_time=NOW,
        body=body,
    )


def with_body_length(data: bytes, length: int) -> bytes:
    """``data`` with another BodyLength, CheckSum recomputed (a frame whose
    length lies but whose sum is right)."""
    head, _, rest = data.partition(b"\x019=")
    _, _, rest = rest.partition(b"\x01")
    body = (
        head + b"\x019=" + str(length).encode() + b"\x01" + rest[: -len(b"10=000\x01")]
    )
    return body + b"10=%03d\x01" % checksum(body)


def test_framer_cuts_back_to_back_and_fragmented_frames():
    first, second = frame(1), frame(2, "1", [(112, "T")])
    framer = Framer()
    stream = first + second
    items = []
    for index in range(0, len(stream), 7):  # 7-byte fragments
        items += framer.feed(stream[index : index + 7])
    assert items == [first, second]


def test_framer_drops_a_bad_checksum_and_keeps_what_follows():
    good = frame(2)
    bad = garble(frame(1, "D", [(11, "x"), (55, "AAPL")]))
    items = Framer().feed(bad + good)
    assert isinstance(items[0], Garbage)
    assert items[0].data == bad
    assert "CheckSum" in items[0].reason
    assert items[1:] == [good]


def test_framer_too_large_body_length_does_not_swallow_the_next_message():
    good = frame(2)
    lying = with_body_length(frame(1, "1", [(112, "T")]), 200)
    items = Framer().feed(lying + good)
    assert [type(item) for item in items] == [Garbage, bytes]
    assert "BodyLength" in items[0].reason
    assert items[1] == good


def test_framer_too_small_body_length_is_garbage():
    good = frame(2)
    lying = with_body_length(frame(1, "1", [(112, "T")]), 10)
    items = Framer().feed(lying + good)
    assert isinstance(items[0], Garbage)
    assert items[-1] == good


def test_framer_drops_junk_and_keeps_a_partial_begin_string():
    good = frame(1)
    framer = Framer()
    items = framer.feed(b"GET / HTTP/1.1\r\n\r\n8=FIX")
    assert [type(item) for item in items] == [Garbage]
    assert items[0].data == b"GET / HTTP/1.1\r\n\r\n"
    assert framer.feed(good[len(b"8=FIX") :]) == [good]


@pytest.mark.parametrize(
    "junk",
    [
        b"8=FIX.4.4\x019=abc\x0135=0\x0110=000\x01",
        b"8=FIX.4.4\x01" + b"9=99999999\x01",
        b"8=FIX.4.4\x0135=0\x0110=000\x01",
    ],
)
def test_framer_malformed_body_length_is_garbage(junk):
    good = frame(1)
    items = Framer().feed(junk + good)
    assert all(isinstance(item, Garbage) for item in items[:-1])
    assert items[-1] == good


def test_framer_bounds_what_a_peer_can_make_it_buffer():
    items = Framer(max_body_length=100).feed(b"8=FIX.4.4\x019=5000\x01" + b"x" * 200)
    assert isinstance(items[0], Garbage)
    assert "maximum" in items[0].reason


def test_decode_splits_fields_in_wire_order():
    message = decode(frame(7, "D", [(11, "c-1"), (55, "AAPL"), (96, "epoch=3")]))
    assert message.msg_type == "D"
    assert message.seq_num == 7
    assert message.get(11) == "c-1"
    assert [tag for tag, _ in message.fields][:7] == [8, 9, 35, 49, 56, 34, 52]


def test_decode_failure_still_reads_the_sequence_number():
    data = frame(5, "D", [(11, "x")]).replace(b"11=x", b"1x=x")
    data = data[: -len(b"10=000\x01")]
    data = data + b"10=%03d\x01" % checksum(data)
    assert Framer().feed(data) == [data]
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.seq_num == 5
    assert info.value.msg_type == "D"


def test_encode_header_order_checksum_and_retransmission_fields():
    data = encode(
        "8",
        sender="EXCHANGE",
        target="BROKER-0",
        seq_num=3,
        sending_time=NOW,
        body=[(37, "EX-1"), (11, "c")],
        orig_sending_time="20240506-11:00:00.000",
    )
    parser = simplefix.FixParser()
    parser.append_buffer(data)
    tags = [int(tag) for tag, _ in parser.get_message().pairs]
    assert tags == [8, 9, 35, 49, 56, 34, 52, 43, 122, 37, 11, 10]
    assert Framer().feed(data) == [data]


def test_garble_keeps_the_framing_and_breaks_only_the_checksum():
    data = frame(1, "8", [(37, "EX-1"), (58, "some text in the body")])
    garbled = garble(data)
    assert garbled != data and len(garbled) == len(data)
    [item] = Framer().feed(garbled)
    assert isinstance(item, Garbage) and "CheckSum" in item.reason


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("20240506-12:00:01", 0),
        ("20240506-12:00:01.123", 123000),
        ("20240506-12:00:01.123456", 123456),
        ("20240506-12:00:01.123456789", 123456),
    ],
)
def test_parse_utc_timestamp_precisions(text, micro):
    assert parse_utc_timestamp(text) == datetime(
        2024, 5, 6, 12, 0, 1, micro, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text", ["2024-05-06T12:00:00Z", "20240506-25:00:00", "20240506-12:00:00.1234"]
)
def test_parse_utc_timestamp_refuses_other_formats(text):
    assert parse_utc_timestamp(text) is None


def test_utc_timestamp_has_milliseconds():
    moment = datetime(2024, 5, 6, 12, 0, 1, 123456, tzinfo=UTC)
    assert utc_timestamp(moment) == "20240506-12:00:01.123"


ORDER = [(11, "c"), (55, "AAPL"), (54, "1"), (38, "10"), (40, "1"), (60, NOW)]


@pytest.mark.parametrize(
    ("body", "reason", "tag"),
    [
        ([f for f in ORDER if f[0] != 60], REQUIRED_TAG_MISSING, 60),
        ([*ORDER[:-1], (60, "2024-05-06 12:00")], INCORRECT_DATA_FORMAT, 60),
        ([*ORDER, (44, "1e3")], INCORRECT_DATA_FORMAT, 44),
        ([(54, "Z") if f[0] == 54 else f for f in ORDER], VALUE_OUT_OF_RANGE, 54),
        ([*ORDER, (55, "MSFT")], TAG_REPEATED, 55),
        ([*ORDER, (58, "")], TAG_WITHOUT_VALUE, 58),
    ],
)
def test_session_rules(body, reason, tag):
    problem = check(decode(frame(2, "D", body)))
    assert problem is not None
    assert (problem.reason, problem.tag) == (reason, tag)


def test_session_rules_accept_a_valid_order_and_ignore_unknown_tags():
    assert check(decode(frame(2, "D", [*ORDER, (9999, "x")]))) is None


def test_poss_dup_needs_orig_sending_time():
    data = frame(2, "0", [(43, "Y")])
    problem = check(decode(data))
    assert problem is not None and problem.tag == 122
