"""Fault configuration and the per-request plans (no HTTP)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange_mock.faults import NO_FAULTS, FaultConfig, FaultConfigError, Faults


def test_empty_config_injects_nothing():
    faults = Faults()
    assert faults.plan("/quotes/AAPL") == NO_FAULTS
    assert faults.report_copies(3) == 1
    snapshot = faults.snapshot()
    assert snapshot["config"] == FaultConfig().to_json()
    assert set(snapshot["counters"].values()) == {0}


def test_parse_accepts_numbers_and_strings():
    config = FaultConfig.parse(
        {
            "latency_ms": 50,
            "error_rate": Decimal("0.25"),  # JSON 0.25 parsed as Decimal
            "duplicate_reports": True,
            "refuse_connections": False,
            "paths": ["/quotes"],
            "seed": 7,
        }
    )
    assert config.error_rate == 0.25
    assert config.paths == ("/quotes",)
    assert FaultConfig.parse({"error_rate": "0.5"}).error_rate == 0.5


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
        {"duplicate_reports": "yes"},
        {"paths": "/quotes"},
        {"paths": ["quotes"]},
        {"seed": "7"},
        {"drop_rate": 1},
        # The faults of the HTTP order entry went with it.
        {"drop_response_rate": 1},
        {"timeout_rate": 1},
        {"timeout_hold_s": 1},
    ],
)
def test_parse_refuses_bad_values(body):
    with pytest.raises(FaultConfigError) as info:
        FaultConfig.parse(body)
    assert list(info.value.errors) == list(body)


@pytest.mark.parametrize(
    ("path", "applies"),
    [
        ("/quotes", True),
        ("/quotes/AAPL", True),
        ("/symbols", True),
        ("/clock", True),
        ("/quotesx", False),
        ("/orders", False),
        ("/orders/x", False),
        ("/fix/sessions", False),
        ("/admin/faults", False),
        ("/healthz", False),
    ],
)
def test_default_paths_are_the_market_data_and_exemptions(path, applies):
    assert FaultConfig(error_rate=1).applies_to(path) is applies


def test_admin_and_health_are_exempt_even_when_listed():
    config = FaultConfig(error_rate=1, paths=("/",))
    assert config.applies_to("/orders")
    assert not config.applies_to("/admin/faults")
    assert not config.applies_to("/healthz")


def test_error_and_latency_are_planned_and_counted():
    faults = Faults(FaultConfig(error_rate=1, latency_ms=5))
    plan = faults.plan("/quotes/AAPL")
    assert (plan.refuse, plan.error, plan.delay_s) == (False, True, 0.005)
    assert faults.plan("/orders") == NO_FAULTS  # not under the paths
    counters = faults.snapshot()["counters"]
    assert (counters["errors"], counters["delayed"]) == (1, 1)
    faults.configure(FaultConfig(latency_ms=5))
    assert not faults.plan("/quotes").error
    assert faults.snapshot()["counters"]["errors"] == 0  # reset by configure


def test_same_seed_same_faults():
    def draws(seed):
        faults = Faults(FaultConfig(error_rate=0.5, seed=seed))
        return [faults.plan("/quotes").error for _ in range(50)]

    assert draws(3) == draws(3)
    assert 0 < sum(draws(3)) < 50


def test_refuse_and_duplicates_are_counted():
    faults = Faults(FaultConfig(refuse_connections=True, duplicate_reports=True))
    assert faults.plan("/quotes").refuse
    assert faults.plan("/admin/faults") == NO_FAULTS
    assert faults.report_copies(2) == 2
    counters = faults.snapshot()["counters"]
    assert counters["refused_connections"] == 1
    assert counters["duplicated_reports"] == 2
