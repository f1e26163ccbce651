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

from ml.config import Config, Settings
from ml.pipeline import runs
from ml.warehouse import tables
from ml.warehouse.dbt import DbtError, dbt_vars, run_dbt

Log = Callable[[str], None]

# The column of monitor_run_quality each test judges (the PSI test judges every feature's row).
TEST_COLUMNS = {
    "monitor_cold_user_share": "cold_user_share",
    "monitor_catalogue_coverage": "catalogue_coverage",
    "monitor_list_overlap": "list_overlap",
    "monitor_ndcg_drop": "ndcg_drop",
}
QUALITY_COLUMNS = [*TEST_COLUMNS.values(), "score_psi"]
_QUALITY_SQL = f"select {', '.join(QUALITY_COLUMNS)} from monitor_run_quality"
_TOP_PSI_SQL = (
    "select feature, psi from monitor_feature_stability where psi is not null order by psi desc, feature limit 1"
)


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
    results = with_values(read_test_results(settings.home / "dbt_target" / "run_results.json"), settings.build_db)
    log(f"monitors: {runs.describe_monitors(results)}")
    return results


def keep_snapshot(settings: Settings, version: str) -> Path:
    """Copy the build database's ``monitor_snapshot`` to the history, under a temporary name
    first and then renamed, so that a reader's glob never sees half a file."""
    directory = history_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{version}.parquet"
    aside = directory / f".{version}.parquet.tmp"  # *.parquet globs skip it
    with tables.warehouse(settings.build_db) as con:
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


def with_values(results: dict[str, Any], build_db: Path) -> dict[str, Any]:
    """The test results with the value each test judged (``value``; the PSI test: the largest
    feature PSI, which ``feature``, and the published scores' PSI as ``score_psi``), read from
    the monitor models just built: the test result says whether a limit was crossed, the value
    by how much, and the values over runs are the monitor page's series."""
    with tables.warehouse(build_db) as con:
        quality = con.execute(_QUALITY_SQL).fetchone()
        top = con.execute(_TOP_PSI_SQL).fetchone()
    measured = dict(zip(QUALITY_COLUMNS, quality)) if quality else {}
    values: dict[str, dict[str, Any]] = {
        test: {"value": _finite(measured.get(column))} for test, column in TEST_COLUMNS.items()
    }
    values["monitor_feature_psi"] = {
        "value": _finite(top[1]) if top else None,
        "feature": top[0] if top else None,
        "score_psi": _finite(measured.get("score_psi")),
    }
    return {name: {**result, **values.get(name, {})} for name, result in results.items()}


def _finite(value: Any) -> float | None:
    """A measure as JSON keeps it: NaN (no previous run to compare with) is not known."""
    return None if value is None or not math.isfinite(float(value)) else float(value)
