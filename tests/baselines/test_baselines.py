"""Baselines on small synthetic logs where the right answer is known."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from ml.baselines import (
    ALSRecommender,
    EASERecommender,
    ItemKNNRecommender,
    PopularRecommender,
    RepurchaseRecommender,
    TIFUKNNRecommender,
    topk_dense,
    topn_per_row_sparse,
)
from ml.baselines.tuning import categorical_ids, tune

T0 = pd.Timestamp("2024-01-01")


def _log(rows: list[tuple[str, str, int]], event_type: str = "purchase") -> pd.DataFrame:
    """Rows of (user, item, day offset)."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": [T0 + pd.Timedelta(days=r[2]) for r in rows],
            "event_type": event_type,
        }
    )


def _complement_log() -> pd.DataFrame:
    """20 users buy A with B (planted complement); 40 users buy the bestseller P and noise."""
    rows = []
    for u in range(20):
        rows += [(f"ab{u}", "A", 1), (f"ab{u}", "B", 2)]
    for u in range(40):
        rows += [(f"p{u}", "P", 3), (f"p{u}", f"N{u % 7}", 4)]
    rows += [("target", "A", 5)]
    return _log(rows)


def _check_lists(recs: pd.DataFrame, users: list[str], k: int) -> None:
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score", "source"]
    assert set(recs["user_id"]) == set(users)
    assert not recs.duplicated(["user_id", "item_id"]).any()
    for _, g in recs.groupby("user_id"):
        assert list(g["rank"]) == list(range(1, k + 1))


def test_topk_helpers():
    scores = np.array([[0.1, 0.9, 0.5, 0.0], [3.0, -np.inf, 2.0, 1.0]])
    r, c, s = topk_dense(scores, 2, min_score=0.0)
    assert list(zip(r, c)) == [(0, 1), (0, 2), (1, 0), (1, 2)]
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[1.0, 5.0, 3.0], [0.0, 2.0, 0.0]]))
    pruned = topn_per_row_sparse(m, 2).toarray()
    assert pruned.tolist() == [[0.0, 5.0, 3.0], [0.0, 2.0, 0.0]]


def test_popular_uses_window_and_distinct_users():
    # OLD was bought by 5 users long ago, NEW by 3 users recently; HEAVY by one user 10 times
    rows = [(f"o{u}", "OLD", 0) for u in range(5)]
    rows += [(f"n{u}", "NEW", 58) for u in range(3)]
    rows += [("h", "HEAVY", 59)] * 10
    log = _log(rows)
    recent = PopularRecommender(window_days=7).fit(log).recommend(["x"], 3)
    assert list(recent["item_id"]) == ["NEW", "HEAVY", "OLD"]
    overall = PopularRecommender(window_days=None).fit(log).recommend(["x"], 3)
    assert list(overall["item_id"]) == ["OLD", "NEW", "HEAVY"]
    assert (overall["source"] == "popular").all()


def test_repurchase_puts_own_items_first_then_popular():
    log = _log(
        [("u", "X", 1), ("u", "X", 2), ("u", "Y", 3)]
        + [(f"v{i}", "P", 1) for i in range(5)]
        + [(f"v{i}", "Q", 1) for i in range(3)]
    )
    recs = RepurchaseRecommender().fit(log).recommend(["u", "stranger"], 4)
    _check_lists(recs, ["u", "stranger"], 4)
    u = recs[recs.user_id == "u"]
    assert list(u["item_id"]) == ["X", "Y", "P", "Q"]
    assert list(u["source"]) == ["model", "model", "popular", "popular"]
    assert list(recs[recs.user_id == "stranger"]["item_id"]) == ["P", "Q", "X", "Y"]


def test_repurchase_half_life_prefers_recent():
    log = _log([("u", "OLD", 0), ("u", "OLD", 1), ("u", "NEW", 60)])
    assert RepurchaseRecommender().fit(log).recommend(["u"], 1)["item_id"].iloc[0] == "OLD"
    assert RepurchaseRecommender(half_life_days=7).fit(log).recommend(["u"], 1)["item_id"].iloc[0] == "NEW"


@pytest.mark.parametrize(
    "model",
    [
        ItemKNNRecommender(n_neighbours=5),
        EASERecommender(l2=1.0),
        ALSRecommender(factors=8, regularization=0.1, iterations=20),
    ],
)
def test_item_models_recommend_the_planted_complement(model):
    log = _complement_log()
    recs = model.fit(log).recommend(["target"], 3, filter_purchased=True)
    assert recs["item_id"].iloc[0] == "B"
    # the popular list would have said P
    assert PopularRecommender(None).fit(log).recommend(["target"], 1)["item_id"].iloc[0] == "P"


@pytest.mark.parametrize(
    "model",
    [
        PopularRecommender(7),
        RepurchaseRecommender(half_life_days=14),
        ItemKNNRecommender(n_neighbours=5),
        TIFUKNNRecommender(n_neighbours=5, alpha=0.7),
        EASERecommender(10.0),
        ALSRecommender(factors=8),
    ],
    ids=lambda model: type(model).__name__,
)
def test_ids_given_as_categories_give_the_same_lists(model):
    """Tuning fits on a frame whose ids are categories (faster to encode): same lists, plain ids,
    also when the frame was cut after the cast and holds categories no row uses any more."""
    log = pd.concat([_complement_log(), _log([("target", "Z", 6), ("p0", "A", 6), ("gone", "Y", 30)])])
    log = log.reset_index(drop=True)
    users = ["target", "p0", "ab3", "nobody", "gone"]
    before = log["ts"] < T0 + pd.Timedelta(days=20)
    plain = model.fit(log[before]).recommend(users, 4)
    categories = model.fit(categorical_ids(log)[before])
    assert not isinstance(categories.items_, pd.CategoricalIndex)
    assert "Y" not in set(categories.items_)
    pd.testing.assert_frame_equal(categories.recommend(users, 4), plain)


def test_filter_purchased_is_an_option_not_a_default():
    log = _complement_log()
    knn = ItemKNNRecommender(n_neighbours=5).fit(log)
    kept = knn.recommend(["ab0"], 5)
    dropped = knn.recommend(["ab0"], 5, filter_purchased=True)
    assert not {"A", "B"} & set(dropped["item_id"])
    assert len(dropped) == 5
    # without filtering the user's own basket can come back (repurchase is a signal)
    assert {"A", "B"} & set(kept["item_id"])


def test_cold_and_unknown_users_get_full_popular_lists():
    log = _complement_log()
    for model in [ItemKNNRecommender(5), EASERecommender(10.0), RepurchaseRecommender(), ALSRecommender(factors=8)]:
        recs = model.fit(log).recommend(["nobody", "target"], 4)
        _check_lists(recs, ["nobody", "target"], 4)
        assert (recs[recs.user_id == "nobody"]["source"] == "popular").all()


def test_k_larger_than_catalogue():
    log = _log([("u", "A", 1), ("v", "B", 1)])
    recs = ItemKNNRecommender(5).fit(log).recommend(["u"], 10)
    assert sorted(recs["item_id"]) == ["A", "B"]


def test_tune_never_sees_the_future():
    log = _log([(f"u{i % 30}", f"i{(i * 7) % 40}", i % 90) for i in range(900)])
    seen_max: list[pd.Timestamp] = []

    class Spy(PopularRecommender):
        def fit(self, history):
            seen_max.append(history["ts"].max())
            return super().fit(history)

    cutoff = T0 + pd.Timedelta(days=60)
    history = log[log.ts < cutoff]
    result = tune(
        Spy, {"window_days": [7, 30, None]}, history, validation_cutoff=T0 + pd.Timedelta(days=45), horizon_days=15, k=5
    )
    assert len(seen_max) == 3
    assert max(seen_max) < T0 + pd.Timedelta(days=45)
    assert result.best_params["window_days"] in (7, 30, None)
    assert len(result.table) == 3 and result.metric == "ndcg"


def test_tune_judges_a_bounded_seeded_sample_of_buyers_on_every_purchase():
    log = _log([(f"u{i % 60}", f"i{(i * 7) % 40}", i % 90) for i in range(1800)])
    judged: list[int] = []
    fitted_on: list[int] = []

    class Spy(PopularRecommender):
        def fit(self, history):
            fitted_on.append(len(history))
            return super().fit(history)

        def recommend(self, user_ids, k, filter_purchased=None):
            judged.append(len(user_ids))
            return super().recommend(user_ids, k, filter_purchased)

    split = T0 + pd.Timedelta(days=60)
    args = (Spy, {"window_days": [7, None]}, log, split, 30, 5)
    whole = tune(*args)
    bounded = tune(*args, max_users=20, seed=3)
    assert judged[:2] == [60, 60] and judged[2:] == [20, 20]  # every warm buyer, then the bound
    assert len(set(fitted_on)) == 1  # the fits see every purchase before the split either way
    assert len(bounded.table) == 2 and set(bounded.table.columns) >= {"ndcg", "recall", "seconds"}
    assert tune(*args, max_users=60).table["ndcg"].tolist() == whole.table["ndcg"].tolist()
    assert tune(*args, max_users=20, seed=3).table["ndcg"].tolist() == bounded.table["ndcg"].tolist()


def test_tune_picks_the_right_window():
    # the recently popular item is what people keep buying next
    rows = [(f"old{u}", "STALE", 0) for u in range(30)]
    rows += [(f"u{u}", "HOT", d) for u in range(10) for d in (40, 50, 55)]
    rows += [(f"u{u}", "HOT", 62) for u in range(10)]
    log = _log(rows)
    result = tune(
        PopularRecommender,
        {"window_days": [None, 14]},
        log,
        validation_cutoff=T0 + pd.Timedelta(days=60),
        horizon_days=7,
        k=1,
    )
    assert result.best_params == {"window_days": 14}


def test_sparse_top_k_matches_dense():
    import scipy.sparse as sp

    from ml.baselines import topk_sparse

    rng = np.random.default_rng(0)
    dense = rng.random((50, 40)) * (rng.random((50, 40)) < 0.2)
    expected = topk_dense(dense, 5, min_score=0.0)
    got = topk_sparse(sp.csr_matrix(dense), 5, min_score=0.0)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_sparse_cuts_on_long_rows_with_ties_match_a_full_sort():
    # rows far longer than the floor's sample, scores with many ties: the floor may drop only
    # entries that a full sort would drop too, and ties still go to the lower column
    import scipy.sparse as sp

    from ml.baselines import topk_sparse

    matrix = sp.random(30, 5_000, density=0.3, format="csr", random_state=1)
    matrix.data = np.ceil(matrix.data * 20)
    for n in (1, 10, 200):
        rows, cols, vals = topk_sparse(matrix, n)
        cut = topn_per_row_sparse(matrix, n)
        for row in range(matrix.shape[0]):
            entries = sorted(zip(-matrix[row].data, matrix[row].indices))[:n]
            assert list(zip(-vals[rows == row], cols[rows == row])) == entries
            assert sorted(zip(-cut[row].data, cut[row].indices)) == entries


def test_without_implicit_the_evaluation_skips_als_with_one_line(monkeypatch):
    from ml.baselines.tuning import ALS_MISSING, default_specs

    monkeypatch.setitem(sys.modules, "implicit", None)  # `import implicit` raises ImportError
    lines: list[str] = []
    names = [spec.name for spec in default_specs(log=lines.append)]
    assert "als" not in names and "ease" in names
    assert lines == [ALS_MISSING]
