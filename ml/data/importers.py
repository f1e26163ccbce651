"""Adapters that turn public transaction logs into the marketplace export layout.

Why: the whole pipeline (dbt staging, features, baselines) reads one layout, the
``ab_test.csv`` export (see ``ml.data.export``). Public benchmark data such as Ta-Feng only has
purchases, so rather than teaching every stage a second input format we convert once, with
DuckDB (817k Ta-Feng lines convert in about a second), and let the rest of the stack run
unchanged on real purchase behaviour.

Decisions, kept deliberately faithful to the sources:

* **Purchases only.** Sources such as Ta-Feng record no views or carts; inventing a view and
  a cart row per line item would fabricate a funnel the models could learn from. Every
  output row is an ``ec.purchase`` row, one per basket.
* **One basket = one purchase row** whose ``ecom.*`` lists are aligned line items (in file
  order). Ta-Feng: a basket is a (customer, day). Generic logs: the ``--basket`` column, or
  else all rows of a user sharing one timestamp.
* **Time.** Ta-Feng has dates only; every basket gets the synthetic time 12:00:00 UTC of its
  day (one basket per customer per day, so ordering within a user is unaffected).
* **Ids are decimal, as in the real export.** The warehouse accepts only ids of 1-39 decimal
  digits (user, item and category ids alike). A source id that already is 1-39 digits is
  kept as the source text (leading zeros preserved); any other id (letters, punctuation,
  more than 39 digits) is replaced by ``md5_number(id)``, the first 16 bytes of the MD5 of
  its text read as an unsigned 128-bit integer, written in decimal (<= 39 digits). The
  mapping is deterministic, so re-imports and several files of one source agree, and every
  mapped id is listed in the sidecar ``<out>.id_map.csv`` (``kind, source_id, export_id``;
  kinds ``user``, ``item``, ``category``; not written when nothing was mapped). Digits-only
  ids never go through the hash, and the hash is computed once per *distinct* id (printing a
  UHUGEINT is slow) and joined back. An import fails loudly if a mapped id ever collides
  with another id of the same kind (probability ~2^-128 per pair).
* **Prices** are written as unit price x 100 rounded to an integer (Ta-Feng: NT$ cents,
  ``SALES_PRICE / AMOUNT``; the ``ecom.price100`` unit is "currency x 100", not RUB here).
  When one line of a basket has no price the basket's price list is written as ``[]``,
  which is exactly the quirk the export reader already tolerates (prices become NaN,
  items are kept).
* **Categories**: the source category goes into both ``main_category`` and ``sub_category``
  (10-column layout), because ``ml.data.export.read_line_items`` reads ``main_category`` as the
  item's category. The lists are aligned with ``ecom.nm``, so a line item without a category
  cannot simply be left out: it gets the placeholder category id ``0``
  (:data:`MISSING_CATEGORY_ID`), a valid decimal id that the warehouse accepts. Consumers
  should treat category ``0`` as "unknown" (a source whose own category id is literally
  ``0`` would share it; the hash mapping yields 0 with probability 2^-128).
* **Bad rows are never silently dropped**: malformed CSV lines (DuckDB ``store_rejects``)
  and rows failing validation are written with a reason to ``<out>.rejected.csv`` and
  counted in the returned :class:`ImportStats`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ml.vocabulary import BASE_COLUMNS, CATEGORY_COLUMNS, PLATFORMS

DEFAULT_PLATFORM = PLATFORMS[0]  # stamped on every row: the imported logs say nothing of a platform

TA_FENG_MEMBER = "ta_feng_all_months_merged.csv"
SYNTHETIC_TIME = "12:00:00"
#: Category id written for a line item whose source row has no category (lists stay aligned).
MISSING_CATEGORY_ID = "0"
#: What the warehouse accepts as an id (``decimal_id`` / ``is_id_list`` in the dbt macros).
_DECIMAL_ID = "[0-9]{1,39}"


@dataclass
class ImportStats:
    """What a conversion did; ``rejected_by_reason`` explains every input row not written."""

    out: Path
    rows_read: int
    line_items: int
    events: int
    users: int
    items: int
    rejected: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_path: Path | None = None
    seconds: float = 0.0
    mapped_ids: dict[str, int] = field(default_factory=dict)  # kind -> distinct ids hashed
    id_map_path: Path | None = None

    def summary(self) -> str:
        text = (
            f"read {self.rows_read:,} rows -> {self.events:,} purchase rows "
            f"({self.line_items:,} line items, {self.users:,} users, {self.items:,} items) "
            f"in {self.seconds:.1f} s to {self.out}"
        )
        if self.rejected:
            reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.rejected_by_reason.items()))
            text += f"; rejected {self.rejected:,} ({reasons}) -> {self.rejected_path}"
        if self.id_map_path:
            mapped = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.mapped_ids.items()))
            text += f"; non-decimal ids mapped to 128-bit decimals ({mapped}) -> {self.id_map_path}"
        return text


def _quote(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    """The single row of a query (DuckDB 2 relations have no ``fetchone``)."""
    return con.sql(sql).fetchall()[0]


def rejected_path_for(out: str | Path) -> Path:
    """``<out>.rejected.csv``: where the rows that could not be converted go."""
    return Path(str(out) + ".rejected.csv")


def id_map_path_for(out: str | Path) -> Path:
    """``<out>.id_map.csv``: source ids that were replaced by a decimal id, and by which."""
    return Path(str(out) + ".id_map.csv")


def _materialise_csv(path: Path, member: str | None, workdir: Path) -> Path:
    """A plain CSV path for ``path``: zip archives are extracted (streamed) to ``workdir``.

    DuckDB cannot read inside a zip, and extracting 64 MB takes well under a second.
    """
    if not zipfile.is_zipfile(path):
        return path
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if member is None:
            csvs = [n for n in names if n.lower().endswith(".csv")]
            if len(csvs) != 1:
                raise ValueError(f"{path}: expected one CSV inside the zip, found {csvs}")
            member = csvs[0]
        if member not in names:
            raise ValueError(f"{path}: no member {member!r} (has {names})")
        target = workdir / Path(member).name
        with archive.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return target


@dataclass(frozen=True)
class _Spec:
    """SQL expressions over the raw (all-text) source columns, one per layout field."""

    user: str
    item: str
    ts: str  # timestamp expression (NULL when unparseable)
    basket: str  # grouping key within a user
    price100: str | None  # double expression, NULL when missing
    price_raw: str | None  # raw text, to tell "missing" from "unparseable"
    qty: str | None
    category: str | None


def _convert(con: duckdb.DuckDBPyConnection, csv_path: Path, spec: _Spec, out: Path, platform: str) -> ImportStats:
    started = time.perf_counter()
    con.sql("set TimeZone = 'UTC'")
    con.sql("set enable_progress_bar = false")
    con.sql(f"""
        create or replace temp table src as
        select row_number() over () as record, *
        from read_csv({_quote(csv_path)}, header = true, all_varchar = true,
                      store_rejects = true)
    """)
    qty = spec.qty or "'1'"
    category = spec.category or "NULL"
    price = spec.price100 or "NULL"
    price_raw = spec.price_raw or "NULL"
    con.sql(f"""
        create or replace temp table checked as
        select record,
               trim({spec.user}) as user_id,
               trim({spec.item}) as item_id,
               {spec.ts} as ts,
               {spec.basket} as basket,
               try_cast({qty} as double) as qty_num,
               {price} as price_num,
               nullif(trim({category}), '') as category_id,
               case
                 when coalesce(trim({spec.user}), '') = '' then 'missing user id'
                 when coalesce(trim({spec.item}), '') = '' then 'missing item id'
                 when {spec.ts} is null then 'unparseable time'
                 when try_cast({qty} as double) is null then 'unparseable quantity'
                 when try_cast({qty} as double) <= 0 then 'non-positive quantity'
                 when coalesce(trim({price_raw}), '') <> '' and {price} is null then 'unparseable price'
                 when {price} < 0 then 'negative price'
               end as reason
        from src
    """)
    rows_read = _one(con, "select count(*) from src")[0]
    with_categories = spec.category is not None
    mapped_ids = _map_ids(con, with_categories)
    cat_cols = (
        ", '[' || string_agg(export_category_id, ', ' order by record) || ']' as main_category"
        ", '[' || string_agg(export_category_id, ', ' order by record) || ']' as sub_category"
        if with_categories
        else ""
    )
    con.sql(f"""
        create or replace temp table events as
        select {_quote(platform)} as platform,
               strftime(min(ts), '%Y-%m-%d %H:%M:%S') || '+00:00' as utc_event_time,
               strftime(min(ts), '%Y-%m-%d') as utc_event_date,
               export_user_id as user_id,
               'ec.purchase' as event_type,
               case when bool_and(price_num is not null)
                    then '[' || string_agg(round(price_num)::bigint::varchar, ', ' order by record) || ']'
                    else '[]' end as "ecom.price100",
               '[' || string_agg(round(qty_num)::bigint::varchar, ', ' order by record) || ']' as "ecom.qty",
               '[' || string_agg(export_item_id, ', ' order by record) || ']' as "ecom.nm"
               {cat_cols},
               min(ts) as sort_ts, min(record) as sort_record, count(*) as n_lines
        from accepted
        group by export_user_id, basket
    """)
    columns = BASE_COLUMNS + (CATEGORY_COLUMNS if with_categories else [])
    select_cols = ", ".join(_ident(c) for c in columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    con.sql(f"""
        copy (select {select_cols} from events order by sort_ts, sort_record)
        to {_quote(out)} (header, delimiter ',')
    """)
    events, line_items, users = _one(
        con, "select count(*), coalesce(sum(n_lines), 0), count(distinct user_id) from events"
    )
    items = _one(con, "select count(distinct item_id) from checked where reason is null")[0]

    _build_rejects(con)
    by_reason = dict(con.sql("select reason, count(*) from rejects group by reason").fetchall())
    rejected = sum(by_reason.values())
    rej_path = rejected_path_for(out)
    if rejected:
        con.sql(
            f"copy (select * from rejects order by line nulls last, record) "
            f"to {_quote(rej_path)} (header, delimiter ',')"
        )
    elif rej_path.exists():
        rej_path.unlink()  # a stale file from an earlier run would be misleading
    map_path = id_map_path_for(out)
    if mapped_ids:
        con.sql(
            f"copy (select kind, source_id, export_id from id_map where mapped "
            f"order by kind, source_id) to {_quote(map_path)} (header, delimiter ',')"
        )
    elif map_path.exists():
        map_path.unlink()
    return ImportStats(
        out=out,
        rows_read=rows_read + int(_one(con, "select count(distinct line) from reject_errors")[0]),
        line_items=int(line_items),
        events=int(events),
        users=int(users),
        items=int(items),
        rejected=rejected,
        rejected_by_reason=by_reason,
        rejected_path=rej_path if rejected else None,
        seconds=time.perf_counter() - started,
        mapped_ids=mapped_ids,
        id_map_path=map_path if mapped_ids else None,
    )


def _map_ids(con: duckdb.DuckDBPyConnection, with_categories: bool) -> dict[str, int]:
    """Give every accepted line its export ids; return how many distinct ids were hashed, by kind.

    Builds ``id_map (kind, source_id, export_id, mapped)`` over the *distinct* ids of the
    accepted lines (the MD5 and the UHUGEINT -> text cast run once per distinct id, never
    per line) and ``accepted``: the valid lines of ``checked`` with ``export_user_id``,
    ``export_item_id`` and ``export_category_id`` (:data:`MISSING_CATEGORY_ID` when absent).
    """
    category_ids = (
        "union select 'category', category_id from checked where reason is null and category_id is not null"
        if with_categories
        else ""
    )
    con.sql(f"""
        create or replace temp table id_map as
        with ids as (
            select 'user' as kind, user_id as source_id from checked where reason is null
            union select 'item', item_id from checked where reason is null
            {category_ids}
        ), judged as (
            select kind, source_id, regexp_full_match(source_id, '{_DECIMAL_ID}') as kept from ids
        )
        select kind, source_id, source_id as export_id, false as mapped from judged where kept
        union all
        select kind, source_id, md5_number(source_id)::varchar, true from judged where not kept
    """)
    clashes = con.sql("""
        select kind, export_id, list(source_id order by source_id) as sources
        from id_map group by kind, export_id having count(*) > 1 limit 3
    """).fetchall()
    if clashes:
        raise ValueError(f"id mapping collision (kind, export id, source ids): {clashes}")
    con.sql(f"""
        create or replace temp table accepted as
        select c.*,
               u.export_id as export_user_id,
               i.export_id as export_item_id,
               coalesce(k.export_id, '{MISSING_CATEGORY_ID}') as export_category_id
        from checked c
        join id_map u on u.kind = 'user' and u.source_id = c.user_id
        join id_map i on i.kind = 'item' and i.source_id = c.item_id
        left join id_map k on k.kind = 'category' and k.source_id = c.category_id
        where c.reason is null
    """)
    return dict(con.sql("select kind, count(*) from id_map where mapped group by kind").fetchall())


def _build_rejects(con: duckdb.DuckDBPyConnection) -> None:
    """Collect malformed CSV lines and validation failures into one ``rejects`` table.

    Columns: ``reason``, ``line`` (file line, for CSV-level errors), ``record`` (1-based
    data record among the parsed rows, for validation errors) and ``raw`` (the line, or the
    record's fields joined by commas).
    """
    src_cols = [r[0] for r in con.sql("describe src").fetchall() if r[0] != "record"]
    raw = " || ',' || ".join(f"coalesce(s.{_ident(c)}, '')" for c in src_cols)
    con.sql(f"""
        create or replace temp table rejects as
        select 'malformed csv line: ' || lower(min(error_type::varchar)) as reason,
               line::bigint as line, null::bigint as record,
               trim(min(csv_line), chr(10) || chr(13)) as raw
        from reject_errors  -- one row per bad *column*: report each line once
        group by line
        union all
        select c.reason, null::bigint, c.record, {raw}
        from checked c join src s using (record)
        where c.reason is not null
    """)


def import_ta_feng(input_path: str | Path, out: str | Path, platform: str = DEFAULT_PLATFORM) -> ImportStats:
    """Convert the Ta-Feng CSV (or the zip holding it) to the 10-column export layout.

    One ``ec.purchase`` row per (CUSTOMER_ID, TRANSACTION_DT) basket at 12:00:00 UTC,
    ``ecom.price100 = round(100 * SALES_PRICE / AMOUNT)``, ``ecom.qty = AMOUNT``,
    ``PRODUCT_SUBCLASS`` as category. The UTF-8 BOM of the header is handled by DuckDB.
    """
    input_path, out = Path(input_path), Path(out)
    with tempfile.TemporaryDirectory(prefix="recsys_import_") as tmp:
        csv_path = _materialise_csv(input_path, TA_FENG_MEMBER if zipfile.is_zipfile(input_path) else None, Path(tmp))
        con = duckdb.connect()
        spec = _Spec(
            user="CUSTOMER_ID",
            item="PRODUCT_ID",
            ts=f"try_strptime(TRANSACTION_DT || ' {SYNTHETIC_TIME}', '%m/%d/%Y %H:%M:%S')",
            basket="TRANSACTION_DT",
            price100="100.0 * try_cast(SALES_PRICE as double) / nullif(try_cast(AMOUNT as double), 0)",
            price_raw="SALES_PRICE",
            qty="AMOUNT",
            category="PRODUCT_SUBCLASS",
        )
        return _convert(con, csv_path, spec, out, platform)


def import_transactions(
    input_path: str | Path,
    out: str | Path,
    user: str,
    item: str,
    time_col: str,
    price: str | None = None,
    qty: str | None = None,
    category: str | None = None,
    basket: str | None = None,
    time_format: str | None = None,
    price_is_total: bool = False,
    platform: str = DEFAULT_PLATFORM,
) -> ImportStats:
    """Convert any one-row-per-purchased-line CSV (or a zip holding one CSV) to the layout.

    ``price`` is the unit price in currency units (written x 100), or the line total with
    ``price_is_total`` (divided by ``qty``). ``time_format`` is a strptime format
    (e.g. ``%d.%m.%Y %H:%M``); without it the time is cast, and an ISO UTC offset such as
    ``+02:00`` is converted to UTC. Rows are grouped into one purchase row per
    (user, ``basket``), or per (user, timestamp) when no basket column is given.
    """
    input_path, out = Path(input_path), Path(out)
    with tempfile.TemporaryDirectory(prefix="recsys_import_") as tmp:
        csv_path = _materialise_csv(input_path, None, Path(tmp))
        con = duckdb.connect()
        header = [
            r[0]
            for r in con.sql(
                f"describe select * from read_csv({_quote(csv_path)}, header = true, all_varchar = true)"
            ).fetchall()
        ]
        wanted = {
            "user": user,
            "item": item,
            "time": time_col,
            "price": price,
            "qty": qty,
            "category": category,
            "basket": basket,
        }
        missing = {k: v for k, v in wanted.items() if v is not None and v not in header}
        if missing:
            raise ValueError(f"{input_path}: columns not found {missing}; header is {header}")
        t = _ident(time_col)
        ts = (
            f"try_strptime({t}, {_quote(time_format)})::timestamp"
            if time_format
            else f"try_cast({t} as timestamptz)::timestamp"
        )
        price_expr = None
        if price:
            price_expr = f"100.0 * try_cast({_ident(price)} as double)"
            if price_is_total:
                q = f"try_cast({_ident(qty)} as double)" if qty else "1.0"
                price_expr += f" / nullif({q}, 0)"
        spec = _Spec(
            user=_ident(user),
            item=_ident(item),
            ts=ts,
            basket=_ident(basket) if basket else ts,
            price100=price_expr,
            price_raw=_ident(price) if price else None,
            qty=_ident(qty) if qty else None,
            category=_ident(category) if category else None,
        )
        return _convert(con, csv_path, spec, out, platform)
