"""Choosing the label horizon from the export itself.

The ranker learns "bought within h days of the cutoff". A 14-day marketplace export and a
year-long shop log need different h: too short, and a label window holds a handful of buyers
who came back, or one holiday week decides what the model learns and which list wins the
gate; too long, and the labelled windows plus the history before them no longer fit in the
export. The rule, in order:

1. room: the serving cutoff T, ``labelled_cutoffs`` windows of h days before it (a stride s
   apart: h / ``cutoffs_per_horizon``, rounded up), and at least one more window of history
   before the oldest: 2 h + (labelled_cutoffs - 1) s <= span (end to end: h <= span / (L + 1));
2. steady windows: h is as long as the room allows up to four weeks, which average out weekly
   cycles and one-off peaks (on Ta-Feng before 2001-02-01, 8-day windows let the Chinese New
   Year week pick the repurchase list, 0.129 NDCG@10 over the next 28 days; 28-day windows
   trained a ranker that wins the gate and scores 0.144, and also wins on the next 8 days);
3. rhythm: h is at least the median number of days between two purchase days of one buyer,
   so a typical returning buyer can come back inside the window (this matters for sparse
   logs whose buyers return every month or two);
4. enough buyers: from there h grows (within the room) until the newest window holds
   ``min_warm_buyers`` buyers with history, the users a ranking is learned and judged on
   (1,000: about as many positive rows per labelled window); when no h reaches it, the h with
   the most of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import duckdb

MIN_WARM_BUYERS = 1_000
STEADY_HORIZON_DAYS = 28


@dataclass(frozen=True)
class TimeScale:
    """The serving cutoff, the label horizon, and the facts the horizon was chosen from."""

    serve_at: datetime
    horizon_days: int
    reason: str
    span_days: float
    median_gap_days: float | None = None
    warm_buyers: int | None = None


def export_window(con: duckdb.DuckDBPyConnection) -> tuple[datetime, datetime | None]:
    """(serving cutoff T, first accepted commerce event before T) from ``int_export_window``."""
    return con.execute("select serve_at, first_event_at from int_export_window").fetchone()


def _span_days(serve_at: datetime, first_event_at: datetime | None) -> float:
    return (serve_at - first_event_at).total_seconds() / 86400 if first_event_at else 0.0


def given_horizon(con: duckdb.DuckDBPyConnection, horizon_days: int) -> TimeScale:
    """The horizon the operator asked for (``--horizon-days``), with the export's cutoff."""
    serve_at, first_event_at = export_window(con)
    return TimeScale(serve_at, horizon_days, f"horizon {horizon_days} d: given", _span_days(serve_at, first_event_at))


def stride_days(horizon_days: int, cutoffs_per_horizon: int) -> int:
    """Days between two labelled cutoffs (``int_cutoffs``): the horizon split, rounded up."""
    return math.ceil(horizon_days / cutoffs_per_horizon)


def room_days(span_days: float, labelled_cutoffs: int, cutoffs_per_horizon: int = 1) -> int:
    """The longest horizon whose labelled windows and one more window of history fit in the span."""

    def needs(h: int) -> int:
        return 2 * h + (labelled_cutoffs - 1) * stride_days(h, cutoffs_per_horizon)

    room = 0
    while needs(room + 1) <= span_days:
        room += 1
    return room


def choose_horizon(
    con: duckdb.DuckDBPyConnection,
    labelled_cutoffs: int,
    cutoffs_per_horizon: int = 1,
    min_warm_buyers: int = MIN_WARM_BUYERS,
) -> TimeScale:
    """The label horizon for this export (see the module docstring for the rule)."""
    serve_at, first_event_at = export_window(con)
    span = _span_days(serve_at, first_event_at)
    room = room_days(span, labelled_cutoffs, cutoffs_per_horizon)
    if room < 1:
        return TimeScale(
            serve_at,
            1,
            f"horizon 1 d: the export spans {span:.1f} days before the cutoff, "
            f"too short for {labelled_cutoffs} labelled days and history before them",
            span,
        )
    gap = median_purchase_gap_days(con)
    start = min(max(STEADY_HORIZON_DAYS, math.ceil(gap or 0)), room)
    warm = warm_buyers_by_horizon(con, room)
    enough = [h for h in range(start, room + 1) if warm.get(h, 0) >= min_warm_buyers]
    horizon = enough[0] if enough else max(range(start, room + 1), key=lambda h: (warm.get(h, 0), -h))
    rhythm = (
        f"buyers come back after a median {gap:g} days" if gap is not None else "no buyer bought on two different days"
    )
    verdict = "" if enough else f" (fewer than the {min_warm_buyers} wanted)"
    reason = (
        f"horizon {horizon} d: the export spans {span:.0f} days before the cutoff, room for "
        f"{room} d with {labelled_cutoffs} labelled windows{_stride_note(cutoffs_per_horizon)} "
        f"(up to {STEADY_HORIZON_DAYS} d are taken); "
        f"{rhythm}; the newest window holds {warm.get(horizon, 0):,} buyers with history{verdict}"
    )
    return TimeScale(serve_at, horizon, reason, span, gap, warm.get(horizon, 0))


def _stride_note(cutoffs_per_horizon: int) -> str:
    return f", {cutoffs_per_horizon} a horizon" if cutoffs_per_horizon > 1 else ""


def median_purchase_gap_days(con: duckdb.DuckDBPyConnection) -> float | None:
    """Median days between two consecutive purchase days of the same buyer, before T."""
    return con.execute("""
        with days as (
            select distinct line_items.user_id, line_items.event_date
            from int_line_items as line_items, int_export_window as export
            where line_items.event_type = 'purchase' and line_items.event_at < export.serve_at
        ),
        gaps as (
            select event_date - lag(event_date) over (partition by user_id order by event_date) as gap
            from days
        )
        select median(gap)::double from gaps where gap is not null""").fetchone()[0]


def warm_buyers_by_horizon(con: duckdb.DuckDBPyConnection, max_horizon: int) -> dict[int, int]:
    """For h = 1..max_horizon: buyers in [T - h, T) with an accepted commerce event before T - h."""
    rows = con.execute(
        """
        with users as (
            select line_items.user_id,
                   max(line_items.event_at) filter (where line_items.event_type = 'purchase') as last_purchase_at,
                   min(line_items.event_at) as first_event_at,
                   any_value(export.serve_at) as serve_at
            from int_line_items as line_items, int_export_window as export
            where line_items.event_at < export.serve_at
            group by line_items.user_id
        )
        select h, count(*) filter (where last_purchase_at >= serve_at - to_days(h)
                                     and first_event_at < serve_at - to_days(h))
        from users, range(1, ? + 1) as horizons(h)
        group by h""",
        [max_horizon],
    ).fetchall()
    return {int(h): int(n) for h, n in rows}
