"""Training on degenerate frames: what real exports produce must never crash a fit.

Purchase-only logs leave view and cart features empty, 8-column exports have no category,
some exports one platform, a short window one buyer, and a candidate source can yield nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.ranker.features import CATEGORICAL, FEATURES, LABEL, uninformative
from ml.ranker.models import features_used, scores
from ml.ranker.training import LabelledSet, NotEnoughHistory, fit


def candidate_frame(users: int = 60, per_user: int = 15, seed: int = 0) -> pd.DataFrame:
    """Candidates with every feature filled, labels driven by ``user_item_purchases``."""
    rng = np.random.default_rng(seed)
    n = users * per_user
    frame = pd.DataFrame({name: rng.gamma(2.0, 1.0, n) for name in FEATURES if name not in CATEGORICAL})
    frame["platform"] = rng.choice(["Site", "Android", "iOS"], n).astype(object)
    frame["primary_source"] = rng.choice(["history", "co_purchase", "category", "popular"], n).astype(object)
    frame["item_category"] = rng.choice([f"c{i}" for i in range(8)], n).astype(object)
    frame["price_above_tier"] = np.clip(rng.normal(0, 1, n), 0, None)
    frame["user_item_purchases"] = rng.poisson(0.5, n).astype(float)
    frame["user_id"] = np.repeat([f"u{i}" for i in range(users)], per_user).astype(object)
    frame["item_id"] = [f"i{i}" for i in range(n)]
    frame["anchor_item_id"] = np.nan
    chance = 0.05 + 0.4 * (frame["user_item_purchases"] > 0)
    frame[LABEL] = (rng.random(n) < chance).astype(int)
    return frame


def purchases_only(frame: pd.DataFrame) -> pd.DataFrame:
    views = ["user_views", "user_carts", "user_item_views", "user_item_carts"]
    return frame.assign(**{name: 0.0 for name in views}, item_cart_rate=0.1)


def no_categories(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(item_category=np.nan, category_score=np.nan, user_category_share=0.0, in_top_category=0.0)


def no_co_purchase(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(
        co_purchase_score=np.nan, primary_source=frame["primary_source"].replace("co_purchase", "history")
    )


def one_platform(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(platform="iOS")


def one_buyer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["user_id"] == "u0"].assign(**{LABEL: [1, 0] * 7 + [1]})


VARIANTS = {
    "purchases only": (
        purchases_only,
        {"user_views": "constant", "user_item_carts": "constant", "item_cart_rate": "constant"},
    ),
    "no category columns": (
        no_categories,
        {"item_category": "all missing", "category_score": "all missing", "user_category_share": "constant"},
    ),
    "a source yields nothing": (no_co_purchase, {"co_purchase_score": "all missing"}),
    "one platform": (one_platform, {"platform": "constant"}),
    "everything at once": (
        lambda f: one_platform(no_co_purchase(no_categories(purchases_only(f)))),
        {"platform": "constant", "item_category": "all missing"},
    ),
}


@pytest.mark.parametrize("kind", ["hgb", "logreg"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_degenerate_frames_fit_and_score(variant, kind):
    make, expected = VARIANTS[variant]
    frame = make(candidate_frame())
    dropped = uninformative(frame)
    assert expected.items() <= dropped.items()

    model = fit(kind, {}, LabelledSet(1, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]]))

    used = features_used(model)
    assert not set(used) & set(dropped) and "user_item_purchases" in used
    predicted = scores(model, frame)
    assert np.isfinite(predicted).all() and predicted.std() > 0


def test_a_window_with_one_buyer_still_fits():
    frame = one_buyer(candidate_frame())
    model = fit("hgb", {}, LabelledSet(1, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]]))
    assert np.isfinite(scores(model, frame)).all()


def test_informative_columns_with_gaps_are_kept():
    frame = candidate_frame().assign(user_item_cycle_position=np.nan)
    frame.loc[::7, "user_item_cycle_position"] = 1.0  # present or absent is itself a signal
    assert "user_item_cycle_position" not in uninformative(frame)


def test_a_frame_where_nothing_varies_is_not_enough_history():
    frame = candidate_frame()
    for name in FEATURES:
        frame[name] = np.nan
    with pytest.raises(NotEnoughHistory):
        fit("hgb", {}, LabelledSet(1, frame, frame[["user_id", "item_id"]]))


def test_validation_curves_pass_through_the_chosen_parameters():
    from ml.ranker.models import DEFAULT_PARAMS
    from ml.ranker.training import validation_curves

    frame = candidate_frame()
    data = LabelledSet(2, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]])
    params = {**DEFAULT_PARAMS["hgb"], "learning_rate": 0.15, "max_leaf_nodes": 15, "max_iter": 10}
    curves = {curve["param"]: curve for curve in validation_curves("hgb", params, data, data, k=5, max_users=40)}
    assert curves["learning_rate"]["chosen"] == 0.15 and 0.15 in curves["learning_rate"]["values"]
    assert curves["max_leaf_nodes"]["values"] == [4, 15, 63]  # already on the curve: not added twice
    assert all(len(c["valid_score"]) == len(c["values"]) and c["train_users"] == 40 for c in curves.values())
