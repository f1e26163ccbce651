"""Connections to the build database run under the pipeline's DuckDB limit: a quarter of dbt's."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from ml.config import DEFAULT_DUCKDB_MEMORY, Config, pipeline_duckdb_memory
from ml.warehouse import tables

ROOT = Path(__file__).resolve().parents[2]


def _limit(size: str) -> str:
    """DuckDB's own rendering of a limit (``512MB`` -> ``488.2 MiB``)."""
    with duckdb.connect() as con:
        con.execute("set memory_limit = ?", [size])
        return con.execute("select current_setting('memory_limit')").fetchone()[0]


@pytest.fixture
def build_db(tmp_path: Path) -> Path:
    path = tmp_path / "build.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create table int_cutoffs as select 0 as cutoff_index")
    return path


@pytest.mark.parametrize(
    ("dbt", "pipeline"), [("10GB", "2.5GB"), ("40%", "10%"), ("512MiB", "128MiB"), ("1.5 GB", "0.375GB")]
)
def test_the_pipeline_takes_a_quarter_of_dbts_limit_in_the_same_unit(
    dbt: str, pipeline: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RECSYS_DUCKDB_MEMORY", dbt)
    assert pipeline_duckdb_memory() == pipeline


def test_connections_take_the_pipelines_limit(build_db: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RECSYS_DUCKDB_MEMORY", "512MB")
    with tables.warehouse(build_db) as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == _limit("128MB")
    with tables.connect(build_db, read_only=False) as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == _limit("128MB")


def test_a_run_config_sets_the_limit_and_unset_means_the_default(build_db: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RECSYS_DUCKDB_MEMORY", raising=False)
    with tables.warehouse(build_db) as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == _limit("10%")
    with Config(duckdb_memory="300MB").environment(), tables.warehouse(build_db) as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == _limit("75MB")


def test_the_default_is_the_dbt_profiles():
    assert f"env_var('RECSYS_DUCKDB_MEMORY', '{DEFAULT_DUCKDB_MEMORY}')" in (ROOT / "profiles.yml").read_text()


def test_the_build_database_is_opened_only_through_tables_connect():
    """A connection opened elsewhere would scan under DuckDB's default limit, 80 % of the machine."""
    opened_elsewhere = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "ml").rglob("*.py"))
        if path != ROOT / "ml" / "warehouse" / "tables.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "duckdb.connect(" in line and "build_db" in line
    ]
    assert opened_elsewhere == []
