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


# Started first, the six longest: `make test` hands its two workers whole modules in collection
# order (pytest-xdist, --dist loadfile --no-loadscope-reorder), so a long module started late
# keeps one worker busy alone at the end. Minutes each in the full run on two workers of
# 2026-12-03 (56.7 in all), in this order: 17, 17, 22, 12, 11 and 6.5; every other module
# under 6.
LONGEST_FIRST = (
    "test_export_shapes.py",
    "test_complete_journey.py",
    "test_pipeline.py",
    "test_spark.py",
    "test_real_logs.py",
    "test_refusals.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
