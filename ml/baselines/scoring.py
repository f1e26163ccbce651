"""Writing a baseline's personal lists into ``ml_recommendations`` when it won the gate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml.baselines.tuning import BaselineSpec, fit_tuned
from ml.config import Config
from ml.warehouse import lists, tables


def serve_baseline(
    build_db: Path, spec: BaselineSpec, config: Config, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """The winning baseline's top ``config.top_n`` for every user with history, tuned one horizon
    before the serving cutoff on at most ``config.holdout_users`` buyers and fitted on all
    purchases before it (the recipe the gate judged).

    ``reason`` is ``baseline:<name>`` on every row, so readers can tell these lists apart.
    """
    with tables.connect(build_db, read_only=False) as con:
        cutoffs = tables.cutoffs(con)
        serving = cutoffs[0]
        purchases = tables.purchases_before(con, serving.at)
        fitted = fit_tuned(
            spec, purchases, cutoffs[1].at, config.horizon_days, config.k, "ndcg", config.holdout_users, config.seed
        )
        users = tables.candidate_users(con, serving)
        chosen = fitted.model.recommend(users, config.top_n)
        chosen = chosen.assign(reason=f"baseline:{spec.name}", rank=chosen["rank"].astype(np.int32))
        lists.create(con)
        lists.append(con, chosen)
    users = int(chosen["user_id"].nunique())
    progress(f"  {spec.name} baseline ({fitted.params}): {len(chosen):,} rows for {users:,} users")
    return {"users": users, "rows": len(chosen), "candidates": 0, "params": fitted.params}
