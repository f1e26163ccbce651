"""The dbt contracts are the one definition of the tables others read (ml/contracts.py): the
ranker reads only columns the candidates contract declares, and the serving file's tables are
the pub_* contracts."""

from __future__ import annotations

import duckdb

from ml.ranker import features
from ml.serving import schema
from ml.warehouse import contracts


def test_the_rankers_features_are_columns_of_the_candidates_contract():
    declared = contracts.contract("candidates").column_names()
    used = [*features.KEYS, features.LABEL, *features.FEATURES]
    assert [name for name in used if name not in declared] == []


def test_every_candidates_column_is_described():
    assert [c.name for c in contracts.contract("candidates").columns if not c.description] == []


def test_every_pub_model_is_a_serving_table():
    pub_models = {
        model
        for path in contracts.MODELS_DIR.rglob("*.yml")
        for model in contracts.contracts(path)
        if model.startswith("pub_")
    }
    assert pub_models == {f"pub_{name}" for name in schema.TABLES}


def test_the_serving_tables_are_the_pub_contracts():
    """Created from schema.TABLES, each table has its contract's columns, in order, with their
    types and not null; only the stamp is left out where the serving table drops it."""
    con = duckdb.connect()
    for name, ddl in schema.TABLES.items():
        con.execute(f"create table {name} ({ddl})")
        created = con.execute(
            "select column_name, data_type, is_nullable from duckdb_columns() "
            "where table_name = ? order by column_index",
            [name],
        ).fetchall()
        declared = [
            (c.name, c.data_type.upper(), not any(k.type == "not_null" for k in c.constraints))
            for c in contracts.contract(f"pub_{name}").columns
            if not (name in schema.UNSTAMPED and c.name == schema.STAMP)
        ]
        assert created == declared, name
