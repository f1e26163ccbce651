"""The run log: one row per pipeline run in ``<home>/runs.duckdb`` (table ``model_runs``).

Kept in its own small file, written only by the pipeline between its steps, so that neither
the build database nor the serving database has to be open to know what happened.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb

from ml.config import Settings

COLUMNS = {
    "run_id": "varchar primary key",
    "model_version": "varchar",
    "status": "varchar not null",  # published, published_cold_start, rejected, failed
    "reason": "varchar",
    "published_list": "varchar",  # ranker, baseline:<name>, cold_start
    "input_path": "varchar",
    "as_of": "timestamp",
    "horizon_days": "integer",
    "time_scale": "varchar",  # why this horizon
    "train_cutoff": "timestamp",
    "started_at": "timestamp not null",
    "finished_at": "timestamp",
    "rows_exported": "bigint",
    "rows_rejected": "bigint",
    "users_scored": "bigint",
    "recommendations": "bigint",
    "ndcg": "double",  # holdout NDCG@K of the published list
    "popular_ndcg": "double",
    "dropped_features": "json",
    "diagnostics": "json",  # which training steps ran on a sample of how many users
    "metrics": "json",
    "durations": "json",
    "monitors": "json",  # the drift and quality monitors' test results (ml.monitoring.drift)
}
JSON_COLUMNS = [name for name, kind in COLUMNS.items() if kind == "json"]
# The columns of the metrics table, in the order a person compares them.
METRIC_COLUMNS = ("ndcg", "recall", "precision", "map", "hit_rate", "missed_offer_share", "n_users")


def runs_db(settings: Settings) -> Path:
    return settings.home / "runs.duckdb"


def record(settings: Settings, run: dict[str, Any]) -> None:
    """Insert or update (by run_id) one run."""
    settings.home.mkdir(parents=True, exist_ok=True)
    row = {key: (json.dumps(value, default=str) if key in JSON_COLUMNS else value) for key, value in run.items()}
    with duckdb.connect(str(runs_db(settings))) as con:
        con.execute(
            "create table if not exists model_runs ("
            + ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
            + ")"
        )
        for name, kind in COLUMNS.items():  # a home made by an older version lacks newer columns
            if name != "run_id":
                con.execute(f"alter table model_runs add column if not exists {name} {kind.replace(' not null', '')}")
        columns = ", ".join(row)
        placeholders = ", ".join("?" for _ in row)
        updates = ", ".join(f"{key} = excluded.{key}" for key in row if key != "run_id")
        con.execute(
            f"insert into model_runs ({columns}) values ({placeholders}) on conflict (run_id) do update set {updates}",
            list(row.values()),
        )


def history(settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    if not runs_db(settings).exists():
        return []
    with duckdb.connect(str(runs_db(settings)), read_only=True) as con:
        cursor = con.execute("select * from model_runs order by started_at desc limit ?", [limit])
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    for row in rows:
        for name in JSON_COLUMNS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
    return rows


def published_ndcg(settings: Settings) -> float | None:
    """Holdout NDCG of the list now published, for the gate's no-regression check."""
    latest = [run for run in history(settings, limit=100) if run["status"] == "published"]
    return latest[0]["ndcg"] if latest else None


def latest_search(settings: Settings, model_setting: str, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """The newest run whose training ran the hyper-parameter search under ``model_setting``
    (``auto``, ``hgb`` or ``logreg``) and ``recipe`` (``steps.search_recipe``): its ``run_id``,
    ``model_version``, ``as_of``, the family it chose (``model_kind``), the ``judged_params`` /
    ``final_params`` chosen and the gate baselines' tuned knobs (``baseline_params``, absent from
    records older than them). A record from before ``auto`` names no setting: it searched the one
    family it names. A record from before the recipe was recorded matches none: its next run searches."""
    for run in history(settings, limit=100):
        record = run.get("diagnostics") or {}
        setting = record.get("model_setting", record.get("model_kind"))
        searched = "cross_validation" in record.get("steps", [])
        if searched and setting == model_setting and record.get("search_recipe") == recipe:
            return {
                "run_id": run["run_id"],
                "model_version": run["model_version"],
                "as_of": run["as_of"],
                "search_recipe": recipe,
                "model_kind": record["model_kind"],
                "judged_params": record["judged_params"],
                "final_params": record["final_params"],
                "baseline_params": record.get("baseline_params"),
            }
    return None


def summary(settings: Settings, run: dict[str, Any]) -> str:
    """The run in a few Markdown lines: what was read, what was published, and why."""
    published, popular = run.get("ndcg"), run.get("popular_ndcg")
    return "\n".join(
        [
            f"# Run {run['run_id']}: {run['status']}",
            "",
            f"- reason: {run.get('reason')}",
            f"- input: {run.get('input_path')} (rows {run.get('rows_exported')}, rejected {run.get('rows_rejected')})",
            f"- serving cutoff: {run.get('as_of')}; {run.get('time_scale')}",
            f"- published list: {run.get('published_list')}; holdout NDCG@K "
            f"{published if published is None else round(published, 4)} "
            f"(popular {popular if popular is None else round(popular, 4)})",
            f"- features left out of the fit: {run.get('dropped_features') or 'none'}",
            f"- diagnostics: {describe_diagnostics(run.get('diagnostics'))}",
            f"- users with lists: {run.get('users_scored')}, rows: {run.get('recommendations')}",
            f"- monitors: {describe_monitors(run.get('monitors'))}",
            f"- seconds per step: {run['durations']}",
            f"- serving database: {settings.serving_db}",
        ]
    )


def describe_diagnostics(record: dict[str, Any] | None) -> str:
    """Which training steps ran on how many of the labelled users (``steps._diagnostic_sample``)."""
    if not record:
        return "none"
    if "reused_from" in record:
        source = record["reused_from"]
        line = f"not run: parameters of run {source['run_id']} (data as of {str(source['as_of'])[:10]})"
    else:
        line = f"{', '.join(record['steps'])} on {record['users']:,} of {record['of']:,} labelled users"
    if "holdout_users" in record:
        line += f"; holdout on {record['holdout_users']:,} of {record['holdout_of']:,}"
    if "family_choice" in record:
        line += f"; model family {record['family_choice']['reason']}"
    return line


def describe_monitors(monitors: dict[str, Any] | None) -> str:
    """The monitors' test results (``ml.monitoring.drift``) in one line: the ones that did not
    pass by name, with their failing rows, the rest counted."""
    if not monitors:
        return "not run"
    if "error" in monitors:
        return f"error: {monitors['error']}"
    flagged = [
        f"{name} {result['status']} ({result['failures']} rows)"
        for name, result in sorted(monitors.items())
        if result["status"] != "pass"
    ]
    return f"{len(monitors) - len(flagged)} of {len(monitors)} passed" + (f"; {', '.join(flagged)}" if flagged else "")


def metrics_table(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per list the gate judged (the ranker, the logistic reference, each baseline) with
    its holdout metrics and whether it is the one published; empty when nothing was judged
    (an export too thin to train on, a failed run)."""
    published = run.get("published_list")
    return [
        {
            "list": name,
            "published": published in (name, f"baseline:{name}"),
            **{column: _cell(metrics.get(column)) for column in METRIC_COLUMNS},
        }
        for name, metrics in (run.get("metrics") or {}).items()
        if isinstance(metrics, dict) and "ndcg" in metrics
    ]


def _cell(value: Any) -> Any:
    """A metric as the table shows it: 4 decimals, and None for NaN (not valid JSON)."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value
