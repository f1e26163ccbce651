"""TIFU-KNN (Hu et al., SIGIR 2020): time-decayed item frequencies, blended with the nearest users'.

Why it is here: in the next-basket reality check (Li et al., TOIS 2023) this simple method holds
its own against the neural next-basket models on grocery logs like Ta-Feng, so a claim that the
ranker beats the strongest published method has to be made against it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.baselines.base import DENSE_BLOCK_CELLS, BaseRecommender


class TIFUKNNRecommender(BaseRecommender):
    """Personal item frequency with recency decay, plus the mean of the ``n_neighbours`` most similar users.

    * A basket is the set of items a user bought on one calendar day (binary: quantity and
      repeated lines do not count, as in the paper).
    * The user's baskets, newest first, fall into groups of ``group_size`` (the oldest group
      may be short). A basket ``p`` places from the newest of its group ``g`` groups back
      weighs ``within_decay ** p * group_decay ** g / (size of its group * number of groups)``:
      the paper's within-group and across-group averages with decay.
    * Neighbours: cosine on those vectors, the ``n_neighbours`` most similar other users (those
      with any overlap); score = ``alpha * own + (1 - alpha) * mean of the neighbours' vectors``.

    Neighbours are found at recommend time, for the requested users only, in blocks of users
    whose dense similarity row to every user fits :data:`DENSE_BLOCK_CELLS`, so 100k users x
    50k items stays within a few hundred MB. The score block is dense: the mean of hundreds of
    neighbours fills much of a row, where ``argpartition`` beats a sort of the sparse entries.
    """

    def __init__(
        self,
        n_neighbours: int = 300,
        alpha: float = 0.9,
        within_decay: float = 0.9,
        group_decay: float = 0.7,
        group_size: int = 7,
        event_weights: Mapping[str, float] | None = None,
        filter_purchased: bool = False,
        fallback_window_days: float | None = None,
    ) -> None:
        super().__init__(event_weights, filter_purchased, fallback_window_days)
        self.n_neighbours = n_neighbours
        self.alpha = alpha
        self.within_decay = within_decay
        self.group_decay = group_decay
        self.group_size = group_size

    def _fit_model(self, h: pd.DataFrame, user_codes: np.ndarray, item_codes: np.ndarray) -> None:
        day = h["ts"].to_numpy().astype("datetime64[D]").astype(np.int64)
        lines = pd.DataFrame({"u": user_codes, "d": day, "i": item_codes}).drop_duplicates()
        baskets = lines[["u", "d"]].drop_duplicates().sort_values(["u", "d"], ascending=[True, False])
        u = baskets["u"].to_numpy()
        back = np.arange(u.size) - np.searchsorted(u, u, side="left")  # 0 = the user's newest basket
        n_baskets = np.bincount(u, minlength=len(self.users_))[u]
        group, pos = back // self.group_size, back % self.group_size
        n_groups = -(-n_baskets // self.group_size)
        size = np.minimum(self.group_size, n_baskets - group * self.group_size)
        weight = self.within_decay**pos * self.group_decay**group / (size * n_groups)
        lines = lines.merge(baskets.assign(w=weight), on=["u", "d"])
        shape = (len(self.users_), len(self.items_))
        self.vectors_ = sp.csr_matrix((lines["w"].to_numpy(), (lines["u"].to_numpy(), lines["i"].to_numpy())), shape)
        norms = np.sqrt(np.asarray(self.vectors_.multiply(self.vectors_).sum(axis=1)).ravel())
        # float32: the similarity block is the largest array here, and ranking neighbours needs no more
        self.unit_ = (sp.diags(1.0 / np.maximum(norms, 1e-12)) @ self.vectors_).tocsr().astype(np.float32)
        self.unit_t_ = self.unit_.T.tocsr()
        pop = self.popularity_
        self.tiebreak_ = 1e-9 * pop / max(pop.max(initial=0.0), 1.0)

    def _batch_size(self) -> int:
        return max(1, DENSE_BLOCK_CELLS // max(1, len(self.users_), len(self.items_)))

    def _score_batch(self, rows: np.ndarray) -> np.ndarray:
        kk = min(self.n_neighbours, len(self.users_) - 1)
        block = self.alpha * self.vectors_[rows]
        if kk > 0 and self.alpha < 1.0:
            sim = (self.unit_[rows] @ self.unit_t_).toarray()
            sim[np.arange(rows.size), rows] = -1.0  # never one's own neighbour
            nearest = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
            # a user without overlap is no neighbour: the mean is over the k slots all the same
            weight = (np.take_along_axis(sim, nearest, axis=1) > 0) * ((1.0 - self.alpha) / kk)
            pick = sp.csr_matrix(
                (weight.ravel(), (np.repeat(np.arange(rows.size), kk), nearest.ravel())), shape=sim.shape
            )
            block = block + pick @ self.vectors_
        block = sp.csr_matrix(block)
        block.data = block.data + self.tiebreak_[block.indices]
        return block.toarray()
