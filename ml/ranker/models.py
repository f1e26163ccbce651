"""The suitable / not-suitable classifier that ranks candidates, and how it is stored.

Default: ``HistGradientBoostingClassifier`` (handles missing values and mixed scales, learns
interactions such as "repurchase matters for this kind of item", and accepts the monotonic
price constraint). Reference: logistic regression, the simplest model that could work.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from ml.ranker.features import FEATURES, LOW_CARDINALITY, MONOTONIC, make_preprocessor

MODEL_KINDS = ("hgb", "logreg")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "hgb": {
        "learning_rate": 0.1,
        "max_leaf_nodes": 31,
        "max_iter": 120,
        "l2_regularization": 1.0,
        "min_samples_leaf": 40,
    },
    "logreg": {"C": 1.0},
}

# Searched by time-respecting cross-validation (ml.ranker.training).
PARAM_GRID: dict[str, dict[str, list[Any]]] = {
    "hgb": {"learning_rate": [0.05, 0.15], "max_leaf_nodes": [15, 63]},
    "logreg": {"C": [0.1, 1.0, 10.0]},
}


class WeightedBins(TransformerMixin, BaseEstimator):
    """Each feature replaced by its bin number, the bins being the (weighted) quantiles that
    ``HistGradientBoostingClassifier`` would choose itself; missing values stay missing.

    Why: given sample weights, scikit-learn's own binning (1.9) calls ``_weighted_percentile``
    once per quantile, re-sorting the column each time, 254 sorts per feature and fit: half the
    CPU of a training run. Here each column is sorted once and all its thresholds are read off
    one cumulative sum (the same "averaged inverted CDF" rule). The trees then see at most
    ``max_bins`` distinct values per feature, which they bin one to one without weights, so
    they split exactly where they would have on the raw values. Bin numbers keep the order of
    the values, so monotonic constraints hold as they did. One difference: scikit-learn bins a
    200,000-row subsample of a larger training set, this all its rows.
    """

    def __init__(self, max_bins: int = 255) -> None:
        self.max_bins = max_bins

    def fit(self, X: pd.DataFrame, y: Any = None, sample_weight: np.ndarray | None = None) -> WeightedBins:
        values = np.asarray(X, dtype=float)
        weights = np.ones(len(values)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        self.thresholds_ = [self._thresholds(values[:, column], weights) for column in range(values.shape[1])]
        return self

    def _thresholds(self, column: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """scikit-learn's ``_find_binning_thresholds``, with every quantile from one sort."""
        kept = ~np.isnan(column) & (weights != 0)
        order = np.argsort(column[kept])
        values, cdf = column[kept][order], np.cumsum(weights[kept][order])
        distinct = np.unique(values)
        if len(distinct) <= self.max_bins:
            thresholds = (distinct[:-1] + distinct[1:]) / 2
        else:
            ranks = np.linspace(0, 1, self.max_bins + 1)[1:-1] * cdf[-1]
            at = np.clip(np.searchsorted(cdf, ranks), 0, len(values) - 1)
            on_a_value = cdf[at] - ranks <= np.finfo(float).eps  # averaged with the next value
            thresholds = np.where(
                on_a_value, (values[at] + values[np.minimum(at + 1, len(values) - 1)]) / 2, values[at]
            )
        return np.minimum(np.unique(thresholds), 1e300)  # scikit-learn's ALMOST_INF: no +inf threshold

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        # Column by column into one column-major block, wrapped without a copy: converting the
        # encoder's frame to one array and copying the result into a new frame took 0.17-0.49 s
        # per 100k candidate rows (49.7 M-row build), this 0.15-0.20 s.
        binned = np.empty(X.shape, order="F")
        for column, thresholds in enumerate(self.thresholds_):
            values = X.iloc[:, column].to_numpy(dtype=float)
            binned[:, column] = np.searchsorted(thresholds, values)
            binned[np.isnan(values), column] = np.nan
        return pd.DataFrame(binned, columns=X.columns, index=X.index, copy=False)


def make_classifier(kind: str = "hgb", features: Sequence[str] = FEATURES, **params: Any) -> Pipeline:
    """A fresh, unfitted pipeline: categorical encoding and the classifier, as one estimator.

    It reads only ``features`` of the frame it is given (see ``ml.ranker.features.uninformative``).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {MODEL_KINDS}")
    settings = {**DEFAULT_PARAMS[kind], **params}
    if kind == "hgb":
        monotonic = {name: sign for name, sign in MONOTONIC.items() if name in features}
        classifier = HistGradientBoostingClassifier(
            **settings, monotonic_cst=monotonic or None, early_stopping=False, random_state=0
        )
        return Pipeline(
            [("features", make_preprocessor(False, features)), ("bins", WeightedBins()), ("classifier", classifier)]
        )
    classifier = LogisticRegression(**settings, max_iter=2000)
    return Pipeline([("features", make_preprocessor(True, features)), ("classifier", classifier)])


def features_used(model: Pipeline) -> list[str]:
    """The input features a fitted pipeline reads, in ``FEATURES`` order."""
    used = {
        column
        for name, _, columns in model.named_steps["features"].transformers_
        if name != "remainder"
        for column in columns
    }
    return [name for name in FEATURES if name in used]


def prepared_columns(model: Pipeline) -> dict[str, list[str]]:
    """The columns each input feature becomes in the matrix the classifier reads (``model[:-1]``'s
    output): one, its one-hot columns, or the value and its missing-value indicator (logistic
    regression). Each is a function of that feature's value in the same row alone."""
    names = list(model.named_steps["features"].get_feature_names_out())
    columns = {
        feature: [
            name
            for name in names
            if name in (feature, f"missingindicator_{feature}")
            or (feature in LOW_CARDINALITY and name.startswith(f"{feature}_"))
        ]
        for feature in features_used(model)
    }
    if sorted(name for group in columns.values() for name in group) != sorted(names):
        raise ValueError(f"prepared columns {names} do not map one to one onto input features {columns}")
    return columns


# Price sanity beyond what the trees learned: a candidate priced more than 1.5x above the user's
# usual range (p75) loses score smoothly, e^(-1.5) per e-fold of price; one expensive purchase
# among cheap ones (which leaves the median and p75 cheap) cannot pull expensive items up.
PRICE_TOLERANCE = np.log(1.5)
PRICE_PENALTY = 1.5


# Rows predicted at a time. Each pipeline step copies its input (60 float columns); on whole
# 2M-row parts those copies made scoring 581k candidates take 10-14 s, in 100k-row slices 4.4 s.
PREDICT_ROWS = 100_000


def scores(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """How suitable the candidate is: the probability it is bought in the horizon, lowered for
    prices far above the user's usual range (never raised). Predicted ``PREDICT_ROWS`` at a time."""
    probability = np.concatenate(
        [
            model.predict_proba(frame.iloc[start : start + PREDICT_ROWS][FEATURES])[:, 1]
            for start in range(0, len(frame), PREDICT_ROWS)
        ]
        or [np.empty(0)]
    )
    excess = np.clip(frame["price_above_tier"].fillna(0.0).to_numpy() - PRICE_TOLERANCE, 0.0, None)
    return probability * np.exp(-PRICE_PENALTY * excess)


@dataclass
class SavedModel:
    """A fitted pipeline with what is needed to trust and reproduce it."""

    version: str
    kind: str
    params: dict[str, Any]
    pipeline: Pipeline
    metadata: dict[str, Any] = field(default_factory=dict)

    def save(self, models_dir: Path) -> Path:
        """Write ``<models_dir>/<version>/`` with the pipeline and a readable ``model.json``."""
        directory = models_dir / self.version
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.pipeline, directory / "model.joblib")
        card = {
            "version": self.version,
            "kind": self.kind,
            "params": self.params,
            "features": features_used(self.pipeline),
            "monotonic_constraints": MONOTONIC,
            "library_versions": library_versions(),
            **self.metadata,
        }
        (directory / "model.json").write_text(json.dumps(card, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path) -> SavedModel:
        card = json.loads((directory / "model.json").read_text())
        return cls(
            version=card["version"],
            kind=card["kind"],
            params=card["params"],
            pipeline=joblib.load(directory / "model.joblib"),
            metadata=card,
        )


def library_versions() -> dict[str, str]:
    import duckdb

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "duckdb": duckdb.__version__,
    }
