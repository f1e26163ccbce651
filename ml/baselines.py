"""Baseline recommenders every learned model must beat, and a fair tuner for them.

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

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp
from sklearn.model_selection import ParameterGrid

from ml.metrics import evaluate_lists
from ml.splitting import restrict_truth, time_split, warm_users

PURCHASE_ONLY: dict[str, float] = {"purchase": 1.0}
DENSE_BLOCK_CELLS = 20_000_000  # cells of one dense score block (~80 MB as float32)
SPARSE_BATCH_USERS = 2_000      # users per batch of sparse scores


# --------------------------------------------------------------------------- top-k helpers
def topk_dense(scores: np.ndarray, k: int, min_score: float = -np.inf
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def topk_sparse(scores: sp.spmatrix, k: int, min_score: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`topk_dense` for sparse scores: absent entries are "no evidence" like ``min_score``.

    Ties go to the lower column (item code), so the result is deterministic.
    """
    scores = scores.tocsr()
    scores.sum_duplicates()
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
    keep = scores.data > min_score
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
    order = np.lexsort((-matrix.data, rows))
    rank = np.arange(order.size) - matrix.indptr[rows[order]]
    keep = order[rank < n]
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])),
                         shape=matrix.shape)


def popularity_scores(history: pd.DataFrame, n_items: int, item_codes: np.ndarray,
                      event_weights: Mapping[str, float], window_days: float | None
                      ) -> np.ndarray:
    """Weighted popularity per item code: each user counts once per (item, event type).

    Distinct users, not raw events, so one bulk buyer cannot make a bestseller. With
    ``window_days`` only the last days before the history's end count.
    """
    frame = pd.DataFrame({"u": history["user_id"].to_numpy(), "i": item_codes,
                          "e": history["event_type"].to_numpy(), "ts": history["ts"].to_numpy()})
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

    def __init__(self, event_weights: Mapping[str, float] | None = None,
                 filter_purchased: bool = False,
                 fallback_window_days: float | None = None) -> None:
        self.event_weights = dict(event_weights or PURCHASE_ONLY)
        self.filter_purchased = filter_purchased
        self.fallback_window_days = fallback_window_days

    # -- fitting
    def fit(self, history: pd.DataFrame) -> "BaseRecommender":
        """Encode ids, build the user x item matrices and the fallback ranking, then fit."""
        h = history[history["event_type"].isin(list(self.event_weights))]
        h = h[h["ts"].notna()]
        user_codes, users = pd.factorize(h["user_id"], sort=True)
        item_codes, items = pd.factorize(h["item_id"], sort=True)
        self.users_ = pd.Index(users)
        self.items_ = pd.Index(items)
        self.end_ = h["ts"].max() if len(h) else pd.Timestamp(0)
        n_u, n_i = len(users), len(items)
        weights = self._row_weights(h)
        self.X_ = sp.csr_matrix((weights, (user_codes, item_codes)), shape=(n_u, n_i),
                                dtype=np.float64)
        self.X_.sum_duplicates()
        bought = (h["event_type"] == "purchase").to_numpy()
        self.purchased_ = sp.csr_matrix(
            (np.ones(bought.sum()), (user_codes[bought], item_codes[bought])), shape=(n_u, n_i))
        self.purchased_.sum_duplicates()
        recent = popularity_scores(h, n_i, item_codes, self.event_weights, self.fallback_window_days)
        overall = popularity_scores(h, n_i, item_codes, self.event_weights, None)
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
            pos = pos_known[start:start + bs]
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
        return pd.DataFrame({
            "user_id": req.to_numpy()[pos],
            "item_id": self.items_.to_numpy()[item],
            "rank": rank.astype(np.int64),
            "score": score,
            "source": np.where(source == 0, "model", "popular"),
        })

    def _top_up(self, n_req: int, m_pos: np.ndarray, m_item: np.ndarray,
                excl_keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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
class PopularRecommender(BaseRecommender):
    """The same bestseller list for everyone: popular in the last ``window_days``.

    Popularity counts distinct users per (item, event type), weighted by ``event_weights``
    (e.g. ``{"purchase": 1, "add_to_cart": 0.3}``); all-time popularity breaks ties and
    fills the list when the window holds fewer than k items. ``window_days=None`` means
    the whole history. The cold-start fallback of every other model.
    """

    def __init__(self, window_days: float | None = 28, event_weights: Mapping[str, float] | None = None,
                 filter_purchased: bool = False) -> None:
        super().__init__(event_weights, filter_purchased, fallback_window_days=window_days)
        self.window_days = window_days


class RepurchaseRecommender(BaseRecommender):
    """The user's own most-bought items (time-decayed counts), then popular items.

    Score = sum over the user's purchase lines of the item of ``0.5 ** (age_days /
    half_life_days)`` (plain counts when ``half_life_days`` is None); ties go to the more
    popular item. Only purchases count by default: a viewed item is not a repurchase.
    """

    def __init__(self, half_life_days: float | None = None,
                 event_weights: Mapping[str, float] | None = None,
                 fallback_window_days: float | None = None) -> None:
        super().__init__(event_weights, filter_purchased=False,
                         fallback_window_days=fallback_window_days)
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

    def __init__(self, n_neighbours: int = 100, event_weights: Mapping[str, float] | None = None,
                 filter_purchased: bool = False, max_items_per_user: int = 500,
                 fallback_window_days: float | None = None) -> None:
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
            co = (xt[start:start + chunk] @ binary).tocsr()
            co = (sp.diags(inv_norm[start:start + chunk]) @ co @ sp.diags(inv_norm)).tocsr()
            co.data[_diag_mask(co, start)] = 0.0
            co.eliminate_zeros()
            blocks.append(topn_per_row_sparse(co, self.n_neighbours))
        self.similarity_ = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, 0))
        self.user_weights_ = self.X_.copy()
        self.user_weights_.data = np.log1p(self.user_weights_.data)

    def _score_batch(self, rows: np.ndarray) -> sp.csr_matrix:
        return self.user_weights_[rows] @ self.similarity_


def _diag_mask(block: sp.csr_matrix, row_offset: int) -> np.ndarray:
    """Boolean mask over ``block.data`` of the entries on the global diagonal."""
    rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr)) + row_offset
    return rows == block.indices


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

    def __init__(self, l2: float = 500.0, max_items: int | None = None, memory_gb: float = 4.0,
                 event_weights: Mapping[str, float] | None = None, filter_purchased: bool = False,
                 fallback_window_days: float | None = None) -> None:
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


class ALSRecommender(BaseRecommender):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) via the ``implicit`` package.

    ``implicit`` is an optional extra (``pip install -e '.[als]'``): its wheels do not cover
    every platform, and only an evaluation baseline uses it. Constructing this class without it
    raises ImportError with the reason, so callers can skip it. Confidence = 1 + alpha * log1p(weighted count).
    """

    min_score = -np.inf

    def __init__(self, factors: int = 64, regularization: float = 0.01, alpha: float = 10.0,
                 iterations: int = 15, event_weights: Mapping[str, float] | None = None,
                 filter_purchased: bool = False, random_state: int = 7) -> None:
        try:
            import implicit  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("ALSRecommender needs the 'implicit' package (not installed)") from exc
        super().__init__(event_weights, filter_purchased)
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state

    def _fit_model(self, h: pd.DataFrame, user_codes: np.ndarray, item_codes: np.ndarray) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        conf = self.X_.copy().astype(np.float32)
        conf.data = np.log1p(conf.data)
        # implicit parallelises itself; a BLAS thread pool underneath would oversubscribe the cores.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations,
                                            random_state=self.random_state)
            model.fit(conf, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors)
        self.item_factors_ = np.asarray(model.item_factors)

    def _score_batch(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T


# --------------------------------------------------------------------------- tuning
@dataclass
class TuneResult:
    """Outcome of :func:`tune`: the chosen parameters and every grid point's metrics."""

    best_params: dict[str, Any]
    best_score: float
    metric: str
    table: pd.DataFrame
    seconds: float


def tune(
    baseline_factory: Callable[..., BaseRecommender],
    grid: Mapping[str, list] | list[Mapping[str, list]],
    history: pd.DataFrame,
    validation_cutoff: str | pd.Timestamp,
    horizon_days: float,
    k: int,
    metric: str = "ndcg",
) -> TuneResult:
    """Pick a baseline's knobs on a time split *inside* ``history``.

    The history is split again at ``validation_cutoff``: each grid point is fitted on the
    events before it and judged on the warm buyers of ``[validation_cutoff,
    validation_cutoff + horizon_days)`` (clipped at the end of the history). The test
    window is never seen, so every baseline gets the same, fair chance. Ties keep the
    first grid point. ``grid`` is a scikit-learn ``ParameterGrid`` spec.
    """
    started = time.perf_counter()
    end = pd.Timestamp(history["ts"].max()) if len(history) else None
    inner_hist, inner_truth = time_split(history, validation_cutoff, horizon_days)
    if end is not None and pd.Timestamp(validation_cutoff) > end:
        raise ValueError("validation_cutoff lies after the history: nothing to validate on")
    users = warm_users(inner_hist, inner_truth)
    truth = restrict_truth(inner_truth, users)
    records = []
    for params in ParameterGrid(grid):
        t0 = time.perf_counter()
        model = baseline_factory(**params).fit(inner_hist)
        recs = model.recommend(users, k)
        scores = evaluate_lists(recs, truth, inner_hist, k)
        records.append({"params": dict(params), **scores, "seconds": time.perf_counter() - t0})
    table = pd.DataFrame(records)
    best = int(table[metric].fillna(-np.inf).to_numpy().argmax())
    return TuneResult(best_params=table.loc[best, "params"], best_score=float(table.loc[best, metric]),
                      metric=metric, table=table, seconds=time.perf_counter() - started)
