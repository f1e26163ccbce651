"""The export's fixed words, written once: its columns, event types and platforms.

The platforms are the dbt var ``platforms`` of ``dbt_project.yml``: the SQL models, their dbt
tests and this module all read that one list. The columns and raw event type names are the
``ab_test.csv`` layout (docs: ../shared/docs/data-profile.md); dbt's staging model maps the raw
event names to the short ones the warehouse uses.
"""

from __future__ import annotations

from ml.config import DBT_VARS

BASE_COLUMNS: list[str] = [
    "platform",
    "utc_event_time",
    "utc_event_date",
    "user_id",
    "event_type",
    "ecom.price100",
    "ecom.qty",
    "ecom.nm",
]
CATEGORY_COLUMNS: list[str] = ["main_category", "sub_category"]
KNOWN_COLUMNS: list[str] = BASE_COLUMNS + CATEGORY_COLUMNS

EVENT_TYPES: list[str] = ["ec.view_item", "ec.add_to_cart", "ec.purchase", "user_engagement", "pageview"]

PLATFORMS: tuple[str, ...] = tuple(DBT_VARS["platforms"])
ALL_PLATFORMS = "all"  # the cold-start list over every platform
FALLBACK_PLATFORMS: tuple[str, ...] = (*PLATFORMS, ALL_PLATFORMS)
