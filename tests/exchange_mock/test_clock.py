"""The accelerated clock, market hours, the schedule timer and their config."""

from __future__ import annotations

from datetime import UTC, date, datetime
from datetime import time as daytime
from decimal import Decimal

import pytest

from exchange_mock.clock import ExchangeClock, MarketHours, MarketTimer
from exchange_mock.config import Config, ConfigError

MONDAY = date(2024, 5, 6)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, daytime(hour, minute), tzinfo=UTC)


def friday(hour: int, minute: int = 0) -> datetime:
    return at(date(2024, 5, 10), hour, minute)


HOURS = MarketHours(daytime(9, 30), daytime(16), always_open=False)


def test_clock_runs_speed_times_real_time():
    real = [100.0]
    clock = ExchangeClock(at(MONDAY, 9), speed=60, monotonic=lambda: real[0])
    assert clock.now() == at(MONDAY, 9)
    real[0] += 2.5  # 2.5 real seconds = 150 exchange seconds
    assert clock.now() == at(MONDAY, 9, 2).replace(second=30)
    assert clock.real_seconds(600) == 10


def test_clock_defaults_to_real_utc_time():
    before = datetime.now(UTC)
    now = ExchangeClock().now()
    assert before <= now <= datetime.now(UTC)
    with pytest.raises(ValueError):
        ExchangeClock(speed=0)


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (at(MONDAY, 9, 29), False),
        (at(MONDAY, 9, 30), True),
        (at(MONDAY, 15, 59), True),
        (at(MONDAY, 16), False),  # the close itself is closed
        (at(date(2024, 5, 11), 12), False),  # Saturday
        (at(date(2024, 5, 12), 12), False),  # Sunday
    ],
)
def test_market_hours(moment, is_open):
    assert HOURS.is_scheduled_open(moment) is is_open


def test_next_open_and_close_skip_the_weekend():
    assert HOURS.next_close(friday(12)) == friday(16)
    assert HOURS.next_open(friday(12)) == at(date(2024, 5, 13), 9, 30)
    assert HOURS.next_close(friday(16)) == at(date(2024, 5, 13), 16)  # strictly after


def test_session_date():
    assert HOURS.session_date(True, friday(12)) == date(2024, 5, 10)
    # Closed: orders entered now wait for the next session.
    assert HOURS.session_date(False, friday(17)) == date(2024, 5, 13)
    assert HOURS.session_date(False, friday(8)) == date(2024, 5, 10)


def test_always_open_never_closes_on_its_own():
    hours = MarketHours()
    assert hours.always_open
    assert hours.is_scheduled_open(at(date(2024, 5, 11), 3))
    assert hours.next_close(friday(12)) is None
    assert hours.next_open(friday(12)) is None
    assert hours.session_date(True, friday(23)) == date(2024, 5, 10)
    with pytest.raises(ValueError):
        MarketHours(daytime(16), daytime(9))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def timer(self) -> MarketTimer:
        return MarketTimer(
            ExchangeClock(),
            HOURS,
            on_open=lambda: self.calls.append("open"),
            on_close=lambda: self.calls.append("close"),
        )


@pytest.mark.parametrize(
    ("last", "now", "calls"),
    [
        (friday(12), friday(13), []),
        (friday(15, 59), friday(16), ["close"]),
        (friday(9), friday(9, 30), ["open"]),
        # A fast clock that jumps over a whole session still ends it.
        (friday(9), friday(17), ["close"]),
        (friday(15), at(date(2024, 5, 13), 10), ["close", "open"]),
        (friday(17), at(date(2024, 5, 13), 9), []),  # weekend: nothing
    ],
)
def test_timer_applies_the_transitions_that_passed(last, now, calls):
    recorder = Recorder()
    recorder.timer().step(last, now)
    assert recorder.calls == calls


def test_timer_thread_closes_the_market_on_schedule():
    import threading

    closed = threading.Event()
    # 15:59:59.9 at 10x: the close is 10 ms of real time away.
    clock = ExchangeClock(friday(15, 59).replace(second=59, microsecond=900000), 10)
    timer = MarketTimer(clock, HOURS, on_open=lambda: None, on_close=closed.set)
    timer.start()
    try:
        assert closed.wait(5)
    finally:
        timer.stop()


def test_config_defaults_keep_the_market_open():
    config = Config.from_env({})
    assert config.always_open is True
    assert config.touch_size == Decimal("1000")
    assert (config.market_open, config.market_close) == (daytime(9, 30), daytime(16))
    assert config.clock_start is None
    assert config.clock_speed == 1.0


def test_config_reads_the_market_settings():
    config = Config.from_env(
        {
            "EXCHANGE_ALWAYS_OPEN": "0",
            "EXCHANGE_TOUCH_SIZE": "250.5",
            "EXCHANGE_MARKET_OPEN": "13:30",
            "EXCHANGE_MARKET_CLOSE": "20:00",
            "EXCHANGE_CLOCK_START": "2024-05-06T13:29:00",
            "EXCHANGE_CLOCK_SPEED": "60",
        }
    )
    assert config.always_open is False
    assert config.touch_size == Decimal("250.5")
    assert config.market_open == daytime(13, 30)
    assert config.clock_start == at(MONDAY, 13, 29)  # naive means UTC
    assert config.clock_speed == 60


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXCHANGE_ALWAYS_OPEN", "maybe"),
        ("EXCHANGE_TOUCH_SIZE", "0"),
        ("EXCHANGE_TOUCH_SIZE", "lots"),
        ("EXCHANGE_MARKET_OPEN", "9h30"),
        ("EXCHANGE_MARKET_OPEN", "17:00"),  # after the close
        ("EXCHANGE_CLOCK_START", "yesterday"),
        ("EXCHANGE_CLOCK_SPEED", "0"),
        ("EXCHANGE_CLOCK_SPEED", "nan"),
    ],
)
def test_config_refuses_bad_market_settings(name, value):
    with pytest.raises(ConfigError):
        Config.from_env({name: value})
