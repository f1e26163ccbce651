"""Writing a baseline's personal lists into ``ml_recommendations`` when it won the gate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from ml.baselines.tuning import BaselineSpec, fit_tuned
from ml.warehouse import lists, tables


def serve_baseline(
    build_db: Path, spec: BaselineSpec, horizon_days: int, k: int, top_n: int, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """The winning baseline's top ``top_n`` for every user with history, tuned one horizon before
    the serving cutoff and fitted on all purchases before it (the recipe the gate judged).

    ``reason`` is ``baseline:<name>`` on every row, so readers can tell these lists apart.
    """
    with duckdb.connect(str(build_db)) as con:
        cutoffs = tables.cutoffs(con)
        serving = cutoffs[0]
        fitted = fit_tuned(spec, tables.purchases_before(con, serving.at), cutoffs[1].at, horizon_days, k)
        users = tables.candidate_users(con, serving)
        chosen = fitted.model.recommend(users, top_n)
        chosen = chosen.assign(reason=f"baseline:{spec.name}", rank=chosen["rank"].astype(np.int32))
        lists.create(con)
        lists.append(con, chosen)
    users = int(chosen["user_id"].nunique())
    progress(f"  {spec.name} baseline ({fitted.params}): {len(chosen):,} rows for {users:,} users")
    return {"users": users, "rows": len(chosen), "candidates": 0, "params": fitted.params}
