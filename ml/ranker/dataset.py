"""The ranker's frames out of the build database: candidate rows with their features (and label).

Categories stay objects with NaN and numbers become floats, the dtypes the model pipeline's
preprocessing (``ml.ranker.features``) expects.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import numpy as np
import pandas as pd

from ml.ranker.features import FEATURES, LABEL
from ml.warehouse.tables import Cutoff


def candidates(con: duckdb.DuckDBPyConnection, cutoff: Cutoff) -> pd.DataFrame:
    """Candidate rows of one labelled cutoff with features and label."""
    frame = con.execute(
        f"select user_id, item_id, anchor_item_id, {LABEL}, {', '.join(FEATURES)} "
        "from candidates where cutoff_at = ? order by user_id, item_id",
        [cutoff.at],
    ).df()
    return _typed(frame)


def serving_users(con: duckdb.DuckDBPyConnection, cutoff: Cutoff) -> int:
    """How many users have serving candidates: the total that scoring's progress counts up to."""
    return con.execute("select count(distinct user_id) from candidates where cutoff_at = ?", [cutoff.at]).fetchone()[0]


def serving_candidates(
    con: duckdb.DuckDBPyConnection, cutoff: Cutoff, rows_per_part: int = 2_000_000
) -> Iterator[pd.DataFrame]:
    """Serving candidates in parts holding whole users, at most about ``rows_per_part`` rows."""
    total = con.execute("select count(*) from candidates where cutoff_at = ?", [cutoff.at]).fetchone()[0]
    parts = max(1, int(np.ceil(total / rows_per_part)))
    for part in range(parts):
        frame = con.execute(
            f"select user_id, item_id, anchor_item_id, {', '.join(FEATURES)} "
            "from candidates where cutoff_at = ? and hash(user_id) % ? = ? order by user_id, item_id",
            [cutoff.at, parts, part],
        ).df()
        yield _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain numpy dtypes for scikit-learn: numbers as float, categories as object with NaN."""
    for column in frame.columns:
        if column in ("user_id", "item_id", "anchor_item_id", "platform", "primary_source", "item_category"):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), np.nan)
        elif column == LABEL:
            frame[column] = frame[column].astype(float).astype(int)
        else:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame
