"""The monitor page (``recsys monitor``): how the runs went, one page to look at.

Gathers what the home already records, and computes nothing new: each run's holdout NDCG,
status and published list (``model_runs`` in ``<home>/runs.duckdb``), the drift and quality
monitors' values and warnings recorded with it (``model_runs.monitors``, ``ml.monitoring.drift``),
and the last outcome readout (``ml.monitoring.outcomes``) when the build database holds the
outcome models. The page itself is drawn by ``ml.reports.monitor`` from plain values; the
same data gives the few-line summary the CLI prints and the Prefect flow attaches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from ml.config import Settings
from ml.monitoring.outcomes import PILOT_LIFT, Comparison, Readout, readout
from ml.pipeline import runs
from ml.reports import render_monitor_page
from ml.warehouse import tables

RUNS_SHOWN = 100  # the page's window: about three months of nightly runs
# The series read from each run's monitors: (test, field of its result) -> series name.
MONITOR_SERIES = {
    ("monitor_feature_psi", "value"): "psi_max",
    ("monitor_feature_psi", "score_psi"): "score_psi",
    ("monitor_cold_user_share", "value"): "cold_user_share",
    ("monitor_catalogue_coverage", "value"): "catalogue_coverage",
    ("monitor_list_overlap", "value"): "list_overlap",
    ("monitor_ndcg_drop", "value"): "ndcg_drop",
}
# The series a failing test is ringed on: the value it judged (the NDCG drop: on the NDCG itself).
FLAGGED_SERIES = {test: name for (test, key), name in MONITOR_SERIES.items() if key == "value"} | {
    "monitor_ndcg_drop": "ndcg"
}
_HAS_OUTCOMES_SQL = "select count(*) from information_schema.tables where table_name = 'outcomes_by_user'"


@dataclass(frozen=True)
class RunPoint:
    """One run as the page plots it; a series value is None where the run did not record it
    (a rejected or failed run, a first run with nothing to compare, a run older than the monitors)."""

    run_id: str
    started_at: datetime
    status: str
    reason: str | None
    published_list: str | None
    ndcg: float | None
    popular_ndcg: float | None
    values: dict[str, float | None]
    psi_feature: str | None  # the feature with the largest PSI
    warnings: list[str]
    flagged: list[str]  # the series whose value a failing test judged


@dataclass(frozen=True)
class MonitorData:
    home: Path
    runs: list[RunPoint]  # oldest first
    readout: Readout | None
    readout_missing: str | None  # why there is no readout, when there is none
    warnings: list[str] = field(default_factory=list)  # the last run's


def gather(settings: Settings) -> MonitorData:
    """The last ``RUNS_SHOWN`` runs, oldest first, and the last readout (or why there is none)."""
    points = [_point(run) for run in reversed(runs.history(settings, limit=RUNS_SHOWN))]
    result, missing = last_readout(settings.build_db)
    return MonitorData(settings.home, points, result, missing, points[-1].warnings if points else [])


def _point(run: dict[str, Any]) -> RunPoint:
    monitors = run.get("monitors") or {}
    recorded = {} if "error" in monitors else monitors
    return RunPoint(
        run_id=run["run_id"],
        started_at=run["started_at"],
        status=run["status"],
        reason=run.get("reason"),
        published_list=run.get("published_list"),
        ndcg=run.get("ndcg"),
        popular_ndcg=run.get("popular_ndcg"),
        values={name: (recorded.get(test) or {}).get(key) for (test, key), name in MONITOR_SERIES.items()},
        psi_feature=(recorded.get("monitor_feature_psi") or {}).get("feature"),
        warnings=warnings_of(monitors),
        flagged=[
            FLAGGED_SERIES[name]
            for name, result in recorded.items()
            if name in FLAGGED_SERIES and result["status"] != "pass"
        ],
    )


def warnings_of(monitors: dict[str, Any] | None) -> list[str]:
    """A run's monitor tests that did not pass, each with the value it judged when recorded;
    a monitor run that failed is a warning too (nothing was watched)."""
    if not monitors:
        return []
    if "error" in monitors:
        return [f"the monitors could not run: {monitors['error']}"]
    found = []
    for name, result in sorted(monitors.items()):
        if result["status"] == "pass":
            continue
        text = f"{name} {result['status']} ({result['failures']} rows)"
        if result.get("value") is not None:
            text += f": {result['value']:.4g}" + (f" ({result['feature']})" if result.get("feature") else "")
        found.append(text)
    return found


def last_readout(build_db: Path) -> tuple[Readout | None, str | None]:
    """The readout of the publication first shown most recently, read from the build database
    without building anything (``recsys outcomes`` builds the outcome models); else why not."""
    if not build_db.exists():
        return None, f"no warehouse at {build_db} yet: `recsys run` builds one"
    try:
        with tables.warehouse(build_db) as con:
            if not con.execute(_HAS_OUTCOMES_SQL).fetchone()[0]:
                return None, "the outcome models are not built: `recsys outcomes` builds them over the exposure log"
            result = readout(con)
    except duckdb.Error as error:  # held by a running pipeline, or an older warehouse
        return None, f"the warehouse could not be read: {str(error).splitlines()[0]}"
    if result is None:
        return None, "no exposed user with a complete outcome window yet (the exposure log, `recsys api`)"
    return result, None


def summary(data: MonitorData) -> str:
    """A few Markdown lines: the last run, its warnings, the readout (the CLI prints them, the
    flow attaches them as the ``monitor-summary`` artifact)."""
    if not data.runs:
        return f"# Monitor: no runs yet\n\n- no run recorded in {data.home}: `recsys run` makes the first"
    last = data.runs[-1]
    lines = [
        f"# Monitor: last run {last.run_id}, {last.status} ({len(data.runs)} runs shown)",
        "",
        f"- holdout NDCG@K of the published list ({last.published_list or 'none'}): {_number(last.ndcg)}"
        + (f", previous run {_number(data.runs[-2].ndcg)}" if len(data.runs) > 1 else ""),
        f"- warnings: {'; '.join(data.warnings) if data.warnings else 'none'}",
    ]
    if data.readout is None:
        lines.append(f"- readout: none, {data.readout_missing}")
    else:
        lines.append(f"- readout of publication {data.readout.model_version} ({data.readout.outcome_days} days):")
        lines.extend(f"  - {_comparison_line(c)}" for c in data.readout.comparisons)
    return "\n".join(lines)


def _comparison_line(c: Comparison) -> str:
    text = f"{c.metric}: treatment {c.treatment_rate:.2%} of {c.treatment_users:,}"
    if c.control_rate is None:
        return text + ", no control group"
    text += f", control {c.control_rate:.2%} of {c.control_users:,}, difference {c.difference:+.2%}"
    if c.difference_low is not None:
        text += f" (95% CI {c.difference_low:+.2%} .. {c.difference_high:+.2%})"
    if c.users_needed is not None:
        text += f", users per group to detect +{PILOT_LIFT:.0%}: {c.users_needed:,}"
    return text


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def write_page(data: MonitorData, out: Path) -> Path:
    """Render ``data`` as the monitor page at ``out``: plain values go to the report."""
    return render_monitor_page(
        runs=[asdict(point) for point in data.runs],
        readout=asdict(data.readout) if data.readout else None,
        readout_missing=data.readout_missing,
        warnings=data.warnings,
        home=str(data.home),
        pilot_lift=PILOT_LIFT,
        path=out,
    )
