"""The user's own past purchases, most frequent and recent first: strong on consumables."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.baselines.base import BaseRecommender


class RepurchaseRecommender(BaseRecommender):
    """The user's own most-bought items (time-decayed counts), then popular items.

    Score = sum over the user's purchase lines of the item of ``0.5 ** (age_days /
    half_life_days)`` (plain counts when ``half_life_days`` is None); ties go to the more
    popular item. Only purchases count by default: a viewed item is not a repurchase.
    """

    def __init__(
        self,
        half_life_days: float | None = None,
        event_weights: Mapping[str, float] | None = None,
        fallback_window_days: float | None = None,
    ) -> None:
        super().__init__(event_weights, filter_purchased=False, fallback_window_days=fallback_window_days)
        self.half_life_days = half_life_days

    def _row_weights(self, h: pd.DataFrame) -> np.ndarray:
        w = super()._row_weights(h)
        if self.half_life_days is not None:
            age = (h["ts"].max() - h["ts"]).dt.total_seconds().to_numpy() / 86400.0
            w = w * np.power(0.5, age / self.half_life_days)
        return w

    sparse_scores = True

    def _fit_model(self, h: pd.DataFrame, user_codes: np.ndarray, item_codes: np.ndarray) -> None:
        pop = self.popularity_
        self.tiebreak_ = 1e-6 * pop / max(pop.max(initial=0.0), 1.0)

    def _score_batch(self, rows: np.ndarray) -> sp.csr_matrix:
        block = self.X_[rows].tocsr()
        block.data = block.data + self.tiebreak_[block.indices]
        return block
