"""``recsys evaluate``: the ranker and the tuned baselines on one time split, one metric code.

Split: history = events strictly before ``cutoff``; truth = purchases in
[cutoff, cutoff + horizon). The warehouse is built as of cutoff + horizon with the horizon as
its label window, so labelled cutoff 1 *is* this split: the ranker is trained one horizon
earlier (cutoff 2) with hyper-parameters from older folds, and never sees the test window.
The baselines are tuned inside the history the same way and judged on the same warm buyers.
``recsys evaluate --published`` judges already published lists instead: ``ml.experiments.published``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ml.baselines.tuning import default_specs, run_baselines
from ml.config import Config, Settings
from ml.data.export import check_export
from ml.evaluation import bootstrap
from ml.evaluation.metrics import REPEAT_EXPLORE
from ml.pipeline import steps
from ml.warehouse import tables

METRIC_KEYS = [
    "recall",
    "precision",
    "ndcg",
    "map",
    "hit_rate",
    "mrr",
    "coverage",
    "novelty",
    "popularity_pct",
    "missed_offer_share",
    "offer_precision",
    "n_users",
    *REPEAT_EXPLORE,
]


def interactions_before(settings: Settings, end: datetime) -> pd.DataFrame:
    """The warehouse's accepted line items before ``end``, in the baselines' frame layout."""
    with tables.warehouse(settings.build_db) as con:
        return con.execute(
            """select user_id, item_id, event_at as ts, event_type, price100::double as price100,
                      quantity as qty, category_id
               from int_line_items where event_at < ? order by event_at, user_id, item_id""",
            [end],
        ).df()


def best_baseline(metrics: dict[str, dict[str, Any]]) -> str | None:
    """The baseline with the best NDCG (the ranker and its logistic-regression reference are not baselines)."""
    baselines = [
        (name, m["ndcg"])
        for name, m in metrics.items()
        if name not in ("ranker", "logistic_regression") and pd.notna(m.get("ndcg"))
    ]
    return max(baselines, key=lambda item: item[1])[0] if baselines else None


def compare(metrics: dict[str, dict[str, Any]], intervals: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ranker's NDCG against the best baseline's (NaN where either is missing), and whether
    the difference is within noise (the paired bootstrap interval of ``intervals`` covers 0)."""
    best_name = best_baseline(metrics)
    best = metrics[best_name]["ndcg"] if best_name else float("nan")
    ranker = metrics.get("ranker", {}).get("ndcg", float("nan"))
    return {
        "best_baseline": best_name,
        "best_baseline_ndcg": best,
        "ranker_ndcg": ranker,
        "ranker_vs_best": ranker / best - 1 if best and pd.notna(best) else float("nan"),
        "within_noise": bootstrap.within_noise(intervals or {}, "ranker", best_name) if best_name else None,
    }


def evaluate_export(
    settings: Settings, config: Config, cutoff: str, out_dir: Path, include_baselines: bool = True, log=print
) -> dict[str, Any]:
    """Build, train, evaluate the ranker and the baselines; write evaluation.json and .html.

    The export, the truth window and K are ``config.input_path``, ``config.horizon_days`` and
    ``config.k``; the rest of ``config`` (training, candidates, ...) is the run's recipe.
    """
    input_path, horizon_days, k = config.input_path, config.horizon_days, config.k
    check_export(input_path)
    cutoff_at = pd.Timestamp(cutoff).to_pydatetime()
    end = cutoff_at + timedelta(days=horizon_days)
    # An evaluation reports the search, curves and importance: never reused from an earlier run.
    config = config.updated(as_of=end.strftime("%Y-%m-%d %H:%M:%S"), diagnostics_every_days=0)
    steps.build_warehouse(settings, config, input_path, log)
    try:
        outcome = steps.train_and_evaluate(settings, config, steps.new_version(), log)
        result, per_user = outcome.evaluation, outcome.per_user
    except steps.NotEnoughHistory as thin:  # a thin export: the baselines still say something
        log(f"no ranker: {thin}")
        result, per_user = {"metrics": {}, "split": {}, "notes": [f"No ranker was trained: {thin}"]}, {}
    result["dataset"] = {"input": str(input_path), "cutoff": str(cutoff_at), "horizon_days": horizon_days}
    result["split"].update({"cutoff": str(cutoff_at), "k": k})

    if include_baselines:
        # The gate's baselines were judged with the ranker (same users, same metric call).
        judged = result.setdefault("baseline_params", {})
        specs = [spec for spec in default_specs() if spec.name not in judged]
        table = run_baselines(
            interactions_before(settings, end),
            cutoff_at,
            horizon_days,
            k,
            specs=specs,
            verbose=True,
            popular_params=judged.get("popular_tuned"),
            per_user=per_user,
            judged_users=_holdout_sample(result, per_user),
        )
        for row in table.to_dict("records"):
            name = row["model"]
            target = result.setdefault("cold_users_baselines", {}) if row["users"] == "cold" else result["metrics"]
            target[name] = {key: row[key] for key in METRIC_KEYS if key in row}
            judged[name] = row["params"]

    if per_user:  # again, with this command's baselines: the lists are not recomputed, only resampled
        reference = (result.get("gate") or {}).get("list")
        if reference not in per_user:  # no ranker was trained: the best baseline
            reference = best_baseline(result["metrics"])
        result["intervals"] = bootstrap.intervals(per_user, reference=reference)
    result["comparison"] = compare(result["metrics"], result.get("intervals"))
    log(f"NDCG@{k}: {result['comparison']}")

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2, default=str))
    from ml.reports import render_evaluation_report

    render_evaluation_report(
        {"title": f"Evaluation of {Path(input_path).name} at {cutoff_at:%Y-%m-%d}", **result},
        out_dir / "evaluation.html",
    )
    return result


def _holdout_sample(result: dict[str, Any], per_user: dict[str, pd.DataFrame]) -> pd.Index | None:
    """The users the ranker was judged on when the run judged a sample of them
    (``Config.holdout_users``): this command's baselines are then judged on the same users."""
    record = result.get("diagnostics") or {}
    if "ranker" not in per_user or record.get("holdout_users", 0) >= record.get("holdout_of", 0):
        return None
    return pd.Index(per_user["ranker"].index)
