"""Publishing the serving database, and reading it.

Write side: :func:`publish` copies the build database's ``pub_*`` tables into a *new* DuckDB
file beside the serving file, validates it, adds the marketplace's table macros, and then
``os.replace``-s it over the old file. Readers that hold the old file keep reading it (their
file descriptor still points at the old inode), new readers open the new one, and a failure at
any point leaves the old file untouched. The publisher never opens the serving file itself, so
it never competes with readers for DuckDB's file lock.

Read side: :func:`open_serving` and the query helpers used by Python clients and ``ml.api``.
Every query is parameterised; no SQL is ever built from caller input.

Why ``open_serving`` ATTACHes instead of ``duckdb.connect(path, read_only=True)``: the Python
client keeps a process-wide cache of open databases keyed by *path*. While any connection to
the old file is alive, ``duckdb.connect(path)`` returns that cached instance -- the replaced
file -- so a long-running process would never see a new publication. ``ATTACH ... (READ_ONLY)``
always opens the file currently at the path.
"""
from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import duckdb

from ml import privacy
from ml.contracts import Column, contract

log = logging.getLogger(__name__)

PLATFORMS = ("Site", "Android", "iOS")
FALLBACK_PLATFORMS = (*PLATFORMS, "all")
SERVING_ALIAS = "serving"

# Re-ordering of the product-page list for a known user (see docs/serving.md).
IN_LIST_BOOST = 0.5          # +50 % when the item is also in the user's personal list
TOP_CATEGORY_BOOST = 0.25    # +25 % when the item is in the user's top category
PRICE_CEILING_FACTOR = 3.0   # items above 3 x the user's tier price are penalised ...
# ... by the factor (ceiling / price): an item at 2 x the ceiling keeps half its score.
# user_profiles.price_tier is floor(log2(the user's median price in RUB)), so the median lies in
# [2^tier, 2^(tier + 1)) RUB (docs/privacy.md: the exact median is not published); the tier
# price is that band's geometric middle.
TIER_PRICE_SQL = "pow(2.0, {tier} + 0.5)"

# Product page of a new item (no bought-together rows): the candidates are its category's
# CATEGORY_TOP_K most popular items (table category_top_items, built on publish), re-ranked by
# this score (popular and near the new item's price); the best max(n, SAME_CATEGORY_MIN) count.
CATEGORY_TOP_K = 200
SAME_CATEGORY_MIN = 50
SAME_CATEGORY_SCORE = ("t.popularity / (1 + abs(ln((coalesce(t.price_rub, 0) + 1) "
                       "/ (coalesce({anchor_price}, 0) + 1))))")

# --------------------------------------------------------------------------------------------
# Schema of the serving database (docs/architecture.md). Order of the dict = creation order.
# --------------------------------------------------------------------------------------------
# Every pub_* table carries the version of the run whose build made it (dbt's build_version());
# items, similar_items and user_profiles keep it in the build only.
STAMP = "model_version"
UNSTAMPED = ("similar_items", "items", "user_profiles")
# Serving only: the PRIMARY KEY is the ART index of these point lookups (in the build,
# uniqueness is a dbt test).
PRIMARY_KEYS = {"items": "item_id", "user_profiles": "user_id"}
# The dbt constraint types the pub_* contracts use, in DuckDB's DDL.
_CONSTRAINT_SQL = {"not_null": "NOT NULL", "check": "CHECK ({expression})"}


def _serving_columns(name: str) -> list[Column]:
    """The columns of serving table ``name``: its pub_* model's contract, without the stamp
    where the serving table leaves it out."""
    return [column for column in contract(f"pub_{name}").columns
            if not (name in UNSTAMPED and column.name == STAMP)]


def _table_ddl(name: str) -> str:
    """The body of ``CREATE TABLE name (...)``: the pub_* model's contract (types, NOT NULL,
    CHECK), so the file holds exactly what dbt built and checked; plus the primary key."""
    parts = []
    for column in _serving_columns(name):
        words = [column.name, column.data_type.upper()]
        words += [_CONSTRAINT_SQL[c.type].format(expression=c.expression) for c in column.constraints]
        if PRIMARY_KEYS.get(name) == column.name:
            words.append("PRIMARY KEY")
        parts.append(" ".join(words))
    parts += [_CONSTRAINT_SQL[c.type].format(expression=c.expression)
              for c in contract(f"pub_{name}").constraints]
    return ",\n".join(parts)


TABLES = {name: _table_ddl(name) for name in
          ("recommendations", "fallback_recommendations", "similar_items", "items", "user_profiles")}
COLUMNS = {name: [column.name for column in _serving_columns(name)] for name in TABLES}

# Sort order of the copy: point lookups prune row groups by zonemap, and the ART indexes
# below make them independent of the id's shape (measured: benchmarks/bench_serving.py).
SORT_KEYS = {
    "recommendations": "user_id, rank",
    "fallback_recommendations": "platform, rank",
    "similar_items": "item_id, rank",
    "items": "item_id",
    "user_profiles": "user_id",
}
# Derived from the copied items on publish (no build table of its own): the new-item product
# page looks up its category here (indexed) instead of scanning the category in items.
CATEGORY_TOP_ITEMS_DDL = """
CREATE TABLE category_top_items (
    category_id VARCHAR NOT NULL,
    item_id     VARCHAR NOT NULL,
    price_rub   DOUBLE,
    popularity  DOUBLE  NOT NULL
)"""
CATEGORY_TOP_ITEMS_SQL = f"""
INSERT INTO category_top_items
SELECT category_id, item_id, price_rub, popularity FROM items
WHERE category_id IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY category_id ORDER BY popularity DESC, item_id) <= {CATEGORY_TOP_K}
ORDER BY category_id, popularity DESC, item_id"""
INDEXES = {
    "recommendations": "user_id",
    "similar_items": "item_id",
    "category_top_items": "category_id",
    # items and user_profiles: their PRIMARY KEY already is an ART index
}
PUBLICATION_DDL = """
CREATE TABLE publication (
    model_version VARCHAR   NOT NULL,
    generated_at  TIMESTAMP NOT NULL,
    as_of         TIMESTAMP NOT NULL,
    n_users       BIGINT    NOT NULL,
    n_rows        BIGINT    NOT NULL,
    list_source   VARCHAR   NOT NULL,
    pseudonymized BOOLEAN   NOT NULL,
    pseudonym_key_id VARCHAR
)"""

ALL_TABLES = (*TABLES, "category_top_items", "publication")

# --------------------------------------------------------------------------------------------
# The marketplace's queries, stored in the serving database as table macros.
# --------------------------------------------------------------------------------------------
_ANCHORED_SCORE = SAME_CATEGORY_SCORE.format(anchor_price="a.price_rub")
MACROS = {
    "recommend": """
CREATE MACRO recommend(uid, n := 20, plat := NULL) AS TABLE
WITH personal AS (
    SELECT r.item_id, r.rank AS src_rank, r.score, r.reason, r.model_version, r.generated_at,
           'personal' AS source, 0 AS tier
    FROM recommendations r
    WHERE r.user_id = CAST(uid AS VARCHAR) AND r.rank <= n
),
chosen AS (
    SELECT coalesce(
        (SELECT CAST(plat AS VARCHAR) WHERE CAST(plat AS VARCHAR) IN (SELECT platform FROM fallback_recommendations)),
        (SELECT p.platform FROM user_profiles p
          WHERE p.user_id = CAST(uid AS VARCHAR)
            AND p.platform IN (SELECT platform FROM fallback_recommendations)),
        'all') AS platform
),
fallback AS (
    SELECT f.item_id, f.rank AS src_rank, f.score, f.reason, f.model_version, f.generated_at,
           'fallback:' || f.platform AS source, 1 AS tier
    FROM fallback_recommendations f JOIN chosen c ON f.platform = c.platform
    WHERE f.item_id NOT IN (SELECT item_id FROM personal)
)
SELECT CAST(uid AS VARCHAR) AS user_id, item_id,
       CAST(row_number() OVER (ORDER BY tier, src_rank) AS INTEGER) AS rank,
       score, reason, source, model_version, generated_at
FROM (SELECT * FROM personal UNION ALL SELECT * FROM fallback ORDER BY tier, src_rank LIMIT n)
ORDER BY rank
""",
    "related_items": f"""
CREATE MACRO related_items(item, n := 20, uid := NULL) AS TABLE
WITH anchor AS (
    SELECT i.item_id, i.category_id, i.price_rub FROM items i WHERE i.item_id = CAST(item AS VARCHAR)
),
prof AS (
    SELECT p.platform, {TIER_PRICE_SQL.format(tier="p.price_tier")} AS tier_price, p.top_category_id
    FROM user_profiles p WHERE p.user_id = CAST(uid AS VARCHAR)
),
mine AS (
    SELECT r.item_id FROM recommendations r WHERE r.user_id = CAST(uid AS VARCHAR)
),
bought AS (
    SELECT s.similar_item_id AS item_id, s.rank AS src_rank, s.score, 'bought_together' AS source
    FROM similar_items s WHERE s.item_id = CAST(item AS VARCHAR)
),
same_category AS (
    SELECT t.item_id,
           CAST(row_number() OVER (ORDER BY {_ANCHORED_SCORE} DESC, t.item_id) AS INTEGER) AS src_rank,
           {_ANCHORED_SCORE} AS score,
           'same_category' AS source
    FROM category_top_items t JOIN anchor a ON t.category_id = a.category_id
    WHERE t.item_id <> a.item_id AND NOT EXISTS (SELECT 1 FROM bought)
    QUALIFY src_rank <= greatest(n, {SAME_CATEGORY_MIN})
),
fallback AS (
    SELECT f.item_id, f.rank AS src_rank, f.score, 'fallback:' || f.platform AS source
    FROM fallback_recommendations f
    WHERE f.platform = coalesce((SELECT platform FROM prof
                                  WHERE platform IN (SELECT platform FROM fallback_recommendations)), 'all')
      AND f.item_id <> CAST(item AS VARCHAR)
      AND NOT EXISTS (SELECT 1 FROM bought) AND NOT EXISTS (SELECT 1 FROM same_category)
),
candidates AS (
    SELECT * FROM bought UNION ALL SELECT * FROM same_category UNION ALL SELECT * FROM fallback
),
known AS (
    SELECT (EXISTS (SELECT 1 FROM prof) OR EXISTS (SELECT 1 FROM mine)) AS is_known
),
scored AS (
    SELECT c.item_id, c.src_rank, c.score, c.source,
           CASE WHEN k.is_known THEN
               (1.0 / log2(c.src_rank + 1))
               * (CASE WHEN c.item_id IN (SELECT item_id FROM mine) THEN {1 + IN_LIST_BOOST} ELSE 1.0 END)
               * (CASE WHEN it.category_id IS NOT NULL
                        AND it.category_id = (SELECT top_category_id FROM prof)
                       THEN {1 + TOP_CATEGORY_BOOST} ELSE 1.0 END)
               * (CASE WHEN it.price_rub > {PRICE_CEILING_FACTOR} * (SELECT tier_price FROM prof)
                       THEN {PRICE_CEILING_FACTOR} * (SELECT tier_price FROM prof) / it.price_rub
                       ELSE 1.0 END)
           ELSE 1.0 / log2(c.src_rank + 1) END AS final_score,
           k.is_known AS personalised
    FROM candidates c CROSS JOIN known k LEFT JOIN items it ON it.item_id = c.item_id
)
SELECT CAST(item AS VARCHAR) AS for_item_id, item_id,
       CAST(row_number() OVER (ORDER BY final_score DESC, src_rank, item_id) AS INTEGER) AS rank,
       score, final_score, source, src_rank, personalised
FROM scored
ORDER BY final_score DESC, src_rank, item_id
LIMIT n
""",
    "pseudonym": privacy.PSEUDONYM_MACRO,
}


class PublishError(RuntimeError):
    """The build's outputs cannot be published; the old serving file was left in place."""


class ServingUnavailable(RuntimeError):
    """No serving database exists (yet) at the configured path."""


@dataclass(frozen=True)
class PublishResult:
    serving_db: Path
    model_version: str
    generated_at: datetime
    as_of: datetime
    list_source: str
    n_users: int
    n_rows: int
    row_counts: dict[str, int]
    bytes: int
    seconds: float
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------
# Write side
# --------------------------------------------------------------------------------------------
def _naive_utc(ts: datetime) -> datetime:
    if ts.tzinfo is not None:
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return ts


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _publish_lock(serving_db: Path, wait: bool = True) -> Iterator[bool]:
    """Serialise publishers of the same serving file (readers never take this lock). Yields
    whether it is held: without ``wait``, False when another publisher holds it."""
    lock_path = serving_db.parent / f".{serving_db.name}.publish.lock"
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _private_dir(serving_db: Path) -> Path:
    """Where the new file is built: a directory only the owner may enter, so the temp file, its
    WAL and DuckDB's spill files (created with the process umask) are never open to others."""
    private = serving_db.parent / f".{serving_db.stem}.publishing"
    private.mkdir(mode=0o700, exist_ok=True)
    os.chmod(private, 0o700)
    return private


def _temp_path(serving_db: Path) -> Path:
    """Where a publication builds its new file (hidden, private, unique to this publication)."""
    return _private_dir(serving_db) / f".{serving_db.stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp.duckdb"


def _temp_glob(serving_db: Path) -> str:
    """Every :func:`_temp_path`, with its WAL and spill directory; never the serving file."""
    return f".{serving_db.stem}.*.tmp.duckdb*"


def remove_abandoned_temp_files(serving_db: Path) -> list[Path]:
    """Remove the temp files of publications killed half-way, and return them.

    A publisher holds the publish lock from creating its temp file until it is renamed or
    removed, so while the lock is free every temp file is abandoned. When another publisher
    holds it, nothing is touched.
    """
    serving_db = Path(serving_db).resolve()
    if not serving_db.parent.is_dir():
        return []
    with _publish_lock(serving_db, wait=False) as held:
        if not held:
            return []
        abandoned = sorted(_private_dir(serving_db).glob(_temp_glob(serving_db)))
        for path in abandoned:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return abandoned


def _register_pseudonyms(con: duckdb.DuckDBPyConnection, key: bytes,
                         found: dict[str, tuple[str, list[str]]]) -> None:
    """``pseudonyms (user_id, pseudonym)`` for every user of the build, made by the API's own
    function, as a TEMP table: it lives in this connection's memory, never in the file."""
    users = [row[0] for row in con.execute(" UNION ".join(
        f"SELECT user_id FROM {found[name][0]}" for name in TABLES if "user_id" in COLUMNS[name])).fetchall()
        if row[0] is not None]
    con.execute("CREATE TEMP TABLE pseudonyms AS SELECT unnest($1::VARCHAR[]) AS user_id, "
                "unnest($2::VARCHAR[]) AS pseudonym", [users, privacy.pseudonyms(key, users)])


def _find_build_tables(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, list[str]]]:
    """``pub_<table>`` -> (qualified name in the attached build db, its columns)."""
    rows = con.execute(
        "SELECT schema_name, table_name, list(column_name ORDER BY column_index) "
        "FROM duckdb_columns() WHERE database_name = 'build' AND starts_with(table_name, 'pub_') "
        "GROUP BY ALL").fetchall()
    found: dict[str, tuple[str, list[str]]] = {}
    for schema, table, cols in sorted(rows, key=lambda r: (r[0] != "main", r[0])):
        name = table[len("pub_"):]
        if name in TABLES and name not in found:
            found[name] = (f'build."{schema}"."{table}"', list(cols))
    return found


def _other_builds(con: duckdb.DuckDBPyConnection, found: dict[str, tuple[str, list[str]]],
                  model_version: str) -> list[str]:
    """The pub_* tables holding rows stamped by another build than ``model_version``'s: another
    run rebuilt part of the warehouse under this one (a mixed file must never be published)."""
    problems = []
    for name in TABLES:
        stamps = con.execute(f"SELECT DISTINCT {STAMP} FROM {found[name][0]} ORDER BY 1").fetchall()
        others = [version for (version,) in stamps if version != model_version]
        if others:
            problems.append(f"pub_{name} comes from build(s) {', '.join(map(str, others))}")
    return problems


def _validate(con: duckdb.DuckDBPyConnection, require_recommendations: bool) -> tuple[list[str], list[str]]:
    """Return (errors, warnings) about the freshly copied tables."""
    errors: list[str] = []
    warnings: list[str] = []

    def count(sql: str) -> int:
        return con.execute(sql).fetchone()[0]

    lists = {  # table: (list key, position, member)
        "recommendations": ("user_id", "rank", "item_id"),
        "fallback_recommendations": ("platform", "rank", "item_id"),
        "similar_items": ("item_id", "rank", "similar_item_id"),
    }
    for table, (key, pos, member) in lists.items():
        dup = count(f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {key}, {pos} HAVING count(*) > 1)")
        if dup:
            errors.append(f"{table}: {dup} duplicate ({key}, {pos}) pairs")
        gaps = count(f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {key} "
                     f"HAVING min({pos}) <> 1 OR max({pos}) <> count(*))")
        if gaps:
            errors.append(f"{table}: {gaps} lists whose ranks are not 1..n")
        dup_items = count(f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {key}, {member} "
                          f"HAVING count(*) > 1)")
        if dup_items:
            errors.append(f"{table}: {dup_items} lists repeat an item")
    for table in ("recommendations", "fallback_recommendations", "similar_items"):
        bad = count(f"SELECT count(*) FROM {table} WHERE NOT isfinite(score)")
        if bad:
            errors.append(f"{table}: {bad} rows with a non-finite score")

    n_recs = count("SELECT count(*) FROM recommendations")
    if n_recs == 0 and require_recommendations:
        errors.append("recommendations is empty (pass require_recommendations=False if the "
                      "build really has no warm users)")
    present = {r[0] for r in con.execute("SELECT DISTINCT platform FROM fallback_recommendations").fetchall()}
    missing = [p for p in FALLBACK_PLATFORMS if p not in present]
    if missing:
        errors.append(f"fallback_recommendations: no list for platform(s) {', '.join(missing)}")

    orphans = count("SELECT count(DISTINCT r.item_id) FROM recommendations r "
                    "ANTI JOIN items i ON i.item_id = r.item_id")
    if orphans:
        warnings.append(f"{orphans} recommended items are missing from items")
    no_profile = count("SELECT count(DISTINCT r.user_id) FROM recommendations r "
                       "ANTI JOIN user_profiles p ON p.user_id = r.user_id")
    if no_profile:
        warnings.append(f"{no_profile} users with a list have no user_profiles row")
    return errors, warnings


def publish(build_db: Path, serving_db: Path, *, model_version: str, as_of: datetime,
            list_source: str = "ranker", require_recommendations: bool = True,
            threads: int | None = None, pseudonym_key: bytes | None = None,
            file_mode: int | None = None) -> PublishResult:
    """Build a new serving file from ``build_db``'s ``pub_*`` tables and swap it in atomically.

    ``list_source`` says what made the personal lists (``ranker``, ``baseline:<name>`` when a
    simple list won the gate, ``cold_start`` when there are none); readers find it in
    ``publication``.

    The build database is attached READ_ONLY: the caller must not hold a read-write
    connection to it in this same process (DuckDB refuses to attach a file twice).
    Raises :class:`PublishError` (old serving file untouched, temp file removed) when a table
    is missing, a column is missing (the ``model_version`` stamp included), a table holds rows
    of another build than ``model_version``'s, a constraint fails or a validation rule is broken.
    ``threads`` caps DuckDB's threads for the copy (leave CPU to readers on the same host).

    Privacy (docs/privacy.md): the file is built in a directory only the owner can enter and
    gets ``file_mode`` (default :func:`ml.privacy.serving_file_mode`, 0600) before it is swapped
    in, so no other user can open it, its WAL or its temp files at any point. With
    ``pseudonym_key`` every user id is written as its pseudonym (never the raw id, not even in
    free pages), and the publication records the key's id.
    """
    t0 = time.perf_counter()
    build_db, serving_db = Path(build_db).resolve(), Path(serving_db).resolve()
    if not build_db.exists():
        raise PublishError(f"build database {build_db} does not exist")
    serving_db.parent.mkdir(parents=True, exist_ok=True)
    as_of = _naive_utc(as_of)
    file_mode = privacy.serving_file_mode() if file_mode is None else file_mode

    with _publish_lock(serving_db):
        tmp = _temp_path(serving_db)
        con = None
        try:
            con = duckdb.connect(str(tmp))
            con.execute("SET enable_progress_bar = false")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            try:
                con.execute("ATTACH ? AS build (READ_ONLY)", [str(build_db)])
            except duckdb.Error as exc:
                raise PublishError(
                    f"cannot attach build database {build_db} read-only ({exc}); close any "
                    "read-write connection to it in this process before publishing") from exc
            found = _find_build_tables(con)
            problems = []
            for name, cols in COLUMNS.items():
                if name not in found:
                    problems.append(f"table pub_{name} is missing")
                    continue
                required = dict.fromkeys([*cols, STAMP])  # the stamp, also where the serving table drops it
                absent = [c for c in required if c not in found[name][1]]
                if absent:
                    problems.append(f"pub_{name} lacks column(s) {', '.join(absent)}")
            if problems:
                raise PublishError("refusing to publish: " + "; ".join(problems))
            mixed = _other_builds(con, found, model_version)
            if mixed:
                raise PublishError(f"refusing to publish a mixed build: publishing {model_version}, but "
                                   + "; ".join(mixed) + " (did another run rebuild the warehouse meanwhile?)")
            if pseudonym_key is not None:
                _register_pseudonyms(con, pseudonym_key, found)

            for name, ddl in TABLES.items():
                con.execute(f"CREATE TABLE {name} ({ddl})")
                cols = ", ".join(COLUMNS[name])
                source = found[name][0]
                if pseudonym_key is not None and "user_id" in COLUMNS[name]:
                    source = (f"(SELECT b.* REPLACE (p.pseudonym AS user_id) FROM {source} b "
                              "LEFT JOIN pseudonyms p ON p.user_id = b.user_id)")
                try:
                    con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {source} "
                                f"ORDER BY {SORT_KEYS[name]}")
                except duckdb.Error as exc:
                    raise PublishError(f"refusing to publish: copying pub_{name} failed: {exc}") from exc
            con.execute("DETACH build")

            errors, warnings = _validate(con, require_recommendations)
            if errors:
                raise PublishError("refusing to publish: " + "; ".join(errors))

            con.execute(CATEGORY_TOP_ITEMS_DDL)
            con.execute(CATEGORY_TOP_ITEMS_SQL)

            for table, col in INDEXES.items():
                con.execute(f"CREATE INDEX {table}_{col}_idx ON {table} ({col})")
            for sql in MACROS.values():
                con.execute(sql)

            n_users, n_rows, gen = con.execute(
                "SELECT count(DISTINCT user_id), count(*), max(generated_at) FROM recommendations").fetchone()
            gen_fb = con.execute("SELECT max(generated_at) FROM fallback_recommendations").fetchone()[0]
            generated_at = max([g for g in (gen, gen_fb) if g is not None],
                               default=_naive_utc(datetime.now(timezone.utc)))
            con.execute(PUBLICATION_DDL)
            key_id = None if pseudonym_key is None else privacy.key_id(pseudonym_key)
            con.execute("INSERT INTO publication VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [model_version, generated_at, as_of, n_users, n_rows, list_source,
                         key_id is not None, key_id])
            row_counts = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                          for name in ALL_TABLES}
            con.execute("CHECKPOINT")
            con.close()
            con = None

            wal = Path(str(tmp) + ".wal")
            if wal.exists():
                raise PublishError(f"temp database left a WAL ({wal}) after CHECKPOINT; not swapping")
            _fsync_path(tmp)
            stale_wal = Path(str(serving_db) + ".wal")
            if stale_wal.exists():  # never let an old WAL be replayed onto the new file
                log.warning("removing stale %s (the serving db must only be opened read-only)", stale_wal)
                stale_wal.unlink()
            size = tmp.stat().st_size
            os.chmod(tmp, file_mode)
            os.replace(tmp, serving_db)
            _fsync_path(serving_db.parent, directory=True)
        except BaseException:
            if con is not None:
                try:
                    con.close()
                except duckdb.Error:
                    pass
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                leftover.unlink(missing_ok=True)
            raise

    result = PublishResult(serving_db=serving_db, model_version=model_version,
                           generated_at=generated_at, as_of=as_of, list_source=list_source, n_users=int(n_users),
                           n_rows=int(n_rows), row_counts=row_counts, bytes=size,
                           seconds=time.perf_counter() - t0, warnings=tuple(warnings))
    for w in warnings:
        log.warning("publish: %s", w)
    return result


# --------------------------------------------------------------------------------------------
# Read side
# --------------------------------------------------------------------------------------------
def open_serving(serving_db: Path, *, threads: int = 1) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the serving database currently at ``serving_db``.

    The file is ATTACHed READ_ONLY into an in-memory database (see the module docstring for
    why), made the default catalog, and the connection is locked down: no file access, no
    configuration changes. Cursors made from it (``con.cursor()``) must run
    ``USE serving`` first; :func:`cursor` does that.
    """
    serving_db = Path(serving_db)
    if not serving_db.exists():
        raise ServingUnavailable(f"no serving database at {serving_db}")
    # ``item_id = ANY(?)`` with more than dynamic_or_filter_threshold ids (default 50) scans
    # items instead of probing its primary key: product-page lists re-ordered for a user can be
    # longer (the fallback list is top_n long), and the catalogue has millions of items.
    con = duckdb.connect(":memory:", config={"threads": threads, "dynamic_or_filter_threshold": 1000})
    try:
        con.execute(f"ATTACH ? AS {SERVING_ALIAS} (READ_ONLY)", [str(serving_db)])
        con.execute(f"USE {SERVING_ALIAS}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new cursor on ``con`` (one per thread / request) with the serving catalog selected."""
    cur = con.cursor()
    cur.execute(f"USE {SERVING_ALIAS}")
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
SELECT user_id, item_id, rank, score, reason, 'personal' AS source, model_version, generated_at
FROM recommendations WHERE user_id = ? AND rank <= ? ORDER BY rank"""
_PROFILE_PLATFORM_SQL = "SELECT platform FROM user_profiles WHERE user_id = ?"
_FALLBACK_SQL = """
SELECT CAST(? AS VARCHAR) AS user_id, item_id, rank, score, reason, 'fallback:' || platform AS source,
       model_version, generated_at
FROM fallback_recommendations WHERE platform = ? AND rank <= ? ORDER BY rank"""
_BOUGHT_SQL = """
SELECT item_id AS for_item_id, similar_item_id AS item_id, rank, score,
       1.0 / log2(rank + 1) AS final_score, 'bought_together' AS source, rank AS src_rank,
       false AS personalised
FROM similar_items WHERE item_id = ? ORDER BY rank LIMIT ?"""
# Personalised product page (the macro, step by step): the item's whole bought-together list
# (the macro re-orders all of it before cutting to n), the user's profile and list, and the
# candidates' category and price. ``= ANY(?)`` with a list is answered from the items primary
# key; IN (...) / a join scan items. No bought-together rows: the item's category and price
# (primary key), its category's top items (index); no category or no other top item: the
# fallback list of the user's platform.
_BOUGHT_ALL_SQL = "SELECT similar_item_id, rank, score FROM similar_items WHERE item_id = ? ORDER BY rank"
_PROFILE_SQL = (f"SELECT {TIER_PRICE_SQL.format(tier='price_tier')}, top_category_id, platform "
                "FROM user_profiles WHERE user_id = ?")
_MINE_SQL = "SELECT item_id FROM recommendations WHERE user_id = ?"
_ITEM_ATTRS_SQL = "SELECT item_id, category_id, price_rub FROM items WHERE item_id = ANY(?)"
_ANCHOR_SQL = "SELECT category_id, price_rub FROM items WHERE item_id = ?"
_SAME_CATEGORY_SQL = f"""
SELECT t.item_id, t.price_rub, {SAME_CATEGORY_SCORE.format(anchor_price="CAST(? AS DOUBLE)")} AS score
FROM category_top_items t WHERE t.category_id = ? AND t.item_id <> ?
ORDER BY score DESC, t.item_id LIMIT greatest(?, {SAME_CATEGORY_MIN})"""
_FALLBACK_ALL_SQL = """
SELECT item_id, rank, score FROM fallback_recommendations WHERE platform = ? AND item_id <> ? ORDER BY rank"""


def recommendations_for_user(con: duckdb.DuckDBPyConnection, user_id: str, n: int = 20,
                             platform: str | None = None) -> list[dict[str, Any]]:
    """``SELECT * FROM recommend(user_id, n, plat := platform)``: the personal list (topped up
    from the fallback), or the fallback list of the request's platform, else of the user's
    profile platform, else 'all'."""
    if platform is not None and platform not in FALLBACK_PLATFORMS:
        raise ValueError(f"platform must be one of {FALLBACK_PLATFORMS}")
    n, user_id = _check_n(n), str(user_id)
    rows = _rows(con.execute(_PERSONAL_SQL, [user_id, n]))
    if len(rows) == n:  # a warm user with a full list: the macro would return exactly this
        return rows
    if not rows:  # no list: the fallback of the request's, else the profile's platform, else 'all'
        chosen = platform
        if chosen is None:
            prof = con.execute(_PROFILE_PLATFORM_SQL, [user_id]).fetchone()
            chosen = prof[0] if prof and prof[0] in FALLBACK_PLATFORMS else "all"
        return _rows(con.execute(_FALLBACK_SQL, [user_id, chosen, n]))
    return _rows(con.execute("SELECT * FROM recommend(?, ?, plat := ?)", [user_id, n, platform]))


def similar_items(con: duckdb.DuckDBPyConnection, item_id: str, user_id: str | None = None,
                  n: int = 20) -> list[dict[str, Any]]:
    """``SELECT * FROM related_items(item_id, n, uid := user_id)``: items bought together
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
            candidates = [(cand, src_rank, score, category, cand_price)
                          for src_rank, (cand, cand_price, score) in enumerate(same, start=1)]
            return _reordered(item_id, candidates, "same_category", user, n)
    platform = user.platform if user.platform in FALLBACK_PLATFORMS else "all"
    fallback = con.execute(_FALLBACK_ALL_SQL, [platform, item_id]).fetchall()
    return _reordered(item_id, _with_attrs(con, fallback, user), f"fallback:{platform}", user, n)


class _User(NamedTuple):
    known: bool                    # has a profile or a list: the re-ordering applies
    mine: frozenset[str]           # the items of the user's list
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


def _final_score(src_rank: int, in_list: bool, category: str | None, price: float | None,
                 tier_price: float | None, top_category: str | None) -> float:
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


def _reordered(item_id: str, candidates: list[tuple], source: str, user: _User,
               n: int) -> list[dict[str, Any]]:
    """The macro's ``scored`` and final order for ``candidates`` = (item, src_rank, score,
    category, price), cut to ``n``."""
    scored = sorted(((_final_score(src_rank, cand in user.mine, category, price, user.tier_price, user.top_category),
                      src_rank, cand, score) for cand, src_rank, score, category, price in candidates),
                    key=lambda r: (-r[0], r[1], r[2]))  # final_score DESC, src_rank, item_id
    return [{"for_item_id": item_id, "item_id": cand, "rank": rank, "score": score,
             "final_score": final, "source": source, "src_rank": src_rank, "personalised": user.known}
            for rank, (final, src_rank, cand, score) in enumerate(scored[:n], start=1)]


def pseudonym_key_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id of the key the file's user ids were made with; None: they are the raw ids (also
    in files published before pseudonyms existed)."""
    rows = _rows(con.execute("SELECT * FROM publication"))
    return rows[0].get("pseudonym_key_id") if rows else None


def publication_info(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The publication row plus row counts of every serving table."""
    info = _rows(con.execute("SELECT * FROM publication"))
    out: dict[str, Any] = dict(info[0]) if info else {}
    out["row_counts"] = {
        name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # fixed names only
        for name in ALL_TABLES}
    return out


def _warm_up(con: duckdb.DuckDBPyConnection) -> None:
    """Run every read path once on a new connection. The first queries on a freshly attached
    file load the catalog, the macros, table metadata and index roots (measured at 100k users:
    ~12 ms to attach, 30-45 ms for this first run, 1-3 ms a query afterwards); no request
    should pay that."""
    user = con.execute("SELECT user_id FROM recommendations LIMIT 1").fetchone()
    item = con.execute("SELECT item_id FROM similar_items LIMIT 1").fetchone()
    uid, iid = (user[0] if user else "0"), (item[0] if item else "0")
    cat = con.execute("SELECT category_id FROM category_top_items LIMIT 1").fetchone()
    recommendations_for_user(con, uid)
    recommendations_for_user(con, "0")            # fallback lookups
    similar_items(con, iid)
    similar_items(con, iid, user_id=uid)
    con.execute(_SAME_CATEGORY_SQL, [0.0, cat[0] if cat else "0", "0", 20]).fetchall()  # new items
    similar_items(con, "0", user_id=uid)          # unknown item: the fallback list


class ServingReader:
    """Keeps a read-only connection to the current serving file and reopens it when the file
    is replaced (new inode / mtime / size), checked at most every ``check_interval`` seconds.

    A replaced file is opened and warmed up (:func:`_warm_up`) by a background thread while
    requests keep using the previous connection, so no request waits for the attach. Old
    connections are retired, not closed at once: requests still running on them finish, and
    they are closed ``grace`` seconds later (which releases the replaced file's inode).
    """

    def __init__(self, serving_db: Path, *, check_interval: float = 0.0, grace: float = 30.0,
                 threads: int = 1):
        self.path = Path(serving_db)
        self.check_interval = check_interval
        self.grace = grace
        self.threads = threads
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._sig: tuple | None = None
        self._key_id: str | None = None        # pseudonym_key_id of the current file
        self._checked = 0.0
        self._retired: list[tuple[float, duckdb.DuckDBPyConnection]] = []
        self._loading: tuple | None = None      # signature of the file being opened and warmed
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
        self._key_id = pseudonym_key_id(con)
        self.opened_at = datetime.now(timezone.utc)

    def _reap(self, now: float) -> None:
        """Close connections retired more than ``grace`` seconds ago (frees the old inode)."""
        keep = []
        for retired_at, old in self._retired:
            if now - retired_at > self.grace:
                try:
                    old.close()
                except duckdb.Error:
                    pass
            else:
                keep.append((retired_at, old))
        self._retired = keep

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor on the current file; use one per request, close it afterwards."""
        return self.session()[0]

    def session(self) -> tuple[duckdb.DuckDBPyConnection, str | None]:
        """:meth:`cursor` and that file's :func:`pseudonym_key_id`, taken together: the file
        may be replaced between two separate calls."""
        with self._lock:
            self._refresh()
            if self._con is None:
                raise ServingUnavailable(f"no serving database at {self.path}")
            return cursor(self._con), self._key_id

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
