"""Metrics and splits on tiny examples whose values are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml.evaluation import metrics
from ml.evaluation.splitting import cold_users, restrict_truth, time_split, warm_users


def _recs(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


def _truth(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


# u1 bought a, b; list a(1) x(2) b(3): hits at ranks 1 and 3.
# u2 bought c;    list y(1) c(2) z(3): hit at rank 2.
# u3 bought d;    no list at all: a miss.
RECS = _recs([("u1", "a", 1), ("u1", "x", 2), ("u1", "b", 3), ("u2", "y", 1), ("u2", "c", 2), ("u2", "z", 3)])
TRUTH = _truth([("u1", "a"), ("u1", "b"), ("u2", "c"), ("u3", "d")])
K = 3


def test_recall_precision_hit_rate():
    assert metrics.recall_at_k(RECS, TRUTH, K) == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert metrics.precision_at_k(RECS, TRUTH, K) == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert metrics.hit_rate_at_k(RECS, TRUTH, K) == pytest.approx(2 / 3)


def test_ndcg_known_ranking():
    # u1: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG (2 items) = 1 + 1/log2(3)
    u1 = 1.5 / (1 + 1 / math.log2(3))
    u2 = (1 / math.log2(3)) / 1.0
    assert metrics.ndcg_at_k(RECS, TRUTH, K) == pytest.approx((u1 + u2 + 0) / 3)


def test_map_and_mrr():
    # u1: precision@1 = 1, precision@3 = 2/3 -> AP = (1 + 2/3) / min(2, 3)
    # u2: precision@2 = 1/2 -> AP = 0.5 / 1
    assert metrics.map_at_k(RECS, TRUTH, K) == pytest.approx(((1 + 2 / 3) / 2 + 0.5 + 0) / 3)
    assert metrics.mrr_at_k(RECS, TRUTH, K) == pytest.approx((1 + 0.5 + 0) / 3)


def test_k_cuts_the_list():
    # with k = 1 only u1's 'a' counts
    assert metrics.recall_at_k(RECS, TRUTH, 1) == pytest.approx((0.5 + 0 + 0) / 3)
    assert metrics.ndcg_at_k(RECS, TRUTH, 1) == pytest.approx((1.0 + 0 + 0) / 3)


def test_pilot_metrics_are_pooled():
    # purchased pairs: 4, offered & purchased: 3 -> missed share 1/4
    assert metrics.missed_offer_share(RECS, TRUTH, K) == pytest.approx(1 - 3 / 4)
    # offered pairs (u3 has none): 6, purchased among them: 3
    assert metrics.offer_precision(RECS, TRUTH, K) == pytest.approx(3 / 6)
    # including a non-buyer with a 3-item list grows the offer denominator only
    recs = pd.concat([RECS, _recs([("u4", "a", 1), ("u4", "b", 2), ("u4", "c", 3)])])
    users = pd.Index(["u1", "u2", "u3", "u4"])
    assert metrics.offer_precision(recs, TRUTH, K, users=users) == pytest.approx(3 / 9)
    assert metrics.missed_offer_share(recs, TRUTH, K, users=users) == pytest.approx(1 / 4)


def test_duplicate_recommendation_keeps_best_rank():
    recs = _recs([("u1", "a", 1), ("u1", "a", 2), ("u1", "b", 3)])
    pu = metrics.per_user_metrics(recs, _truth([("u1", "a")]), 3)
    assert pu.loc["u1", "hits"] == 1 and pu.loc["u1", "n_offered"] == 2


def test_coverage_novelty_popularity():
    history = pd.DataFrame(
        {
            "user_id": ["h1", "h2", "h3", "h1"],
            "item_id": ["a", "a", "a", "b"],
        }
    )
    recs = _recs([("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 1), ("u2", "c", 2)])
    assert metrics.catalogue_coverage(recs, 2, catalogue_size=10) == pytest.approx(3 / 10)
    # p(a) = 4/4, p(b) = 2/4, p(c) = 1/4 -> bits 0, 1, 2 over slots a, b, a, c
    assert metrics.novelty(recs, history, 2) == pytest.approx((0 + 1 + 0 + 2) / 4)
    # percentiles among history items: a = 1.0, b = 0.5, c (unseen) = 0
    assert metrics.popularity_percentile(recs, history, 2) == pytest.approx((1 + 0.5 + 1 + 0) / 4)


def test_evaluate_lists_matches_functions():
    history = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "c"]})
    out = metrics.evaluate_lists(RECS, TRUTH, history, K, catalogue_size=6)
    assert out["recall"] == pytest.approx(metrics.recall_at_k(RECS, TRUTH, K))
    assert out["ndcg"] == pytest.approx(metrics.ndcg_at_k(RECS, TRUTH, K))
    assert out["map"] == pytest.approx(metrics.map_at_k(RECS, TRUTH, K))
    assert out["missed_offer_share"] == pytest.approx(0.25)
    assert out["offer_precision"] == pytest.approx(0.5)
    assert out["coverage"] == pytest.approx(6 / 6)
    assert out["n_users"] == 3 and out["n_users_with_list"] == 2
    accuracy = metrics.accuracy_metrics(RECS, TRUTH, K)  # what tuning compares: the same values
    assert accuracy == {key: out[key] for key in accuracy}
    assert set(accuracy) == {
        "recall",
        "precision",
        "ndcg",
        "map",
        "hit_rate",
        "mrr",
        "missed_offer_share",
        "offer_precision",
    }


# --------------------------------------------------------------------------- splitting
def _log() -> pd.DataFrame:
    ts = pd.to_datetime(
        ["2024-01-01", "2024-01-05", "2024-01-10", "2024-01-10", "2024-01-12", "2024-01-20", "2024-02-20", "2024-01-11"]
    )
    return pd.DataFrame(
        {
            "user_id": ["w", "w", "w", "w", "c", "w", "w", "w"],
            "item_id": ["a", "b", "c", "c", "d", "e", "f", "g"],
            "ts": ts,
            "event_type": [
                "purchase",
                "view_item",
                "purchase",
                "purchase",
                "purchase",
                "purchase",
                "purchase",
                "view_item",
            ],
        }
    )


def test_time_split_never_leaks():
    log = _log()
    cutoff = pd.Timestamp("2024-01-10")
    history, truth = time_split(log, cutoff, horizon_days=14)
    assert (history["ts"] < cutoff).all()
    assert len(history) == 2  # the events at the cutoff instant belong to the future
    # purchases in [01-10, 01-24): c (twice -> once), d, e; view g and the 02-20 one excluded
    assert sorted(map(tuple, truth.to_numpy())) == [("c", "d"), ("w", "c"), ("w", "e")]


def test_time_split_on_random_log_has_no_leak():
    rng = np.random.default_rng(1)
    n = 5000
    log = pd.DataFrame(
        {
            "user_id": rng.integers(0, 50, n).astype(str),
            "item_id": rng.integers(0, 80, n).astype(str),
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60 * 86400, n), unit="s"),
            "event_type": rng.choice(["view_item", "add_to_cart", "purchase"], n),
        }
    )
    cutoff = pd.Timestamp("2024-02-01")
    history, truth = time_split(log, cutoff, 7)
    assert history["ts"].max() < cutoff
    window = log[(log.ts >= cutoff) & (log.ts < cutoff + pd.Timedelta(days=7)) & (log.event_type == "purchase")]
    assert len(truth) == len(window[["user_id", "item_id"]].drop_duplicates())


def test_warm_and_cold_users():
    history, truth = time_split(_log(), "2024-01-10", 14)
    assert list(warm_users(history, truth)) == ["w"]
    assert list(cold_users(history, truth)) == ["c"]
    assert set(restrict_truth(truth, pd.Index(["w"]))["user_id"]) == {"w"}


# Before the window u1 bought a and x, u2 bought y and only viewed c: a is u1's repeat, every
# other truth pair (u1 b, u2 c, u3 d) is new to its buyer.
HISTORY = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u2", "u2"],
        "item_id": ["a", "x", "y", "c"],
        "event_type": ["purchase", "purchase", "purchase", "view_item"],
    }
)


def test_repeat_explore_by_hand():
    out = metrics.repeat_explore(RECS, TRUTH, HISTORY, K)
    # repeat truth: u1 {a}, hit at rank 1
    assert out["repeat_recall"] == pytest.approx(1.0) and out["repeat_ndcg"] == pytest.approx(1.0)
    assert out["repeat_buyers"] == 1 and out["explore_buyers"] == 3
    # explore truth: u1 {b} at rank 3, u2 {c} at rank 2, u3 {d} without a list
    assert out["explore_recall"] == pytest.approx((1 + 1 + 0) / 3)
    assert out["explore_ndcg"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(3) + 0) / 3)
    # truth: u1 half repeat, u2 and u3 none; lists: u1 a, x of 3, u2 y of 3 (u3 has no list)
    assert out["repeat_share_truth"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert out["repeat_share_lists"] == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_repeat_explore_reads_the_warehouse_pairs_and_rides_along_in_score_lists():
    pairs = HISTORY.assign(n_purchases=(HISTORY["event_type"] == "purchase").astype(int)).drop(columns="event_type")
    assert metrics.repeat_explore(RECS, TRUTH, pairs, K) == metrics.repeat_explore(RECS, TRUTH, HISTORY, K)
    scored = metrics.evaluate_lists(RECS, TRUTH, HISTORY, K)
    assert {key: scored[key] for key in metrics.REPEAT_EXPLORE} == metrics.repeat_explore(RECS, TRUTH, HISTORY, K)
    # a list of new items only: nothing repeats, the repeat buyer is missed
    fresh = metrics.repeat_explore(_recs([("u1", "b", 1)]), TRUTH, HISTORY, K)
    assert fresh["repeat_share_lists"] == 0.0 and fresh["repeat_recall"] == 0.0


def test_a_history_summary_scores_every_list_as_the_history_does():
    summary = metrics.HistorySummary.of(HISTORY)
    assert (summary.users, summary.items) == (2, 4)
    assert metrics.HistorySummary.of(summary) is summary
    for recs in (RECS, _recs([("u1", "b", 1), ("u2", "y", 1)])):
        assert metrics.evaluate_lists(recs, TRUTH, summary, K) == metrics.evaluate_lists(recs, TRUTH, HISTORY, K)
