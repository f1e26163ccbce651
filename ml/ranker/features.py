"""The ranker's features and how each kind is prepared inside the model pipeline.

All features come from the ``candidates`` mart (computed in SQL, as of a cutoff). Categorical
features are encoded inside the scikit-learn pipeline, so training and scoring can never
encode them differently:

- ``platform`` and ``primary_source`` have a handful of values: one-hot.
- ``item_category`` has thousands of values (or none, in exports without category columns):
  one-hot would explode and ordinal codes would invent an order, so it is target-encoded with
  scikit-learn's cross-fitted ``TargetEncoder`` (no label leak into its own rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler, TargetEncoder

LABEL = "purchased"
KEYS = ["user_id", "item_id"]

LOW_CARDINALITY = ["platform", "primary_source"]
HIGH_CARDINALITY = ["item_category"]
CATEGORICAL = LOW_CARDINALITY + HIGH_CARDINALITY

NUMERIC = [
    "n_sources",
    "history_score",
    "repurchase_score",
    "co_purchase_score",
    "category_score",
    "trending_score",
    "popular_score",
    "user_views",
    "user_carts",
    "user_purchases",
    "user_purchase_days",
    "user_recent_purchase_days",
    "user_repeat_purchase_share",
    "user_tenure_days",
    "user_items",
    "user_active_days",
    "user_days_since_last_event",
    "user_price_median_rub",
    "user_price_spread",
    "item_price_rub",
    "item_popularity",
    "item_trend",
    "item_rebuy_rate",
    "item_cart_rate",
    "item_purchase_rate",
    "item_buyers",
    "item_recent_buyers",
    "item_week_buyers",
    "item_purchase_days_per_buyer",
    "item_repurchase_gap_days",
    "item_age_days",
    "user_item_views",
    "user_item_carts",
    "user_item_purchases",
    "user_item_interest",
    "user_item_purchase_share",
    "user_item_purchase_rank",
    "user_item_days_since",
    "user_item_purchase_days",
    "user_item_units",
    "user_item_basket_share",
    "user_item_recent_basket_share",
    "user_item_purchase_rate",
    "user_item_days_since_purchase",
    "user_item_repurchase_gap_days",
    "user_item_cycle_position",
    "user_category_share",
    "price_log_ratio",
    "price_above_tier",
    "in_top_category",
]
FEATURES = CATEGORICAL + NUMERIC

# Price sanity: the further an item's price is above the user's usual range, the lower its
# score may be, never higher. Enforced as a monotonic constraint on the boosted trees.
MONOTONIC = {"price_above_tier": -1}


def uninformative(frame: pd.DataFrame) -> dict[str, str]:
    """The features a fit on ``frame`` must leave out, with why: all missing, or one value.

    Real exports make them: purchase-only logs leave the view and cart features empty,
    8-column exports the category, a one-platform export has one platform. scikit-learn's
    gradient boosting refuses an all-missing column, and a constant one cannot inform a split.
    A column with values and gaps stays: "missing" itself may carry the signal.
    """
    dropped = {}
    for name in FEATURES:
        column = frame[name]
        if name in CATEGORICAL:
            distinct = column.nunique(dropna=False)
            if column.isna().all():
                dropped[name] = "all missing"
            elif distinct == 1:
                dropped[name] = "constant"
            continue
        values = column.to_numpy(dtype=float)
        missing = np.isnan(values)
        if missing.all():
            dropped[name] = "all missing"
        elif not missing.any() and values.min() == values.max():
            dropped[name] = "constant"
    return dropped


def make_preprocessor(scale_numeric: bool, features: Sequence[str] = FEATURES) -> ColumnTransformer:
    """Encode categoricals; pass numbers through (trees) or impute and scale them (linear models).

    Only ``features`` are used (the rest of the frame is ignored). Missing numbers stay NaN
    for the trees, which learn where missing should go; a linear model needs them imputed,
    with an indicator so "missing" itself can carry weight.
    """
    numeric = (
        make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
        if scale_numeric
        else "passthrough"
    )
    high_cardinality = TargetEncoder(target_type="binary", cv=KFold(n_splits=5, shuffle=True, random_state=0))
    if scale_numeric:
        high_cardinality = make_pipeline(high_cardinality, StandardScaler())
    parts = [
        ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), LOW_CARDINALITY),
        ("target", high_cardinality, HIGH_CARDINALITY),
        ("numeric", numeric, NUMERIC),
    ]
    chosen = [(name, transformer, [c for c in columns if c in features]) for name, transformer, columns in parts]
    return ColumnTransformer([part for part in chosen if part[2]], verbose_feature_names_out=False).set_output(
        transform="pandas"
    )
