"""Reading the marketplace export (the ``ab_test.csv`` layout) with DuckDB.

The export is read as text, exactly as written, so that nothing is lost to type sniffing:
typing and validation happen downstream (dbt staging), where bad rows are quarantined.
This module checks a file before any work (``check_export``), reads its header (which tells
the warehouse the layout) and is the lenient Python-side reader used by the generator's
checks, the importers, the baselines and the profile report.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
from pathlib import Path
from typing import BinaryIO, TextIO

import duckdb
import pandas as pd

BASE_COLUMNS = [
    "platform",
    "utc_event_time",
    "utc_event_date",
    "user_id",
    "event_type",
    "ecom.price100",
    "ecom.qty",
    "ecom.nm",
]
CATEGORY_COLUMNS = ["main_category", "sub_category"]
EVENT_TYPES = ["ec.view_item", "ec.add_to_cart", "ec.purchase", "user_engagement", "pageview"]
PLATFORMS = ["Site", "Android", "iOS"]


class ExportError(ValueError):
    """The file is not an export in the ``ab_test.csv`` layout: no row could be read, so there
    is nothing to quarantine; the whole file is refused with the reason."""


KNOWN_COLUMNS = BASE_COLUMNS + CATEGORY_COLUMNS
GZIP_MAGIC = b"\x1f\x8b"
TEXT_CHECK_BYTES = 65_536


def check_export(path: str | Path) -> Path:
    """The path, if it is a text file (or a ``.gz`` of one) whose header has the export's
    columns and at least one line after it; else ExportError with a one-line reason that never
    echoes the file's bytes (nothing to build, so nothing to quarantine)."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"input export {path} is a directory, not a file")
    if not path.is_file():
        raise ExportError(f"input export not found: {path}")
    header = read_header(path)
    missing = [name for name in BASE_COLUMNS if name not in header]
    if missing:
        found = _printable(", ".join(header[:12])) or "nothing"
        raise ExportError(f"{path} is not an ab_test.csv export: the header lacks "
                          f"{', '.join(missing)} (found: {found})")
    with _open_text(path) as handle:
        handle.readline()
        if not any(line.strip() for line in handle):
            raise ExportError(f"{path} has the export's header but no data rows")
    return path


def read_header(path: str | Path) -> list[str]:
    """The column names on the export's first line, after checking that the file is text.

    The warehouse reads lines, not CSV records, and is told the layout (8 or 10 columns, any
    order) by this header (``ml.warehouse.dbt_vars``). A binary file or a gzip file not named
    ``.gz`` (DuckDB picks the compression by the name) is an ExportError.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if path.suffix == ".gz" and magic != GZIP_MAGIC:
        raise ExportError(f"{path} is named .gz but is not gzip-compressed")
    if path.suffix != ".gz" and magic == GZIP_MAGIC:
        raise ExportError(f"{path} is gzip-compressed: name it .csv.gz to have it read")
    try:
        with _open_binary(path) as raw:
            sample = raw.read(TEXT_CHECK_BYTES)
    except (OSError, EOFError) as error:
        raise ExportError(f"{path} is a damaged gzip file ({type(error).__name__})") from None
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        text = b"\0" not in sample
    except UnicodeDecodeError:
        text = False
    if not text:
        raise ExportError(f"{path} is not a CSV export: its first bytes are binary, not UTF-8 text "
                          "(gzip is read when the name ends in .gz; other compressions are not)")
    with _open_text(path) as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _open_text(path: Path) -> TextIO:
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", errors="replace", newline="")


def _printable(text: str, limit: int = 200) -> str:
    """The text for a one-line message: control and other unprintable characters as '?'."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def read_csv_sql(path: str | Path) -> str:
    """The ``read_csv`` call for an export: every column as text, named by its header.

    An explicit dialect and column list, no sniffing (a sniffer can fail on one odd line and
    refuse the whole file). Lenient, for analysis: lines that do not parse are skipped (a stray
    quote takes the lines up to the next quote with it). The warehouse does not use it: it
    reads lines and splits them itself, so that every line is a staged row or a quarantined
    one (dbt_project/models/staging). Header names other than the export's become
    ``column<n>``: nothing from the file is pasted into the SQL.
    """
    header = read_header(path)
    names = [name if name in KNOWN_COLUMNS and name not in header[:i] else f"column{i + 1}"
             for i, name in enumerate(header)]
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in names)
    escaped = str(path).replace("'", "''")
    return (
        f"read_csv('{escaped}', header = true, auto_detect = false, columns = {{{columns}}}, "
        "delim = ',', quote = '\"', escape = '\"', max_line_size = 2000000, ignore_errors = true)"
    )


def read_line_items(path: str | Path, con: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
    """One row per (event, line item) of the commerce events in ``path``.

    Columns: ``row_id, platform, ts, date, user_id, event_type`` (``view_item``,
    ``add_to_cart``, ``purchase``), ``position, item_id, price100, qty`` and
    ``category_id`` (None without category columns). Prices or quantities missing
    beside the item list (a real quirk of multi-item purchases) come back as NaN.
    This reader is lenient: it is for analysis, the warehouse is the strict path.
    """
    con = con or duckdb.connect()
    columns = [r[0] for r in con.sql(f"describe select * from {read_csv_sql(path)}").fetchall()]
    categories = (
        "try_cast(main_category as varchar[])" if "main_category" in columns else "[]::varchar[]"
    )
    query = f"""
        with raw as (
            select row_number() over () as row_id, *
            from {read_csv_sql(path)}
        ), parsed as (
            select row_id, platform, user_id,
                   replace(event_type, 'ec.', '') as event_type,
                   try_cast(replace(utc_event_time, '+00:00', '') as timestamp) as ts,
                   try_cast(utc_event_date as date) as date,
                   try_cast("ecom.nm" as varchar[]) as items,
                   try_cast("ecom.price100" as bigint[]) as prices,
                   try_cast("ecom.qty" as bigint[]) as qtys,
                   {categories} as categories
            from raw
            where event_type like 'ec.%'
        )
        select row_id, platform, ts, date, user_id, event_type,
               pos as position,
               items[pos] as item_id,
               prices[pos] as price100,
               qtys[pos] as qty,
               categories[pos] as category_id
        from parsed, range(1, len(items) + 1) as r(pos)
        order by row_id, pos
    """
    return con.sql(query).df()
