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

# What a labelled frame holds: the keys, the label and every feature.
_LABELLED_COLUMNS = f"user_id, item_id, anchor_item_id, {LABEL}, {', '.join(FEATURES)}"


def labelled_users(con: duckdb.DuckDBPyConnection, cutoff: Cutoff) -> pd.Index:
    """The users with candidates at a labelled cutoff: who the ranker can learn from and be judged on."""
    users = con.execute(
        "select distinct user_id from candidates where cutoff_at = ? order by user_id", [cutoff.at]
    ).df()["user_id"]
    return pd.Index(users.astype(object))


def label_counts(con: duckdb.DuckDBPyConnection, cutoff: Cutoff) -> tuple[int, int]:
    """Candidate rows and positives of a labelled cutoff."""
    rows, positives = con.execute(
        f"select count(*), coalesce(sum({LABEL}), 0) from candidates where cutoff_at = ?", [cutoff.at]
    ).fetchone()
    return int(rows), int(positives)


def candidates(con: duckdb.DuckDBPyConnection, cutoff: Cutoff, users: pd.Index) -> pd.DataFrame:
    """Every candidate row of ``users`` at a labelled cutoff, with features and label: the sets
    models are validated and judged on, whole users only."""
    frame = con.execute(
        f"select {_LABELLED_COLUMNS} from candidates where cutoff_at = ? and user_id in (select unnest(?::varchar[])) order by user_id, item_id",
        [cutoff.at, list(users)],
    ).df()
    return _typed(frame)


def training_candidates(con: duckdb.DuckDBPyConnection, cutoff: Cutoff, max_rows: int, seed: int) -> pd.DataFrame:
    """The candidates of a labelled cutoff a model learns from: every positive, and a seeded
    hash sample of the negatives so that there are about ``max_rows`` rows.

    A uniform negative sample shifts every score by the same log-odds, so the order within a
    user is unchanged. Sampled in the database, so Python never holds the whole cutoff.
    """
    rows, positives = label_counts(con, cutoff)
    negatives = rows - positives
    share = 1.0 if rows <= max_rows or negatives == 0 else max(max_rows - positives, 0) / negatives
    frame = con.execute(
        f"select {_LABELLED_COLUMNS} from candidates "
        f"where cutoff_at = ? and ({LABEL} = 1 or ? or hash(user_id, item_id, ?) / 2.0 ^ 64 < ?) "
        "order by user_id, item_id",
        [cutoff.at, share >= 1.0, seed, share],
    ).df()
    return _typed(frame)


def serving_count(con: duckdb.DuckDBPyConnection, cutoff: Cutoff) -> int:
    """How many serving candidates there are: the total that scoring's progress counts up to."""
    return con.execute("select count(*) from candidates where cutoff_at = ?", [cutoff.at]).fetchone()[0]


def serving_features(
    con: duckdb.DuckDBPyConnection, cutoff: Cutoff, rows_per_part: int = 2_000_000
) -> Iterator[pd.DataFrame]:
    """The serving candidates' features in parts of at most ``rows_per_part`` rows, from one scan,
    indexed by the candidate's ``rowid`` in ``candidates``: scoring needs no ids in Python, the
    database joins the scores back to them. The generator drops each part before it reads the
    next, so a caller that drops its own reference first never holds two.

    ``con`` streams the scan: the caller runs its own statements on another cursor meanwhile."""
    con.execute(f"select rowid as row_id, {', '.join(FEATURES)} from candidates where cutoff_at = ?", [cutoff.at])
    vectors = max(1, rows_per_part // duckdb.__standard_vector_size__)
    while not (part := _typed(con.fetch_df_chunk(vectors).set_index("row_id"))).empty:
        yield part
        del part  # before the next part is read: two parts at once doubled scoring's peak


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
