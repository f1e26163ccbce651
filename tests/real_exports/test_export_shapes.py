"""The README's `recsys run` on the shapes real exports take (generated): without the category
columns, with them empty, purchases only, and a year of buyers who come back every month or two.
Each publishes a learned list and leaves out of the fit the features the shape cannot carry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.data.synthetic import GeneratorConfig, generate_export
from tests.exports import event, write_export
from tests.real_exports.user_runs import check_generated, rewrite

pytestmark = pytest.mark.slow

GENERATED_ROWS = 200_000


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


def test_empty_category_lists(prefect_harness, capsys, tmp_path):
    ten_columns = tmp_path / "ten_columns.csv"
    generate_export(GeneratorConfig(rows=GENERATED_ROWS, seed=11, with_categories=True), ten_columns)
    export = rewrite(
        ten_columns, tmp_path / "no_categories.csv", "* replace ('[]' as main_category, '[]' as sub_category)"
    )
    check_generated(
        capsys, "generated, category columns empty", export, tmp_path / "home", {"item_category", "category_score"}
    )


def test_purchases_only(prefect_harness, capsys, tmp_path):
    full = tmp_path / "full.csv"
    generate_export(GeneratorConfig(rows=1_500_000, seed=11, with_categories=True), full)
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
