"""Drift and quality monitors (dbt_project/models/monitoring): a planted drift trips its test
and nothing else does, the shares are what they say on tiny planted snapshots, a first run has
nothing to compare and passes, and published runs keep their snapshots and record the results."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml.config import Config, Settings
from ml.monitoring import drift
from ml.pipeline import runs
from ml.warehouse.dbt import DbtError, dbt_vars, run_dbt
from tests.exports import event, write_export

MONITORS = "monitor_runs monitor_feature_stability monitor_run_quality"
TESTS = {"monitor_feature_psi", "monitor_cold_user_share", "monitor_catalogue_coverage", "monitor_list_overlap"}
TESTS |= {"monitor_ndcg_drop", "not_null_monitor_feature_stability_feature"}
SAMPLE = np.random.default_rng(7).normal(100, 15, 5000)


def snapshot(
    run_id: str,
    features: dict[str, np.ndarray],
    counts: dict[str, float],
    ndcg: float | None,
    lists: dict[str, list[str]],
) -> pd.DataFrame:
    """A planted ``monitor_snapshot``: feature values, counts, NDCG and users' lists."""
    rows = [(f"feature:{name}", float(v), None, None) for name, values in features.items() for v in values]
    rows += [(f"count:{name}", float(n), None, None) for name, n in counts.items()]
    rows += [("ndcg", ndcg, None, None)]
    rows += [("list", None, user, item) for user, items in lists.items() for item in items]
    frame = pd.DataFrame(rows, columns=["measure", "value", "user_key", "item_id"])
    return frame.assign(run_id=run_id)[["run_id", "measure", "value", "user_key", "item_id"]]


def plant(settings: Settings, current: pd.DataFrame, previous: pd.DataFrame | None) -> dict[str, str]:
    """This run's snapshot into the build database, the previous one into the history; the
    dbt vars that point the monitors at that history."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.build_db)) as con:
        con.execute("create or replace table monitor_snapshot as select * from current")
        if previous is None:
            return {"monitor_history": ""}
        history = drift.history_dir(settings)
        history.mkdir(parents=True, exist_ok=True)
        con.execute("copy (select * from previous) to ? (format parquet)", [str(history / "r1.parquet")])
    return {"monitor_history": str(history / "*.parquet")}


def monitor(settings: Settings, variables: dict[str, str]) -> dict:
    run_dbt(settings, "build", variables, select=MONITORS)
    return drift.read_test_results(settings.home / "dbt_target" / "run_results.json")


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        return con.execute(sql).fetchall()


PREVIOUS = snapshot(
    "r1",
    {"stable": SAMPLE, "drifting": SAMPLE},
    {"users": 100, "cold_users": 10, "items_with_events": 50, "published_items": 20},
    0.30,
    {"u1": ["i1", "i2", "i3", "i4"], "u2": ["i1", "i2"], "u4": ["i9"]},
)
# The planted drift: the same values, one standard deviation higher.
CURRENT = snapshot(
    "r2",
    {"stable": SAMPLE, "drifting": SAMPLE + 15},
    {"users": 200, "cold_users": 50, "items_with_events": 40, "published_items": 30},
    0.29,
    {"u1": ["i1", "i2", "i5", "i6"], "u2": ["i1", "i2"], "u3": ["i7"]},
)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> tuple[Settings, dict]:
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    return settings, monitor(settings, plant(settings, CURRENT, PREVIOUS))


@pytest.mark.slow  # runs dbt
def test_a_planted_drift_trips_its_test_and_nothing_else(drifted):
    settings, results = drifted
    psi = dict(query(settings, "select feature, psi from monitor_feature_stability"))
    assert psi["stable"] == pytest.approx(0.0)  # identical distributions
    assert psi["drifting"] > 0.25  # dbt var monitor_max_psi
    assert set(results) == TESTS
    assert results["monitor_feature_psi"] == {"status": "warn", "failures": 1}
    assert {name for name, result in results.items() if result["status"] != "pass"} == {"monitor_feature_psi"}


@pytest.mark.slow  # runs dbt
def test_shares_overlap_and_ndcg_drop_on_planted_snapshots(drifted):
    settings, _ = drifted
    [row] = query(
        settings,
        "select run_id, previous_run_id, n_users, cold_user_share, previous_cold_user_share, catalogue_coverage,"
        " previous_catalogue_coverage, list_overlap, n_overlap_users, ndcg, ndcg_drop from monitor_run_quality",
    )
    # u1 keeps 2 of the 6 items of both lists (Jaccard 1/3), u2 all (1); u3 and u4 are in one run only.
    assert row[:3] == ("r2", "r1", 200)
    assert row[3:] == pytest.approx((0.25, 0.1, 0.75, 0.4, (1 / 3 + 1) / 2, 2, 0.29, 0.01))


@pytest.mark.slow  # runs dbt
def test_a_first_run_has_nothing_to_compare_and_passes(tmp_path):
    settings = Settings(home=tmp_path / "home")
    results = monitor(settings, plant(settings, CURRENT, None))
    assert set(results) == TESTS and all(result["status"] == "pass" for result in results.values())
    assert query(settings, "select count(*), count(previous_run_id), count(psi) from monitor_feature_stability") == [
        (2, 0, 0)
    ]
    assert query(settings, "select cold_user_share, list_overlap, ndcg_drop from monitor_run_quality") == [
        (0.25, None, None)
    ]


@pytest.mark.slow  # runs dbt
def test_thresholds_and_severity_are_dbt_vars(tmp_path):
    """The same drift with a stricter NDCG limit warns on both; with severity error, it stops the build."""
    settings = Settings(home=tmp_path / "home")
    variables = plant(settings, CURRENT, PREVIOUS)
    results = monitor(settings, {**variables, "monitor_max_ndcg_drop": "0.005"})
    assert {name for name, result in results.items() if result["status"] == "warn"} == {
        "monitor_feature_psi",
        "monitor_ndcg_drop",
    }
    with pytest.raises(DbtError, match="monitor_feature_psi"):
        monitor(settings, {**variables, "monitor_severity": "error"})


def test_history_and_ndcg_reach_dbt_as_checked_values(tmp_path):
    """No history before a first snapshot (DuckDB refuses a glob that matches no file), the
    glob once there is one; an NDCG as a plain decimal that dbt's number check takes."""
    settings, config = Settings(home=tmp_path / "home"), Config(home=tmp_path / "home")
    export = write_export(tmp_path / "export.csv", _rows(0))
    variables = drift.monitor_vars(settings, config, export, "v1", 0.00001234)
    assert variables["monitor_history"] == "" and variables["run_ndcg"] == "0.000012340000"
    assert drift.monitor_vars(settings, config, export, "v1", float("nan"))["run_ndcg"] == ""
    drift.history_dir(settings).mkdir(parents=True)
    (drift.history_dir(settings) / "v0.parquet").touch()
    assert drift.monitor_vars(settings, config, export, "v1", None)["monitor_history"] == str(
        drift.history_dir(settings) / "*.parquet"
    )


def test_the_summary_line_names_what_did_not_pass():
    results = {"monitor_feature_psi": {"status": "warn", "failures": 2}, "monitor_ndcg_drop": {"status": "pass"}}
    assert runs.describe_monitors(results) == "1 of 2 passed; monitor_feature_psi warn (2 rows)"
    assert runs.describe_monitors({"error": "dbt build failed"}) == "error: dbt build failed"
    assert runs.describe_monitors(None) == "not run"


def _rows(shift_days: int) -> list[list[str]]:
    """A week of purchases by a few users, ``shift_days`` later for a later export."""
    rows = []
    for user in range(101, 109):
        for day in range(1, 7):
            at = f"2023-08-{day + shift_days:02d} 10:00:00"
            items = [user % 4 + day % 3, 10 + day]
            rows.append(event(user, "ec.view_item", items, at, prices=[50_000, 9_000]))
            rows.append(event(user, "ec.purchase", items[:1], at.replace("10:00", "10:05"), prices=[50_000]))
    return rows


@pytest.mark.slow  # runs dbt
def test_published_runs_keep_snapshots_and_record_results(tmp_path):
    """The monitors on a real warehouse (no personal lists: every user is cold), run after two
    builds: the first keeps its snapshot and passes, the second compares with it."""
    settings, config = Settings(home=tmp_path / "home"), Config(home=tmp_path / "home")
    for run, version in enumerate(("20230801T000000000000Z", "20230802T000000000000Z")):
        export = write_export(tmp_path / f"export{run}.csv", _rows(run))
        run_dbt(settings, "build", dbt_vars(export, model_version=version), exclude="tag:monitoring")
        results = drift.run_monitors(settings, config, export, version, 0.3, log=lambda _: None)
        assert set(results) >= TESTS
    assert sorted(path.name for path in drift.history_dir(settings).iterdir()) == [
        "20230801T000000000000Z.parquet",
        "20230802T000000000000Z.parquet",
    ]
    [row] = query(
        settings, "select run_id, previous_run_id, n_users, cold_user_share, ndcg_drop from monitor_run_quality"
    )
    assert row == ("20230802T000000000000Z", "20230801T000000000000Z", 8, 1.0, 0.0)
    # The same week one day later: the same features (PSI 0); no personal lists: every user is cold.
    assert query(settings, "select count(*), max(psi) from monitor_feature_stability") == [(6, 0.0)]
    assert {name for name, result in results.items() if result["status"] != "pass"} == {"monitor_cold_user_share"}


@pytest.mark.slow  # runs the whole flow twice
def test_consecutive_pipeline_runs_record_their_monitors(prefect_harness, tmp_path):
    """Two runs on the same export: the first has nothing to compare, the second finds nothing
    changed; both record every monitor in model_runs and the run summary."""
    from flows.pipeline import recommendation_pipeline
    from ml.data.synthetic import GeneratorConfig, generate_export

    settings, export = Settings(home=tmp_path / "home"), tmp_path / "export.csv"
    generate_export(GeneratorConfig(rows=60_000, seed=3, with_categories=True), export)
    for _ in range(2):
        recommendation_pipeline(Config(home=settings.home, input_path=export))
    second, first = runs.history(settings, limit=2)
    assert [first["status"], second["status"]] == ["published", "published"], second["reason"]
    for run in (first, second):
        assert set(run["monitors"]) >= TESTS
        assert all(result["status"] == "pass" for result in run["monitors"].values()), run["monitors"]
    assert f"monitors: {len(second['monitors'])} of {len(second['monitors'])} passed" in runs.summary(settings, second)
    assert len(list(drift.history_dir(settings).glob("*.parquet"))) == 2
    [row] = query(settings, "select previous_run_id, list_overlap, ndcg_drop from monitor_run_quality")
    assert row == (first["run_id"], 1.0, 0.0)
    assert query(settings, "select max(psi) from monitor_feature_stability") == [(0.0,)]
