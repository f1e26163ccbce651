"""Writing the ranker's personal lists: its top N per user, into ``ml_recommendations``.

Python only scores. One scan streams the serving candidates' features in parts, so memory
depends on the part size, not on the number of users, and each part goes back as (row id,
score). The database then joins the scores to the candidates' ids and keeps the top N per
user, in ``ranking.top_k``'s total order (score descending, then item id). Ranking in pandas
meant a scan of the candidates per part, every id as a Python string and a sort of them: about
half of scoring's time at 49.7 M rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline

from ml.progress import Progress, duration
from ml.ranker import dataset
from ml.ranker.models import scores
from ml.warehouse import lists, tables

# The reason an item is offered: its main source, with the bought item behind a co-purchase.
_TOP_N = f"""
insert into {lists.RESULT_TABLE}
select user_id, item_id, rank, score, reason
from (
    select
        serving.user_id,
        serving.item_id,
        row_number() over (partition by serving.user_id order by scored.score desc, serving.item_id) as rank,
        scored.score,
        case
            when serving.primary_source = 'co_purchase' and serving.anchor_item_id is not null
                then 'co_purchase:' || serving.anchor_item_id
            else serving.primary_source
        end as reason
    from candidate_scores as scored
    inner join (
        select rowid as row_id, user_id, item_id, primary_source, anchor_item_id
        from candidates
        where cutoff_at = ?
    ) as serving using (row_id)
)
where rank <= ?
"""


def score_serving(
    build_db: Path, model: Pipeline, top_n: int, progress: Callable[[str], None] = print
) -> dict[str, int]:
    """Score every serving candidate and write the top ``top_n`` per user; returns counts.

    The candidates are counted first, so that each part logs ``candidates scored n/N`` with an
    estimate."""
    scored = 0
    with tables.connect(build_db, read_only=False) as con, con.cursor() as writer:
        cutoff = tables.cutoffs(con)[0]
        lists.create(con)
        writer.execute("create temp table candidate_scores (row_id bigint not null, score double not null)")
        counter = Progress("candidates scored", dataset.serving_count(con, cutoff), progress)
        for part in dataset.serving_features(con, cutoff):
            writer.register(
                "part_scores", pd.DataFrame({"row_id": part.index.to_numpy(), "score": scores(model, part)})
            )
            writer.execute("insert into candidate_scores select * from part_scores")
            writer.unregister("part_scores")
            scored += len(part)
            counter.update(scored)
            del part  # before the next part is read: two parts at once doubled the peak
        started = time.monotonic()
        writer.execute(_TOP_N, [cutoff.at, top_n])
        users, rows = writer.execute(f"select count(distinct user_id), count(*) from {lists.RESULT_TABLE}").fetchone()
        progress(f"  ranked: the top {top_n} of {users:,} users, {rows:,} rows, {duration(time.monotonic() - started)}")
    return {"users": users, "rows": rows, "candidates": scored}
