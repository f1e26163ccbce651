"""Bootstrap intervals over users: they cover the reported value, shrink with more users, and a
paired difference says "within noise" only when the interval of the difference covers 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.evaluation import bootstrap
from ml.evaluation.metrics import score_lists

K = 5


def _lists(users: int, hit_chance: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Index]:
    """Each user bought two of 50 items; the list holds each of them with ``hit_chance``."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"u{i}" for i in range(users)])
    truth = pd.DataFrame({"user_id": np.repeat(ids, 2), "item_id": np.tile(["a", "b"], users)})
    items = np.where(
        rng.random((users, K)) < hit_chance / K * 2,
        np.tile(["a", "b", "a", "b", "a"], (users, 1)),
        rng.integers(100, 150, (users, K)).astype(str),
    )
    recs = pd.DataFrame(
        {"user_id": np.repeat(ids, K), "item_id": items.ravel(), "rank": np.tile(np.arange(1, K + 1), users)}
    )
    return recs, truth, ids


def _per_user(users: int, hit_chance: float, seed: int = 0):
    recs, truth, ids = _lists(users, hit_chance, seed)
    return score_lists(recs, truth, truth, K, users=ids)


def test_user_values_average_to_the_reported_metrics():
    scored = _per_user(300, 0.4)
    means = bootstrap.user_values(scored.per_user).mean()
    for metric in bootstrap.METRICS:
        assert means[metric] == pytest.approx(scored.metrics[metric])


def test_intervals_cover_the_reported_value_and_shrink_with_more_users():
    widths = []
    for users in (200, 5_000):
        scored = _per_user(users, 0.4)
        out = bootstrap.intervals({"model": scored.per_user}, n_resamples=300)
        for metric in bootstrap.METRICS:
            cell = out["lists"]["model"][metric]
            assert cell["low"] < scored.metrics[metric] < cell["high"], (users, metric)
        widths.append(out["lists"]["model"]["ndcg"]["high"] - out["lists"]["model"]["ndcg"]["low"])
    assert widths[1] < widths[0] / 3  # about sqrt(25) = 5 times narrower


def test_a_list_against_itself_differs_by_exactly_zero_within_noise():
    scored = _per_user(500, 0.4)
    out = bootstrap.intervals({"ranker": scored.per_user, "copy": scored.per_user.copy()}, reference="ranker")
    for metric in bootstrap.METRICS:
        cell = out["differences"]["copy"][metric]
        assert cell == {"difference": 0.0, "low": 0.0, "high": 0.0, "within_noise": True}


def test_a_clearly_better_list_is_not_within_noise_and_a_close_one_is():
    better, worse, close = _per_user(2_000, 0.6, seed=1), _per_user(2_000, 0.2, seed=2), _per_user(2_000, 0.6, seed=3)
    out = bootstrap.intervals(
        {"ranker": better.per_user, "weak": worse.per_user, "twin": close.per_user}, reference="ranker"
    )
    weak = out["differences"]["weak"]["ndcg"]
    assert weak["difference"] == pytest.approx(better.metrics["ndcg"] - worse.metrics["ndcg"])
    assert weak["low"] > 0 and weak["within_noise"] is False
    assert out["differences"]["twin"]["ndcg"]["within_noise"] is True
    assert out["reference"] == "ranker" and set(out["lists"]) == {"ranker", "weak", "twin"}


def test_differences_are_paired_on_the_users_both_lists_judged():
    scored = _per_user(400, 0.4)
    half = scored.per_user.iloc[:200]
    out = bootstrap.intervals({"ranker": scored.per_user, "half": half}, reference="ranker", n_resamples=200)
    # The same users' values: the difference is 0 although the two lists' means differ.
    assert out["differences"]["half"]["ndcg"]["difference"] == 0.0
    assert out["lists"]["half"]["ndcg"]["low"] != out["lists"]["ranker"]["ndcg"]["low"]


def test_a_metric_nobody_counts_in_is_none_and_resampling_is_seeded():
    values = np.array([[1.0, np.nan], [0.0, np.nan], [1.0, np.nan]])
    first = bootstrap.resampled_means(values, n_resamples=40, seed=5)
    assert np.array_equal(first, bootstrap.resampled_means(values, n_resamples=40, seed=5), equal_nan=True)
    assert np.isnan(first[:, 1]).all() and ((first[:, 0] >= 0) & (first[:, 0] <= 1)).all()
    nobody_bought = pd.DataFrame(
        {"n_truth": [0, 0], "recall": np.nan, "precision": 0.0, "ndcg": np.nan, "ap": np.nan, "hit": 0, "rr": 0.0},
        index=["u1", "u2"],
    )
    out = bootstrap.intervals({"model": nobody_bought})
    assert out["lists"]["model"]["ndcg"] == {"low": None, "high": None}
    assert out["lists"]["model"]["precision"] == {"low": 0.0, "high": 0.0}


def test_within_noise_reads_the_pair_whichever_side_is_the_reference():
    better, worse = _per_user(2_000, 0.6, seed=1), _per_user(2_000, 0.2, seed=2)
    out = bootstrap.intervals(
        {"ranker": better.per_user, "weak": worse.per_user, "twin": better.per_user},
        reference="ranker",
        n_resamples=200,
    )
    assert bootstrap.within_noise(out, "ranker", "weak") is False
    assert bootstrap.within_noise(out, "weak", "ranker") is False
    assert bootstrap.within_noise(out, "twin", "ranker") is True
    assert bootstrap.within_noise(out, "weak", "twin") is None  # neither is the reference
