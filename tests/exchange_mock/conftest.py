"""Fixtures of the exchange's FIX tests."""

from __future__ import annotations

import pytest

from tests.exchange_mock.fixvenue import Venue


@pytest.fixture
def fix_venue(tmp_path):
    """The exchange and its FIX acceptor in this process, on a SQLite file."""
    venue = Venue(tmp_path / "exchange.db")
    yield venue
    venue.stop()
