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
    "recommend": f"""
CREATE MACRO recommend(uid, n := {DEFAULT_N}, plat := NULL) AS TABLE
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
CREATE MACRO related_items(item, n := {DEFAULT_N}, uid := NULL) AS TABLE
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
