"""The same dbt project on Spark (target spark, dbt-spark's session method): every model it builds
there equals the DuckDB build of the same export, row for row, values within float tolerance; and
a whole run with ``engine = spark`` publishes from the tables Spark built."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml.config import Config, Settings
from ml.data.synthetic.structure import GeneratorConfig
from ml.data.synthetic.writer import generate_export
from ml.warehouse import spark
from ml.warehouse.dbt import dbt_vars, run_dbt

pytestmark = [
    pytest.mark.slow,  # two dbt builds, one of them starting a JVM
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17: no `java` on PATH"),
    pytest.mark.skipif(
        importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("dbt.adapters.spark") is None,
        reason="pyspark and dbt-spark are not installed (pip install -e '.[spark]')",
    ),
]

# Every table both builds hold, with the columns that identify a row.
KEYS = {
    "int_cutoffs": ["cutoff_index"],
    "rejected_rows": ["event_row_id"],
    "int_user_items": ["cutoff_at", "user_id", "item_id"],
    "user_features": ["cutoff_at", "user_id"],
    "item_features": ["cutoff_at", "item_id"],
    "item_popularity": ["cutoff_at", "scope", "scope_value", "item_id"],
    "co_purchase": ["cutoff_at", "signal", "item_id", "other_item_id"],
    "candidate_users": ["cutoff_at", "user_id"],
    "candidate_user_items": ["cutoff_at", "user_id", "item_id"],
    "candidate_sources": ["cutoff_at", "user_id", "item_id"],
    "candidates": ["cutoff_at", "user_id", "item_id"],
    "pub_fallback_recommendations": ["platform", "rank"],
    "pub_similar_items": ["item_id", "rank"],
    "pub_items": ["item_id"],
    "pub_user_profiles": ["user_id"],
}

# Broken lines (10 fields) so that the quarantine is compared too; one reason each.
BROKEN = [
    "Android,2023-08-01 10:00:00+00:00,2023-08-01,,ec.view_item,[100],[1],[505],[1],[2]",
    "Tablet,2023-08-01 10:00:00+00:00,2023-08-01,18,ec.view_item,[100],[1],[505],[1],[2]",
    "Android,yesterday,2023-08-01,21,ec.add_to_cart,[100],[1],[505],[1],[2]",
    'Android,2023-08-01 10:00:00+00:00,2023-08-01,22,ec.view_item,[100],[1],"[505, x]",[1],[2]',
    'Android,2023-08-01 10:00:00+00:00,2023-08-01,25,ec.purchase,"[100, 200]",[1],"[505, 506, 507]",[1],[2]',
    "Android,2023-08-01 10:00:00+00:00,2023-08-01,28,ec.view_item,[99999999999],[1],[505],[1],[2]",
    "Android,2023-08-01 10:00:00+00:00,2023-08-01,15,ec.view_item",
]


def test_spark_build_equals_duckdb_build(tmp_path):
    export = tmp_path / "ab_test.csv"
    generate_export(GeneratorConfig(rows=20_000, seed=7, with_categories=True), export)
    with export.open("a") as handle:
        handle.write("\n".join(BROKEN) + "\n")
    variables = dbt_vars(export)
    # Outcomes and monitors read the exposure log and earlier runs' Parquet: DuckDB only.
    # The unit tests' fixtures are DuckDB SQL; the data tests run on both engines.
    excluded = "tag:outcomes tag:monitoring"

    duck = Settings(home=tmp_path / "duckdb")
    run_dbt(duck, "build", variables, exclude=excluded)
    spark = Settings(home=tmp_path / "spark")
    try:
        run_dbt(spark, "build", variables, exclude=excluded, exclude_resource_type="unit_test", target="spark")
    finally:
        # The JVM lives in dbt's process and ends with it; nothing may outlive the test.
        assert not _java_processes_under(spark.home), "a Spark JVM outlived dbt"

    spark_tables = spark.home / "spark" / "tables" / "main.db"
    with duckdb.connect(str(duck.build_db), read_only=True) as con:
        for table, keys in KEYS.items():
            expected = con.execute(f"select * from {table}").df()
            # This test's own connection: the module-level one may hold another test's open result.
            actual = con.execute("select * from read_parquet(?)", [str(spark_tables / table / "*.parquet")]).df()
            _assert_same_rows(table, expected, actual[expected.columns], keys)


def test_a_run_on_spark_trains_and_publishes_from_the_spark_build(prefect_harness, tmp_path):
    from flows.pipeline import recommendation_pipeline

    export = tmp_path / "ab_test.csv"
    generate_export(GeneratorConfig(rows=100_000, seed=3, with_categories=True), export)
    settings = Settings(home=tmp_path / "home")
    run = recommendation_pipeline(Config(home=settings.home, input_path=export, engine="spark"))
    # Trained and judged from Spark's tables (which list the gate publishes is not this test's).
    assert run["status"] == "published" and run["ndcg"] > 0, run.get("reason")

    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        kinds = dict(con.execute("select table_name, table_type from information_schema.tables").fetchall())
        # Spark's tables are read where they are: views over its Parquet, no copy in DuckDB.
        for name in ("stg_ab_test__events", "int_line_items", "user_features", "co_purchase", "candidates"):
            assert kinds[name] == "VIEW", name
            (sql,) = con.execute("select sql from duckdb_views() where view_name = ?", [name]).fetchone()
            assert f"read_parquet('{spark.tables_dir(settings) / name}/*.parquet')" in sql, sql
        # With a DuckDB table's rowid, one per row: scoring joins its scores back by it.
        rows, rowids = con.execute("select count(*), count(distinct rowid) from candidates").fetchone()
        assert rows == rowids > 0
        # What the pipeline wrote and the serving tables are DuckDB's, as on the DuckDB engine.
        assert kinds["ml_recommendations"] == kinds["pub_recommendations"] == "BASE TABLE"
        exported = con.execute("select count(*) from stg_ab_test__events").fetchone()[0]
    assert run["rows_exported"] == exported == 100_000
    with duckdb.connect(str(settings.serving_db), read_only=True) as con:
        users, version = con.execute(
            "select count(distinct user_id), (select model_version from publication) from recommendations"
        ).fetchone()
    assert users == run["users_scored"] > 0 and version == run["model_version"]
    assert not _java_processes_under(settings.home), "a Spark JVM outlived the run"


def _assert_same_rows(table: str, expected: pd.DataFrame, actual: pd.DataFrame, keys: list[str]) -> None:
    assert len(actual) == len(expected), f"{table}: {len(actual)} rows on Spark, {len(expected)} on DuckDB"
    expected = expected.sort_values(keys, ignore_index=True)
    actual = actual.sort_values(keys, ignore_index=True)
    for column in expected.columns:
        want, got = expected[column], actual[column]
        if pd.api.types.is_numeric_dtype(want) and not pd.api.types.is_bool_dtype(want):
            same = np.isclose(want.astype(float), got.astype(float), rtol=1e-9, atol=1e-9, equal_nan=True)
        else:
            same = ((want.astype(str) == got.astype(str)) | (want.isna() & got.isna())).to_numpy()
        first = np.flatnonzero(~same)[:1]
        assert same.all(), (
            f"{table}.{column}: {(~same).sum()} of {len(same)} values differ, "
            f"e.g. DuckDB {want.iloc[first[0]]!r}, Spark {got.iloc[first[0]]!r}"
        )


def _java_processes_under(home: Path) -> list[str]:
    """Java processes whose command line names this home (the Derby path is in it)."""
    found = subprocess.run(["pgrep", "-af", "java"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if str(home) in line]
