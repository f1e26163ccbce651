"""Choosing the label horizon from the export: span, steady windows, buyers' rhythm."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pytest

from ml.warehouse.timescale import STEADY_HORIZON_DAYS, choose_horizon, given_horizon, room_days


def warehouse(purchases: list[tuple[int, datetime]], serve_at: datetime) -> duckdb.DuckDBPyConnection:
    """The two tables the rule reads, as the ingest models build them."""
    con = duckdb.connect()
    con.execute(
        "create table int_line_items (user_id varchar, event_type varchar, event_at timestamp, event_date date)"
    )
    con.executemany(
        "insert into int_line_items values (?, 'purchase', ?, ?)",
        [(str(user), at, at.date()) for user, at in purchases],
    )
    con.execute(
        "create table int_export_window as select ?::timestamp as serve_at, min(event_at) as first_event_at "
        "from int_line_items where event_at < ?",
        [serve_at, serve_at],
    )
    return con


def buyers(users: int, days: int, every: tuple[int, int], seed: int = 0) -> list[tuple[int, datetime]]:
    """Each user buys every ``every`` days (uniform range) over ``days`` days from 2023-01-01."""
    rng = np.random.default_rng(seed)
    start, rows = datetime(2023, 1, 1), []
    for user in range(users):
        day = int(rng.integers(0, every[1]))
        while day < days:
            rows.append((user, start + timedelta(days=day, hours=12)))
            day += int(rng.integers(every[0], every[1] + 1))
    return rows


def test_a_fortnight_export_gets_the_room_it_has():
    con = warehouse(buyers(3_000, 14, (1, 4)), datetime(2023, 1, 15))
    scale = choose_horizon(con, labelled_cutoffs=3)
    assert scale.horizon_days == 3 and "room for 3 d" in scale.reason


def test_a_season_of_weekly_shoppers_gets_steady_windows_not_their_rhythm():
    con = warehouse(buyers(3_000, 92, (5, 10)), datetime(2023, 4, 3))
    scale = choose_horizon(con, labelled_cutoffs=3)
    assert scale.median_gap_days <= 10
    assert scale.horizon_days == 22  # a quarter of the 92 days, below the four weeks wanted


def test_overlapping_windows_keep_the_horizon_that_five_windows_end_to_end_would_shorten():
    con = warehouse(buyers(3_000, 92, (5, 10)), datetime(2023, 4, 3))
    assert choose_horizon(con, labelled_cutoffs=5).horizon_days == 15  # 92 / 6
    scale = choose_horizon(con, labelled_cutoffs=5, cutoffs_per_horizon=2)
    assert scale.horizon_days == 22 and "5 labelled windows, 2 a horizon" in scale.reason  # 2 * 22 + 4 * 11 = 88 <= 92


@pytest.mark.parametrize(
    ("span", "labelled", "per_horizon", "room"),
    [(14, 3, 1, 3), (92, 3, 1, 23), (92, 5, 1, 15), (92, 5, 2, 22), (75, 5, 2, 18), (7, 3, 2, 2), (2, 3, 1, 0)],
)
def test_the_room_is_the_longest_horizon_whose_windows_and_one_more_fit(span, labelled, per_horizon, room):
    assert room_days(span, labelled, per_horizon) == room


def test_a_year_of_weekly_shoppers_gets_four_weeks():
    con = warehouse(buyers(3_000, 365, (5, 10)), datetime(2024, 1, 1))
    assert choose_horizon(con, labelled_cutoffs=3).horizon_days == STEADY_HORIZON_DAYS


def test_buyers_who_return_every_two_months_get_a_window_they_return_in():
    con = warehouse(buyers(3_000, 365, (40, 80)), datetime(2024, 1, 1))
    scale = choose_horizon(con, labelled_cutoffs=3)
    assert scale.horizon_days >= scale.median_gap_days > STEADY_HORIZON_DAYS


def test_the_window_grows_until_it_holds_enough_buyers():
    con = warehouse(buyers(400, 365, (40, 80)), datetime(2024, 1, 1))
    scale = choose_horizon(con, labelled_cutoffs=3, min_warm_buyers=390)
    assert scale.warm_buyers >= 390 and scale.horizon_days > scale.median_gap_days


def test_an_export_of_two_days_is_too_short_and_says_so():
    con = warehouse(buyers(100, 2, (1, 1)), datetime(2023, 1, 3))
    scale = choose_horizon(con, labelled_cutoffs=3)
    assert scale.horizon_days == 1 and "too short" in scale.reason


@pytest.mark.parametrize("days", [1, 9])
def test_a_given_horizon_is_taken_as_given(days):
    con = warehouse(buyers(100, 30, (2, 5)), datetime(2023, 2, 1))
    scale = given_horizon(con, days)
    assert scale.horizon_days == days and "given" in scale.reason
