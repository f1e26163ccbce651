"""Reading the serving database: connections, the query helpers, and a reader that follows
publications.

Used by Python clients and ``ml.serving.api``. Every query is parameterised; no SQL is ever
built from caller input.

Why ``open_serving`` ATTACHes instead of ``duckdb.connect(path, read_only=True)``: the Python
client keeps a process-wide cache of open databases keyed by *path*. While any connection to
the old file is alive, ``duckdb.connect(path)`` returns that cached instance -- the replaced
file -- so a long-running process would never see a new publication. ``attach ... (read_only)``
always opens the file currently at the path.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from ml.serving.schema import (
    ALL_TABLES,
    DEFAULT_N,
    IN_LIST_BOOST,
    PRICE_CEILING_FACTOR,
    SAME_CATEGORY_MIN,
    SAME_CATEGORY_SCORE,
    SERVING_ALIAS,
    TIER_PRICE_SQL,
    TOP_CATEGORY_BOOST,
)
from ml.vocabulary import FALLBACK_PLATFORMS

log = logging.getLogger(__name__)


class ServingUnavailable(RuntimeError):
    """No serving database exists (yet) at the configured path."""


def open_serving(serving_db: Path, *, threads: int = 1) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the serving database currently at ``serving_db``.

    The file is attached read-only into an in-memory database (see the module docstring for
    why), made the default catalog, and the connection is locked down: no file access, no
    configuration changes. Cursors made from it (``con.cursor()``) must run
    ``use serving`` first; :func:`cursor` does that.
    """
    serving_db = Path(serving_db)
    if not serving_db.exists():
        raise ServingUnavailable(f"no serving database at {serving_db}")
    # ``item_id = ANY(?)`` with more than dynamic_or_filter_threshold ids (default 50) scans
    # items instead of probing its primary key: product-page lists re-ordered for a user can be
    # longer (the fallback list is top_n long), and the catalogue has millions of items.
    con = duckdb.connect(":memory:", config={"threads": threads, "dynamic_or_filter_threshold": 1000})
    try:
        con.execute(f"attach ? as {SERVING_ALIAS} (read_only)", [str(serving_db)])
        con.execute(f"use {SERVING_ALIAS}")
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new cursor on ``con`` (one per thread / request) with the serving catalog selected."""
    cur = con.cursor()
    cur.execute(f"use {SERVING_ALIAS}")
    return cur


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _check_n(n: int) -> int:
    n = int(n)
    if not 1 <= n <= 1000:
        raise ValueError("n must be between 1 and 1000")
    return n


# Fast paths: the commonest answers need one indexed lookup, while the macros' full plans
# (several branches, joins, windows) cost 3-5 ms to plan and run. Each fast path returns exactly
# what the macro would (same columns, same order; tests/test_serving.py checks the equivalence);
# recommendations_for_user falls through to the macro for a short list (the top-up).
_PERSONAL_SQL = """
select user_id, item_id, rank, score, reason, 'personal' as source, model_version, generated_at
from recommendations where user_id = ? and rank <= ? order by rank"""
_PROFILE_PLATFORM_SQL = "select platform from user_profiles where user_id = ?"
_FALLBACK_SQL = """
select cast(? as varchar) as user_id, item_id, rank, score, reason, 'fallback:' || platform as source,
       model_version, generated_at
from fallback_recommendations where platform = ? and rank <= ? order by rank"""
_BOUGHT_SQL = """
select item_id as for_item_id, similar_item_id as item_id, rank, score,
       1.0 / log2(rank + 1) as final_score, 'bought_together' as source, rank as src_rank,
       false as personalised
from similar_items where item_id = ? order by rank limit ?"""
# Personalised product page (the macro, step by step): the item's whole bought-together list
# (the macro re-orders all of it before cutting to n), the user's profile and list, and the
# candidates' category and price. ``= ANY(?)`` with a list is answered from the items primary
# key; IN (...) / a join scan items. No bought-together rows: the item's category and price
# (primary key), its category's top items (index); no category or no other top item: the
# fallback list of the user's platform.
_BOUGHT_ALL_SQL = "select similar_item_id, rank, score from similar_items where item_id = ? order by rank"
_PROFILE_SQL = (
    f"select {TIER_PRICE_SQL.format(tier='price_tier')}, top_category_id, platform from user_profiles where user_id = ?"
)
_MINE_SQL = "select item_id from recommendations where user_id = ?"
_ITEM_ATTRS_SQL = "select item_id, category_id, price_rub from items where item_id = any(?)"
_ANCHOR_SQL = "select category_id, price_rub from items where item_id = ?"
_SAME_CATEGORY_SQL = f"""
select t.item_id, t.price_rub, {SAME_CATEGORY_SCORE.format(anchor_price="cast(? as double)")} as score
from category_top_items t where t.category_id = ? and t.item_id <> ?
order by score desc, t.item_id limit greatest(?, {SAME_CATEGORY_MIN})"""
_FALLBACK_ALL_SQL = """
select item_id, rank, score from fallback_recommendations where platform = ? and item_id <> ? order by rank"""


def recommendations_for_user(
    con: duckdb.DuckDBPyConnection, user_id: str, n: int = DEFAULT_N, platform: str | None = None
) -> list[dict[str, Any]]:
    """``select * from recommend(user_id, n, plat := platform)``: the personal list (topped up
    from the fallback), or the fallback list of the request's platform, else of the user's
    profile platform, else 'all'."""
    if platform is not None and platform not in FALLBACK_PLATFORMS:
        raise ValueError(f"platform must be one of {FALLBACK_PLATFORMS}")
    n, user_id = _check_n(n), str(user_id)
    rows = _rows(con.execute(_PERSONAL_SQL, [user_id, n]))
    if len(rows) == n:  # a warm user with a full list: the macro would return exactly this
        return rows
    if not rows:
        return fallback_for_user(con, user_id, n, platform)
    return _rows(con.execute("select * from recommend(?, ?, plat := ?)", [user_id, n, platform]))


def fallback_for_user(
    con: duckdb.DuckDBPyConnection, user_id: str, n: int = DEFAULT_N, platform: str | None = None
) -> list[dict[str, Any]]:
    """The cold-start list a user without a list gets: the fallback of the request's platform,
    else of the user's profile platform, else 'all' (what ``recommend`` answers then). Also
    what a user of the control group gets in place of their own list (``ml.serving.experiment``)."""
    if platform is not None and platform not in FALLBACK_PLATFORMS:
        raise ValueError(f"platform must be one of {FALLBACK_PLATFORMS}")
    n, user_id = _check_n(n), str(user_id)
    chosen = platform
    if chosen is None:
        prof = con.execute(_PROFILE_PLATFORM_SQL, [user_id]).fetchone()
        chosen = prof[0] if prof and prof[0] in FALLBACK_PLATFORMS else "all"
    return _rows(con.execute(_FALLBACK_SQL, [user_id, chosen, n]))


def similar_items(
    con: duckdb.DuckDBPyConnection, item_id: str, user_id: str | None = None, n: int = DEFAULT_N
) -> list[dict[str, Any]]:
    """``select * from related_items(item_id, n, uid := user_id)``: items bought together
    with ``item_id``, else popular items of its category near its price, else the fallback
    list; re-ordered for ``user_id`` when known. Point lookups only: the macro's plan costs
    several times more."""
    n, item_id = _check_n(n), str(item_id)
    if user_id is None:  # anonymous: the stored order, one lookup
        rows = _rows(con.execute(_BOUGHT_SQL, [item_id, n]))
        if rows:
            return rows
        bought = []
    else:
        bought = con.execute(_BOUGHT_ALL_SQL, [item_id]).fetchall()
    user = _user(con, None if user_id is None else str(user_id))
    if bought:
        return _reordered(item_id, _with_attrs(con, bought, user), "bought_together", user, n)
    anchor = con.execute(_ANCHOR_SQL, [item_id]).fetchone()
    if anchor is not None and anchor[0] is not None:
        category, price = anchor
        same = con.execute(_SAME_CATEGORY_SQL, [price, category, item_id, n]).fetchall()
        if same:
            candidates = [
                (cand, src_rank, score, category, cand_price)
                for src_rank, (cand, cand_price, score) in enumerate(same, start=1)
            ]
            return _reordered(item_id, candidates, "same_category", user, n)
    platform = user.platform if user.platform in FALLBACK_PLATFORMS else "all"
    fallback = con.execute(_FALLBACK_ALL_SQL, [platform, item_id]).fetchall()
    return _reordered(item_id, _with_attrs(con, fallback, user), f"fallback:{platform}", user, n)


class _User(NamedTuple):
    known: bool  # has a profile or a list: the re-ordering applies
    mine: frozenset[str]  # the items of the user's list
    tier_price: float | None
    top_category: str | None
    platform: str | None


_ANONYMOUS = _User(False, frozenset(), None, None, None)


def _user(con: duckdb.DuckDBPyConnection, user_id: str | None) -> _User:
    if user_id is None:
        return _ANONYMOUS
    profile = con.execute(_PROFILE_SQL, [user_id]).fetchone()
    mine = frozenset(r[0] for r in con.execute(_MINE_SQL, [user_id]).fetchall())
    tier_price, top_category, platform = profile if profile is not None else (None, None, None)
    return _User(profile is not None or bool(mine), mine, tier_price, top_category, platform)


def _with_attrs(con: duckdb.DuckDBPyConnection, rows: list[tuple], user: _User) -> list[tuple]:
    """(item, src_rank, score) -> (item, src_rank, score, category, price); the attributes are
    only looked up when the user is known (the factors need them)."""
    attrs: dict[str, tuple] = {}
    if user.known and rows:
        attrs = {r[0]: r[1:] for r in con.execute(_ITEM_ATTRS_SQL, [[r[0] for r in rows]]).fetchall()}
    return [(cand, src_rank, score, *attrs.get(cand, (None, None))) for cand, src_rank, score in rows]


def _final_score(
    src_rank: int,
    in_list: bool,
    category: str | None,
    price: float | None,
    tier_price: float | None,
    top_category: str | None,
) -> float:
    """``final_score`` of the related_items macro (no factor applies without a profile or a
    list); the factors are applied in the macro's order, so the floats are identical."""
    score = 1.0 / math.log2(src_rank + 1)
    if in_list:
        score *= 1 + IN_LIST_BOOST
    if category is not None and category == top_category:
        score *= 1 + TOP_CATEGORY_BOOST
    if price is not None and tier_price is not None and price > PRICE_CEILING_FACTOR * tier_price:
        score *= PRICE_CEILING_FACTOR * tier_price / price
    return score


def _reordered(item_id: str, candidates: list[tuple], source: str, user: _User, n: int) -> list[dict[str, Any]]:
    """The macro's ``scored`` and final order for ``candidates`` = (item, src_rank, score,
    category, price), cut to ``n``."""
    scored = sorted(
        (
            (
                _final_score(src_rank, cand in user.mine, category, price, user.tier_price, user.top_category),
                src_rank,
                cand,
                score,
            )
            for cand, src_rank, score, category, price in candidates
        ),
        key=lambda r: (-r[0], r[1], r[2]),
    )  # final_score DESC, src_rank, item_id
    return [
        {
            "for_item_id": item_id,
            "item_id": cand,
            "rank": rank,
            "score": score,
            "final_score": final,
            "source": source,
            "src_rank": src_rank,
            "personalised": user.known,
        }
        for rank, (final, src_rank, cand, score) in enumerate(scored[:n], start=1)
    ]


def pseudonym_key_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id of the key the file's user ids were made with; None: they are the raw ids (also
    in files published before pseudonyms existed)."""
    return _publication(con).get("pseudonym_key_id")


def _publication(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The publication row (``select *``: older files lack the newer columns); empty without one."""
    rows = _rows(con.execute("select * from publication"))
    return rows[0] if rows else {}


def publication_info(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The publication row plus row counts of every serving table."""
    info = _rows(con.execute("select * from publication"))
    out: dict[str, Any] = dict(info[0]) if info else {}
    out["row_counts"] = {
        name: con.execute(f"select count(*) from {name}").fetchone()[0]  # fixed names only
        for name in ALL_TABLES
    }
    return out


def _warm_up(con: duckdb.DuckDBPyConnection) -> None:
    """Run every read path once on a new connection. The first queries on a freshly attached
    file load the catalog, the macros, table metadata and index roots (measured at 100k users:
    ~12 ms to attach, 30-45 ms for this first run, 1-3 ms a query afterwards); no request
    should pay that."""
    user = con.execute("select user_id from recommendations limit 1").fetchone()
    item = con.execute("select item_id from similar_items limit 1").fetchone()
    uid, iid = (user[0] if user else "0"), (item[0] if item else "0")
    cat = con.execute("select category_id from category_top_items limit 1").fetchone()
    recommendations_for_user(con, uid)
    recommendations_for_user(con, "0")  # fallback lookups
    similar_items(con, iid)
    similar_items(con, iid, user_id=uid)
    con.execute(_SAME_CATEGORY_SQL, [0.0, cat[0] if cat else "0", "0", 20]).fetchall()  # new items
    similar_items(con, "0", user_id=uid)  # unknown item: the fallback list


class Session(NamedTuple):
    """What a request needs of the file it is answered from, taken together: the file may be
    replaced between two separate calls."""

    cursor: duckdb.DuckDBPyConnection  # a fresh cursor; close it after the request
    key_id: str | None  # the file's pseudonym_key_id
    model_version: str | None  # the publication's


class ServingReader:
    """Keeps a read-only connection to the current serving file and reopens it when the file
    is replaced (new inode / mtime / size), checked at most every ``check_interval`` seconds.

    A replaced file is opened and warmed up (:func:`_warm_up`) by a background thread while
    requests keep using the previous connection, so no request waits for the attach. Old
    connections are retired, not closed at once: requests still running on them finish, and
    they are closed ``grace`` seconds later (which releases the replaced file's inode).
    """

    def __init__(self, serving_db: Path, *, check_interval: float = 0.0, grace: float = 30.0, threads: int = 1):
        self.path = Path(serving_db)
        self.check_interval = check_interval
        self.grace = grace
        self.threads = threads
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._sig: tuple | None = None
        self._key_id: str | None = None  # pseudonym_key_id of the current file
        self._model_version: str | None = None  # its publication's
        self._checked = 0.0
        self._retired: list[tuple[float, duckdb.DuckDBPyConnection]] = []
        self._loading: tuple | None = None  # signature of the file being opened and warmed
        self._loader: threading.Thread | None = None
        self.opened_at: datetime | None = None
        self.reloads = 0

    def _signature(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        """Under the lock: at most every ``check_interval``, look for a new file; the first one
        is opened here (nothing to serve meanwhile), later ones in the background."""
        now = time.monotonic()
        if self._con is not None and now - self._checked < self.check_interval:
            return
        self._checked = now
        if self._retired:
            self._reap(now)
        sig = self._signature()
        if sig is None or sig in (self._sig, self._loading):
            return
        if self._con is None:
            self._install(open_serving(self.path, threads=self.threads), sig)
            return
        self._loading = sig
        self._loader = threading.Thread(target=self._load, args=(sig,), name="serving-reload", daemon=True)
        self._loader.start()

    def _load(self, sig: tuple) -> None:
        """Open and warm up the new file, then swap it in; on failure keep the previous one
        (the next check tries again)."""
        con: duckdb.DuckDBPyConnection | None = None
        try:
            con = open_serving(self.path, threads=self.threads)
            _warm_up(con)
        except Exception:  # whatever it is, this thread must reset _loading below
            log.exception("could not open new serving file; keeping the previous one")
            if con is not None:
                con.close()
            con = None
        with self._lock:
            self._loading = None
            if con is not None:
                self._install(con, sig)

    def _install(self, con: duckdb.DuckDBPyConnection, sig: tuple) -> None:
        if self._con is not None:
            self._retired.append((time.monotonic(), self._con))
            self.reloads += 1
        self._con, self._sig = con, sig
        publication = _publication(con)
        self._key_id, self._model_version = publication.get("pseudonym_key_id"), publication.get("model_version")
        self.opened_at = datetime.now(UTC)

    def _reap(self, now: float) -> None:
        """Close connections retired more than ``grace`` seconds ago (frees the old inode)."""
        keep = []
        for retired_at, old in self._retired:
            if now - retired_at > self.grace:
                with contextlib.suppress(duckdb.Error):
                    old.close()
            else:
                keep.append((retired_at, old))
        self._retired = keep

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor on the current file; use one per request, close it afterwards."""
        return self.session()[0]

    def session(self) -> Session:
        """:meth:`cursor` with that file's pseudonym key id and model version."""
        with self._lock:
            self._refresh()
            if self._con is None:
                raise ServingUnavailable(f"no serving database at {self.path}")
            return Session(cursor(self._con), self._key_id, self._model_version)

    def close(self) -> None:
        if self._loader is not None:
            self._loader.join()
        with self._lock:
            for _, old in self._retired:
                old.close()
            self._retired = []
            if self._con is not None:
                self._con.close()
            self._con, self._sig = None, None
