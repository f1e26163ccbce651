"""The outcome marts (dbt_project/models/outcomes) and the pilot's readout (ml/monitoring/outcomes.py),
on generated exposures and events: a planted effect is recovered within its interval, an A/A split
finds none, and only events after the exposure and within the window count."""

from __future__ import annotations

import random
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows import cli
from ml.config import Settings
from ml.monitoring.outcomes import compare, readout, users_needed
from ml.serving.experiment import in_control
from ml.serving.exposures import COLUMNS
from ml.warehouse.dbt import dbt_vars, run_dbt
from tests.exports import event, write_export

SALT = "recsys-control"
USERS = 4_000
EXPOSED_AT = datetime(2023, 8, 1, 10)
SHOWN = {"personal": ["1001", "1002", "1003"], "control": ["2001", "2002", "2003"]}
NOT_SHOWN = [str(i) for i in range(3001, 3031)]
# Planted: a treatment user buys a shown item with probability 0.30, a control user 0.20.
EFFECT, AA = ("v-effect", 0.30, 0.20), ("v-aa", 0.20, 0.20)


def exposure(at: datetime, kind: str, user: str, items: list[str], version: str) -> list[tuple]:
    request = f"{version}-{user}-{at:%d%H}"
    return [(at, request, kind, user, None, item, rank, kind, version) for rank, item in enumerate(items, start=1)]


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def experiment(version: str, p_treatment: float, p_control: float, first_user: int, rng: random.Random):
    """Exposures and events of USERS users split by the control hash at 0.5: each buys a shown
    item 1-6 days after the exposure with its group's probability, and views an item never shown."""
    exposures, events = [], []
    for user in map(str, range(first_user, first_user + USERS)):
        kind = "control" if in_control(user, 0.5, SALT) else "personal"
        at = EXPOSED_AT + timedelta(minutes=rng.randrange(600))
        exposures += exposure(at, kind, user, SHOWN[kind], version)
        if rng.random() < (p_control if kind == "control" else p_treatment):
            bought = at + timedelta(days=rng.uniform(1, 6))
            events.append(event(user, "ec.purchase", [rng.choice(SHOWN[kind])], stamp(bought)))
        viewed = EXPOSED_AT + timedelta(days=rng.uniform(0, 11))
        events.append(event(user, "ec.view_item", [rng.choice(NOT_SHOWN)], stamp(viewed)))
    return exposures, events


def rules() -> tuple[list[tuple], list[list[str]]]:
    """Users of publication v-rules, one rule each (the window is 7 days from 08-02 12:00)."""
    t0 = datetime(2023, 8, 2, 12)
    exposures = [
        *exposure(t0, "personal", "9001", ["7001", "7002"], "v-rules"),
        *exposure(t0, "personal", "9002", ["7001"], "v-rules"),
        *exposure(datetime(2023, 8, 12, 12), "fallback", "9003", ["7001"], "v-rules"),
        *exposure(t0, "personal", "9004", ["7001"], "v-rules"),
        *exposure(datetime(2023, 8, 5, 12), "personal", "9004", ["7002"], "v-rules"),
        *exposure(t0, "product_page", "9005", ["7001"], "v-rules"),
    ]
    events = [
        event(9001, "ec.purchase", [7001], "2023-08-02 11:00:00"),  # before the exposure
        event(9001, "ec.purchase", [7001], "2023-08-09 12:30:00"),  # after the 7 days
        event(9001, "ec.view_item", [7002], "2023-08-03 09:00:00"),  # viewed a shown item
        event(9001, "ec.purchase", [7003], "2023-08-03 10:00:00", prices=[25_000]),  # bought, not a shown item
        event(9002, "ec.purchase", [7001, 7003], "2023-08-04 10:00:00", prices=[10_000, 30_000]),
        event(9003, "ec.purchase", [7001], "2023-08-13 10:00:00"),  # its window runs past the cutoff (08-14)
        event(9004, "ec.purchase", [7002], "2023-08-04 10:00:00"),  # 7002 is only shown on 08-05
        event(9004, "ec.add_to_cart", [7002], "2023-08-06 10:00:00"),  # after it was shown
        event(9005, "ec.purchase", [7001], "2023-08-03 10:00:00"),  # product page: its own list kind
    ]
    return exposures, events


def write_exposures(directory: Path, rows: list[tuple]) -> None:
    """The log as ml/serving/exposures.py writes it: one directory per day, its column types."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    con = duckdb.connect()
    for day, part in frame.groupby(frame["served_at"].dt.date):
        folder = directory / f"date={day.isoformat()}"
        folder.mkdir(parents=True)
        con.register("part", part)
        con.execute(
            "copy (select served_at, request_id, list_kind, user_id, anchor_item_id, item_id, "
            "cast(rank as integer) as rank, source, model_version from part) to ? (format parquet)",
            [str(folder / "part-00000.parquet")],
        )


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Settings:
    """One export and one exposure log holding all three publications, built once with dbt."""
    rng = random.Random(13)
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    exposures, events = [], []
    for (version, p_t, p_c), first_user in zip((EFFECT, AA), (100_000, 200_000), strict=True):
        shown, done = experiment(version, p_t, p_c, first_user, rng)
        exposures += shown
        events += done
    shown, done = rules()
    write_exposures(settings.exposures_dir, exposures + shown)
    export = write_export(settings.home / "ab_test.csv", events + done)
    run_dbt(settings, "build", dbt_vars(export), select="tag:ingest tag:outcomes", indirect_selection="buildable")
    return settings


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow  # runs dbt
def test_a_planted_effect_is_recovered_within_its_interval(home):
    with duckdb.connect(str(home.build_db), read_only=True) as con:
        result = readout(con, "v-effect")
    print("\n" + result.format())
    bought = result.comparison("bought_shown")
    planted = EFFECT[1] - EFFECT[2]
    assert bought.treatment_users + bought.control_users == USERS
    assert 0.45 < bought.control_users / USERS < 0.55  # the hash splits evenly
    assert bought.difference_low < planted < bought.difference_high
    assert bought.difference_low > 0 and bought.significant
    assert bought.lift_low < EFFECT[1] / EFFECT[2] - 1 < bought.lift_high
    assert bought.users_needed == users_needed(bought.control_rate) > 1_000
    # nobody was planted to view a shown item
    assert result.comparison("viewed_shown").treatment_rate == 0
    assert result.users_incomplete == 0
    # the mart others read says the same
    shares = dict(query(home, "select list_kind, bought_share from outcomes_by_list where model_version = 'v-effect'"))
    assert shares == pytest.approx({"personal": bought.treatment_rate, "control": bought.control_rate})


@pytest.mark.slow  # runs dbt
def test_an_a_a_split_finds_no_difference(home):
    with duckdb.connect(str(home.build_db), read_only=True) as con:
        result = readout(con, "v-aa")
    print("\n" + result.format())
    bought = result.comparison("bought_shown")
    assert bought.difference_low < 0 < bought.difference_high
    assert not bought.significant
    assert bought.lift_low < 0 < bought.lift_high


@pytest.mark.slow  # runs dbt
def test_only_events_after_the_exposure_and_within_the_window_count(home):
    rows = query(
        home,
        """
        select user_id, list_kind, experiment_group, window_complete, viewed_shown, carted_shown, bought_shown,
               bought_any, shown_revenue_rub, revenue_rub
        from outcomes_by_user where model_version = 'v-rules' order by user_id""",
    )
    assert rows == [
        ("9001", "personal", "treatment", True, True, False, False, True, 0.0, 250.0),
        ("9002", "personal", "treatment", True, False, False, True, True, 100.0, 400.0),
        ("9003", "fallback", "treatment", False, False, False, True, True, 100.0, 100.0),  # counted apart
        ("9004", "personal", "treatment", True, False, True, False, True, 0.0, 100.0),
        ("9005", "product_page", None, True, False, False, True, True, 100.0, 100.0),
    ]
    by_list = query(
        home,
        """
        select list_kind, users, users_incomplete, bought_share, shown_revenue_share
        from outcomes_by_list where model_version = 'v-rules' order by list_kind""",
    )
    assert by_list == [
        ("fallback", 0, 1, None, None),
        ("personal", 3, 0, pytest.approx(1 / 3), pytest.approx(100 / 750)),
        ("product_page", 1, 0, 1.0, 1.0),
    ]


@pytest.mark.slow  # runs dbt
def test_recsys_outcomes_rebuilds_with_its_days_and_reads_the_latest_publication(home, tmp_path, capsys):
    copy = Settings(home=tmp_path / "home")  # the other tests keep their 7 days
    shutil.copytree(home.home, copy.home)
    assert cli.main(["--home", str(copy.home), "outcomes", "--days", "3"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("publication v-rules: outcomes within 3 days")  # first shown last
    assert "no control group" in printed and "revenue share of shown items: treatment 13.3%" in printed
    assert query(copy, "select distinct outcome_days from outcomes_by_user") == [(3,)]
    # 9001's window now ends on 08-05 12:00: its view of 08-03 still counts
    assert query(copy, "select viewed_shown from outcomes_by_user where user_id = '9001'") == [(True,)]


def test_the_interval_and_the_sample_size_follow_the_textbook():
    # 300 of 1000 against 200 of 1000: difference 0.1, se = sqrt(.21/1000 + .16/1000)
    c = compare("bought_shown", 300, 1000, 200, 1000)
    half = 1.959964 * (0.21 / 1000 + 0.16 / 1000) ** 0.5
    assert (c.difference_low, c.difference_high) == pytest.approx((0.1 - half, 0.1 + half))
    assert c.lift == pytest.approx(0.5)
    # 20 % -> 23 % at alpha 0.05 and power 0.8 needs about 2,940 users per group
    assert users_needed(0.20) == pytest.approx(2_940, abs=5)
    assert users_needed(0.0) is None
    alone = compare("bought_shown", 300, 1000, 0, 0)
    assert alone.control_rate is None and alone.difference is None and not alone.significant


def test_recsys_outcomes_without_a_warehouse_says_so(tmp_path, capsys):
    assert cli.main(["--home", str(tmp_path), "outcomes"]) == 1
    assert capsys.readouterr().err.startswith(f"error: no warehouse at {tmp_path / 'build.duckdb'}")


def test_no_exposures_no_readout():
    con = duckdb.connect()
    con.execute("""create table outcomes_by_user (model_version varchar, user_id varchar, experiment_group varchar,
                   first_exposed_at timestamp, window_complete boolean, viewed_shown boolean, carted_shown boolean,
                   bought_shown boolean, shown_revenue_rub double, revenue_rub double, outcome_days integer)""")
    assert readout(con) is None and readout(con, "v1") is None
