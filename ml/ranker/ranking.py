"""Turning candidate scores into ranked lists, and judging a ranking.

Kept apart from the model so that training, evaluation and scoring all rank the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.evaluation.metrics import ndcg_at_k


def top_k(frame: pd.DataFrame, scores: np.ndarray, k: int) -> pd.DataFrame:
    """The ``k`` best-scored candidates per user: ``user_id, item_id, rank, score`` + context."""
    ranked = frame.assign(score=scores).sort_values(
        ["user_id", "score", "item_id"], ascending=[True, False, True], kind="stable"
    )
    ranked["rank"] = ranked.groupby("user_id", sort=False).cumcount() + 1
    return ranked[ranked["rank"] <= k].reset_index(drop=True)


def ranking_ndcg(frame: pd.DataFrame, scores: np.ndarray, truth: pd.DataFrame, k: int) -> float:
    """NDCG@k of the candidates ranked by ``scores``, over the users of ``frame``.

    ``truth`` holds every purchase of the window, also the ones no candidate covers: a ranking
    is judged against what users really bought, not against what the candidates could reach.
    """
    users = frame["user_id"].unique()
    return ndcg_at_k(top_k(frame, scores, k), truth[truth["user_id"].isin(users)], k)
