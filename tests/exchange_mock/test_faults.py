"""Fault configuration and the per-request plans (no HTTP)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange_mock.faults import NO_FAULTS, FaultConfig, FaultConfigError, Faults


def test_empty_config_injects_nothing():
    faults = Faults()
    assert faults.plan("/orders") == NO_FAULTS
    assert faults.report_copies(3) == 1
    snapshot = faults.snapshot()
    assert snapshot["config"] == FaultConfig().to_json()
    assert set(snapshot["counters"].values()) == {0}


def test_parse_accepts_numbers_and_strings():
    config = FaultConfig.parse(
        {
            "latency_ms": 50,
            "drop_response_rate": Decimal("0.5"),  # JSON 0.5 parsed as Decimal
            "error_rate": "0.25",
            "timeout_rate": 1,
            "timeout_hold_s": 0.5,
            "duplicate_reports": True,
            "refuse_connections": False,
            "paths": ["/orders"],
            "seed": 7,
        }
    )
    assert config.drop_response_rate == 0.5
    assert config.error_rate == 0.25
    assert config.paths == ("/orders",)


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 1.5},
        {"error_rate": "-0.1"},
        {"error_rate": "NaN"},
        {"error_rate": True},
        {"latency_ms": -1},
        {"latency_ms": 1.5},
        {"latency_ms": 10**9},
        {"timeout_hold_s": 1000},
        {"duplicate_reports": "yes"},
        {"paths": "/orders"},
        {"paths": ["orders"]},
        {"seed": "7"},
        {"drop_rate": 1},
    ],
)
def test_parse_refuses_bad_values(body):
    with pytest.raises(FaultConfigError) as info:
        FaultConfig.parse(body)
    assert list(info.value.errors) == list(body)


@pytest.mark.parametrize(
    ("path", "applies"),
    [
        ("/orders", True),
        ("/orders/x/cancel", True),
        ("/sessions/trades.0/reports", True),
        ("/ordersx", False),
        ("/quotes/AAPL", False),
        ("/admin/faults", False),
        ("/healthz", False),
    ],
)
def test_default_paths_and_exemptions(path, applies):
    assert FaultConfig(error_rate=1).applies_to(path) is applies


def test_admin_and_health_are_exempt_even_when_listed():
    config = FaultConfig(error_rate=1, paths=("/",))
    assert config.applies_to("/quotes")
    assert not config.applies_to("/admin/faults")
    assert not config.applies_to("/healthz")


def test_rates_of_one_always_fire_in_priority_order():
    faults = Faults(
        FaultConfig(error_rate=1, drop_response_rate=1, timeout_rate=1, latency_ms=5)
    )
    plan = faults.plan("/orders")
    assert (plan.error, plan.drop, plan.hold_s, plan.delay_s) == (
        True,
        False,
        None,
        0.005,
    )
    faults.configure(FaultConfig(drop_response_rate=1, timeout_rate=1))
    assert faults.plan("/orders").drop
    faults.configure(FaultConfig(timeout_rate=1, timeout_hold_s=2))
    assert faults.plan("/orders").hold_s == 2
    assert faults.snapshot()["counters"]["timeouts"] == 1  # reset by configure


def test_same_seed_same_faults():
    def draws(seed):
        faults = Faults(FaultConfig(error_rate=0.5, seed=seed))
        return [faults.plan("/orders").error for _ in range(50)]

    assert draws(3) == draws(3)
    assert 0 < sum(draws(3)) < 50


def test_refuse_and_duplicates_are_counted():
    faults = Faults(FaultConfig(refuse_connections=True, duplicate_reports=True))
    assert faults.plan("/orders").refuse
    assert faults.plan("/admin/faults") == NO_FAULTS
    assert faults.report_copies(2) == 2
    counters = faults.snapshot()["counters"]
    assert counters["refused_connections"] == 1
    assert counters["duplicated_reports"] == 2
