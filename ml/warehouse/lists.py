"""``ml_recommendations``: the personal lists the scoring step writes into the build database.

dbt's ``pub_recommendations`` reads it (a declared source, created empty by ``on-run-start``), so
whichever list won the gate, the ranker's or a baseline's, reaches the serving file the same way.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from ml.warehouse import tables

RESULT_TABLE = "ml_recommendations"
COLUMNS = ["user_id", "item_id", "rank", "score", "reason"]


def create(con: duckdb.DuckDBPyConnection) -> None:
    """An empty result table, replacing the last run's lists."""
    con.execute(f"""create or replace table {RESULT_TABLE} (
        user_id varchar not null, item_id varchar not null, rank integer not null,
        score double not null, reason varchar not null)""")


def append(con: duckdb.DuckDBPyConnection, lists: pd.DataFrame) -> None:
    """Add rows (``COLUMNS``, rank an int32) to the result table."""
    con.register("lists_part", lists[COLUMNS])
    con.execute(f"insert into {RESULT_TABLE} select * from lists_part")
    con.unregister("lists_part")


def no_personal_lists(build_db: Path) -> None:
    """An empty result table: without a ranker only the cold-start lists are published."""
    with tables.connect(build_db, read_only=False) as con:
        create(con)
