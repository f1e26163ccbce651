"""``recsys evaluate --published``: the lists the marketplace reads, judged on a time split."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows.cli import main as cli_main
from ml import serving
from ml.config import Settings
from ml.data.export import read_line_items
from ml.evaluation.splitting import cold_users, time_split, warm_users
from ml.experiments import published
from ml.serving import privacy, publish
from tests.exports import event, write_export
from tests.serving.test_serving import (
    AS_OF,
    KNOWN_COLD,
    UNKNOWN,
    WARM_FULL,
    WARM_SHORT,
    make_build_db,
)

CUTOFF = datetime(2023, 8, 10)
K = 10
# A profile whose platform has no fallback list: the macro falls back to 'all'.
ODD_PLATFORM = "205"
ODD_PLATFORM_SQL = f"insert into pub_user_profiles values ('{ODD_PLATFORM}', 'TV', null, null, 'v1')"

# The serving fixture of tests/serving/test_serving.py: 101 has items 1021..1040 at ranks 1..20,
# 102 has 1003, 1002, 1004 (Android), 201 has a profile (Android) and no list. The Android
# fallback list is 1006, 1007, ...; the 'all' list 1016, 1017, ... and never 1040.
ROWS = [
    # history, strictly before the cutoff
    event(WARM_FULL, "ec.view_item", [1021], "2023-08-01 10:00:00", platform="iOS"),
    event(WARM_SHORT, "ec.view_item", [1003], "2023-08-01 10:00:00"),
    event(KNOWN_COLD, "ec.view_item", [1003], "2023-08-02 10:00:00"),
    event(301, "ec.purchase", [1030], "2023-08-05 10:00:00"),  # history, buys nothing after
    # the window [2023-08-10, 2023-08-13)
    event(WARM_FULL, "ec.purchase", [1021], "2023-08-10 00:00:00", platform="iOS"),  # at T: truth
    event(WARM_SHORT, "ec.purchase", [1006], "2023-08-11 09:00:00"),
    event(WARM_SHORT, "ec.view_item", [1007], "2023-08-11 09:00:00"),  # a view is no purchase
    event(WARM_SHORT, "ec.purchase", [1008], "2023-08-13 00:00:00"),  # at T + D: outside
    event(KNOWN_COLD, "ec.purchase", [1006], "2023-08-12 23:59:59"),
    event(UNKNOWN, "ec.purchase", [1016], "2023-08-11 12:00:00"),
    event(555, "ec.view_item", [1001], "2023-08-10 00:00:00"),  # at T: not history
    event(555, "ec.purchase", [1040], "2023-08-11 12:00:00"),
]
TRUTH = {(WARM_FULL, "1021"), (WARM_SHORT, "1006"), (KNOWN_COLD, "1006"), (UNKNOWN, "1016"), ("555", "1040")}


def dcg(rank: int) -> float:
    return 1 / math.log2(rank + 1)


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("export") / "ab_test.csv", ROWS)


@pytest.fixture(scope="module")
def frames(export, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, truth) from the warehouse: one dbt build for the module."""
    return published.window(Settings(home=tmp_path_factory.mktemp("home")), export, CUTOFF, 3)


def serving_db(directory: Path, as_of: datetime = AS_OF) -> Path:
    """The serving fixture of tests/serving/test_serving.py (plus ODD_PLATFORM), published as of ``as_of``."""
    path = directory / "serving" / "recommendations.duckdb"
    publish(
        make_build_db(directory / "build.duckdb", extra_sql=ODD_PLATFORM_SQL), path, model_version="v1", as_of=as_of
    )
    return path


@pytest.fixture(scope="module")
def serving_path(tmp_path_factory) -> Path:
    return serving_db(tmp_path_factory.mktemp("serving"))


def write_parquet(
    path: Path, rows: list[tuple], columns: str = "user_id VARCHAR, item_id VARCHAR, rank INTEGER"
) -> Path:
    """A parquet written with DuckDB from literal rows; ``columns`` declares them."""
    with duckdb.connect() as con:
        con.execute(f"create table lists ({columns})")
        con.executemany(f"insert into lists values ({', '.join('?' * len(rows[0]))})", rows)
        con.execute("copy lists to ? (format parquet)", [str(path)])
    return path


# ---------------------------------------------------------------------------- truth and population
def test_window_is_the_time_split_of_the_validated_export(frames, export):
    history, truth = frames
    assert set(truth.itertuples(index=False, name=None)) == TRUTH
    assert list(warm_users(history, truth)) == [WARM_FULL, WARM_SHORT, KNOWN_COLD]
    assert list(cold_users(history, truth)) == ["555", UNKNOWN]
    # the same split as ml.evaluation.splitting.time_split on the export itself
    split_history, split_truth = time_split(read_line_items(export), CUTOFF, 3)
    assert set(split_truth.itertuples(index=False, name=None)) == TRUTH
    assert set(history.itertuples(index=False, name=None)) == set(
        split_history[["user_id", "item_id"]].itertuples(index=False, name=None)
    )


# ---------------------------------------------------------------------------- served = recommend()
def test_served_lists_equal_the_macro(serving_path):
    users = [WARM_FULL, WARM_SHORT, KNOWN_COLD, ODD_PLATFORM, UNKNOWN]
    macro_con = serving.open_serving(serving_path)
    try:
        with published.open_published(serving_path) as lists:
            for k in (1, 3, 4, 10, 20, 30, 40):  # 40: past the iOS items already in 101's list
                served = published.served_lists(lists.con, pd.Index(users), k)
                for uid in users:
                    mine = served[served["user_id"] == uid][["item_id", "rank"]]
                    macro = macro_con.execute("select item_id, rank from recommend(?, ?)", [uid, k]).fetchall()
                    assert list(mine.itertuples(index=False, name=None)) == macro, (uid, k)
    finally:
        macro_con.close()


def test_served_list_tops_up_a_short_list_from_the_platform_list(serving_path):
    with published.open_published(serving_path) as lists:
        served = published.served_lists(lists.con, pd.Index([WARM_SHORT, ODD_PLATFORM]), 6)
        personal = published.personal_lists(lists.con, pd.Index([WARM_SHORT, ODD_PLATFORM]), 6)
    short = served[served["user_id"] == WARM_SHORT]
    assert list(short["item_id"]) == ["1003", "1002", "1004", "1006", "1007", "1008"]
    assert list(short["rank"]) == [1, 2, 3, 4, 5, 6]
    assert list(served[served["user_id"] == ODD_PLATFORM]["item_id"]) == [str(i) for i in range(1016, 1022)]
    assert list(personal["item_id"]) == ["1003", "1002", "1004"]


# ---------------------------------------------------------------------------- metrics by hand
def test_serving_database_rows_by_hand(frames, serving_path):
    history, truth = frames
    with published.open_published(serving_path) as lists:
        result = published.judge(lists, history, truth, CUTOFF, K)
    rows = result["metrics"]
    assert list(rows) == ["served (warm buyers)", "personal only (warm buyers)", "served (cold buyers)"]

    # 101: 1021 at rank 1; 102: 1006 at rank 4 (after its 3 own items); 201: 1006 at rank 1.
    served = rows["served (warm buyers)"]
    assert served["ndcg"] == pytest.approx((1 + dcg(4) + 1) / 3)
    assert served["map"] == pytest.approx((1 + 1 / 4 + 1) / 3)
    assert (served["recall"], served["hit_rate"], served["missed_offer_share"]) == (1.0, 1.0, 0.0)
    assert served["precision"] == pytest.approx(3 / (3 * K))
    assert served["n_users"] == 3

    # Own lists only: 101 hits, 102 misses, 201 has no list (a miss).
    personal = rows["personal only (warm buyers)"]
    assert personal["ndcg"] == pytest.approx(1 / 3)
    assert personal["recall"] == pytest.approx(1 / 3) and personal["hit_rate"] == pytest.approx(1 / 3)
    assert personal["missed_offer_share"] == pytest.approx(2 / 3)
    assert personal["precision"] == pytest.approx(1 / (3 * K))
    assert personal["share_with_list"] == pytest.approx(2 / 3) and personal["n_users_with_list"] == 2

    # Cold buyers get the 'all' list: 999's 1016 is its first item, 555's 1040 is not in it.
    cold = rows["served (cold buyers)"]
    assert cold["ndcg"] == pytest.approx(0.5) and cold["recall"] == pytest.approx(0.5)
    assert cold["missed_offer_share"] == pytest.approx(0.5) and cold["n_users"] == 2

    assert result["split"] == {"cutoff": str(CUTOFF), "k": K, "warm_users": 3, "cold_users": 2, "window_purchases": 5}
    assert "warm buyers with a personal list: 2 of 3 (66.7%)" in result["notes"]


def test_parquet_is_judged_as_given(frames, tmp_path):
    history, truth = frames
    path = write_parquet(
        tmp_path / "lists.parquet",
        [
            (101, "1021", 1),  # a hit at rank 1 (integer ids are read as text)
            (102, "1099", 1),
            (102, "1006", 11),  # its purchase is beyond k: a miss
            (201, "1005", 1),
            (201, "1006", 2),  # a hit at rank 2
            (999, "1016", 1),  # a cold buyer: not judged on a parquet
        ],
        columns="user_id BIGINT, item_id VARCHAR, rank INTEGER",
    )
    with published.open_published(path) as lists:
        result = published.judge(lists, history, truth, CUTOFF, K)
    assert list(result["metrics"]) == ["personal only (warm buyers)"]
    row = result["metrics"]["personal only (warm buyers)"]
    assert row["ndcg"] == pytest.approx((1 + 0 + dcg(2)) / 3)
    assert row["map"] == pytest.approx((1 + 0 + 1 / 2) / 3)
    assert row["recall"] == pytest.approx(2 / 3) and row["hit_rate"] == pytest.approx(2 / 3)
    assert row["precision"] == pytest.approx(2 / (3 * K))
    assert row["share_with_list"] == 1.0 and row["n_users"] == 3
    assert result["warnings"] == []


def test_one_hit_at_rank_one_and_one_miss_is_half(tmp_path):
    history = pd.DataFrame({"user_id": ["1", "2"], "item_id": ["7", "7"]})
    truth = pd.DataFrame({"user_id": ["1", "2"], "item_id": ["8", "9"]})
    path = write_parquet(tmp_path / "lists.parquet", [("1", "8", 1), ("2", "8", 1)])
    with published.open_published(path) as lists:
        row = published.judge(lists, history, truth, CUTOFF, K)["metrics"]["personal only (warm buyers)"]
    assert (row["ndcg"], row["recall"], row["map"], row["hit_rate"]) == (0.5, 0.5, 0.5, 0.5)
    assert row["precision"] == pytest.approx(0.05) and row["missed_offer_share"] == 0.5


# ---------------------------------------------------------------------------- leak warning
def test_a_publication_after_the_cutoff_is_a_leak(frames, serving_path, tmp_path):
    history, truth = frames
    with published.open_published(serving_path) as lists:
        assert lists.publication["as_of"] == AS_OF
        warnings = published.judge(lists, history, truth, CUTOFF, K)["warnings"]
    assert warnings == [
        f"the publication's as_of ({AS_OF}) is after the cutoff ({CUTOFF}): "
        "its lists have seen the window, so this evaluation leaks"
    ]
    with published.open_published(serving_db(tmp_path, as_of=CUTOFF)) as lists:
        assert published.judge(lists, history, truth, CUTOFF, K)["warnings"] == []


# ---------------------------------------------------------------------------- the command
def test_cli_prints_the_rows_and_writes_json(export, serving_path, tmp_path, capsys):
    home = tmp_path / "home"
    assert (
        cli_main(
            [
                "--home",
                str(home),
                "evaluate",
                "--input",
                str(export),
                "--cutoff",
                "2023-08-10",
                "--horizon-days",
                "3",
                "--k",
                str(K),
                "--published",
                str(serving_path),
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        f"warning: the publication's as_of ({AS_OF}) is after the cutoff ({CUTOFF}): "
        "its lists have seen the window, so this evaluation leaks"
    ]
    header, *rows = out.splitlines()[:4]
    assert header.split() == ["ndcg", "recall", "precision", "map", "hit_rate", "missed_offer_share", "n_users"]
    assert [row.rsplit(maxsplit=7)[0] for row in rows] == [
        "served (warm buyers)",
        "personal only (warm buyers)",
        "served (cold buyers)",
    ]
    assert rows[2].split()[-1] == "2.0000"  # n_users
    assert f"publication: model_version v1, as_of {AS_OF}" in out
    report = json.loads((home / "reports" / "published" / "evaluation.json").read_text())
    assert report["metrics"]["served (cold buyers)"]["ndcg"] == pytest.approx(0.5)
    assert report["published"]["kind"] == "serving database"
    assert report["published"]["publication"]["model_version"] == "v1"
    assert report["dataset"]["horizon_days"] == 3


def test_pseudonymous_lists_are_judged_with_the_homes_key(export, tmp_path, capsys):
    """The export's raw ids are mapped with the home's key; without it nothing is built."""
    home = tmp_path / "home"
    key = privacy.publish_key(home, True)
    path = tmp_path / "serving" / "recommendations.duckdb"
    publish(
        make_build_db(tmp_path / "build.duckdb", extra_sql=ODD_PLATFORM_SQL),
        path,
        model_version="v1",
        as_of=AS_OF,
        pseudonym_key=key,
    )
    args = [
        "evaluate",
        "--input",
        str(export),
        "--cutoff",
        "2023-08-10",
        "--horizon-days",
        "3",
        "--k",
        str(K),
        "--published",
        str(path),
    ]
    assert cli_main(["--home", str(home), *args]) == 0
    metrics = json.loads((home / "reports" / "published" / "evaluation.json").read_text())["metrics"]
    assert metrics["served (warm buyers)"]["ndcg"] == pytest.approx((1 + dcg(4) + 1) / 3)  # as with raw ids
    assert metrics["personal only (warm buyers)"]["n_users_with_list"] == 2
    assert metrics["served (cold buyers)"]["ndcg"] == pytest.approx(0.5)
    capsys.readouterr()
    other = tmp_path / "other"
    assert cli_main(["--home", str(other), *args]) == 2
    assert "pseudonyms but no key was found" in capsys.readouterr().err
    assert not (other / "build.duckdb").exists()


def _no_recommendations(path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("create table fallback_recommendations (platform varchar, item_id varchar, rank integer)")
        con.execute("create table user_profiles (user_id varchar, platform varchar)")
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.duckdb", "published lists not found: "),
        (
            lambda d: write_parquet(d / "lists.parquet", [("1", "8")], columns="user_id VARCHAR, item_id VARCHAR"),
            "lacks the column(s) rank (needs user_id, item_id, rank; found: user_id, item_id)",
        ),
        (
            lambda d: write_parquet(
                d / "lists.parquet", [(1.0, "8", 1)], columns="user_id DOUBLE, item_id VARCHAR, rank INT"
            ),
            "user_id is floating point; write ids as text or integers",
        ),
        (
            lambda d: (d / "lists.parquet").write_text("user_id,item_id,rank\n") and d / "lists.parquet",
            "is not a readable parquet file",
        ),
        (lambda d: _no_recommendations(d / "lists.duckdb"), "is not a serving database: no table recommendations"),
        (
            lambda d: (d / "lists.duckdb").write_text("hello") and d / "lists.duckdb",
            "is neither a serving database (.duckdb) nor a parquet file (.parquet)",
        ),
    ],
)
def test_bad_published_lists_are_refused_before_any_build(export, tmp_path, capsys, make, message):
    path = make(tmp_path)
    home = tmp_path / "home"
    assert (
        cli_main(
            [
                "--home",
                str(home),
                "evaluate",
                "--input",
                str(export),
                "--cutoff",
                "2023-08-10",
                "--published",
                str(path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (home / "build.duckdb").exists()


def test_a_missing_export_is_refused(serving_path, tmp_path, capsys):
    assert (
        cli_main(
            [
                "--home",
                str(tmp_path / "home"),
                "evaluate",
                "--input",
                str(tmp_path / "none.csv"),
                "--cutoff",
                "2023-08-10",
                "--published",
                str(serving_path),
            ]
        )
        == 2
    )
    assert "input export not found" in capsys.readouterr().err
