"""Shared fixtures: one Prefect test harness and one pipeline run per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Prefect is imported here, not first inside a test: its console log handler keeps the stderr of
# the moment it is imported, and a test's captured stderr (capsys) is closed when that test ends.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
import prefect  # noqa: E402,F401

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's temporary server takes 10-15 s to start: start it once for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
