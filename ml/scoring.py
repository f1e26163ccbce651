"""Writing the personal lists: the ranker's top N per user, or a baseline's when it won the gate.

Candidates are scored in parts holding whole users, so memory depends on the part size, not
on the number of users. The result goes to the build database's ``ml_recommendations`` table,
from which dbt builds the contract-checked ``pub_recommendations``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml import dataset
from ml.evaluate_baselines import BaselineSpec, fit_tuned
from ml.models import scores
from ml.ranking import top_k

RESULT_TABLE = "ml_recommendations"


def reasons(ranked: pd.DataFrame) -> pd.Series:
    """Why an item is offered: its main source, with the bought item behind a co-purchase."""
    source = ranked["primary_source"].astype(str)
    anchor = ranked["anchor_item_id"].astype(object)
    with_anchor = (source == "co_purchase") & anchor.notna()
    return source.where(~with_anchor, "co_purchase:" + anchor.astype(str))


def _create_result_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"""create or replace table {RESULT_TABLE} (
        user_id varchar not null, item_id varchar not null, rank integer not null,
        score double not null, reason varchar not null)""")


def no_personal_lists(build_db: Path) -> None:
    """An empty result table: without a ranker only the cold-start lists are published."""
    with duckdb.connect(str(build_db)) as con:
        _create_result_table(con)


def score_serving(build_db: Path, model: Pipeline, top_n: int,
                  progress: Callable[[str], None] = print) -> dict[str, int]:
    """Score every serving candidate and write the top ``top_n`` per user; returns counts."""
    users = rows = scored = 0
    with duckdb.connect(str(build_db)) as con:
        cutoff = dataset.cutoffs(con)[0]
        _create_result_table(con)
        for part in dataset.serving_candidates(con, cutoff):
            if part.empty:
                continue
            ranked = top_k(part, scores(model, part), top_n)
            ranked = ranked.assign(reason=reasons(ranked))[["user_id", "item_id", "rank", "score", "reason"]]
            ranked["rank"] = ranked["rank"].astype(np.int32)
            con.register("ranked_part", ranked)
            con.execute(f"insert into {RESULT_TABLE} select * from ranked_part")
            con.unregister("ranked_part")
            users += ranked["user_id"].nunique()
            rows += len(ranked)
            scored += len(part)
            progress(f"  scored {scored:,} candidates, {users:,} users so far")
    return {"users": users, "rows": rows, "candidates": scored}


def serve_baseline(build_db: Path, spec: BaselineSpec, horizon_days: int, k: int, top_n: int,
                   progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The winning baseline's top ``top_n`` for every user with history, tuned one horizon before
    the serving cutoff and fitted on all purchases before it (the recipe the gate judged).

    ``reason`` is ``baseline:<name>`` on every row, so readers can tell these lists apart.
    """
    with duckdb.connect(str(build_db)) as con:
        cutoffs = dataset.cutoffs(con)
        serving = cutoffs[0]
        fitted = fit_tuned(spec, dataset.purchases_before(con, serving.at), cutoffs[1].at, horizon_days, k)
        users = dataset.candidate_users(con, serving)
        lists = fitted.model.recommend(users, top_n)
        lists = lists.assign(reason=f"baseline:{spec.name}", rank=lists["rank"].astype(np.int32))
        _create_result_table(con)
        con.register("baseline_lists", lists[["user_id", "item_id", "rank", "score", "reason"]])
        con.execute(f"insert into {RESULT_TABLE} select * from baseline_lists")
        con.unregister("baseline_lists")
    progress(f"  {spec.name} baseline ({fitted.params}): {len(lists):,} rows for {lists['user_id'].nunique():,} users")
    return {"users": int(lists["user_id"].nunique()), "rows": len(lists), "candidates": 0, "params": fitted.params}
