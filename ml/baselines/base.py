"""What every baseline shares: the fit/recommend contract, top-k cuts and the popularity top-up.

Why these: reproducibility studies (Dacrema et al.) found that tuned popularity, item-kNN
and EASE beat most published neural recommenders, and on purchase data the user's own
repurchases are a strong signal. Every claim of quality is therefore a comparison against
them on the same time split, ranking the *whole* catalogue (no sampled negatives).

Shared contract (scikit-learn / RecTools style):

* ``fit(history) -> self`` on an interaction frame (``user_id, item_id, ts, event_type``);
  only event types in ``event_weights`` are used, weighted as given. The catalogue is the
  set of items seen in those events: nothing else can be recommended.
* ``recommend(user_ids, k) -> DataFrame[user_id, item_id, rank, score, source]`` with
  ``rank`` 1..k. ``source`` is ``model`` or ``popular``: users the model knows nothing
  about, or for whom it has fewer than k candidates, are topped up from the popularity
  ranking, so every requested user gets k items whenever the catalogue allows. ``score`` is
  comparable only within one source.
* ``filter_purchased``: drop items the user already bought in the history. Off by default:
  repurchase is a real signal (groceries, consumables) and should be decided by
  validation, not dropped blindly - :func:`tune` can search it like any other knob.

Speed: interactions become ``scipy.sparse`` matrices. Models whose scores are sparse
(repurchase, item-kNN: only items near the user's own score) are cut to the top k per user
in sparse form, in batches of users; the others compute a dense block (sized to ~20M cells)
and cut it with ``np.argpartition``. The top-up is a vectorised anti-join on integer keys.
No Python loop runs per user, so 100k users x 1M interactions take seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

PURCHASE_ONLY: dict[str, float] = {"purchase": 1.0}
DENSE_BLOCK_CELLS = 20_000_000  # cells of one dense score block (~80 MB as float32)
SPARSE_BATCH_USERS = 2_000  # users per batch of sparse scores


# --------------------------------------------------------------------------- top-k helpers
def topk_dense(scores: np.ndarray, k: int, min_score: float = -np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` columns of each row of a dense block, best first.

    Returns ``(row, col, score)`` arrays; entries with ``score <= min_score`` (no evidence,
    or excluded as ``-inf``) are dropped, so a row may yield fewer than ``k``.
    """
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    if kk == 0 or n_rows == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    rows = np.repeat(np.arange(n_rows), kk).reshape(n_rows, kk)
    keep = vals > min_score
    return rows[keep], cols[keep], vals[keep]


FLOOR_SAMPLE = 320  # entries of a long row whose n-th largest bounds the row's (row_floor)


def row_floor(matrix: sp.csr_matrix, n: int) -> np.ndarray:
    """A lower bound of each row's ``n``-th largest entry (``-inf`` where a row has ``n`` or fewer).

    Why: sorting every entry of a score block to keep ``n`` per row costs most of a baseline's
    time. The ``n``-th largest of any subset of a row is at most the row's own, so the first
    ``max(FLOOR_SAMPLE, 2 n)`` entries of each long row give a floor; everything below it can be
    dropped before the sort without changing the result.
    """
    lengths = np.diff(matrix.indptr)
    floor = np.full(matrix.shape[0], -np.inf)
    long = np.flatnonzero(lengths > n) if n >= 1 else np.empty(0, dtype=np.int64)
    if long.size == 0:
        return floor
    width = int(min(max(FLOOR_SAMPLE, 2 * n), lengths[long].max()))
    offsets = np.arange(width)
    present = offsets[None, :] < lengths[long, None]
    positions = np.minimum(matrix.indptr[long, None] + offsets[None, :], matrix.data.size - 1)
    head = np.where(present, matrix.data[positions], -np.inf)
    floor[long] = np.partition(head, width - n, axis=1)[:, width - n]
    return floor


def topk_sparse(scores: sp.spmatrix, k: int, min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`topk_dense` for sparse scores: absent entries are "no evidence" like ``min_score``.

    Ties go to the lower column (item code), so the result is deterministic.
    """
    scores = scores.tocsr()
    scores.sum_duplicates()
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
    keep = (scores.data > min_score) & (scores.data >= row_floor(scores, k)[rows])
    rows, cols, vals = rows[keep], scores.indices[keep], scores.data[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
    best = rank < k
    return rows[best], cols[best].astype(np.int64), vals[best]


def topn_per_row_sparse(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of each row of a CSR matrix (vectorised)."""
    matrix = matrix.tocsr()
    lengths = np.diff(matrix.indptr)
    if lengths.size == 0 or lengths.max(initial=0) <= n:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    above = np.flatnonzero(matrix.data >= row_floor(matrix, n)[rows])
    order = above[np.lexsort((-matrix.data[above], rows[above]))]
    rank = np.arange(order.size) - np.searchsorted(rows[order], rows[order], side="left")
    keep = order[rank < n]
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape)


def popularity_scores(
    history: pd.DataFrame,
    n_items: int,
    user_codes: np.ndarray,
    item_codes: np.ndarray,
    event_weights: Mapping[str, float],
    window_days: float | None,
) -> np.ndarray:
    """Weighted popularity per item code: each user counts once per (item, event type).

    Distinct users, not raw events, so one bulk buyer cannot make a bestseller. With
    ``window_days`` only the last days before the history's end count.
    """
    frame = pd.DataFrame(
        {
            "u": user_codes,
            "i": item_codes,
            "e": history["event_type"].to_numpy(),
            "ts": history["ts"].to_numpy(),
        }
    )
    if window_days is not None and len(frame):
        start = frame["ts"].max() - pd.Timedelta(days=window_days)
        frame = frame[frame["ts"] > start]
    frame = frame.drop_duplicates(["u", "i", "e"])
    w = frame["e"].map(event_weights).to_numpy(dtype=float)
    return np.bincount(frame["i"].to_numpy(), weights=w, minlength=n_items)


# --------------------------------------------------------------------------- base class
class BaseRecommender:
    """Encoding, filtering, batching and popular top-up shared by every baseline.

    Subclasses implement ``_fit_model`` and ``_score_batch`` (scores for a batch of known
    user rows as a ``(batch, n_items)`` array, sparse when ``sparse_scores``, or ``None`` for
    "no model scores").
    """

    min_score: float = 0.0  # scores at or below are "no evidence" and left to the top-up
    sparse_scores: bool = False

    def __init__(
        self,
        event_weights: Mapping[str, float] | None = None,
        filter_purchased: bool = False,
        fallback_window_days: float | None = None,
    ) -> None:
        self.event_weights = dict(event_weights or PURCHASE_ONLY)
        self.filter_purchased = filter_purchased
        self.fallback_window_days = fallback_window_days

    # -- fitting
    def fit(self, history: pd.DataFrame) -> BaseRecommender:
        """Encode ids, build the user x item matrices and the fallback ranking, then fit."""
        h = history[history["event_type"].isin(list(self.event_weights))]
        h = h[h["ts"].notna()]
        user_codes, users = pd.factorize(h["user_id"], sort=True)
        item_codes, items = pd.factorize(h["item_id"], sort=True)
        self.users_ = pd.Index(np.asarray(users))  # the ids themselves when given as categories
        self.items_ = pd.Index(np.asarray(items))
        self.end_ = h["ts"].max() if len(h) else pd.Timestamp(0)
        n_u, n_i = len(users), len(items)
        weights = self._row_weights(h)
        self.X_ = sp.csr_matrix((weights, (user_codes, item_codes)), shape=(n_u, n_i), dtype=np.float64)
        self.X_.sum_duplicates()
        bought = (h["event_type"] == "purchase").to_numpy()
        self.purchased_ = sp.csr_matrix(
            (np.ones(bought.sum()), (user_codes[bought], item_codes[bought])), shape=(n_u, n_i)
        )
        self.purchased_.sum_duplicates()
        recent = popularity_scores(h, n_i, user_codes, item_codes, self.event_weights, self.fallback_window_days)
        overall = popularity_scores(h, n_i, user_codes, item_codes, self.event_weights, None)
        self.popularity_ = recent + overall * 1e-9  # recent first, all-time breaks ties
        self.popular_order_ = np.lexsort((np.arange(n_i), -overall, -recent))
        self._fit_model(h, user_codes, item_codes)
        return self

    def _row_weights(self, h: pd.DataFrame) -> np.ndarray:
        return h["event_type"].map(self.event_weights).to_numpy(dtype=float)

    def _fit_model(self, h: pd.DataFrame, user_codes: np.ndarray, item_codes: np.ndarray) -> None:
        pass

    def _score_batch(self, rows: np.ndarray) -> np.ndarray | None:
        return None

    def _batch_size(self) -> int:
        if self.sparse_scores:
            return SPARSE_BATCH_USERS
        return max(1, DENSE_BLOCK_CELLS // max(1, len(self.items_)))

    # -- recommending
    def recommend(self, user_ids: Any, k: int, filter_purchased: bool | None = None) -> pd.DataFrame:
        """Top-``k`` items for each of ``user_ids`` (unknown users get the popular list)."""
        filt = self.filter_purchased if filter_purchased is None else filter_purchased
        req = pd.Index(pd.unique(pd.Index(user_ids).astype(object)))
        rows = self.users_.get_indexer(req)
        n_items = len(self.items_)
        pos_known = np.flatnonzero(rows >= 0)

        excl_keys = np.empty(0, dtype=np.int64)
        if filt and pos_known.size:
            sub = self.purchased_[rows[pos_known]].tocoo()
            excl_keys = pos_known[sub.row].astype(np.int64) * n_items + sub.col

        parts_pos, parts_item, parts_score = [], [], []
        bs = self._batch_size()
        for start in range(0, pos_known.size, bs):
            pos = pos_known[start : start + bs]
            scores = self._score_batch(rows[pos])
            if scores is None:
                break
            if self.sparse_scores:
                if filt:
                    scores = scores - scores.multiply(self.purchased_[rows[pos]] > 0)
                r, c, s = topk_sparse(scores, k, self.min_score)
            else:
                if filt:
                    sub = self.purchased_[rows[pos]].tocoo()
                    scores[sub.row, sub.col] = -np.inf
                r, c, s = topk_dense(scores, k, self.min_score)
            parts_pos.append(pos[r])
            parts_item.append(c)
            parts_score.append(s)
        m_pos = np.concatenate(parts_pos) if parts_pos else np.empty(0, dtype=np.int64)
        m_item = np.concatenate(parts_item) if parts_item else np.empty(0, dtype=np.int64)
        m_score = np.concatenate(parts_score) if parts_score else np.empty(0)

        f_pos, f_item = self._top_up(len(req), m_pos, m_item, excl_keys, k)
        pos = np.concatenate([m_pos, f_pos]).astype(np.int64)
        item = np.concatenate([m_item, f_item]).astype(np.int64)
        score = np.concatenate([m_score, self.popularity_[f_item]])
        source = np.concatenate([np.zeros(m_pos.size, np.int8), np.ones(f_pos.size, np.int8)])
        # model rows come out best-first per user, top-up rows in popularity order; a
        # stable sort by user keeps both orders and puts model rows first
        order = np.argsort(pos, kind="stable")
        pos, item, score, source = pos[order], item[order], score[order], source[order]
        first = np.searchsorted(pos, pos, side="left")
        rank = np.arange(pos.size) - first + 1
        return pd.DataFrame(
            {
                "user_id": req.to_numpy()[pos],
                "item_id": self.items_.to_numpy()[item],
                "rank": rank.astype(np.int64),
                "score": score,
                "source": np.where(source == 0, "model", "popular"),
            }
        )

    def _top_up(
        self, n_req: int, m_pos: np.ndarray, m_item: np.ndarray, excl_keys: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Popular items for every user short of ``k``, skipping listed and excluded items.

        Vectorised: tile the first ``L`` popular items for the short users, anti-join on
        ``user * n_items + item`` keys, keep what is needed; ``L`` grows only for the few
        users (heavy buyers with filtering) still short.
        """
        n_items = len(self.items_)
        have = np.bincount(m_pos, minlength=n_req)
        need = np.maximum(0, min(k, n_items) - have)
        taken = np.concatenate([m_pos.astype(np.int64) * n_items + m_item, excl_keys])
        taken.sort()
        out_pos, out_item = [], []
        length = min(n_items, 3 * k)
        short = np.flatnonzero(need > 0)
        while short.size:
            cand = self.popular_order_[:length]
            pos = np.repeat(short, cand.size)
            item = np.tile(cand, short.size)
            keys = pos.astype(np.int64) * n_items + item
            ok = ~np.isin(keys, taken, assume_unique=False)
            pos, item = pos[ok], item[ok]
            first = np.searchsorted(pos, pos, side="left")
            order_in_user = np.arange(pos.size) - first
            keep = order_in_user < need[pos]
            out_pos.append(pos[keep])
            out_item.append(item[keep])
            got = np.bincount(pos[keep], minlength=n_req)
            still = need - got
            if length >= n_items:
                break
            short = np.flatnonzero((still > 0) & (need > 0))
            if short.size:
                # redo these users with a longer prefix of the popular list
                done = np.isin(np.concatenate(out_pos), short)
                all_pos, all_item = np.concatenate(out_pos), np.concatenate(out_item)
                out_pos, out_item = [all_pos[~done]], [all_item[~done]]
                length = min(n_items, length * 4)
        if not out_pos:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return np.concatenate(out_pos), np.concatenate(out_item)

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


# --------------------------------------------------------------------------- baselines
