"""``recsys evaluate --published PATH``: judge the lists the marketplace reads, not a model.

    recsys evaluate --input EXPORT.csv --cutoff T --horizon-days D --k K --published PATH [--out DIR]

PATH is a serving database as ``recsys run`` publishes it (``recommendations``,
``fallback_recommendations``, ``user_profiles``, ``publication``) or a parquet file with
columns ``user_id, item_id, rank``. Nothing is trained: the lists are scored on the split every
other evaluation uses (``ml.evaluation.splitting``): history = accepted events strictly before T, truth =
distinct (user, item) purchased in [T, T + D), warm buyers = buyers with history, cold buyers =
buyers without. Both come from the warehouse's ``int_line_items`` (only the validating part of
the dbt project is built), so the quarantine rules are the pipeline's. The metric code is
``ml.evaluation.metrics.evaluate_lists``.

Rows of the report (``evaluation.json`` in the out dir, default ``<home>/reports/published``):

* ``served (warm buyers)``: what ``recommend(uid, K)`` returns, i.e. the personal list topped
  up with the fallback list of the user's platform (else ``all``), computed for all users at
  once in SQL (the macro per user would take minutes at 100k users);
* ``personal only (warm buyers)``: ``recommendations`` alone; a warm buyer without a list is
  a miss (``share_with_list`` says how many have one);
* ``served (cold buyers)``: the list a buyer without history is served (the fallback).

A parquet has no fallback: only its lists, as given, on the warm buyers. When the
publication's ``as_of`` is after T its lists have seen the window and the result says so.
When the serving database's user ids are pseudonyms, the export's ids are mapped with the
home's key (``ml.serving.privacy``); without it, or with another key, the evaluation is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ml.config import Settings
from ml.data.export import check_export
from ml.evaluation.metrics import HistorySummary, evaluate_lists
from ml.evaluation.splitting import cold_users, restrict_truth, warm_users
from ml.serving import privacy
from ml.warehouse import tables
from ml.warehouse.dbt import dbt_vars, run_dbt

LIST_COLUMNS = ("user_id", "item_id", "rank")
SERVING_TABLES = ("recommendations", "fallback_recommendations", "user_profiles")
USERS = "evaluated_users"  # the population, registered on the connection as a table

PERSONAL_SQL = f"""
select r.user_id, r.item_id, r.rank
from recommendations r join {USERS} u using (user_id)
where r.rank <= $k
order by r.user_id, r.rank"""

# recommend(uid, k) of ml/serving/schema.py for every user of the population at once.
SERVED_SQL = f"""
with personal as (
    select r.user_id, r.item_id, r.rank as src_rank, 0 as tier
    from recommendations r join {USERS} u using (user_id)
    where r.rank <= $k
),
profiles as (  -- a profile platform counts only when it has a fallback list
    select user_id, platform from user_profiles
    where platform in (select platform from fallback_recommendations)
),
chosen as (
    select u.user_id, coalesce(p.platform, 'all') as platform
    from {USERS} u left join profiles p using (user_id)
),
fallback as (
    select c.user_id, f.item_id, f.rank as src_rank, 1 as tier
    from chosen c join fallback_recommendations f using (platform)
    where not exists (select 1 from personal p where p.user_id = c.user_id and p.item_id = f.item_id)
)
select user_id, item_id,
       cast(row_number() over (partition by user_id order by tier, src_rank) as integer) as rank
from (select * from personal union all select * from fallback)
qualify rank <= $k
order by user_id, rank"""

PARQUET_SQL = """
create table recommendations as
select cast(user_id as varchar) as user_id, cast(item_id as varchar) as item_id,
       cast(rank as bigint) as rank
from read_parquet(?)"""


class PublishedError(ValueError):
    """The published lists cannot be read: the file is missing or has the wrong layout."""


@dataclass
class PublishedLists:
    """An open connection whose ``recommendations`` table holds the lists to judge; a serving
    database (``served``) also has the fallback lists and profiles the macro reads."""

    con: duckdb.DuckDBPyConnection
    served: bool
    publication: dict[str, Any] | None


@contextmanager
def open_published(path: Path) -> Iterator[PublishedLists]:
    """The lists at ``path`` (a ``.parquet`` file, else a serving database), read-only."""
    if not path.is_file():
        raise PublishedError(f"published lists not found: {path}")
    con = duckdb.connect()
    try:
        yield _load_parquet(con, path) if path.suffix == ".parquet" else _attach_serving(con, path)
    finally:
        con.close()


def _load_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> PublishedLists:
    """Copy the parquet's three columns into memory as ``recommendations``, ids as text."""
    try:
        described = con.execute("select * from read_parquet(?) limit 0", [str(path)]).description
    except duckdb.Error as error:
        raise PublishedError(f"{path} is not a readable parquet file: {_first_line(error)}") from None
    types = {name: str(kind) for name, kind, *_ in described}
    missing = [name for name in LIST_COLUMNS if name not in types]
    if missing:
        raise PublishedError(
            f"{path} lacks the column(s) {', '.join(missing)} "
            f"(needs {', '.join(LIST_COLUMNS)}; found: {', '.join(types)})"
        )
    # A 38-digit id does not survive a float (DuckDB writes HUGEINT to parquet as DOUBLE).
    floats = [name for name in ("user_id", "item_id") if types[name] in ("FLOAT", "DOUBLE")]
    if floats:
        raise PublishedError(f"{path}: {', '.join(floats)} is floating point; write ids as text or integers")
    try:
        con.execute(PARQUET_SQL, [str(path)])
    except duckdb.Error as error:
        raise PublishedError(f"{path}: {_first_line(error)}") from None
    return PublishedLists(con, served=False, publication=None)


def _attach_serving(con: duckdb.DuckDBPyConnection, path: Path) -> PublishedLists:
    """Attach a serving database read-only (as ``open_serving`` does) and check its tables."""
    try:
        con.execute("attach ? as published (read_only)", [str(path)])
    except duckdb.Error as error:
        raise PublishedError(
            f"{path} is neither a serving database (.duckdb) nor a parquet file (.parquet): {_first_line(error)}"
        ) from None
    con.execute("use published")
    tables = {
        row[0]
        for row in con.execute("select table_name from duckdb_tables() where database_name = 'published'").fetchall()
    }
    missing = [name for name in SERVING_TABLES if name not in tables]
    if missing:
        raise PublishedError(f"{path} is not a serving database: no table {', '.join(missing)}")
    publication = None
    if "publication" in tables:
        cur = con.execute("select * from publication")
        rows = cur.fetchall()
        publication = dict(zip([column[0] for column in cur.description], rows[0])) if rows else None
    return PublishedLists(con, served=True, publication=publication)


def _published_key(settings: Settings, lists: PublishedLists) -> bytes | None:
    """The home's pseudonym key when the lists' user ids are pseudonyms, else None."""
    key_id = (lists.publication or {}).get("pseudonym_key_id")
    try:
        return privacy.reader_key(key_id, privacy.load_key(settings.home), str(privacy.key_path(settings.home)))
    except privacy.PseudonymKeyError as error:
        raise PublishedError(str(error)) from None


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0]


def personal_lists(con: duckdb.DuckDBPyConnection, users: pd.Index, k: int) -> pd.DataFrame:
    """``user_id, item_id, rank`` of the users' own lists, ``rank <= k``, as published."""
    con.register(USERS, pd.DataFrame({"user_id": users}))
    return con.execute(PERSONAL_SQL, {"k": k}).df()


def served_lists(con: duckdb.DuckDBPyConnection, users: pd.Index, k: int) -> pd.DataFrame:
    """``user_id, item_id, rank``: what ``recommend(uid, k)`` returns for each of ``users``."""
    con.register(USERS, pd.DataFrame({"user_id": users}))
    return con.execute(SERVED_SQL, {"k": k}).df()


def window(
    settings: Settings, input_path: Path, cutoff: datetime, horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(history, truth)`` pairs with ``ml.evaluation.splitting.time_split``'s bounds, from the warehouse.

    history = distinct (user, item) of accepted events strictly before ``cutoff`` (who is warm,
    and the popularity the bias metrics use); truth = distinct (user, item) purchased in
    [cutoff, cutoff + horizon). Only the ingest models are built, with the pipeline's checks
    (seconds, not minutes).
    """
    run_dbt(settings, "build", dbt_vars(input_path), select="tag:ingest", indirect_selection="buildable")
    end = cutoff + timedelta(days=horizon_days)
    with tables.warehouse(settings.build_db) as con:
        history = con.execute(
            "select distinct user_id, item_id from int_line_items where event_at < ? order by all", [cutoff]
        ).df()
        truth = con.execute(
            "select distinct user_id, item_id from int_line_items "
            "where event_type = 'purchase' and event_at >= ? and event_at < ? order by all",
            [cutoff, end],
        ).df()
    return history, truth


def judge(
    lists: PublishedLists, history: pd.DataFrame, truth: pd.DataFrame, cutoff: datetime, k: int
) -> dict[str, Any]:
    """The metrics of the published lists per population, with notes and the leak warning."""
    warm, cold = warm_users(history, truth), cold_users(history, truth)
    warm_truth, summary = restrict_truth(truth, warm), HistorySummary.of(history)
    catalogue = summary.items
    personal = evaluate_lists(personal_lists(lists.con, warm, k), warm_truth, summary, k, catalogue, users=warm)
    personal["share_with_list"] = personal["n_users_with_list"] / len(warm) if len(warm) else float("nan")
    metrics = {"personal only (warm buyers)": personal}
    if lists.served:
        served = served_lists(lists.con, warm.append(cold), k)
        metrics = {
            "served (warm buyers)": evaluate_lists(served, warm_truth, summary, k, catalogue, users=warm),
            **metrics,
            "served (cold buyers)": evaluate_lists(
                served, restrict_truth(truth, cold), summary, k, catalogue, users=cold
            ),
        }

    notes = [
        f"warm buyers with a personal list: {personal['n_users_with_list']} of {len(warm)} "
        f"({personal['share_with_list']:.1%})"
    ]
    if not lists.served:
        notes.append("parquet lists are judged as given (no fallback top-up)")
    warnings = []
    if lists.publication:
        pub = lists.publication
        notes.append(
            f"publication: model_version {pub['model_version']}, as_of {pub['as_of']}, "
            f"generated_at {pub['generated_at']}"
        )
        if pub["as_of"] > cutoff:
            warnings.append(
                f"the publication's as_of ({pub['as_of']}) is after the cutoff ({cutoff}): "
                "its lists have seen the window, so this evaluation leaks"
            )
    return {
        "split": {
            "cutoff": str(cutoff),
            "k": k,
            "warm_users": len(warm),
            "cold_users": len(cold),
            "window_purchases": len(truth),
        },
        "metrics": metrics,
        "notes": notes,
        "warnings": warnings,
    }


def evaluate_published(
    settings: Settings, input_path: Path, published_path: Path, cutoff: str, horizon_days: int, k: int, out_dir: Path
) -> dict[str, Any]:
    """Judge the lists at ``published_path`` on the export's split; write ``evaluation.json``.

    Both inputs are checked before the warehouse is built, so a wrong path fails at once.
    """
    check_export(input_path)
    cutoff_at = pd.Timestamp(cutoff).to_pydatetime()
    with open_published(published_path) as lists:
        key = _published_key(settings, lists)
        history, truth = window(settings, input_path, cutoff_at, horizon_days)
        if key is not None:  # judge the lists under the ids they were published with
            history, truth = (
                frame.assign(user_id=privacy.pseudonyms(key, frame["user_id"])) for frame in (history, truth)
            )
        result = judge(lists, history, truth, cutoff_at, k)
        result["published"] = {
            "path": str(published_path),
            "kind": "serving database" if lists.served else "parquet",
            "publication": lists.publication,
        }
    result["dataset"] = {"input": str(input_path), "cutoff": str(cutoff_at), "horizon_days": horizon_days}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2, default=str))
    return result
