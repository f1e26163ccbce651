"""The export profile: what an export holds before any training, and what training will lack.

Rejected rows come from the warehouse's own quarantine (a dbt build into a temporary home), so
the reasons are exactly those a run would quarantine; the rest are DuckDB aggregates over the
file (``ml.data.export.profile_aggregates``). ``ml.reports.profile`` draws the page.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml.data.export import check_export, profile_aggregates
from ml.vocabulary import CATEGORY_COLUMNS
from ml.warehouse.dbt import rejected_rows_summary


def profile_export(input_path: Path, settings_home: Path) -> dict[str, Any]:
    """Describe an export (``ab_test.csv`` layout) before any training; a JSON-able dict.

    Rejected rows come from dbt run into a temporary home under ``settings_home`` (deleted
    afterwards), so the reasons are exactly those a build would quarantine; ``warnings`` say
    what training will lack (:func:`training_gaps`).
    """
    input_path = check_export(input_path).resolve()
    settings_home = Path(settings_home)
    started = time.perf_counter()
    profile: dict[str, Any] = {
        "input": str(input_path),
        "bytes": input_path.stat().st_size,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    profile["rejected"] = rejected_rows_summary(input_path, settings_home)
    settings_home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="profile-spill-", dir=settings_home) as spill:
        profile.update(profile_aggregates(input_path, Path(spill)))
    profile["warnings"] = training_gaps(profile)
    profile["seconds"] = time.perf_counter() - started
    return profile


def training_gaps(profile: Mapping[str, Any]) -> list[str]:
    """One line per part of the export training uses that it lacks, and what training does
    without it: a run still works, but the reader should know before wondering why."""
    gaps = []
    columns = profile.get("columns") or []
    rows = profile.get("rows") or 0
    missing = {m["column"]: m["missing"] + m["empty_list"] for m in profile.get("missing") or []}
    without_categories = (
        "the item category, the category candidate source and the buyer's category share "
        "are left out of the fit, and new items get no category list"
    )
    if not set(CATEGORY_COLUMNS) <= set(columns):
        gaps.append(f"no category columns (8-column export): {without_categories}")
    elif rows and all(missing.get(column, 0) >= rows for column in CATEGORY_COLUMNS):
        gaps.append(f"the category columns are empty: {without_categories}")
    if not any(r["event_type"] == "ec.purchase" and r["rows"] for r in profile.get("event_mix") or []):
        gaps.append(
            "no purchases: the ranker learns from purchases and is judged on them, so none can be "
            "trained; a run publishes the cold-start lists only (popular by weighted events)"
        )
    platforms = [p["platform"] for p in profile.get("platforms") or [] if p["platform"] != "(missing)"]
    if len(platforms) == 1:
        gaps.append(
            f"a single platform ({platforms[0]}): the platform feature is constant and left out of "
            "the fit, and the per-platform cold-start lists are the same as the overall one"
        )
    return gaps
