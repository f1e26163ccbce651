"""Scoring in the database: the lists it writes are exactly ``ranking.top_k``'s of the scores."""

from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from ml.ranker.features import CATEGORICAL, FEATURES, NUMERIC
from ml.ranker.models import scores
from ml.ranker.ranking import top_k
from ml.ranker.scoring import score_serving

SERVE_AT, LABELLED_AT = datetime(2024, 1, 15), datetime(2024, 1, 8)


class _CoarseModel:
    """Probabilities on a grid of five values, so that many candidates of a user tie."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = np.floor(frame["history_score"].to_numpy() * 5) / 5
        return np.column_stack([1 - p, p])


def _candidates(rng: np.random.Generator, cutoff_at: datetime, users: int) -> pd.DataFrame:
    sizes = rng.integers(1, 30, users)
    items = np.concatenate([rng.choice(200, size, replace=False) for size in sizes])
    rows = len(items)
    return pd.DataFrame(
        {
            "cutoff_at": cutoff_at,
            "user_id": np.repeat([f"u{i:03d}" for i in range(users)], sizes),
            "item_id": [f"i{j:03d}" for j in items],
            "anchor_item_id": np.where(rng.random(rows) < 0.5, "i999", None),
            **{name: "x" for name in CATEGORICAL},
            **{name: rng.random(rows) for name in NUMERIC},
            "primary_source": rng.choice(["history", "co_purchase", "popular"], rows),
        }
    )


def test_the_database_keeps_the_top_n_of_every_user_as_top_k_does(tmp_path):
    rng = np.random.default_rng(0)
    serving = _candidates(rng, SERVE_AT, 300)
    build_db = tmp_path / "build.duckdb"
    with duckdb.connect(str(build_db)) as con:
        con.register("serving", serving)
        con.register("labelled", _candidates(rng, LABELLED_AT, 50))
        # the serving rows in a shuffled order, between rows of another cutoff
        con.execute(
            "create table candidates as select * from serving union all by name select * from labelled order by random()"
        )
        con.execute(
            "create table int_cutoffs as select * from (values (0, ?::timestamp, null::timestamp), (1, ?, ?)) "
            "as cutoffs (cutoff_index, cutoff_at, label_end_at)",
            [SERVE_AT, LABELLED_AT, SERVE_AT],
        )

    written = score_serving(build_db, _CoarseModel(), 7, progress=lambda line: None)

    ranked = top_k(serving, scores(_CoarseModel(), serving[FEATURES]), 7)
    reason = ranked["primary_source"].where(
        (ranked["primary_source"] != "co_purchase") | ranked["anchor_item_id"].isna(), "co_purchase:i999"
    )
    expected = ranked.assign(reason=reason)[["user_id", "item_id", "rank", "score", "reason"]]
    with duckdb.connect(str(build_db), read_only=True) as con:
        lists = con.execute("select * from ml_recommendations order by user_id, rank").df()
    pd.testing.assert_frame_equal(lists, expected.astype(lists.dtypes.to_dict()), check_exact=True)
    assert written == {"users": 300, "rows": len(expected), "candidates": len(serving)}
