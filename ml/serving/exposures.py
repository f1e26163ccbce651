"""The exposure log: which items each answer of ``recsys api`` showed, to whom, from which
publication, so that later events can say whether the lists were followed (issue 13).

One Parquet row per item shown (the columns: :data:`COLUMNS`), under
``<home>/exposures/date=YYYY-MM-DD/part-NNNNN.parquet``: one directory per UTC day of
``served_at`` (the daily rotation; DuckDB reads the ``date`` back with
``hive_partitioning = true``). Append-only: a file is written aside and hard-linked to a
free name, so no existing file is ever rewritten and a reader never sees half a file.

Off the request's hot path: :meth:`ExposureLog.record` only puts the answer on a bounded
queue; one writer thread turns answers into rows and writes a file every ``flush_rows`` rows,
every ``flush_seconds`` and on :meth:`ExposureLog.close`. A full queue never blocks a request:
the answer is dropped and counted (``dropped``, shown by ``/health``). What is lost on a crash
(kill -9, power): at most the last ``flush_seconds`` of answers.

``user_id`` is the id the API was asked with, the raw id also when the serving file holds
pseudonyms, so the log joins the export's events directly; it is as private as the export,
and its directory is the owner's only.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

import duckdb

log = logging.getLogger(__name__)

LIST_KINDS = ("personal", "fallback", "control", "product_page")
COLUMNS = (
    "served_at",  # timestamp, UTC
    "request_id",  # one id per answer: the rows of one list
    "list_kind",  # LIST_KINDS: the user's list, the cold-start list, the control group's, a product page
    "user_id",  # as asked (raw); null on an anonymous product page
    "anchor_item_id",  # the product page's item; null on the other kinds
    "item_id",
    "rank",  # 1 = first
    "source",  # the item's `source` in the answer: personal, fallback:<platform>, bought_together, ...
    "model_version",  # the publication answered from
)
# One list parameter per column, zipped by unnest: values are bound, never pasted into the SQL.
_COPY_SQL = """
copy (select
    unnest(?::timestamp[]) as served_at, unnest(?::varchar[]) as request_id, unnest(?::varchar[]) as list_kind,
    unnest(?::varchar[]) as user_id, unnest(?::varchar[]) as anchor_item_id, unnest(?::varchar[]) as item_id,
    unnest(?::integer[]) as rank, unnest(?::varchar[]) as source, unnest(?::varchar[]) as model_version
) to ? (format parquet)"""


class Exposure(NamedTuple):
    """One answer: a list of ``(item_id, rank, source)`` shown together."""

    served_at: datetime  # UTC, naive
    request_id: str
    list_kind: str
    user_id: str | None
    anchor_item_id: str | None
    model_version: str | None
    items: tuple[tuple[str, int, str], ...]


_STOP = object()  # close(): the writer flushes what it holds and ends


class ExposureLog:
    """A bounded queue of answers and the one thread that appends them to Parquet files.

    Use it as :meth:`start` ... :meth:`close` (the API's lifespan does); counts are in rows
    (items shown): ``logged`` accepted, ``written`` stored, ``dropped`` lost to a full queue
    or a failed write.
    """

    def __init__(
        self, directory: Path, *, queue_size: int = 10_000, flush_rows: int = 50_000, flush_seconds: float = 30.0
    ):
        self.directory = Path(directory)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()  # the counters, updated by request threads and the writer
        self._writer: threading.Thread | None = None
        self._next_part: dict[Path, int] = {}
        self.logged = self.written = self.dropped = 0
        self._dropped_reported = 0

    def start(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._writer = threading.Thread(target=self._run, name="exposure-log", daemon=True)
        self._writer.start()

    def close(self) -> None:
        """Write what is queued and stop the writer (blocks until it is written)."""
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join()
            self._writer = None

    def record(
        self,
        list_kind: str,
        items: Iterable[tuple[str, int, str]],
        *,
        user_id: str | None,
        model_version: str | None,
        anchor_item_id: str | None = None,
    ) -> bool:
        """Queue one answer without waiting; False when the queue was full (it is dropped)."""
        exposure = Exposure(
            _utc_now(),
            uuid.uuid4().hex,
            list_kind,
            user_id,
            anchor_item_id,
            model_version,
            tuple(items),
        )
        try:
            self._queue.put_nowait(exposure)
        except queue.Full:
            self._count(dropped=len(exposure.items))
            return False
        self._count(logged=len(exposure.items))
        return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"logged": self.logged, "written": self.written, "dropped": self.dropped}

    def _count(self, *, logged: int = 0, written: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self.logged += logged
            self.written += written
            self.dropped += dropped

    def _run(self) -> None:
        """Collect answers until ``flush_rows`` rows, ``flush_seconds`` after the first one, or
        the stop; then write them."""
        con = duckdb.connect(":memory:", config={"threads": 1})
        pending: list[Exposure] = []
        rows, deadline, stopping = 0, 0.0, False
        try:
            while not stopping:
                try:
                    got = self._queue.get(timeout=max(0.0, deadline - time.monotonic()) if pending else None)
                except queue.Empty:  # the deadline passed
                    got = None
                if got is _STOP:
                    stopping = True
                elif got is not None:
                    if not pending:
                        deadline = time.monotonic() + self.flush_seconds
                    pending.append(got)
                    rows += len(got.items)
                if pending and (stopping or rows >= self.flush_rows or time.monotonic() >= deadline):
                    self._flush(con, pending)
                    pending, rows = [], 0
        finally:
            con.close()

    def _flush(self, con: duckdb.DuckDBPyConnection, pending: list[Exposure]) -> None:
        """One file per served day; a failed write loses its rows (counted), never the thread."""
        by_day: dict[date, list[Exposure]] = defaultdict(list)
        for exposure in pending:
            by_day[exposure.served_at.date()].append(exposure)
        for day, batch in by_day.items():
            n = sum(len(e.items) for e in batch)
            try:
                self._write(con, day, batch)
            except Exception:  # whatever it is (disk full, ...), the writer must go on
                log.exception("could not write %d exposures of %s; they are lost", n, day)
                self._count(dropped=n)
            else:
                self._count(written=n)
        dropped = self.counts()["dropped"]
        if dropped > self._dropped_reported:
            log.warning("exposure log: %d rows dropped so far (queue full or write failed)", dropped)
            self._dropped_reported = dropped

    def _write(self, con: duckdb.DuckDBPyConnection, day: date, batch: list[Exposure]) -> Path:
        folder = self.directory / f"date={day.isoformat()}"
        folder.mkdir(exist_ok=True)
        aside = folder / f".part-{os.getpid()}-{uuid.uuid4().hex}.parquet.tmp"  # *.parquet globs skip it
        try:
            con.execute(_COPY_SQL, [*_columns(batch), str(aside)])
            return self._link(aside, folder)
        finally:
            aside.unlink(missing_ok=True)

    def _link(self, aside: Path, folder: Path) -> Path:
        """Give the written file the next free ``part-NNNNN`` name; ``os.link`` never replaces
        a file, so another process logging to the same home cannot overwrite one."""
        if folder not in self._next_part:
            self._next_part[folder] = len(list(folder.glob("part-*.parquet")))
        while True:
            path = folder / f"part-{self._next_part[folder]:05d}.parquet"
            self._next_part[folder] += 1
            try:
                os.link(aside, path)
            except FileExistsError:
                continue
            return path


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _columns(batch: list[Exposure]) -> list[list]:
    """The rows of ``batch`` as one list per column of :data:`COLUMNS`."""
    columns: list[list] = [[] for _ in COLUMNS]
    for e in batch:
        for item_id, rank, source in e.items:
            row = (
                e.served_at,
                e.request_id,
                e.list_kind,
                e.user_id,
                e.anchor_item_id,
                item_id,
                rank,
                source,
                e.model_version,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
    return columns
