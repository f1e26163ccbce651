"""Item-kNN: items co-bought with the user's items, by cosine similarity (Dacrema et al.)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.baselines.base import BaseRecommender, topn_per_row_sparse


def _diag_mask(block: sp.csr_matrix, row_offset: int) -> np.ndarray:
    """Boolean mask over ``block.data`` of the entries on the global diagonal."""
    rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr)) + row_offset
    return rows == block.indices


class ItemKNNRecommender(BaseRecommender):
    """Item-item cosine over co-interactions: the neighbours of the user's items.

    sim(i, j) = |users with i and j| / sqrt(|users with i| |users with j|) on the binary
    user x item matrix, diagonal removed, each item keeping its ``n_neighbours`` most
    similar items. A user's score for j = sum over their items i of weight(u, i) x
    sim(i, j), where weight is ``log1p`` of the weighted count (heavy repeat buying counts,
    but sub-linearly). Users with more than ``max_items_per_user`` distinct items
    contribute only that many (their most frequent) to the similarity: co-occurrence grows
    with the square of a user's item count, and such users say little about any pair.
    """

    sparse_scores = True

    def __init__(
        self,
        n_neighbours: int = 100,
        event_weights: Mapping[str, float] | None = None,
        filter_purchased: bool = False,
        max_items_per_user: int = 500,
        fallback_window_days: float | None = None,
    ) -> None:
        super().__init__(event_weights, filter_purchased, fallback_window_days)
        self.n_neighbours = n_neighbours
        self.max_items_per_user = max_items_per_user

    def _fit_model(self, h: pd.DataFrame, user_codes: np.ndarray, item_codes: np.ndarray) -> None:
        binary = topn_per_row_sparse(self.X_.copy(), self.max_items_per_user)
        binary.data[:] = 1.0
        counts = np.asarray(binary.sum(axis=0)).ravel()
        inv_norm = 1.0 / np.sqrt(np.maximum(counts, 1.0))
        xt = binary.T.tocsr()
        n_items = xt.shape[0]
        chunk = 2048  # items per block: bounds the memory of one co-occurrence block
        blocks = []
        for start in range(0, n_items, chunk):
            co = (xt[start : start + chunk] @ binary).tocsr()
            co = (sp.diags(inv_norm[start : start + chunk]) @ co @ sp.diags(inv_norm)).tocsr()
            co.data[_diag_mask(co, start)] = 0.0
            co.eliminate_zeros()
            blocks.append(topn_per_row_sparse(co, self.n_neighbours))
        self.similarity_ = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, 0))
        self.user_weights_ = self.X_.copy()
        self.user_weights_.data = np.log1p(self.user_weights_.data)

    def _score_batch(self, rows: np.ndarray) -> sp.csr_matrix:
        return self.user_weights_[rows] @ self.similarity_
