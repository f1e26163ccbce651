"""Reading the marketplace export (the ``ab_test.csv`` layout) with DuckDB.

The export is read as text, exactly as written, so that nothing is lost to type sniffing:
typing and validation happen downstream (dbt staging), where bad rows are quarantined.
This module checks a file before any work (``check_export``), reads its header (which tells
the warehouse the layout) and is the lenient Python-side reader used by the generator's
checks, the importers, the baselines and the profile report.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import glob
import gzip
import io
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import duckdb
import pandas as pd

from ml.vocabulary import BASE_COLUMNS, KNOWN_COLUMNS


class ExportError(ValueError):
    """The file is not an export in the ``ab_test.csv`` layout: no row could be read, so there
    is nothing to quarantine; the whole file is refused with the reason."""


GZIP_MAGIC = b"\x1f\x8b"
TEXT_CHECK_BYTES = 65_536
EXPORT_SUFFIXES = (".csv", ".csv.gz")


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
        raise ExportError(
            f"{path} is not an ab_test.csv export: the header lacks {', '.join(missing)} (found: {found})"
        )
    with _open_text(path) as handle:
        handle.readline()
        if not any(line.strip() for line in handle):
            raise ExportError(f"{path} has the export's header but no data rows")
    return path


def export_files(spec: str | Path) -> list[Path]:
    """The files of an export given as a file, a directory (its ``*.csv`` and ``*.csv.gz``
    files) or a glob pattern, sorted by name: a marketplace that sends one file a day names them
    by date, and staging numbers the files in this order (the first file staged is the oldest)."""
    spec = Path(spec)
    if spec.is_dir():
        files = [path for path in spec.iterdir() if path.is_file() and path.name.endswith(EXPORT_SUFFIXES)]
        if not files:
            raise ExportError(f"input directory {spec} holds no {' or '.join(EXPORT_SUFFIXES)} file")
        return sorted(files)
    if spec.exists() or not glob.has_magic(str(spec)):
        return [spec]
    files = [Path(name) for name in glob.glob(str(spec)) if Path(name).is_file()]
    if not files:
        raise ExportError(f"no file matches the input pattern {spec}")
    return sorted(files)


def check_export_files(spec: str | Path) -> list[Path]:
    """The export's files (``export_files``), each checked (``check_export``) and all with the
    first file's header: staging reads them as one table, split by one header."""
    files = [check_export(path) for path in export_files(spec)]
    header = read_header(files[0])
    for path in files[1:]:
        if read_header(path) != header:
            raise ExportError(f"{path} has another header than {files[0]}: the files of one export share one layout")
    return files


def split_by_day(path: str | Path, out_dir: str | Path) -> list[Path]:
    """One file per ``utc_event_date`` of the export, each with the header and its lines as
    written (``<stem>-<date>.csv``; lines without a readable date in ``<stem>-undated.csv``):
    the daily files a marketplace sends, for measuring and testing nightly runs."""
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    outputs: dict[str, TextIO] = {}
    with contextlib.ExitStack() as files, _open_text(path) as source:
        header_line = source.readline()
        date_field = [name.strip() for name in next(csv.reader([header_line]))].index("utc_event_date")
        for line in source:
            fields = next(csv.reader([line]), [])
            day = fields[date_field] if len(fields) > date_field else ""
            key = day if _is_iso_date(day) else "undated"
            if key not in outputs:
                target = out_dir / f"{stem}-{key}.csv"
                outputs[key] = files.enter_context(open(target, "w", encoding="utf-8", newline=""))
                outputs[key].write(header_line)
            outputs[key].write(line)
    return sorted(out_dir / f"{stem}-{key}.csv" for key in outputs)


def _is_iso_date(text: str) -> bool:
    return len(text) == 10 and text[4] == text[7] == "-" and text.replace("-", "").isdigit()


def read_header(path: str | Path) -> list[str]:
    """The column names on the export's first line, after checking that the file is text.

    The warehouse reads lines, not CSV records, and is told the layout (8 or 10 columns, any
    order) by this header (``ml.warehouse.dbt.dbt_vars``). A binary file or a gzip file not named
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
        raise ExportError(
            f"{path} is not a CSV export: its first bytes are binary, not UTF-8 text "
            "(gzip is read when the name ends in .gz; other compressions are not)"
        )
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
    names = [
        name if name in KNOWN_COLUMNS and name not in header[:i] else f"column{i + 1}" for i, name in enumerate(header)
    ]
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
    categories = "try_cast(main_category as varchar[])" if "main_category" in columns else "[]::varchar[]"
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


def profile_aggregates(path: str | Path, spill_dir: Path) -> dict[str, Any]:
    """The aggregates of ``recsys profile`` (``ml.reports.profile``): rows and users, missing
    values per column, event mix, platforms, funnel, prices, activity per day and hour, long
    tails; JSON-able. All in DuckDB over :func:`read_csv_sql`, spilling to ``spill_dir``, so a
    10 M-row file never enters pandas.
    """
    con = duckdb.connect()
    try:
        con.execute("set temp_directory = '" + str(spill_dir).replace("'", "''") + "'")
        con.execute("set enable_progress_bar = false")
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"create temp table raw as select * from {read_csv_sql(path)}")
        columns = [r[0] for r in con.execute("describe raw").fetchall()]
        return {"columns": columns, **_profile_sql(con, columns)}
    finally:
        con.close()


def _records(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value.__class__.__name__ == "Decimal":
        return float(value)
    return value


def _profile_sql(con: duckdb.DuckDBPyConnection, columns: list[str]) -> dict[str, Any]:
    q = lambda c: '"' + c.replace('"', '""') + '"'  # noqa: E731
    out: dict[str, Any] = {}
    totals = con.execute("select count(*), count(distinct user_id) from raw").fetchall()[0]
    out["rows"], out["users"] = int(totals[0]), int(totals[1])

    # Missing values: NULL or blank text; list columns also count "[]" (an empty list).
    parts = []
    for c in columns:
        parts.append(f"count_if({q(c)} is null or trim({q(c)}) = '')")
        parts.append(f"count_if(trim({q(c)}) = '[]')")
    counts = con.execute(f"select {', '.join(parts)} from raw").fetchall()[0]
    out["missing"] = [
        {"column": c, "missing": int(counts[2 * i]), "empty_list": int(counts[2 * i + 1])}
        for i, c in enumerate(columns)
    ]

    con.execute("""
        create temp table ev as
        select platform, event_type, user_id,
               try_strptime(utc_event_time, '%Y-%m-%d %H:%M:%S%z') as ts,
               try_cast(utc_event_date as date) as day,
               try_cast("ecom.nm" as varchar[]) as items,
               try_cast("ecom.price100" as bigint[]) as prices
        from raw
    """)
    con.execute("drop table raw")

    out["event_mix"] = _records(
        con,
        """
        select coalesce(event_type, '(missing)') as event_type, count(*) as rows,
               count(distinct user_id) as users, sum(len(items)) as line_items
        from ev group by 1 order by rows desc""",
    )
    out["platforms"] = _records(
        con,
        """
        select coalesce(platform, '(missing)') as platform, count(*) as rows,
               count(distinct user_id) as users,
               count_if(event_type like 'ec.%') as commerce_rows
        from ev group by 1 order by rows desc""",
    )
    out["funnel"] = _records(
        con,
        """
        with u as (
            select user_id,
                   bool_or(event_type = 'ec.view_item') as v,
                   bool_or(event_type = 'ec.add_to_cart') as c,
                   bool_or(event_type = 'ec.purchase') as p
            from ev group by user_id)
        select count(*) as users, count_if(v) as viewers, count_if(c) as carters, count_if(p) as buyers,
               count_if(v and c) as viewers_who_carted, count_if(v and c and p) as viewers_who_carted_and_bought,
               count_if(c and p) as buyers_who_carted
        from u""",
    )[0]

    # Prices per commerce event type: log-spaced histogram (10 bins per decade) and quantiles.
    con.execute("""
        create temp table prices as
        select event_type, unnest(prices) as p100 from ev
        where event_type like 'ec.%' and len(prices) > 0""")
    out["prices"] = {}
    for row in _records(
        con,
        """
            select event_type, count(*) as n, count_if(p100 = 0) as zeros,
                   quantile_cont(p100, [0.05, 0.5, 0.95, 0.99]) as q, max(p100) as max
            from prices where p100 is not null group by 1 order by n desc""",
    ):
        out["prices"][row["event_type"]] = {
            "n": int(row["n"]),
            "zeros": int(row["zeros"]),
            "max": row["max"],
            "p5": row["q"][0],
            "median": row["q"][1],
            "p95": row["q"][2],
            "p99": row["q"][3],
            "hist": [],
        }
    for event_type, lo, n in con.execute("""
            select event_type, floor(log10(p100 / 100.0) * 10) / 10 as lo, count(*)
            from prices where p100 > 0 group by all order by 1, 2""").fetchall():
        out["prices"][event_type]["hist"].append([float(lo), int(n)])
    con.execute("drop table prices")

    out["daily"] = _records(
        con,
        """
        select day, count(*) as rows, count(distinct user_id) as users,
               count_if(event_type = 'ec.view_item') as views,
               count_if(event_type = 'ec.add_to_cart') as carts,
               count_if(event_type = 'ec.purchase') as purchases
        from ev where day is not null group by day order by day""",
    )
    out["hourly"] = _records(
        con,
        """
        select hour(ts) as hour, count(*) as rows,
               count_if(event_type = 'ec.purchase') as purchases
        from ev where ts is not null group by 1 order by 1""",
    )
    out["rows_without_time"] = con.execute("select count_if(ts is null) from ev").fetchall()[0][0]

    # Long tails: rank-frequency curves, sampled at ~40 log-spaced ranks per decade.
    con.execute("""
        create temp table item_counts as
        select item_id, count(*) as n
        from (select unnest(items) as item_id from ev where event_type like 'ec.%')
        where item_id is not null group by 1""")
    con.execute("create temp table user_counts as select user_id, count(*) as n from ev group by 1")
    out["tails"] = {}
    for kind, table in (("users", "user_counts"), ("items", "item_counts")):
        stats = (
            _records(
                con,
                f"""
            with r as (select n, row_number() over (order by n desc) as rk,
                              sum(n) over (order by n desc rows unbounded preceding) as cum
                       from {table}),
                 t as (select count(*) as k, sum(n) as total from {table})
            select t.k as count, t.total as events,
                   (select max(cum) from r where rk <= greatest(1, t.k // 100)) / t.total as top1_share,
                   (select max(cum) from r where rk <= greatest(1, t.k // 10)) / t.total as top10_share,
                   (select count(*) from {table} where n = 1) / t.k as share_once,
                   (select median(n) from {table}) as median,
                   (select max(n) from {table}) as max
            from t""",
            )[0]
            if con.execute(f"select count(*) from {table}").fetchall()[0][0]
            else {}
        )
        curve = con.execute(f"""
            with r as (select n, row_number() over (order by n desc) as rk from {table}),
                 picks as (select distinct greatest(1, round(pow(10, i / 40.0)))::bigint as rk
                           from range(0, 400) t(i))
            select rk, n from r where rk in (select rk from picks) or rk = (select max(rk) from r)
            order by rk""").fetchall()
        out["tails"][kind] = {**stats, "curve": [[int(a), int(b)] for a, b in curve]}
    out["items"] = out["tails"]["items"].get("count", 0)
    return _jsonable(out)
