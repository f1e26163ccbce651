"""Drift and quality monitors: the dbt models of ``dbt_project/models/monitoring`` and their
tests, run after each publication, and the snapshots they compare.

The build database is rebuilt by every run, so "since the previous run" needs a history kept
elsewhere: after the monitors are built, this run's ``monitor_snapshot`` (a few thousand rows:
feature samples, counts, the lists of a fixed set of users) is kept as
``<home>/monitoring/drift/<run_id>.parquet``, append-only, and the next run's monitors read
those files (dbt var ``monitor_history``). The monitors' tests are warnings by default: their
results are recorded with the run, and never fail it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from ml.config import Config, Settings
from ml.pipeline import runs
from ml.warehouse.dbt import DbtError, dbt_vars, run_dbt

Log = Callable[[str], None]


def history_dir(settings: Settings) -> Path:
    """Where the runs' snapshots are kept, one Parquet file per published run."""
    return settings.home / "monitoring" / "drift"


def monitor_vars(
    settings: Settings, config: Config, input_path: Path, version: str, ndcg: float | None
) -> dict[str, Any]:
    """The run's dbt variables plus the history to compare with (none before a first snapshot:
    a glob matching no file is an error for DuckDB) and the run's holdout NDCG, as a plain
    decimal (dbt checks it is a number; a NaN is not known)."""
    history = history_dir(settings)
    return dbt_vars(
        input_path,
        config.as_of,
        **config.dbt_overrides(),
        model_version=version,
        monitor_history=str(history / "*.parquet") if any(history.glob("*.parquet")) else "",
        run_ndcg="" if ndcg is None or math.isnan(ndcg) else f"{ndcg:.12f}",
    )


def run_monitors(
    settings: Settings, config: Config, input_path: Path, version: str, ndcg: float | None, log: Log = print
) -> dict[str, Any]:
    """Build the monitors of the run just published and their tests, keep its snapshot, and
    return each test's result (``read_test_results``). A monitor that cannot be computed is
    reported as ``{"error": ...}``, not raised: the lists are published already, and monitoring
    them must not turn a published run into a failed one."""
    try:
        run_dbt(settings, "build", monitor_vars(settings, config, input_path, version, ndcg), select="tag:monitoring")
    except DbtError as error:
        log(f"monitors could not run: {error}")
        return {"error": str(error)[:2000]}
    keep_snapshot(settings, version)
    results = read_test_results(settings.home / "dbt_target" / "run_results.json")
    log(f"monitors: {runs.describe_monitors(results)}")
    return results


def keep_snapshot(settings: Settings, version: str) -> Path:
    """Copy the build database's ``monitor_snapshot`` to the history, under a temporary name
    first and then renamed, so that a reader's glob never sees half a file."""
    directory = history_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{version}.parquet"
    aside = directory / f".{version}.parquet.tmp"  # *.parquet globs skip it
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        con.execute("copy (select * from monitor_snapshot) to ? (format parquet)", [str(aside)])
    os.replace(aside, path)
    return path


def read_test_results(run_results: Path) -> dict[str, Any]:
    """The data tests of a dbt invocation (``run_results.json``) by name: ``pass``, ``warn``,
    ``fail`` or ``error``, and how many rows failed (features over the PSI limit, ...)."""
    results = json.loads(run_results.read_text())["results"]
    return {
        result["unique_id"].split(".")[2]: {"status": result["status"], "failures": result.get("failures")}
        for result in results
        if result["unique_id"].startswith("test.")
    }
