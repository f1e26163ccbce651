"""The dbt warehouse: conservation, quarantine reasons, point-in-time features, k-anonymity."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from ml.config import Settings
from ml.vocabulary import BASE_COLUMNS
from ml.warehouse import tables
from ml.warehouse.dbt import dbt_vars, run_dbt
from tests.exports import activity, event, write_export, write_raw_lines

SHARED = Path(__file__).resolve().parents[3] / "shared"
WB_SAMPLE = SHARED / "data" / "wb_sample" / "ab_test_sample.csv"
FEATURE_TABLES = ["int_user_items", "user_features", "item_features", "item_popularity", "co_purchase"]

GOOD = "Android,2023-08-01 10:00:00+00:00,2023-08-01,11,ec.view_item,[15600],[1],[501]"


def build(home: Path, input_path: Path, **variables) -> Settings:
    settings = Settings(home=home)
    run_dbt(settings, "build", dbt_vars(input_path, **variables), exclude="tag:serving tag:monitoring")
    return settings


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        return con.execute(sql).fetchall()


def snapshot(settings: Settings, table: str, cutoff: str) -> list[tuple]:
    """All rows of a feature table at one cutoff, in a stable order."""
    return query(settings, f"select * from {table} where cutoff_at = timestamp '{cutoff}' order by all")


@pytest.mark.slow  # runs dbt or the whole flow
@pytest.mark.skipif(not WB_SAMPLE.exists(), reason=f"real sample not present at {WB_SAMPLE}")
def test_real_sample_builds_and_keeps_misaligned_purchases(tmp_path):
    settings = build(tmp_path, WB_SAMPLE)
    exported = sum(1 for _ in WB_SAMPLE.open()) - 1
    staged, rejected = query(
        settings,
        """
        select (select count(*) from stg_ab_test__events), (select count(*) from rejected_rows)""",
    )[0]
    assert staged == exported == 42_142
    assert rejected == 0
    # 77 multi-item purchases arrive with [] prices: every item is kept, price unknown.
    misaligned = query(
        settings,
        """
        select count(distinct event_row_id), count(*) from int_line_items where not price_known""",
    )[0]
    assert misaligned[0] == 77 and misaligned[1] > 77
    assert query(settings, "select count(*) from int_line_items")[0][0] == 42_142 - 77 + misaligned[1]


@pytest.mark.slow  # runs dbt or the whole flow
def test_every_broken_row_is_quarantined_with_its_reason(tmp_path):
    lines = [
        ",".join(BASE_COLUMNS),
        GOOD,
        GOOD,  # exact duplicate
        'iOS,2023-08-01 10:05:00+00:00,2023-08-01,12,ec.purchase,[],[],"[501, 502, 503]"',  # kept
        "Site,,2023-08-01,13,pageview,[],[],[]",  # activity, kept
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,14,ec.view_item,[100],[1],[504],surplus",
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,15,ec.view_item",
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,,ec.view_item,[100],[1],[505]",
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,user-16,ec.view_item,[100],[1],[505]",
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,17,ec.click,[100],[1],[505]",
        "Tablet,2023-08-01 10:00:00+00:00,2023-08-01,18,ec.view_item,[100],[1],[505]",
        "Android,2023-08-01 10:00:00+00:00,2023-13-45,19,ec.view_item,[100],[1],[505]",
        "Android,,2023-08-01,20,ec.purchase,[100],[1],[505]",
        "Android,yesterday,2023-08-01,21,ec.add_to_cart,[100],[1],[505]",
        'Android,2023-08-01 10:00:00+00:00,2023-08-01,22,ec.view_item,[100],[1],"[505, x]"',
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,23,ec.view_item,[100],[1],[505",
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,24,ec.purchase,[],[],[]",
        'Android,2023-08-01 10:00:00+00:00,2023-08-01,25,ec.purchase,"[100, 200]",[1],"[505, 506, 507]"',
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,26,ec.add_to_cart,[-100],[1],[505]",
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,27,ec.add_to_cart,[100],[50000],[505]",
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,28,ec.view_item,[99999999999],[1],[505]",
    ]
    settings = build(tmp_path, write_raw_lines(tmp_path / "broken.csv", lines))

    reasons = dict(query(settings, "select reject_reason, count(*) from rejected_rows group by 1"))
    assert reasons == {
        "duplicate_row": 1,
        "malformed_row": 2,
        "missing_user_id": 1,
        "bad_user_id": 1,
        "unknown_event_type": 1,
        "unknown_platform": 1,
        "bad_event_date": 1,
        "bad_timestamp": 2,
        "malformed_list": 2,
        "no_items": 1,
        "list_length_mismatch": 1,
        "negative_value": 1,
        "absurd_value": 2,
    }
    used = query(settings, "select count(*) from int_events__validated where reject_reason is null")
    assert used[0][0] + sum(reasons.values()) == len(lines) - 1
    assert query(settings, "select raw_extra_fields from rejected_rows where raw_user_id = '14'") == [("surplus",)]
    kept = query(settings, "select count(*), bool_or(price_known) from int_line_items where user_id = '12'")
    assert kept == [(3, False)]


def _clean_rows(extra: list[list[str]] | None = None) -> list[list[str]]:
    """Days 08-01..08-07; items 1 and 2 bought by three users, items 3 and 4 by two."""
    rows = []
    for user in (101, 102, 103):
        rows.append(event(user, "ec.view_item", [1], "2023-08-01 09:00:00", prices=[50_000]))
        rows.append(event(user, "ec.purchase", [1, 2], "2023-08-02 10:00:00", prices=[50_000, 9_000]))
    for user in (104, 105):
        rows.append(event(user, "ec.purchase", [3], "2023-08-03 11:00:00", prices=[20_000]))
        rows.append(event(user, "ec.purchase", [4], "2023-08-06 12:00:00", prices=[30_000]))
    rows.append(event(106, "ec.add_to_cart", [2], "2023-08-07 13:00:00", platform="iOS"))
    rows.append(activity(107, "user_engagement", "2023-08-05"))
    return rows + (extra or [])


@pytest.mark.slow  # runs dbt or the whole flow
def test_features_at_a_cutoff_ignore_later_events(tmp_path):
    as_of = "2023-08-08 00:00:00"
    before = build(tmp_path / "a", write_export(tmp_path / "a.csv", _clean_rows()), as_of=as_of)
    later = [
        event(101, "ec.purchase", [3, 4], "2023-08-08 00:00:00"),  # exactly at the cutoff
        event(108, "ec.purchase", [1, 2], "2023-08-09 10:00:00"),
        event(104, "ec.view_item", [1], "2023-08-10 10:00:00"),
        activity(107, "pageview", "2023-08-11"),
    ]
    after = build(tmp_path / "b", write_export(tmp_path / "b.csv", _clean_rows(later)), as_of=as_of)
    cutoffs = [str(c[0]) for c in query(before, "select cutoff_at from int_cutoffs order by 1")]
    assert cutoffs == ["2023-07-30 00:00:00", "2023-08-02 00:00:00", "2023-08-05 00:00:00", "2023-08-08 00:00:00"]
    for table in FEATURE_TABLES:
        for cutoff in cutoffs:
            assert snapshot(before, table, cutoff) == snapshot(after, table, cutoff), (table, cutoff)
    # The catalogue coverage divides by: the items of int_user_items, counted on item_features.
    distinct_items = "select count(distinct item_id) from int_user_items where cutoff_at = ?"
    with duckdb.connect(str(before.build_db), read_only=True) as con:
        sizes = [
            (tables.catalogue_size(con, cutoff), con.execute(distinct_items, [cutoff.at]).fetchone()[0])
            for cutoff in tables.cutoffs(con).values()
        ]
    assert all(counted == distinct for counted, distinct in sizes) and max(sizes)[0] > 0, sizes

    # The comparison is sensitive: an event before the cutoff does change the features.
    earlier = [event(108, "ec.purchase", [1, 2], "2023-08-07 23:59:59")]
    changed = build(tmp_path / "c", write_export(tmp_path / "c.csv", _clean_rows(earlier)), as_of=as_of)
    assert snapshot(before, "user_features", cutoffs[-1]) != snapshot(changed, "user_features", cutoffs[-1])


@pytest.mark.slow  # runs dbt or the whole flow
def test_co_purchase_keeps_only_pairs_shared_by_k_users(tmp_path):
    source = write_export(tmp_path / "pairs.csv", _clean_rows())
    cutoff = "2023-08-08 00:00:00"
    pair_sql = f"""select item_id, other_item_id, support_users from co_purchase
                   where signal = 'purchase' and cutoff_at = timestamp '{cutoff}' order by 1, 2"""

    default_k = build(tmp_path / "k3", source)
    assert query(default_k, pair_sql) == [("1", "2", 3), ("2", "1", 3)]

    k2 = build(tmp_path / "k2", source, min_pair_users=2)
    assert query(k2, pair_sql) == [("1", "2", 3), ("2", "1", 3), ("3", "4", 2), ("4", "3", 2)]
    lift = query(
        k2,
        f"""select lift, confidence from co_purchase where signal = 'purchase'
                         and cutoff_at = timestamp '{cutoff}' and item_id = '3'""",
    )
    assert lift == [(pytest.approx(5 * 2 / (2 * 2)), 1.0)]


@pytest.mark.slow  # runs dbt or the whole flow
def test_ten_column_export_carries_categories(tmp_path):
    rows = [r + ["[900]", "[901]"] for r in _clean_rows()[:-1]]
    rows[1] = rows[1][:8] + ["[900, 910]", "[901, 911]"]
    settings = build(tmp_path, write_export(tmp_path / "cat.csv", rows, with_categories=True))
    categories = query(
        settings,
        """select item_id, any_value(category_id)
                                    from int_line_items group by 1 order by 1""",
    )
    assert categories[:2] == [("1", "900"), ("2", "910")]
    scopes = query(settings, "select distinct scope from item_popularity order by 1")
    assert scopes == [("category",), ("global",), ("platform",)]


@pytest.mark.slow  # runs dbt or the whole flow
def test_values_never_become_sql(tmp_path):
    """A quoted file name builds; a crafted setting stops the build with the reason, unrun."""
    from ml.warehouse.dbt import DbtError

    rows = [
        event(user, "ec.purchase", [1, 2 + user % 3], f"2023-08-{day:02d} 12:00:00")
        for user in range(1, 20)
        for day in (1, 4)
    ]
    export = write_export(tmp_path / 'it\'s "quoted".csv', rows)
    settings = Settings(home=tmp_path / "home")
    run_dbt(settings, "build", dbt_vars(export), select="tag:ingest")
    assert query(settings, "select count(*) from int_line_items") == [(len(rows) * 2,)]

    hostile = {
        "as_of": "2023-08-10' as serve_at, read_text('/etc/hostname') as x --",
        "min_pair_users": "3 or 1 = 1",
        "top_n": "20; drop table items",
    }
    for name, value in hostile.items():
        with pytest.raises(DbtError, match=f"var {name} must be"):
            run_dbt(
                settings,
                "compile",
                dbt_vars(export, **{name: value}),
                select="int_export_window co_purchase pub_similar_items",
            )


def test_settings_are_refused_before_any_work(tmp_path, capsys):
    from flows.cli import main

    export = write_export(tmp_path / "export.csv", [event(1, "ec.purchase", [1], "2023-08-01 12:00:00")])
    home = tmp_path / "home"
    for flags in (
        ["--as-of", "2023-08-10' || read_text('/etc/hostname') || '"],
        ["--as-of", "yesterday"],
        ["--top-n", "0"],
        ["--horizon-days", "-3"],
    ):
        assert main(["--home", str(home), "run", "--input", str(export), *flags]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4 and all(line.startswith("error: ") for line in errors)
    assert not (home / "build.duckdb").exists()


def test_dbt_builds_on_its_own_before_any_scoring(tmp_path):
    """A dbt build before any scoring (a plain `dbt build`): the scoring step's table exists,
    empty, with the columns the scoring step writes, and the serving tables build without
    personal lists."""
    from ml.warehouse.lists import no_personal_lists

    settings = Settings(home=tmp_path / "home")
    run_dbt(settings, "build", dbt_vars(write_export(tmp_path / "export.csv", _clean_rows())))
    assert query(settings, "select count(*) from ml_recommendations") == [(0,)]
    assert query(settings, "select count(*) from pub_recommendations") == [(0,)]
    assert query(settings, "select count(distinct platform) from pub_fallback_recommendations") == [(4,)]

    columns = (
        "select column_name, data_type from duckdb_columns() "
        "where table_name = 'ml_recommendations' order by column_index"
    )
    no_personal_lists(scored := tmp_path / "scored.duckdb")
    with duckdb.connect(str(scored), read_only=True) as con:
        assert query(settings, columns) == con.execute(columns).fetchall()
