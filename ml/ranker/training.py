"""Fitting the ranker: hyper-parameters by time-respecting cross-validation, validation curves
for over-fitting, and permutation importance for a sense check.

Cross-validation never splits at random: each fold trains on the candidates of an older cutoff
and validates on the next newer one (forward chaining), scoring NDCG@k of the ranked lists
against everything the users really bought.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from ml.evaluation.splitting import user_sample
from ml.progress import Progress
from ml.ranker.features import FEATURES, LABEL, uninformative
from ml.ranker.models import DEFAULT_PARAMS, make_classifier, prepared_columns, scores
from ml.ranker.ranking import ranking_ndcg

# Wider ranges than the search grid: enough to see under- and over-fitting on either side.
CURVE_RANGES: dict[str, dict[str, list[Any]]] = {
    "hgb": {"learning_rate": [0.03, 0.1, 0.3], "max_leaf_nodes": [4, 15, 63]},
    "logreg": {"C": [0.001, 0.1, 10.0]},
}


T = TypeVar("T")


class NotEnoughHistory(ValueError):
    """The export is too short or thin to learn and judge a ranking (e.g. the 0.1 % sample)."""


@dataclass
class LabelledSet:
    """Candidates of one labelled cutoff and the purchases of its window."""

    cutoff_index: int
    frame: pd.DataFrame
    truth: pd.DataFrame

    @classmethod
    def pooled(cls, sets: Sequence[LabelledSet]) -> LabelledSet:
        """Several cutoffs as one training set: more windows, less fitting to one window's quirks.

        A user at two cutoffs is two ranking problems, so user ids are prefixed by the cutoff.
        """
        if len(sets) == 1:
            return sets[0]

        def keyed(frame: pd.DataFrame, index: int) -> pd.DataFrame:
            return frame.assign(user_id=f"{index}:" + frame["user_id"].astype(str))

        return cls(
            min(data.cutoff_index for data in sets),
            pd.concat([keyed(data.frame, data.cutoff_index) for data in sets], ignore_index=True),
            pd.concat([keyed(data.truth, data.cutoff_index) for data in sets], ignore_index=True),
        )

    def for_users(self, users: pd.Index) -> LabelledSet:
        """Only the candidates and purchases of ``users``: whole users, every row of each kept."""
        return LabelledSet(
            self.cutoff_index,
            self.frame[self.frame["user_id"].isin(users)],
            self.truth[self.truth["user_id"].isin(users)],
        )

    def sample_users(self, max_users: int, seed: int = 0) -> LabelledSet:
        """At most ``max_users`` whole users (``user_sample``); itself when it has no more."""
        users = user_sample(self.frame["user_id"], max_users, seed)
        return self if len(users) == self.frame["user_id"].nunique() else self.for_users(users)

    @property
    def usable(self) -> bool:
        """A model can only learn or be judged where there are both positives and negatives."""
        return len(self.frame) > 0 and 0 < self.frame[LABEL].sum() < len(self.frame)


@dataclass
class SearchResult:
    """One grid point of one model family and its NDCG on each (train, validation) fold."""

    kind: str
    params: dict[str, Any]
    fold_scores: dict[tuple[int, int], float]


def user_balanced_weights(frame: pd.DataFrame) -> np.ndarray:
    """Sample weights under which each user's purchases together weigh as much as one purchase.

    NDCG averages over users, so a user with one purchase matters as much as one with fifty;
    unweighted, the heavy buyers' many positives would decide what the model learns.
    Negatives keep weight 1.
    """
    positives = frame[LABEL].to_numpy() == 1
    per_user = frame.loc[positives, "user_id"].value_counts()
    weights = np.ones(len(frame))
    weights[positives] = 1.0 / frame.loc[positives, "user_id"].map(per_user).to_numpy()
    return weights


def fit(kind: str, params: Mapping[str, Any], data: LabelledSet) -> Pipeline:
    """Fit on the features that can inform this frame (``ml.ranker.features.uninformative``)."""
    dropped = uninformative(data.frame)
    features = [name for name in FEATURES if name not in dropped]
    if not features:
        raise NotEnoughHistory(f"no feature varies across the {len(data.frame):,} training rows")
    model = make_classifier(kind, features=features, **params)
    weights = user_balanced_weights(data.frame)
    # The trees' bins are weighted quantiles (``models.WeightedBins``), like the fit itself.
    routed = {f"{step}__sample_weight": weights for step in ("bins", "classifier") if step in model.named_steps}
    # One OpenMP thread: the trees open a parallel region per node, and at our frame sizes
    # waking a second thread costs more than it saves (measured: 12k rows 0.8 s on one thread,
    # 7.2 s on two with passive waiting; 400k rows 5.4 s against 10 s), and a busy machine
    # cannot slow a one-thread fit by spinning (ml/__init__.py).
    with threadpool_limits(1, user_api="openmp"):
        model.fit(data.frame[FEATURES], data.frame[LABEL], **routed)
    return model


def evaluate_ndcg(model: Pipeline, data: LabelledSet, k: int) -> float:
    return ranking_ndcg(data.frame, scores(model, data.frame), data.truth, k)


def fit_and_score(kind: str, params: Mapping[str, Any], train: LabelledSet, valid: LabelledSet, k: int) -> float:
    return evaluate_ndcg(fit(kind, params, train), valid, k)


def curve_point(
    kind: str, params: Mapping[str, Any], train: LabelledSet, valid: LabelledSet, k: int
) -> tuple[float, float]:
    """Training and validation NDCG@k of one fit: one point of a validation curve."""
    model = fit(kind, params, train)
    return evaluate_ndcg(model, train, k), evaluate_ndcg(model, valid, k)


def fit_workers() -> int:
    """How many fits run at once: one per core this process may use, as each fit uses one."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_parallel(calls: Sequence[Callable[[], T]], on_done: Callable[[int, T], None]) -> list[T]:
    """The results of ``calls``, in order, run ``fit_workers()`` at a time in threads.

    The fits and their scoring are independent and deterministic, so the results are those of
    running the calls one by one; scikit-learn's fits release the GIL. ``on_done(i, result)`` is
    called as each finishes (for progress lines), in this thread, which runs the calls itself
    when one worker is all there is.
    """
    workers = min(fit_workers(), len(calls))
    results: dict[int, T] = {}
    if workers <= 1:
        for index, call in enumerate(calls):
            results[index] = call()
            on_done(index, results[index])
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            running = {pool.submit(call): index for index, call in enumerate(calls)}
            for done in as_completed(running):
                results[running[done]] = done.result()
                on_done(running[done], results[running[done]])
    return [results[index] for index in range(len(calls))]


def grid(kind: str, search: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    names = list(search)
    return [dict(zip(names, values)) for values in itertools.product(*(search[n] for n in names))]


def search_params(
    kind: str,
    search: Mapping[str, Sequence[Any]],
    folds: Sequence[tuple[LabelledSet, LabelledSet]],
    k: int,
    log: Callable[[str], None] = print,
) -> list[SearchResult]:
    """Score every grid point on every (older -> newer) fold, one fit per core (``in_parallel``);
    each fit logs ``fit i/N`` with an estimate of the time left."""
    results = [SearchResult(kind, params, {}) for params in grid(kind, search)]
    jobs = [(result, train, valid) for result in results for train, valid in folds]
    progress = Progress("cross-validation fit", len(jobs), log)

    def logged(index: int, score: float) -> None:
        result, train, valid = jobs[index]
        progress.update(
            progress.done + 1,
            f"{kind} {result.params} cutoffs {train.cutoff_index}->{valid.cutoff_index} ndcg@{k} {score:.4f}",
        )

    fold_scores = in_parallel([partial(fit_and_score, kind, r.params, t, v, k) for r, t, v in jobs], logged)
    for (result, train, valid), score in zip(jobs, fold_scores, strict=True):
        result.fold_scores[(train.cutoff_index, valid.cutoff_index)] = score
    return results


def best_params(
    kind: str, results: Sequence[SearchResult], folds: Sequence[tuple[int, int]] | None = None
) -> dict[str, Any]:
    """The grid point with the best mean NDCG over the given folds (all folds by default)."""

    def mean_score(result: SearchResult) -> float:
        chosen = [v for f, v in result.fold_scores.items() if folds is None or f in folds]
        return float(np.mean(chosen)) if chosen else float("-inf")

    if not results:
        return dict(DEFAULT_PARAMS[kind])
    return {**DEFAULT_PARAMS[kind], **max(results, key=mean_score).params}


def best_fold_scores(results: Sequence[SearchResult], folds: Sequence[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """The scores on ``folds`` of the grid point with the best mean over them (``best_params``'
    choice): what a family is worth once its own knobs are chosen on the same folds."""
    if not results or not folds:
        return {}

    def mean_score(result: SearchResult) -> float:
        return float(np.mean([result.fold_scores[fold] for fold in folds]))

    best = max(results, key=mean_score)
    return {fold: best.fold_scores[fold] for fold in folds}


def choose_family(fold_scores: Mapping[str, Mapping[tuple[int, int], float]]) -> dict[str, Any]:
    """The model family with the best mean NDCG over the folds, from those scores alone.

    ``fold_scores`` holds, per family, the folds' scores of its best grid point
    (``best_fold_scores``), and only of folds that never validate on the holdout: the caller
    cannot pass the holdout's metrics, so they cannot sway the choice, and the judged model's
    holdout NDCG stays an honest estimate of the whole recipe (family, knobs, fit). Ties go to
    the family named first. Without any fold the first family is kept, and the record says so.
    How often each family won a fold tells how stable the choice is: a family that wins on the
    mean but loses most folds is a weak choice.
    """
    kinds = list(fold_scores)
    folds = sorted({fold for scores in fold_scores.values() for fold in scores}, reverse=True)
    if not folds:
        return {
            "chosen": kinds[0],
            "folds": [],
            "families": {kind: {"fold_scores": {}, "mean": None, "folds_won": 0} for kind in kinds},
            "reason": f"no fold before the holdout to compare on: kept {kinds[0]}",
        }
    means = {kind: float(np.mean([fold_scores[kind][fold] for fold in folds])) for kind in kinds}
    winners = [max(kinds, key=lambda kind: fold_scores[kind][fold]) for fold in folds]
    chosen = max(kinds, key=lambda kind: means[kind])
    won = winners.count(chosen)
    return {
        "chosen": chosen,
        "folds": [f"{a}->{b}" for a, b in folds],
        "families": {
            kind: {
                "fold_scores": {f"{a}->{b}": fold_scores[kind][(a, b)] for a, b in folds},
                "mean": means[kind],
                "folds_won": winners.count(kind),
            }
            for kind in kinds
        },
        "reason": f"{chosen}: best mean NDCG over the {len(folds)} fold(s) before the holdout "
        f"({', '.join(f'{kind} {means[kind]:.4f}' for kind in kinds)}); won {won} of {len(folds)} fold(s)",
    }


def validation_curves(
    kind: str,
    params: Mapping[str, Any],
    train: LabelledSet,
    valid: LabelledSet,
    k: int,
    max_users: int = 3_000,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train and validation NDCG@k while one hyper-parameter moves around its value in
    ``params`` (the chosen one, always on the curve as ``chosen``) and the others stay put.

    Validation far below training, and falling while training still rises, is over-fitting;
    both low is under-fitting. Training uses at most ``max_users`` users' candidates
    (``train_users``, a ``user_sample``): the curves' shape around the choice is what they are
    for, not picking a value (cross-validation did that). Each fit logs ``validation-curve fit
    i/N`` with an estimate of the time left.
    """
    train = train.sample_users(max_users)
    ranges = {name: sorted({*values, params[name]}) for name, values in CURVE_RANGES[kind].items()}
    # The chosen point is on every curve: each distinct point is fitted once.
    points = list(
        dict.fromkeys(
            tuple(sorted({**params, name: value}.items())) for name, values in ranges.items() for value in values
        )
    )
    progress = Progress("validation-curve fit", len(points), log)

    def logged(index: int, measured: tuple[float, float]) -> None:
        point = dict(points[index])
        progress.update(
            progress.done + 1,
            f"{', '.join(f'{name} {point[name]}' for name in ranges)}: "
            f"train ndcg@{k} {measured[0]:.4f}, valid {measured[1]:.4f}",
        )

    calls = [partial(curve_point, kind, dict(point), train, valid, k) for point in points]
    measured = dict(zip(points, in_parallel(calls, logged), strict=True))
    curves = []
    for name, values in ranges.items():
        chosen = params[name]
        train_scores, valid_scores = [], []
        for value in values:
            point = tuple(sorted({**params, name: value}.items()))
            train_scores.append(measured[point][0])
            valid_scores.append(measured[point][1])
        curves.append(
            {
                "param": name,
                "values": values,
                "chosen": chosen,
                "train_score": train_scores,
                "valid_score": valid_scores,
                "metric": f"ndcg@{k}",
                "train_users": int(train.frame["user_id"].nunique()),
            }
        )
    return curves


def feature_importance(
    model: Pipeline,
    data: LabelledSet,
    max_rows: int = 20_000,
    n_repeats: int = 3,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Permutation importance on held-out rows (average precision lost when a feature is shuffled).

    The values of scikit-learn's ``permutation_importance`` on the whole pipeline, the same
    shuffles included, computed faster: the rows are prepared once (encoded and binned) and each
    feature's prepared columns are shuffled instead, which is the same thing because every
    prepared column depends on its own feature's value in its own row (``prepared_columns``).
    Only the classifier then predicts, about 160 times (53 features x 3 repeats): re-preparing
    the rows each time was 0.18 of every 0.30 s prediction of 20,000 rows (1 M-row build).
    20,000 rows rank the leading features as 50,000 do (the same top four, in order, on 143,065
    held-out purchase-only rows, 2026-12-03) in a third of the time. Progress is logged after
    each quarter of the features.
    """
    frame = data.frame
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=0)
    prepared = model[:-1].transform(frame[FEATURES])
    classifier, labels = model[-1], frame[LABEL].to_numpy()

    def precision(matrix: pd.DataFrame) -> float:
        return float(average_precision_score(labels, classifier.predict_proba(matrix)[:, 1]))

    baseline, columns = precision(prepared), prepared_columns(model)
    seed = np.random.RandomState(0).randint(np.iinfo(np.int32).max + 1)  # as permutation_importance draws it
    progress, quarter = Progress("permutation importance, features", len(FEATURES), log), -(-len(FEATURES) // 4)
    rows = []
    for name in FEATURES:
        losses = np.zeros(n_repeats)
        if name in columns:
            order, shuffles, shuffled = np.arange(len(prepared)), np.random.RandomState(seed), prepared.copy()
            for repeat in range(n_repeats):  # each repeat shuffles the last one's order, as scikit-learn does
                shuffles.shuffle(order)
                shuffled[columns[name]] = shuffled[columns[name]].to_numpy()[order]
                losses[repeat] = baseline - precision(shuffled)
        rows.append({"feature": name, "importance_mean": float(losses.mean()), "importance_std": float(losses.std())})
        if len(rows) % quarter == 0 or len(rows) == len(FEATURES):
            progress.update(len(rows))
    return sorted(rows, key=lambda row: -row["importance_mean"])
