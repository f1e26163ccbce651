"""TIFU-KNN on small logs whose answer is known: neighbours, decays, blocks, tuning and the list contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.baselines import PopularRecommender, TIFUKNNRecommender, tifu_knn
from ml.baselines.tuning import TIFU_KNN, tune

T0 = pd.Timestamp("2024-01-01")


def _log(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Purchases as (user, item, day offset)."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": [T0 + pd.Timedelta(days=r[2]) for r in rows],
            "event_type": "purchase",
        }
    )


def _neighbours_log() -> pd.DataFrame:
    """10 users buy A, B, C and X; 30 buy the bestseller P with noise; the target buys A, B, C only."""
    rows = [(f"abc{u}", item, 1 + u % 3) for u in range(10) for item in "ABCX"]
    rows += [(f"p{u}", item, 2) for u in range(30) for item in ("P", f"N{u % 5}")]
    rows += [("target", item, 5) for item in "ABC"]
    return _log(rows)


def test_neighbours_bring_the_item_the_target_lacks():
    log = _neighbours_log()
    recs = TIFUKNNRecommender(n_neighbours=5, alpha=0.7).fit(log).recommend(["target"], 4)
    assert set(recs["item_id"][:3]) == {"A", "B", "C"}  # the target's own items first
    assert recs["item_id"].iloc[3] == "X" and (recs["source"] == "model").all()
    new = TIFUKNNRecommender(n_neighbours=5, alpha=0.7).fit(log).recommend(["target"], 1, filter_purchased=True)
    assert new["item_id"].iloc[0] == "X"
    # the popular list would say P; without neighbours (alpha 1) X is no model pick at all
    assert PopularRecommender(None).fit(log).recommend(["target"], 1)["item_id"].iloc[0] == "P"
    alone = TIFUKNNRecommender(alpha=1.0).fit(log).recommend(["target"], 4)
    assert list(alone.loc[alone["source"] == "model", "item_id"].sort_values()) == ["A", "B", "C"]


@pytest.mark.parametrize("group_size", [7, 1])  # within-group decay, then across-group decay
def test_a_recent_basket_outranks_an_old_one(group_size):
    log = _log([("u", "OLD", 0), ("u", "NEW", 30), ("v", "OLD", 0), ("v", "NEW", 0)])
    recs = TIFUKNNRecommender(alpha=1.0, group_size=group_size).fit(log).recommend(["u"], 2)
    assert list(recs["item_id"]) == ["NEW", "OLD"]


def test_basket_weights_by_hand():
    # three one-day baskets, groups of two, newest first: {c} {b} | {a} (the oldest group is short)
    log = _log([("u", "a", 0), ("u", "b", 1), ("u", "b", 1), ("u", "c", 2)])
    model = TIFUKNNRecommender(within_decay=0.9, group_decay=0.7, group_size=2).fit(log)
    got = dict(zip(model.items_, model.vectors_.toarray()[0]))
    # newest group: 1 / (2 * 2) and 0.9 / (2 * 2); the older one: 0.7 / (1 * 2); a repeated line counts once
    assert got == pytest.approx({"a": 0.35, "b": 0.225, "c": 0.25})


def test_blocks_of_users_give_the_same_lists(monkeypatch):
    rng = np.random.default_rng(3)
    log = _log([(f"u{rng.integers(40)}", f"i{rng.integers(25)}", int(rng.integers(60))) for _ in range(600)])
    users = sorted(log["user_id"].unique())
    whole = TIFUKNNRecommender(n_neighbours=5, alpha=0.7).fit(log).recommend(users, 5)
    monkeypatch.setattr(tifu_knn, "DENSE_BLOCK_CELLS", 200)  # 200 cells / 40 users: blocks of 5 users
    model = TIFUKNNRecommender(n_neighbours=5, alpha=0.7).fit(log)
    assert model._batch_size() == 5
    pd.testing.assert_frame_equal(model.recommend(users, 5), whole)


def test_lists_are_full_ranked_and_topped_up():
    log = _neighbours_log()
    recs = TIFUKNNRecommender(n_neighbours=5, alpha=0.7).fit(log).recommend(["target", "nobody"], 8)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score", "source"]
    assert not recs.duplicated(["user_id", "item_id"]).any()
    for _, g in recs.groupby("user_id"):
        assert list(g["rank"]) == list(range(1, 9))
    target = recs[recs["user_id"] == "target"]
    # A, B, C, X from the model, then the popular top-up; the unknown user gets popular only
    assert list(target["source"]) == ["model"] * 4 + ["popular"] * 4
    assert target["item_id"].iloc[4] == "P"
    assert (recs.loc[recs["user_id"] == "nobody", "source"] == "popular").all()


def test_tuning_never_sees_the_future():
    log = _log([(f"u{i % 30}", f"i{(i * 7) % 40}", i % 90) for i in range(900)])
    seen_max: list[pd.Timestamp] = []

    class Spy(TIFUKNNRecommender):
        def fit(self, history):
            seen_max.append(history["ts"].max())
            return super().fit(history)

    spec = TIFU_KNN
    validation = T0 + pd.Timedelta(days=45)
    result = tune(Spy, spec.grid, log[log.ts < T0 + pd.Timedelta(days=60)], validation, horizon_days=15, k=5)
    assert len(seen_max) == len(result.table) == 4
    assert max(seen_max) < validation
