"""Reading the marketplace export (the ``ab_test.csv`` layout) with DuckDB.

The export is read as text, exactly as written, so that nothing is lost to type sniffing:
typing and validation happen downstream (dbt staging), where bad rows are quarantined.
This module is the Python-side reader used by the generator's checks, the importers and
the baselines; the warehouse reads the same file with the same ``read_csv`` options.
"""
from __future__ import annotations

import csv
from pathlib import Path

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


def check_export(path: str | Path) -> Path:
    """The path, if it is a file whose header has the export's columns and at least one line
    after it; else ExportError (nothing to build, so nothing to quarantine)."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"input export {path} is a directory, not a file")
    if not path.is_file():
        raise ExportError(f"input export not found: {path}")
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = [name.strip() for name in next(csv.reader(handle), [])]
        missing = [name for name in BASE_COLUMNS if name not in header]
        if missing:
            raise ExportError(f"{path} is not an ab_test.csv export: the header lacks "
                              f"{', '.join(missing)} (found: {', '.join(header[:12]) or 'nothing'})")
        if not any(line.strip() for line in handle):
            raise ExportError(f"{path} has the export's header but no data rows")
    return path


def read_csv_sql(path: str | Path) -> str:
    """The ``read_csv`` call for an export: every column as text, 8 or 10 columns accepted.

    ``null_padding`` turns short lines into rows with missing fields (rejected later with a
    reason) instead of aborting the whole load.
    """
    escaped = str(path).replace("'", "''")
    return (
        f"read_csv('{escaped}', header = true, delim = ',', quote = '\"', escape = '\"', "
        "all_varchar = true, null_padding = true, auto_detect = true)"
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
