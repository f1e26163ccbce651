"""The serving file's schema: its tables (from the dbt ``pub_*`` contracts), indexes, and the
table macros ``recommend`` and ``related_items`` the marketplace calls.

DDL and constants shared by the publisher (which creates the file) and the reader (whose Python
fast paths mirror the macros and are tested against them).
"""

from __future__ import annotations

from ml.config import default
from ml.serving import privacy
from ml.warehouse.contracts import Column, contract

# The list length when a reader gives no n: the run's default top_n (the dbt var).
DEFAULT_N: int = int(default("top_n"))
SERVING_ALIAS = "serving"

# Re-ordering of the product-page list for a known user (see docs/serving.md).
IN_LIST_BOOST = 0.5  # +50 % when the item is also in the user's personal list
TOP_CATEGORY_BOOST = 0.25  # +25 % when the item is in the user's top category
PRICE_CEILING_FACTOR = 3.0  # items above 3 x the user's tier price are penalised ...
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
SAME_CATEGORY_SCORE = "t.popularity / (1 + abs(ln((coalesce(t.price_rub, 0) + 1) / (coalesce({anchor_price}, 0) + 1))))"

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
_CONSTRAINT_SQL = {"not_null": "not null", "check": "check ({expression})"}


def _serving_columns(name: str) -> list[Column]:
    """The columns of serving table ``name``: its pub_* model's contract, without the stamp
    where the serving table leaves it out."""
    return [column for column in contract(f"pub_{name}").columns if not (name in UNSTAMPED and column.name == STAMP)]


def _table_ddl(name: str) -> str:
    """The body of ``create table name (...)``: the pub_* model's contract (types, not null,
    check), so the file holds exactly what dbt built and checked; plus the primary key."""
    parts = []
    for column in _serving_columns(name):
        words = [column.name, column.data_type.upper()]
        words += [_CONSTRAINT_SQL[c.type].format(expression=c.expression) for c in column.constraints]
        if PRIMARY_KEYS.get(name) == column.name:
            words.append("PRIMARY KEY")
        parts.append(" ".join(words))
    parts += [_CONSTRAINT_SQL[c.type].format(expression=c.expression) for c in contract(f"pub_{name}").constraints]
    return ",\n".join(parts)


TABLES = {
    name: _table_ddl(name)
    for name in ("recommendations", "fallback_recommendations", "similar_items", "items", "user_profiles")
}
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
create table category_top_items (
    category_id varchar not null,
    item_id     varchar not null,
    price_rub   double,
    popularity  double  not null
)"""
CATEGORY_TOP_ITEMS_SQL = f"""
insert into category_top_items
select category_id, item_id, price_rub, popularity from items
where category_id is not null
qualify row_number() over (partition by category_id order by popularity desc, item_id) <= {CATEGORY_TOP_K}
order by category_id, popularity desc, item_id"""
INDEXES = {
    "recommendations": "user_id",
    "similar_items": "item_id",
    "category_top_items": "category_id",
    # items and user_profiles: their PRIMARY KEY already is an ART index
}
PUBLICATION_DDL = """
create table publication (
    model_version varchar   not null,
    generated_at  timestamp not null,
    as_of         timestamp not null,
    n_users       bigint    not null,
    n_rows        bigint    not null,
    list_source   varchar   not null,
    pseudonymized boolean   not null,
    pseudonym_key_id varchar
)"""

ALL_TABLES = (*TABLES, "category_top_items", "publication")

# --------------------------------------------------------------------------------------------
# The marketplace's queries, stored in the serving database as table macros.
# --------------------------------------------------------------------------------------------
_ANCHORED_SCORE = SAME_CATEGORY_SCORE.format(anchor_price="a.price_rub")
MACROS = {
    "recommend": f"""
create macro recommend(uid, n := {DEFAULT_N}, plat := null) as table
with personal as (
    select r.item_id, r.rank as src_rank, r.score, r.reason, r.model_version, r.generated_at,
           'personal' as source, 0 as tier
    from recommendations r
    where r.user_id = cast(uid as varchar) and r.rank <= n
),
chosen as (
    select coalesce(
        (select cast(plat as varchar) where cast(plat as varchar) in (select platform from fallback_recommendations)),
        (select p.platform from user_profiles p
          where p.user_id = cast(uid as varchar)
            and p.platform in (select platform from fallback_recommendations)),
        'all') as platform
),
fallback as (
    select f.item_id, f.rank as src_rank, f.score, f.reason, f.model_version, f.generated_at,
           'fallback:' || f.platform as source, 1 as tier
    from fallback_recommendations f join chosen c on f.platform = c.platform
    where f.item_id not in (select item_id from personal)
)
select cast(uid as varchar) as user_id, item_id,
       cast(row_number() over (order by tier, src_rank) as integer) as rank,
       score, reason, source, model_version, generated_at
from (select * from personal union all select * from fallback order by tier, src_rank limit n)
order by rank
""",
    "related_items": f"""
create macro related_items(item, n := {DEFAULT_N}, uid := null) as table
with anchor as (
    select i.item_id, i.category_id, i.price_rub from items i where i.item_id = cast(item as varchar)
),
prof as (
    select p.platform, {TIER_PRICE_SQL.format(tier="p.price_tier")} as tier_price, p.top_category_id
    from user_profiles p where p.user_id = cast(uid as varchar)
),
mine as (
    select r.item_id from recommendations r where r.user_id = cast(uid as varchar)
),
bought as (
    select s.similar_item_id as item_id, s.rank as src_rank, s.score, 'bought_together' as source
    from similar_items s where s.item_id = cast(item as varchar)
),
same_category as (
    select t.item_id,
           cast(row_number() over (order by {_ANCHORED_SCORE} desc, t.item_id) as integer) as src_rank,
           {_ANCHORED_SCORE} as score,
           'same_category' as source
    from category_top_items t join anchor a on t.category_id = a.category_id
    where t.item_id <> a.item_id and not exists (select 1 from bought)
    qualify src_rank <= greatest(n, {SAME_CATEGORY_MIN})
),
fallback as (
    select f.item_id, f.rank as src_rank, f.score, 'fallback:' || f.platform as source
    from fallback_recommendations f
    where f.platform = coalesce((select platform from prof
                                  where platform in (select platform from fallback_recommendations)), 'all')
      and f.item_id <> cast(item as varchar)
      and not exists (select 1 from bought) and not exists (select 1 from same_category)
),
candidates as (
    select * from bought union all select * from same_category union all select * from fallback
),
known as (
    select (exists (select 1 from prof) or exists (select 1 from mine)) as is_known
),
scored as (
    select c.item_id, c.src_rank, c.score, c.source,
           case when k.is_known then
               (1.0 / log2(c.src_rank + 1))
               * (case when c.item_id in (select item_id from mine) then {1 + IN_LIST_BOOST} else 1.0 end)
               * (case when it.category_id is not null
                        and it.category_id = (select top_category_id from prof)
                       then {1 + TOP_CATEGORY_BOOST} else 1.0 end)
               * (case when it.price_rub > {PRICE_CEILING_FACTOR} * (select tier_price from prof)
                       then {PRICE_CEILING_FACTOR} * (select tier_price from prof) / it.price_rub
                       else 1.0 end)
           else 1.0 / log2(c.src_rank + 1) end as final_score,
           k.is_known as personalised
    from candidates c cross join known k left join items it on it.item_id = c.item_id
)
select cast(item as varchar) as for_item_id, item_id,
       cast(row_number() over (order by final_score desc, src_rank, item_id) as integer) as rank,
       score, final_score, source, src_rank, personalised
from scored
order by final_score desc, src_rank, item_id
limit n
""",
    "pseudonym": privacy.PSEUDONYM_MACRO,
}
