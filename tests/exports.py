"""Writing small exports in the ``ab_test.csv`` layout by hand, for tests."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from ml.vocabulary import BASE_COLUMNS, CATEGORY_COLUMNS


def event(
    user: int | str,
    event_type: str,
    items: Sequence[int | str],
    at: str,
    *,
    prices: Sequence[int] | None = None,
    platform: str = "Android",
    qty: Sequence[int] | None = None,
) -> list[str]:
    """One export row; ``at`` is ``YYYY-MM-DD HH:MM:SS`` (UTC), prices are in price100 units."""
    prices = [10_000] * len(items) if prices is None else prices
    qty = [1] * len(items) if qty is None else qty
    as_list = lambda values: "[" + ", ".join(str(v) for v in values) + "]"  # noqa: E731
    return [platform, f"{at}+00:00", at[:10], str(user), event_type, as_list(prices), as_list(qty), as_list(items)]


def activity(user: int | str, event_type: str, date: str, platform: str = "Site") -> list[str]:
    """A user_engagement or pageview row: no time, empty lists."""
    return [platform, "", date, str(user), event_type, "[]", "[]", "[]"]


def write_export(path: Path, rows: Iterable[Sequence[str]], with_categories: bool = False) -> Path:
    """Write rows with the export's header, quoting fields that hold commas as the export does."""
    header = BASE_COLUMNS + (CATEGORY_COLUMNS if with_categories else [])
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_raw_lines(path: Path, lines: Iterable[str]) -> Path:
    """Write lines exactly as given (for rows no CSV writer would produce)."""
    path.write_text("\n".join(lines) + "\n")
    return path
