"""The warehouse built on Spark, read by the pipeline's own steps.

With ``engine = spark`` dbt builds staging, validation, the feature marts and the candidates on
Spark (profile target ``spark``), each model a directory of Parquet under ``<home>/spark``. The
steps that follow (time scale, training, scoring, the serving tables, the monitors) read the
build database as they always do: there every Spark model is a DuckDB view over its Parquet.
A view copies nothing, so each step pulls back only the rows its query reads (the training
sample, the candidates it scores), and the serving file is built from them as on DuckDB.
Each view also has the ``rowid`` a DuckDB table has, stable while its files are: scoring keys
its scores by it on either engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ml.config import Settings
from ml.warehouse import tables


def tables_dir(settings: Settings) -> Path:
    """Where the Spark build keeps its tables: ``spark.sql.warehouse.dir`` (profiles.yml) of the
    home, schema ``main``."""
    return settings.home / "spark" / "tables" / "main.db"


def attach(settings: Settings, models: Iterable[str]) -> list[str]:
    """Make each model of ``models`` that Spark built a view of the same name in the build
    database, over its Parquet; return the names attached.

    Names without a table directory (dbt's tests, views) are skipped. What an earlier run left
    under a name (a DuckDB table, an older view) is replaced.
    """
    root = tables_dir(settings)
    table_dirs = {path.name for path in root.iterdir() if path.is_dir()}
    built = [name for name in dict.fromkeys(models) if name in table_dirs]
    with tables.connect(settings.build_db, read_only=False) as con:
        kinds = dict(
            con.execute(
                "select table_name, table_type from information_schema.tables where table_schema = 'main'"
            ).fetchall()
        )
        for name in built:
            files = root / name / "*.parquet"
            if not list(files.parent.glob(files.name)):
                raise FileNotFoundError(f"Spark built {name} but {files.parent} holds no Parquet file")
            if kinds.get(name) == "BASE TABLE":
                con.execute(f"drop table {_identifier(name)}")
            # DDL takes no parameters: the path is a quoted literal, quotes doubled.
            con.execute(
                f"create or replace view {_identifier(name)} as select *, {_ROWID} from read_parquet({_literal(files)})"
            )
    return built


# A row's file (in the glob's sorted order) and its place in it; a Spark file holds far fewer
# than 2^32 rows.
_ROWID = "file_index::bigint * 4294967296 + file_row_number as rowid"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"
