"""Ranking candidates into lists: a total order, whatever the order of the rows."""

import numpy as np
import pandas as pd

from ml.ranker.ranking import top_k


def _candidates(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """300 users with 1-40 candidates each, scores on a coarse grid so that many tie."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 41, 300)
    users = np.repeat([f"u{i:03d}" for i in range(300)], sizes)
    items = np.concatenate([rng.choice(500, size, replace=False) for size in sizes])
    frame = pd.DataFrame({"user_id": users, "item_id": [f"i{j:03d}" for j in items], "context": rng.random(len(users))})
    return frame, rng.integers(0, 5, len(users)) / 4


def test_top_k_is_the_best_scores_per_user_ties_to_the_smaller_item_in_any_row_order():
    frame, scores = _candidates()
    expected = (
        frame.assign(score=scores)
        .sort_values(["user_id", "score", "item_id"], ascending=[True, False, True])
        .groupby("user_id")
        .head(7)
        .reset_index(drop=True)
    )
    expected["rank"] = expected.groupby("user_id").cumcount() + 1

    ranked = top_k(frame, scores, 7)
    pd.testing.assert_frame_equal(ranked, expected)

    shuffled = np.random.default_rng(1).permutation(len(frame))
    pd.testing.assert_frame_equal(
        top_k(frame.iloc[shuffled].set_index(np.arange(len(frame)) * 3), scores[shuffled], 7), expected
    )
