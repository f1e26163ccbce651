"""Exports too small to learn from publish the cold-start lists; in a home that has a learned
list, input that is refused (exit 2) or too thin to beat it (exit 3) leaves that list in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.data.synthetic import GeneratorConfig, generate_export
from tests.exports import event, write_export
from tests.real_exports.user_runs import assert_published, check_generated, publication, recsys, report, rewrite

pytestmark = pytest.mark.slow


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


def test_one_platform_publishes_and_its_list_survives_every_refusal(prefect_harness, capsys, tmp_path):
    """One run publishes (a one-platform export, `platform` left out of the fit); every later
    input that cannot beat it leaves it published."""
    generated, home = tmp_path / "generated", tmp_path / "home"
    generated.mkdir()
    generate_export(GeneratorConfig(rows=200_000, seed=11, with_categories=True), generated / "ten_columns.csv")
    export = rewrite(generated / "ten_columns.csv", generated / "one_platform.csv", "* replace ('Android' as platform)")
    check_generated(capsys, "generated, one platform", export, home, {"platform"})
    before = publication(home)

    header_only = tmp_path / "header_only.csv"
    header_only.write_text(export.open().readline())
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
