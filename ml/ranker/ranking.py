"""Turning candidate scores into ranked lists, and judging a ranking.

Kept apart from the model so that training, evaluation and scoring all rank the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.evaluation.metrics import ndcg_at_k


def top_k(frame: pd.DataFrame, scores: np.ndarray, k: int) -> pd.DataFrame:
    """The ``k`` best-scored candidates per user: ``user_id, item_id, rank, score`` + context.

    The order is total (user, score descending, item), so the result does not depend on the
    order of ``frame``'s rows. Only the three keys are sorted and only the kept rows are taken:
    sorting the whole frame moved every feature column of every candidate."""
    keys = pd.DataFrame(
        {"user_id": frame["user_id"].to_numpy(), "score": scores, "item_id": frame["item_id"].to_numpy()}
    )
    keys = keys.sort_values(["user_id", "score", "item_id"], ascending=[True, False, True], kind="stable")
    rank = keys.groupby("user_id", sort=False).cumcount().to_numpy() + 1
    kept = rank <= k
    ranked = frame.take(keys.index[kept]).assign(score=keys["score"].to_numpy()[kept], rank=rank[kept])
    return ranked.reset_index(drop=True)


def ranking_ndcg(frame: pd.DataFrame, scores: np.ndarray, truth: pd.DataFrame, k: int) -> float:
    """NDCG@k of the candidates ranked by ``scores``, over the users of ``frame``.

    ``truth`` holds every purchase of the window, also the ones no candidate covers: a ranking
    is judged against what users really bought, not against what the candidates could reach.
    """
    users = frame["user_id"].unique()
    return ndcg_at_k(top_k(frame, scores, k), truth[truth["user_id"].isin(users)], k)
