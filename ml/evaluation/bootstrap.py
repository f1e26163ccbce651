"""Bootstrap confidence intervals over users for the ranking metrics, and paired differences.

A holdout of a few thousand buyers makes NDCG@10 move in the third decimal from one sample of
buyers to the next, so a difference between two lists means something only when it is larger
than that. The user is the unit every metric averages over, so users are resampled with
replacement. Every list and every difference is resampled with the same draws: the difference
between two lists is a paired bootstrap on the same users, far tighter than two separate
intervals would suggest when both lists do well or badly on the same users.

Vectorised: each chunk of resamples is a (resamples x users) matrix of draw counts, multiplied
with the (users x columns) matrix of per-user values of every list and metric; a 100k-user
holdout with ten lists takes seconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

# Metric name (as in ml.evaluation.metrics.evaluate_lists) -> column of ml.evaluation.metrics.per_user_metrics.
METRICS = {"ndcg": "ndcg", "recall": "recall", "precision": "precision", "map": "ap", "hit_rate": "hit", "mrr": "rr"}


def user_values(per_user: pd.DataFrame) -> pd.DataFrame:
    """Each user's term of each metric of :data:`METRICS`, NaN where the user does not count:
    precision averages over every evaluated user, the others over buyers only (as
    ``ml.evaluation.metrics.evaluate_lists``), so the mean of each column is the reported metric."""
    buyers = per_user["n_truth"].to_numpy() > 0
    values = {
        name: np.where(buyers, per_user[column].to_numpy(dtype=float), np.nan) for name, column in METRICS.items()
    }
    values["precision"] = per_user["precision"].to_numpy(dtype=float)
    return pd.DataFrame(values, index=per_user.index)


def resampled_means(values: np.ndarray, n_resamples: int = 1000, seed: int = 0, chunk: int = 50) -> np.ndarray:
    """The mean of each column of ``values`` (rows = users) in ``n_resamples`` resamples of the
    rows with replacement: shape (n_resamples, columns). A NaN is drawn like any row but left
    out of its column's mean (a non-buyer in a buyers' average); NaN where nothing counts."""
    n_rows, n_columns = values.shape
    valid = ~np.isnan(values)
    # Columns share few populations (buyers, all users of a list): one count column for each.
    keys = [np.packbits(column).tobytes() for column in valid.T]
    distinct = list(dict.fromkeys(keys))
    mask_of_column = np.array([distinct.index(key) for key in keys])
    masks = valid[:, [keys.index(key) for key in distinct]]
    weights = np.hstack([np.where(valid, values, 0.0), masks.astype(float)])
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, n_columns))
    # One BLAS thread: on a busy machine several spin against each other (20x slower on 2 cores).
    with threadpool_limits(1, user_api="blas"):
        for start in range(0, n_resamples, chunk):
            size = min(chunk, n_resamples - start)
            draws = rng.integers(0, n_rows, size=(size, n_rows)) + n_rows * np.arange(size)[:, None]
            counts = np.bincount(draws.ravel(), minlength=size * n_rows).reshape(size, n_rows)
            totals = counts.astype(float) @ weights
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start : start + size] = totals[:, :n_columns] / totals[:, n_columns + mask_of_column]
    return out


def intervals(
    per_user: Mapping[str, pd.DataFrame],
    reference: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile intervals of every list's ranking metrics, and of ``reference`` minus each
    other list on the users both were judged on; JSON-able.

    ``per_user``: list name -> :func:`ml.evaluation.metrics.per_user_metrics` frame (``ListScores.per_user``).
    A difference is ``within_noise`` when its interval covers 0.
    """
    values = {name: user_values(frame) for name, frame in per_user.items()}
    users = pd.Index([]) if not values else values[next(iter(values))].index
    for frame in values.values():
        users = users.union(frame.index, sort=False)
    keys, columns = [], []
    for name, frame in values.items():
        aligned = frame.reindex(users)
        for metric in METRICS:
            keys.append((name, metric))
            columns.append(aligned[metric].to_numpy())
    others = [name for name in values if name != reference] if reference in values else []
    base = values[reference].reindex(users) if others else None
    for name in others:
        aligned = values[name].reindex(users)
        for metric in METRICS:  # NaN unless the user counts in both lists
            keys.append((f"{reference} - {name}", metric))
            columns.append(base[metric].to_numpy() - aligned[metric].to_numpy())

    result: dict[str, Any] = {
        "resamples": n_resamples,
        "level": level,
        "seed": seed,
        "unit": "user",
        "reference": reference if others else None,
        "lists": {},
        "differences": {},
    }
    if not columns or len(users) == 0:
        return result
    matrix = np.column_stack(columns)
    tail = (1 - level) / 2
    with warnings.catch_warnings():  # a column nobody counts in is NaN, and says so
        warnings.simplefilter("ignore", RuntimeWarning)
        point = np.nanmean(matrix, axis=0)
        low, high = np.nanquantile(resampled_means(matrix, n_resamples, seed), [tail, 1 - tail], axis=0)
    cells = {key: (_number(p), _number(lo), _number(hi)) for key, p, lo, hi in zip(keys, point, low, high)}
    for name in values:
        result["lists"][name] = {
            metric: {"low": cells[name, metric][1], "high": cells[name, metric][2]} for metric in METRICS
        }
    for name in others:
        result["differences"][name] = {}
        for metric in METRICS:
            difference, lo, hi = cells[f"{reference} - {name}", metric]
            result["differences"][name][metric] = {
                "difference": difference,
                "low": lo,
                "high": hi,
                "within_noise": None if lo is None else bool(lo <= 0 <= hi),
            }
    return result


def _number(value: float) -> float | None:
    """JSON has no NaN: a metric nobody counts in is None."""
    return None if np.isnan(value) else float(value)


def within_noise(intervals: Mapping[str, Any], a: str, b: str, metric: str = "ndcg") -> bool | None:
    """Whether lists ``a`` and ``b`` cannot be told apart on ``metric`` (the interval of their
    paired difference covers 0); None unless one of them is the reference of ``intervals``."""
    reference, differences = intervals.get("reference"), intervals.get("differences") or {}
    other = b if reference == a else a if reference == b else None
    return ((differences.get(other) or {}).get(metric) or {}).get("within_noise")
