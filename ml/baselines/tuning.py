"""Tuned baselines on one time split: the table every model is compared against.

Why a single function: a comparison is only fair when every baseline is tuned the same
way (on a validation split inside the history, :func:`tune`), refitted on
the full history and judged on the same warm buyers of the same test window, ranking the
whole catalogue. Run it on an export, e.g. Ta-Feng converted by ``recsys import ta-feng``::

    recsys baselines --input ta_feng_export.csv --cutoff 2001-02-01 --horizon-days 28 --k 10
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import ParameterGrid

from ml.baselines import (
    ALSRecommender,
    BaseRecommender,
    EASERecommender,
    ItemKNNRecommender,
    PopularRecommender,
    RepurchaseRecommender,
    TIFUKNNRecommender,
)
from ml.evaluation.metrics import HistorySummary, accuracy_metrics, evaluate_lists, score_lists
from ml.evaluation.splitting import cold_users, restrict_truth, time_split, user_sample, warm_users
from ml.progress import Progress


@dataclass
class TuneResult:
    """Outcome of :func:`tune`: the chosen parameters and every grid point's metrics."""

    best_params: dict[str, Any]
    best_score: float
    metric: str
    table: pd.DataFrame
    seconds: float


def tune(
    baseline_factory: Callable[..., BaseRecommender],
    grid: Mapping[str, list] | list[Mapping[str, list]],
    history: pd.DataFrame,
    validation_cutoff: str | pd.Timestamp,
    horizon_days: float,
    k: int,
    metric: str = "ndcg",
    max_users: int | None = None,
    seed: int = 0,
) -> TuneResult:
    """Pick a baseline's knobs on a time split *inside* ``history``.

    The history is split again at ``validation_cutoff``: each grid point is fitted on the
    events before it and judged on the warm buyers of ``[validation_cutoff,
    validation_cutoff + horizon_days)`` (clipped at the end of the history). The test
    window is never seen, so every baseline gets the same, fair chance. Ties keep the
    first grid point. ``grid`` is a scikit-learn ``ParameterGrid`` spec.

    Grid points are compared on the accuracy metrics alone (``accuracy_metrics``): the
    bias metrics rescan the whole history per list and choose nothing. ``max_users`` judges
    them on at most that many warm buyers (``user_sample``, seeded): the fits still see every
    purchase, but recommending and judging stop growing with the export.
    """
    started = time.perf_counter()
    end = pd.Timestamp(history["ts"].max()) if len(history) else None
    inner_hist, inner_truth = time_split(history, validation_cutoff, horizon_days)
    if end is not None and pd.Timestamp(validation_cutoff) > end:
        raise ValueError("validation_cutoff lies after the history: nothing to validate on")
    users = warm_users(inner_hist, inner_truth)
    if max_users is not None:
        users = user_sample(users, max_users, seed).sort_values()
    truth = restrict_truth(inner_truth, users)
    records = []
    for params in ParameterGrid(grid):
        t0 = time.perf_counter()
        model = baseline_factory(**params).fit(inner_hist)
        scores = accuracy_metrics(model.recommend(users, k), truth, k)
        records.append({"params": dict(params), **scores, "seconds": time.perf_counter() - t0})
    table = pd.DataFrame(records)
    best = int(table[metric].fillna(-np.inf).to_numpy().argmax())
    return TuneResult(
        best_params=table.loc[best, "params"],
        best_score=float(table.loc[best, metric]),
        metric=metric,
        table=table,
        seconds=time.perf_counter() - started,
    )


ALS_MISSING = "als skipped: the optional package 'implicit' is not installed (pip install -e '.[als]')"


@dataclass
class BaselineSpec:
    """A baseline to compare: its factory and the grid its main knob is tuned over."""

    name: str
    factory: Callable[..., BaseRecommender]
    grid: dict[str, list] = field(default_factory=dict)


def gate_specs() -> list[BaselineSpec]:
    """The simple lists every run's published list must beat (or be): cheap enough to tune,
    judge and serve on every run, because their scores are sparse or one list for all."""
    return [
        BaselineSpec("popular_tuned", PopularRecommender, {"window_days": [7, 14, 28, 56, None]}),
        BaselineSpec("repurchase", RepurchaseRecommender, {"half_life_days": [None, 14, 30, 90]}),
        BaselineSpec(
            "item_knn", ItemKNNRecommender, {"n_neighbours": [10, 50, 200], "filter_purchased": [False, True]}
        ),
    ]


# TIFU-KNN (a strong published next-basket method) keeps the paper's decays and group size and
# tunes only the neighbour knobs: every grid point is a full fit with a similarity pass over
# the users. It is judged by `recsys evaluate`, not by every run's gate: on Ta-Feng it costs
# ~50 s a run and lost to repurchase at both cutoffs measured (README, Results).
TIFU_KNN = BaselineSpec("tifu_knn", TIFUKNNRecommender, {"n_neighbours": [100, 300], "alpha": [0.7, 0.9]})


def spec_named(name: str) -> BaselineSpec:
    """The gate baseline called ``name`` (how a run that published it is reproduced)."""
    return next(spec for spec in gate_specs() if spec.name == name)


def default_specs(include_als: bool = True, log: Callable[[str], None] = print) -> list[BaselineSpec]:
    """The standard comparison set: the gate's baselines, TIFU-KNN, EASE and ALS; grids are small so
    tuning stays within minutes. ALS needs the optional ``implicit`` package (the ``als``
    extra): without it ALS is skipped with one line through ``log``.
    """
    specs = [*gate_specs(), TIFU_KNN, BaselineSpec("ease", EASERecommender, {"l2": [10.0, 30.0, 100.0, 500.0]})]
    if include_als:
        try:
            ALSRecommender()
            specs.append(BaselineSpec("als", ALSRecommender, {"factors": [32, 64, 128], "alpha": [1.0, 10.0]}))
        except ImportError:
            log(ALS_MISSING)
    return specs


@dataclass
class FittedBaseline:
    """A baseline fitted on the whole history with the knobs tuned inside it."""

    name: str
    model: BaseRecommender
    params: dict[str, Any]
    tune_seconds: float
    fit_seconds: float


def categorical_ids(history: pd.DataFrame) -> pd.DataFrame:
    """``history`` with its ids as categories, for the many fits of a tuning: each fit encodes
    the ids, and a category's code is that encoding already (sorting 780k id strings in each of
    the gate's 18 fits took 10 s at 49.7 M rows). The fitted models keep plain ids."""
    return history.astype({"user_id": "category", "item_id": "category"})


def fit_tuned(
    spec: BaselineSpec,
    history: pd.DataFrame,
    validation_cutoff: str | pd.Timestamp,
    horizon_days: float,
    k: int,
    metric: str = "ndcg",
    max_users: int | None = None,
    seed: int = 0,
) -> FittedBaseline:
    """Tune ``spec``'s grid on the split at ``validation_cutoff`` inside ``history`` (on at most
    ``max_users`` of its buyers, :func:`tune`), then refit the chosen knobs on all of ``history``:
    the only fair way to give a baseline its best shot.
    A history that ends before ``validation_cutoff`` leaves nothing to tune on: defaults."""
    can_tune = bool(spec.grid) and len(history) > 0 and history["ts"].max() >= pd.Timestamp(validation_cutoff)
    tuned = (
        tune(spec.factory, spec.grid, history, validation_cutoff, horizon_days, k, metric, max_users, seed)
        if can_tune
        else None
    )
    fitted = fit_given(spec, history, tuned.best_params if tuned else {})
    return replace(fitted, tune_seconds=tuned.seconds) if tuned else fitted


def fit_given(spec: BaselineSpec, history: pd.DataFrame, params: Mapping[str, Any]) -> FittedBaseline:
    """``spec`` fitted on all of ``history`` with knobs chosen earlier (no tuning)."""
    t0 = time.perf_counter()
    model = spec.factory(**params).fit(history)
    return FittedBaseline(spec.name, model, dict(params), 0.0, time.perf_counter() - t0)


def judge_baselines(
    specs: list[BaselineSpec],
    purchases: pd.DataFrame,
    cutoff: datetime,
    horizon_days: float,
    k: int,
    users: pd.Index,
    truth: pd.DataFrame,
    history: pd.DataFrame | HistorySummary,
    catalogue: int | None = None,
    tuning_users: int | None = None,
    seed: int = 0,
    known_params: Mapping[str, dict[str, Any]] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Each baseline tuned (on at most ``tuning_users`` buyers, :func:`tune`) and fitted before
    ``cutoff``, its top-``k`` lists for ``users`` judged
    against ``truth`` with exactly the ranker's metric call (``ml.ranker.holdout.ranking_scores``),
    so the gate compares like with like: ``{name: {"params": ..., "metrics": ..., "per_user": ...}}``
    (``per_user``: the per-user metric values, for bootstrap intervals). A baseline named in
    ``known_params`` is fitted with those knobs instead of tuned: a run between two searches
    reuses the last search's, like the ranker's. Each judged baseline logs ``baseline i/N``."""
    progress = Progress("baseline", len(specs), log)
    past = categorical_ids(purchases[purchases["ts"] < pd.Timestamp(cutoff)])
    users_truth = truth[truth["user_id"].isin(users)]
    validation_cutoff = pd.Timestamp(cutoff) - pd.Timedelta(days=horizon_days)
    known_params = known_params or {}
    history = HistorySummary.of(history)
    judged = {}
    for spec in specs:
        if spec.name in known_params:
            fitted = fit_given(spec, past, known_params[spec.name])
        else:
            fitted = fit_tuned(spec, past, validation_cutoff, horizon_days, k, "ndcg", tuning_users, seed)
        scored = score_lists(fitted.model.recommend(users, k), users_truth, history, k, catalogue, users=users)
        judged[spec.name] = {"params": fitted.params, "metrics": scored.metrics, "per_user": scored.per_user}
        how = "knobs reused" if spec.name in known_params else "tuned"
        progress.update(
            len(judged), f"{spec.name} {fitted.params} ({how}): holdout ndcg@{k} {scored.metrics['ndcg']:.4f}"
        )
    return judged


def run_baselines(
    interactions: pd.DataFrame,
    cutoff: str | pd.Timestamp,
    horizon_days: float,
    k: int,
    validation_cutoff: str | pd.Timestamp | None = None,
    specs: list[BaselineSpec] | None = None,
    metric: str = "ndcg",
    verbose: bool = False,
    popular_params: dict[str, Any] | None = None,
    per_user: dict[str, pd.DataFrame] | None = None,
    judged_users: pd.Index | None = None,
) -> pd.DataFrame:
    """Tune, refit and evaluate each baseline; one row per baseline (plus cold users).

    * Test split: history = events before ``cutoff``; truth = purchases in
      ``[cutoff, cutoff + horizon_days)`` of the warm users (bought in the window and have
      history). Users without a list would count as misses (none here: lists are topped up).
    * Tuning: ``validation_cutoff`` defaults to ``cutoff - horizon_days``, the same
      horizon, inside the history; ``metric`` picks the grid point.
    * A last row ``popular@cold`` scores the tuned popular list on the cold buyers (no
      history), the only list they can get (``popular_params`` when ``specs`` has no popular
      baseline, e.g. because it was judged already).

    Columns: ``model, users, params`` then the keys of :func:`ml.evaluation.metrics.evaluate_lists`
    and ``tune_s, fit_s, recommend_s``. ``per_user``, when given, receives each baseline's
    per-user metric values on the warm buyers (for bootstrap intervals without recomputing lists).
    ``judged_users``, when given, narrows the warm buyers to them: the ranker's holdout sample
    (``Config.holdout_users``), so that every list is judged on the same users.
    """
    cutoff = pd.Timestamp(cutoff)
    if validation_cutoff is None:
        validation_cutoff = cutoff - pd.Timedelta(days=horizon_days)
    history, truth = time_split(interactions, cutoff, horizon_days)
    warm = warm_users(history, truth)
    if judged_users is not None:
        warm = warm.intersection(judged_users)
    cold = cold_users(history, truth)
    truth_warm = restrict_truth(truth, warm)
    catalogue = history["item_id"].nunique()
    judged_history = HistorySummary.of(history)
    fit_history = categorical_ids(history)
    rows: list[dict[str, Any]] = []
    for spec in specs or default_specs():
        fitted = fit_tuned(spec, fit_history, validation_cutoff, horizon_days, k, metric)
        t0 = time.perf_counter()
        recs = fitted.model.recommend(warm, k)
        rec_s = time.perf_counter() - t0
        scored = score_lists(recs, truth_warm, judged_history, k, catalogue)
        scores = scored.metrics
        if per_user is not None:
            per_user[spec.name] = scored.per_user
        rows.append(
            {
                "model": spec.name,
                "users": "warm",
                "params": fitted.params,
                **scores,
                "tune_s": fitted.tune_seconds,
                "fit_s": fitted.fit_seconds,
                "recommend_s": rec_s,
            }
        )
        if verbose:
            print(
                f"{spec.name}: {fitted.params} ndcg={scores['ndcg']:.4f} tune {fitted.tune_seconds:.1f}s "
                f"fit {fitted.fit_seconds:.1f}s rec {rec_s:.1f}s",
                flush=True,
            )
        if spec.factory is PopularRecommender:
            popular_params = fitted.params
    if len(cold):
        t0 = time.perf_counter()
        model = PopularRecommender(**(popular_params or {})).fit(history)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        recs = model.recommend(cold, k)
        rec_s = time.perf_counter() - t0
        scores = evaluate_lists(recs, restrict_truth(truth, cold), judged_history, k, catalogue)
        rows.append(
            {
                "model": "popular@cold",
                "users": "cold",
                "params": popular_params or {},
                **scores,
                "tune_s": 0.0,
                "fit_s": fit_s,
                "recommend_s": rec_s,
            }
        )
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    """A compact text rendering of :func:`run_baselines` output for reports and the CLI."""
    cols = [
        "model",
        "users",
        "n_users",
        "recall",
        "precision",
        "ndcg",
        "map",
        "hit_rate",
        "mrr",
        "coverage",
        "missed_offer_share",
        "novelty",
        "popularity_pct",
        "tune_s",
        "fit_s",
        "recommend_s",
        "params",
    ]
    shown = table[[c for c in cols if c in table.columns]].copy()
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4f}")
