"""Writing the synthetic export: chunks streamed through DuckDB (formatting, CSV) into a temp
file beside the output, renamed at the end."""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ml.data.synthetic.events import _ChunkMaker, _frame
from ml.data.synthetic.structure import (
    DATES,
    GenerateStats,
    GeneratorConfig,
    planted_structure,
)
from ml.vocabulary import BASE_COLUMNS, CATEGORY_COLUMNS, EVENT_TYPES, PLATFORMS


def _uid(high: str, low: str) -> str:
    return f"(({high}::hugeint << 64) + {low})::varchar"


def _list_sql(single: str, multi: str) -> str:
    return f"CASE WHEN n = 0 THEN '[]' WHEN n = 1 THEN '[' || {single} || ']' ELSE m.{multi} END"


def _write_chunk(
    con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, lines: pd.DataFrame | None, path: str, with_categories: bool
) -> None:
    plats = "[" + ", ".join(f"'{p}'" for p in PLATFORMS) + "]"
    etypes = "[" + ", ".join(f"'{e}'" for e in EVENT_TYPES) + "]"
    dates = "[" + ", ".join(f"'{d}'" for d in DATES) + "]"
    con.register("rows_df", rows)
    extra = ["m_price", "m_qty", "m_nm"] + (["m_cat", "m_sub"] if with_categories else [])
    if lines is not None:
        con.register("lines_df", lines)
        aggs = [
            "'[' || string_agg(price::VARCHAR, ', ' ORDER BY pos) || ']' AS m_price",
            "'[' || string_agg(qty::VARCHAR, ', ' ORDER BY pos) || ']' AS m_qty",
            f"'[' || string_agg({_uid('ihi', 'ilo')}, ', ' ORDER BY pos) || ']' AS m_nm",
        ]
        if with_categories:
            aggs += [
                f"'[' || string_agg({_uid('chi', 'clo')}, ', ' ORDER BY pos) || ']' AS m_cat",
                f"'[' || string_agg({_uid('shi', 'slo')}, ', ' ORDER BY pos) || ']' AS m_sub",
            ]
        multi = f"(select r, {', '.join(aggs)} from lines_df group by r)"
    else:
        multi = "(select null::bigint as r, " + ", ".join(f"null::varchar as {e}" for e in extra) + " where false)"
    select = [
        f"{plats}[plat + 1] AS platform",
        "CASE WHEN ts >= 0 THEN strftime(TIMESTAMP '2023-07-31' + to_seconds(ts), "
        "'%Y-%m-%d %H:%M:%S+00:00') END AS utc_event_time",
        f"{dates}[day + 1] AS utc_event_date",
        f"{_uid('uhi', 'ulo')} AS user_id",
        f"{etypes}[et + 1] AS event_type",
        f'{_list_sql("price::VARCHAR", "m_price")} AS "ecom.price100"',
        f'{_list_sql("qty::VARCHAR", "m_qty")} AS "ecom.qty"',
        f'{_list_sql(_uid("ihi", "ilo"), "m_nm")} AS "ecom.nm"',
    ]
    if with_categories:
        select += [
            f"{_list_sql(_uid('chi', 'clo'), 'm_cat')} AS main_category",
            f"{_list_sql(_uid('shi', 'slo'), 'm_sub')} AS sub_category",
        ]
    escaped = path.replace("'", "''")
    con.execute(f"""
        copy (
            select {", ".join(select)}
            from rows_df left join {multi} as m on rows_df.mrow = m.r
            order by rows_df.ord
        ) to '{escaped}' (format csv, header false, delimiter ',', quote '"')
    """)
    con.unregister("rows_df")
    if lines is not None:
        con.unregister("lines_df")


def _append(dst, src_path: str) -> None:
    with open(src_path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        try:
            while offset < size:
                sent = os.copy_file_range(src.fileno(), dst.fileno(), size - offset)
                if sent == 0:
                    break
                offset += sent
        except (AttributeError, OSError):
            src.seek(offset)
            shutil.copyfileobj(src, dst, 16 << 20)


def _chunks(counts: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    per_user = counts.sum(axis=1).astype(np.int64)
    cum = np.cumsum(per_user)
    bounds = [0]
    target = chunk_rows
    while bounds[-1] < len(per_user):
        nxt = int(np.searchsorted(cum, target, side="left")) + 1
        nxt = max(nxt, bounds[-1] + 1)
        nxt = min(nxt, len(per_user))
        bounds.append(nxt)
        target = cum[nxt - 1] + chunk_rows
    return list(zip(bounds[:-1], bounds[1:]))


def generate_export(config: GeneratorConfig, out: Path) -> GenerateStats:
    """Write ``config.rows`` rows in the ``ab_test.csv`` layout to ``out`` (atomically)."""
    t0 = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth = planted_structure(config)
    maker = _ChunkMaker(truth)
    chunks = _chunks(truth.counts, config.chunk_rows)
    header = ",".join(BASE_COLUMNS + (CATEGORY_COLUMNS if config.with_categories else [])) + "\n"

    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    part_dir = tempfile.mkdtemp(prefix=f".{out.name}.parts.", dir=out.parent)
    work: queue.Queue = queue.Queue(maxsize=1)
    errors: list[BaseException] = []
    try:
        with os.fdopen(fd, "wb") as dst:
            dst.write(header.encode())
            dst.flush()

            def writer() -> None:
                con = duckdb.connect()
                con.execute("set threads = 2")
                con.execute(f"set memory_limit = '{config.duckdb_memory_limit}'")
                con.execute("set preserve_insertion_order = true")
                try:
                    while True:
                        job = work.get()
                        if job is None:
                            return
                        if errors:
                            continue
                        i, rows, lines = job
                        part = os.path.join(part_dir, f"part-{i:05d}.csv")
                        _write_chunk(con, rows, lines, part, config.with_categories)
                        _append(dst, part)
                        os.unlink(part)
                except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                    errors.append(exc)
                    while work.get() is not None:
                        pass
                finally:
                    con.close()

            thread = threading.Thread(target=writer, name="generate-writer", daemon=True)
            thread.start()
            try:
                for i, (u0, u1) in enumerate(chunks):
                    if errors:
                        break
                    ch = maker.make(i, u0, u1)
                    rows, lines = _frame(truth, ch)
                    rows["ord"] = np.arange(len(rows), dtype=np.int64)
                    work.put((i, rows, lines))
                    del ch, rows, lines
            finally:
                work.put(None)
                thread.join()
            if errors:
                raise errors[0]
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    finally:
        shutil.rmtree(part_dir, ignore_errors=True)
    users = int((truth.counts.sum(axis=1) > 0).sum())
    return GenerateStats(
        rows=int(truth.counts.sum()), users=users, seconds=time.perf_counter() - t0, items=truth.n_items, path=str(out)
    )
