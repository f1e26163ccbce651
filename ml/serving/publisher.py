"""Publishing the serving database: a new file, validated, then swapped in atomically.

:func:`publish` copies the build database's ``pub_*`` tables into a *new* DuckDB file beside the
serving file, validates it, adds the marketplace's table macros, and then ``os.replace``-s it
over the old file. Readers that hold the old file keep reading it (their file descriptor still
points at the old inode), new readers open the new one, and a failure at any point leaves the
old file untouched. The publisher never opens the serving file itself, so it never competes with
readers for DuckDB's file lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ml.config import pipeline_duckdb_memory
from ml.serving import privacy
from ml.serving.schema import (
    ALL_TABLES,
    CATEGORY_TOP_ITEMS_DDL,
    CATEGORY_TOP_ITEMS_SQL,
    COLUMNS,
    INDEXES,
    MACROS,
    PUBLICATION_DDL,
    SORT_KEYS,
    STAMP,
    TABLES,
)
from ml.vocabulary import FALLBACK_PLATFORMS

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The build's outputs cannot be published; the old serving file was left in place."""


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


def _naive_utc(ts: datetime) -> datetime:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
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


def _register_pseudonyms(con: duckdb.DuckDBPyConnection, key: bytes, found: dict[str, tuple[str, list[str]]]) -> None:
    """``pseudonyms (user_id, pseudonym)`` for every user of the build, made by the API's own
    function, as a TEMP table: it lives in this connection's memory, never in the file."""
    users = [
        row[0]
        for row in con.execute(
            " UNION ".join(f"select user_id from {found[name][0]}" for name in TABLES if "user_id" in COLUMNS[name])
        ).fetchall()
        if row[0] is not None
    ]
    con.execute(
        "create temp table pseudonyms as select unnest($1::varchar[]) as user_id, unnest($2::VARCHAR[]) AS pseudonym",
        [users, privacy.pseudonyms(key, users)],
    )


def _find_build_tables(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, list[str]]]:
    """``pub_<table>`` -> (qualified name in the attached build db, its columns)."""
    rows = con.execute(
        "select schema_name, table_name, list(column_name order by column_index) "
        "from duckdb_columns() where database_name = 'build' and starts_with(table_name, 'pub_') "
        "GROUP BY ALL"
    ).fetchall()
    found: dict[str, tuple[str, list[str]]] = {}
    for schema, table, cols in sorted(rows, key=lambda r: (r[0] != "main", r[0])):
        name = table[len("pub_") :]
        if name in TABLES and name not in found:
            found[name] = (f'build."{schema}"."{table}"', list(cols))
    return found


def _other_builds(
    con: duckdb.DuckDBPyConnection, found: dict[str, tuple[str, list[str]]], model_version: str
) -> list[str]:
    """The pub_* tables holding rows stamped by another build than ``model_version``'s: another
    run rebuilt part of the warehouse under this one (a mixed file must never be published)."""
    problems = []
    for name in TABLES:
        stamps = con.execute(f"select distinct {STAMP} from {found[name][0]} order by 1").fetchall()
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
        dup = count(f"select count(*) from (select 1 from {table} group by {key}, {pos} having count(*) > 1)")
        if dup:
            errors.append(f"{table}: {dup} duplicate ({key}, {pos}) pairs")
        gaps = count(
            f"select count(*) from (select 1 from {table} group by {key} "
            f"HAVING min({pos}) <> 1 OR max({pos}) <> count(*))"
        )
        if gaps:
            errors.append(f"{table}: {gaps} lists whose ranks are not 1..n")
        dup_items = count(f"select count(*) from (select 1 from {table} group by {key}, {member} HAVING count(*) > 1)")
        if dup_items:
            errors.append(f"{table}: {dup_items} lists repeat an item")
    for table in ("recommendations", "fallback_recommendations", "similar_items"):
        bad = count(f"select count(*) from {table} where not isfinite(score)")
        if bad:
            errors.append(f"{table}: {bad} rows with a non-finite score")

    n_recs = count("select count(*) from recommendations")
    if n_recs == 0 and require_recommendations:
        errors.append(
            "recommendations is empty (pass require_recommendations=False if the build really has no warm users)"
        )
    present = {r[0] for r in con.execute("select distinct platform from fallback_recommendations").fetchall()}
    missing = [p for p in FALLBACK_PLATFORMS if p not in present]
    if missing:
        errors.append(f"fallback_recommendations: no list for platform(s) {', '.join(missing)}")

    orphans = count(
        "select count(distinct r.item_id) from recommendations r ANTI JOIN items i ON i.item_id = r.item_id"
    )
    if orphans:
        warnings.append(f"{orphans} recommended items are missing from items")
    no_profile = count(
        "select count(distinct r.user_id) from recommendations r ANTI JOIN user_profiles p ON p.user_id = r.user_id"
    )
    if no_profile:
        warnings.append(f"{no_profile} users with a list have no user_profiles row")
    return errors, warnings


def publish(
    build_db: Path,
    serving_db: Path,
    *,
    model_version: str,
    as_of: datetime,
    list_source: str = "ranker",
    require_recommendations: bool = True,
    threads: int | None = None,
    pseudonym_key: bytes | None = None,
    file_mode: int | None = None,
) -> PublishResult:
    """Build a new serving file from ``build_db``'s ``pub_*`` tables and swap it in atomically.

    ``list_source`` says what made the personal lists (``ranker``, ``baseline:<name>`` when a
    simple list won the gate, ``cold_start`` when there are none); readers find it in
    ``publication``.

    The build database is attached read-only: the caller must not hold a read-write
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
            con.execute("set enable_progress_bar = false")
            con.execute("set memory_limit = ?", [pipeline_duckdb_memory()])  # the pipeline's process
            if threads:
                con.execute(f"set threads = {int(threads)}")
            try:
                con.execute("attach ? as build (read_only)", [str(build_db)])
            except duckdb.Error as exc:
                raise PublishError(
                    f"cannot attach build database {build_db} read-only ({exc}); close any "
                    "read-write connection to it in this process before publishing"
                ) from exc
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
                raise PublishError(
                    f"refusing to publish a mixed build: publishing {model_version}, but "
                    + "; ".join(mixed)
                    + " (did another run rebuild the warehouse meanwhile?)"
                )
            if pseudonym_key is not None:
                _register_pseudonyms(con, pseudonym_key, found)

            for name, ddl in TABLES.items():
                con.execute(f"create table {name} ({ddl})")
                cols = ", ".join(COLUMNS[name])
                source = found[name][0]
                if pseudonym_key is not None and "user_id" in COLUMNS[name]:
                    source = (
                        f"(select b.* replace (p.pseudonym as user_id) from {source} b "
                        "LEFT JOIN pseudonyms p ON p.user_id = b.user_id)"
                    )
                try:
                    con.execute(f"insert into {name} ({cols}) select {cols} from {source} ORDER BY {SORT_KEYS[name]}")
                except duckdb.Error as exc:
                    raise PublishError(f"refusing to publish: copying pub_{name} failed: {exc}") from exc
            con.execute("detach build")

            errors, warnings = _validate(con, require_recommendations)
            if errors:
                raise PublishError("refusing to publish: " + "; ".join(errors))

            con.execute(CATEGORY_TOP_ITEMS_DDL)
            con.execute(CATEGORY_TOP_ITEMS_SQL)

            for table, col in INDEXES.items():
                con.execute(f"create index {table}_{col}_idx on {table} ({col})")
            for sql in MACROS.values():
                con.execute(sql)

            n_users, n_rows, gen = con.execute(
                "select count(distinct user_id), count(*), max(generated_at) from recommendations"
            ).fetchone()
            gen_fb = con.execute("select max(generated_at) from fallback_recommendations").fetchone()[0]
            generated_at = max([g for g in (gen, gen_fb) if g is not None], default=_naive_utc(datetime.now(UTC)))
            con.execute(PUBLICATION_DDL)
            key_id = None if pseudonym_key is None else privacy.key_id(pseudonym_key)
            con.execute(
                "insert into publication values (?, ?, ?, ?, ?, ?, ?, ?)",
                [model_version, generated_at, as_of, n_users, n_rows, list_source, key_id is not None, key_id],
            )
            row_counts = {name: con.execute(f"select count(*) from {name}").fetchone()[0] for name in ALL_TABLES}
            con.execute("checkpoint")
            con.close()
            con = None

            wal = Path(str(tmp) + ".wal")
            if wal.exists():
                raise PublishError(f"temp database left a WAL ({wal}) after checkpoint; not swapping")
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
                with suppress(duckdb.Error):
                    con.close()
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                leftover.unlink(missing_ok=True)
            raise

    result = PublishResult(
        serving_db=serving_db,
        model_version=model_version,
        generated_at=generated_at,
        as_of=as_of,
        list_source=list_source,
        n_users=int(n_users),
        n_rows=int(n_rows),
        row_counts=row_counts,
        bytes=size,
        seconds=time.perf_counter() - t0,
        warnings=tuple(warnings),
    )
    for w in warnings:
        log.warning("publish: %s", w)
    return result
