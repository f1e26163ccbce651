"""Importers write the export layout that ml.data.export reads back, and never drop rows silently."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main as cli_main
from ml.data.export import read_line_items
from ml.data.importers import (
    MISSING_CATEGORY_ID,
    id_map_path_for,
    import_ta_feng,
    import_transactions,
    rejected_path_for,
)
from ml.vocabulary import BASE_COLUMNS, CATEGORY_COLUMNS

SHARED = Path(__file__).resolve().parents[3] / "shared"
TA_FENG_ZIP = SHARED / "data" / "ta_feng" / "ta_feng.csv.zip"

TA_FENG_LINES = [
    '"TRANSACTION_DT","CUSTOMER_ID","AGE_GROUP","PIN_CODE","PRODUCT_SUBCLASS","PRODUCT_ID","AMOUNT","ASSET","SALES_PRICE"',
    '"11/1/2000","01104905","45-49","115","110411","4710199010372","2","24","30"',
    '"11/1/2000","01104905","45-49","115","120103","4711524000457","1","17","21"',
    '"11/1/2000","00418683","45-49","115","120107","4710857472535","1","48","46"',
    '"11/2/2000","01104905","45-49","115","110411","4710199010372","3","36","45"',
    '"11/2/2000","00418683","45-49","115","120107","4710857472535","x","48","46"',  # bad AMOUNT
    '"11/3/2000","00418683","45-49"',  # short line
]


def _write_ta_feng(path: Path) -> Path:
    # UTF-8 BOM and CRLF line ends, like the real file
    path.write_bytes(("\ufeff" + "\r\n".join(TA_FENG_LINES) + "\r\n").encode("utf-8"))
    return path


def test_ta_feng_csv_converts_and_reads_back(tmp_path):
    out = tmp_path / "export.csv"
    stats = import_ta_feng(_write_ta_feng(tmp_path / "tf.csv"), out)
    assert stats.events == 3 and stats.line_items == 4 and stats.users == 2
    assert stats.rejected == 2
    assert stats.rows_read == 6

    header = out.read_text().splitlines()[0].split(",")
    assert header == BASE_COLUMNS + CATEGORY_COLUMNS

    lines = read_line_items(out)
    assert set(lines["event_type"]) == {"purchase"}
    assert set(lines["platform"]) == {"Site"}
    first = lines[(lines.user_id == "01104905") & (lines.date == pd.Timestamp("2000-11-01"))]
    assert list(first["item_id"]) == ["4710199010372", "4711524000457"]  # leading zeros kept
    assert list(first["price100"]) == [1500, 2100]  # 30 / 2 units, x 100
    assert list(first["qty"]) == [2, 1]
    assert list(first["category_id"]) == ["110411", "120103"]
    assert (lines["ts"].dt.hour == 12).all()
    assert lines.groupby("row_id").ngroups == 3  # one purchase row per (customer, day)

    rejected = pd.read_csv(rejected_path_for(out), dtype=str)
    assert len(rejected) == 2
    reasons = " | ".join(rejected["reason"])
    assert "unparseable quantity" in reasons and "malformed csv line" in reasons
    assert stats.rejected_by_reason["unparseable quantity"] == 1
    # Ta-Feng ids are already decimal: written as is, nothing mapped, no sidecar.
    assert stats.mapped_ids == {} and not id_map_path_for(out).exists()


def test_ta_feng_zip_and_cli(tmp_path):
    csv = _write_ta_feng(tmp_path / "ta_feng_all_months_merged.csv")
    archive = tmp_path / "tf.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(csv, "ta_feng_all_months_merged.csv")
    out = tmp_path / "from_zip.csv"
    assert cli_main(["import", "ta-feng", "--input", str(archive), "--out", str(out)]) == 0
    assert len(read_line_items(out)) == 4


def test_generic_transactions_with_basket_and_format(tmp_path):
    src = tmp_path / "orders.csv"
    src.write_text(
        "order,client,sku,when,unit_price,n,cat\n"
        "o1,c1,s1,01.02.2024 10:00,12.5,1,k1\n"
        "o1,c1,s2,01.02.2024 10:00,3,2,\n"
        "o2,c2,s1,02.02.2024 11:30,12.5,1,k1\n"
        'o3,c2,"bad,id",02.02.2024 11:30,1,1,k1\n'
        "o4,c3,s3,not a date,1,1,k2\n"
    )
    out = tmp_path / "out.csv"
    rc = cli_main(
        [
            "import",
            "transactions",
            "--input",
            str(src),
            "--out",
            str(out),
            "--user",
            "client",
            "--item",
            "sku",
            "--time",
            "when",
            "--price",
            "unit_price",
            "--qty",
            "n",
            "--category",
            "cat",
            "--basket",
            "order",
            "--time-format",
            "%d.%m.%Y %H:%M",
        ]
    )
    assert rc == 0
    lines = read_line_items(out)
    assert len(lines) == 4 and lines["row_id"].nunique() == 3
    # Non-decimal ids are replaced by 128-bit decimals; the sidecar says which by which.
    id_map = pd.read_csv(id_map_path_for(out), dtype=str)
    assert list(id_map.columns) == ["kind", "source_id", "export_id"]
    to_export = {(k, s): e for k, s, e in id_map.itertuples(index=False)}
    assert set(to_export) == {
        ("user", "c1"),
        ("user", "c2"),
        ("item", "s1"),
        ("item", "s2"),
        ("item", "bad,id"),
        ("category", "k1"),
    }
    for export_id in to_export.values():
        assert export_id.isdigit() and 1 <= len(export_id) <= 39
    assert len(set(to_export.values())) == len(to_export)
    c1 = lines[lines.user_id == to_export["user", "c1"]]
    assert list(c1["item_id"]) == [to_export["item", "s1"], to_export["item", "s2"]]
    assert list(c1["price100"]) == [1250, 300]
    assert list(c1["category_id"]) == [to_export["category", "k1"], MISSING_CATEGORY_ID]
    assert c1["ts"].iloc[0] == pd.Timestamp("2024-02-01 10:00")
    # An id with a comma no longer breaks the list syntax: it is mapped, not rejected.
    assert to_export["item", "bad,id"] in set(lines["item_id"])
    rejected = pd.read_csv(rejected_path_for(out), dtype=str)
    assert sorted(rejected["reason"]) == ["unparseable time"]

    # Deterministic: a second import maps every id to the same decimal.
    again = tmp_path / "again.csv"
    import_transactions(
        src,
        again,
        user="client",
        item="sku",
        time_col="when",
        category="cat",
        basket="order",
        time_format="%d.%m.%Y %H:%M",
    )
    assert id_map_path_for(again).read_text() == id_map_path_for(out).read_text()


def test_decimal_ids_kept_long_or_mixed_ids_mapped(tmp_path):
    long_digits = "1" * 40  # more than the warehouse's 39 digits
    src = tmp_path / "t.csv"
    src.write_text(f"u,i,t\n007,{long_digits},2024-01-01 10:00:00\n007,123,2024-01-01 10:00:00\n")
    out = tmp_path / "o.csv"
    stats = import_transactions(src, out, user="u", item="i", time_col="t")
    assert stats.mapped_ids == {"item": 1}
    lines = read_line_items(out)
    assert set(lines["user_id"]) == {"007"}  # leading zeros kept
    id_map = pd.read_csv(id_map_path_for(out), dtype=str)
    assert id_map.values.tolist() == [["item", long_digits, id_map.export_id[0]]]
    assert list(lines["item_id"]) == [id_map.export_id[0], "123"]
    assert "mapped" in stats.summary()


def test_generic_without_optional_columns_groups_by_timestamp(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("u,i,t\na,x,2024-01-01 10:00:00\na,y,2024-01-01 10:00:00\na,z,2024-01-02T09:00:00+02:00\n")
    out = tmp_path / "o.csv"
    stats = import_transactions(src, out, user="u", item="i", time_col="t")
    assert stats.events == 2 and stats.rejected == 0
    assert not rejected_path_for(out).exists()
    lines = read_line_items(out)
    assert list(lines["qty"]) == [1, 1, 1]
    assert lines["price100"].isna().all()
    assert lines["ts"].iloc[2] == pd.Timestamp("2024-01-02 07:00")  # offset converted to UTC
    assert out.read_text().splitlines()[0].split(",") == BASE_COLUMNS


@pytest.mark.slow  # runs dbt or the whole flow
def test_real_ta_feng_converts_completely(tmp_path):
    if not TA_FENG_ZIP.exists():
        pytest.skip(f"shared Ta-Feng data not found at {TA_FENG_ZIP}")
    out = tmp_path / "ta_feng.csv"
    stats = import_ta_feng(TA_FENG_ZIP, out)
    assert stats.rejected == 0
    assert stats.line_items == 817_741
    assert stats.events == 119_578
    assert stats.users == 32_266 and stats.items == 23_812
    assert stats.seconds < 30


@pytest.mark.slow  # runs dbt or the whole flow
def test_imported_text_ids_pass_the_warehouse_validation(tmp_path):
    """Text ids, a comma in an id and a missing category: the warehouse rejects nothing."""
    import duckdb

    from ml.config import Settings
    from ml.warehouse.dbt import dbt_vars, run_dbt

    src = tmp_path / "orders.csv"
    src.write_text(
        "order,client,sku,when,unit_price,n,cat\n"
        "o1,alice@example.com,SKU-1,2024-02-01 10:00:00,12.5,1,Shoes\n"
        'o1,alice@example.com,"SKU,2",2024-02-01 10:00:00,3,2,\n'
        "o2,0042,SKU-1,2024-02-02 11:30:00,12.5,1,Shoes\n"
    )
    out = tmp_path / "out.csv"
    stats = import_transactions(
        src,
        out,
        user="client",
        item="sku",
        time_col="when",
        price="unit_price",
        qty="n",
        category="cat",
        basket="order",
    )
    assert stats.rejected == 0 and stats.mapped_ids == {"user": 1, "item": 2, "category": 1}
    settings = Settings(home=tmp_path / "home")
    run_dbt(settings, "run", dbt_vars(out), select="+rejected_rows")
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        assert con.execute("select count(*) from rejected_rows").fetchall() == [(0,)]
        assert con.execute("select count(*) from int_events__validated").fetchall() == [(2,)]
