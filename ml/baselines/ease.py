"""EASE (Steck 2019): a closed-form item-item linear model, strong on dense catalogues."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.linalg

from ml.baselines.base import DENSE_BLOCK_CELLS, BaseRecommender


class EASERecommender(BaseRecommender):
    """EASE (Steck 2019): a closed-form item-item linear model with a zero diagonal.

    B = I - P / diag(P) column-wise, P = (XᵀX + l2·I)⁻¹, X the binary user x item matrix;
    scores = X_u B. The dense M x M inverse costs O(M³) time and ~3·8·M² bytes, so the
    model is restricted to the ``max_items`` items with most distinct users (the items
    carrying most of the co-occurrence signal); M = 8,000 needs ~1.5 GB, M = 20,000 would
    need ~10 GB and ~15x the time.
    ``max_items=None`` chooses M = min(catalogue, sqrt(memory_gb·1e9 / 24), 8,000):
    measured here (2 cores) M = 8,000 inverts in ~35 s, M = 12,000 in ~70 s.
    Items outside the top M can only enter a list through the popular top-up;
    ``interaction_share_`` records the share of interactions the top M cover.
    """

    min_score = -np.inf  # EASE scores can be negative; any modelled item is a candidate

    def __init__(
        self,
        l2: float = 500.0,
        max_items: int | None = None,
        memory_gb: float = 4.0,
        event_weights: Mapping[str, float] | None = None,
        filter_purchased: bool = False,
        fallback_window_days: float | None = None,
    ) -> None:
        super().__init__(event_weights, filter_purchased, fallback_window_days)
        self.l2 = l2
        self.max_items = max_items
        self.memory_gb = memory_gb

    def _fit_model(self, h: pd.DataFrame, user_codes: np.ndarray, item_codes: np.ndarray) -> None:
        n_items = len(self.items_)
        m = self.max_items or min(n_items, int(np.sqrt(self.memory_gb * 1e9 / 24)), 8_000)
        m = min(m, n_items)
        binary = self.X_.copy()
        binary.data[:] = 1.0
        users_per_item = np.asarray(binary.sum(axis=0)).ravel()
        top = np.sort(np.argsort(-users_per_item, kind="stable")[:m])
        self.modelled_items_ = top
        sub = binary[:, top].tocsc()
        self.interaction_share_ = float(sub.nnz / max(1, binary.nnz))
        gram = (sub.T @ sub).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.B_ = b.astype(np.float32)
        self.X_model_ = binary[:, top].tocsr().astype(np.float32)

    def _batch_size(self) -> int:
        return max(1, DENSE_BLOCK_CELLS // max(1, len(self.items_)))

    def _score_batch(self, rows: np.ndarray) -> np.ndarray:
        partial = self.X_model_[rows] @ self.B_
        scores = np.full((rows.size, len(self.items_)), -np.inf, dtype=np.float32)
        scores[:, self.modelled_items_] = partial
        return scores
