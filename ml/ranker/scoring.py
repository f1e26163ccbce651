"""Writing the ranker's personal lists: its top N per user, into ``ml_recommendations``.

Candidates are scored in parts holding whole users, so memory depends on the part size, not
on the number of users.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml.progress import Progress
from ml.ranker import dataset
from ml.ranker.models import scores
from ml.ranker.ranking import top_k
from ml.warehouse import lists, tables


def reasons(ranked: pd.DataFrame) -> pd.Series:
    """Why an item is offered: its main source, with the bought item behind a co-purchase."""
    source = ranked["primary_source"].astype(str)
    anchor = ranked["anchor_item_id"].astype(object)
    with_anchor = (source == "co_purchase") & anchor.notna()
    return source.where(~with_anchor, "co_purchase:" + anchor.astype(str))


def score_serving(
    build_db: Path, model: Pipeline, top_n: int, progress: Callable[[str], None] = print
) -> dict[str, int]:
    """Score every serving candidate and write the top ``top_n`` per user; returns counts.

    The users are counted first, so that each part logs ``users scored n/N`` with an estimate."""
    users = rows = scored = 0
    with tables.connect(build_db, read_only=False) as con:
        cutoff = tables.cutoffs(con)[0]
        lists.create(con)
        counter = Progress("users scored", dataset.serving_users(con, cutoff), progress)
        for part in dataset.serving_candidates(con, cutoff):
            if part.empty:
                continue
            ranked = top_k(part, scores(model, part), top_n)
            ranked = ranked.assign(reason=reasons(ranked), rank=ranked["rank"].astype(np.int32))
            lists.append(con, ranked)
            users += ranked["user_id"].nunique()
            rows += len(ranked)
            scored += len(part)
            counter.update(users, f"{scored:,} candidates")
            del part, ranked  # before the next part is read: two parts at once doubled the peak
    return {"users": users, "rows": rows, "candidates": scored}
