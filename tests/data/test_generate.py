"""The synthetic export: layout, statistics of the real export, and the planted structure."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml.data.export import read_csv_sql, read_line_items
from ml.data.synthetic import GeneratorConfig, generate_export, planted_structure, writer
from ml.vocabulary import BASE_COLUMNS, CATEGORY_COLUMNS

STATS_ROWS = 400_000
STATS_SEED = 11


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one(con: duckdb.DuckDBPyConnection, sql: str):
    return con.sql(sql).fetchall()[0]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    """Small files: 8 and 10 columns, several chunks, two seeds."""
    d = tmp_path_factory.mktemp("gen_small")
    out = {}
    for name, rows, seed, cats in [("a8", 20_000, 3, False), ("a10", 20_000, 3, True), ("b8", 20_000, 4, False)]:
        path = d / f"{name}.csv"
        stats = generate_export(GeneratorConfig(rows=rows, seed=seed, with_categories=cats, chunk_rows=3_000), path)
        out[name] = (path, stats)
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict:
    """A file of a few hundred thousand rows with categories, loaded once."""
    path = tmp_path_factory.mktemp("gen_big") / "ab_test.csv"
    config = GeneratorConfig(rows=STATS_ROWS, seed=STATS_SEED, with_categories=True)
    stats = generate_export(config, path)
    con = duckdb.connect()
    con.execute(f"create table raw as select * from {read_csv_sql(path)}")
    li = read_line_items(path, con)
    truth = planted_structure(config)
    items = truth.items_frame()
    users = truth.users_frame()
    li = li.merge(
        items[["item_id", "item", "category", "category_id", "price_z"]].rename(
            columns={"category_id": "planted_category_id"}
        ),
        on="item_id",
        how="left",
    )
    li = li.merge(users[["user_id", "user", "tier"]], on="user_id", how="left")
    li["day"] = (pd.to_datetime(li["date"]) - pd.Timestamp("2023-07-31")).dt.days
    con.register("li", li)
    return dict(path=path, stats=stats, con=con, li=li, truth=truth, items=items, users=users)


# --------------------------------------------------------------------------- layout


def test_header_and_exact_rows(small):
    for name, cols in [("a8", BASE_COLUMNS), ("a10", BASE_COLUMNS + CATEGORY_COLUMNS)]:
        path, stats = small[name]
        with open(path, newline="") as f:
            lines = f.read().splitlines()
        assert lines[0] == ",".join(cols)
        assert len(lines) - 1 == 20_000 == stats.rows
        rows = list(csv.reader(lines[1:]))
        assert all(len(r) == len(cols) for r in rows)


@pytest.mark.parametrize("rows", [0, 1, 7, 150])
def test_tiny_exports_have_exact_rows(tmp_path, rows):
    path = tmp_path / "t.csv"
    stats = generate_export(GeneratorConfig(rows=rows, seed=1), path)
    assert stats.rows == rows
    assert len(path.read_text().splitlines()) == rows + 1


def test_readers_load_it(small):
    path, _ = small["a10"]
    con = duckdb.connect()
    described = con.sql(f"describe select * from {read_csv_sql(path)}").fetchall()
    assert [r[0] for r in described] == BASE_COLUMNS + CATEGORY_COLUMNS
    assert _one(con, f"select count(*) from {read_csv_sql(path)}")[0] == 20_000
    # DuckDB's own sniffer loads it too
    assert _one(con, f"select count(*) from read_csv('{path}')")[0] == 20_000
    li = read_line_items(path, con)
    assert len(li) > 0
    assert li["item_id"].notna().all() and li["category_id"].notna().all()
    assert li["price100"].notna().all() and li["qty"].notna().all()
    assert (li["price100"] % 100 == 0).all()
    assert li["ts"].notna().all()
    assert li["date"].min() == pd.Timestamp("2023-07-31").date() or str(li["date"].min()).startswith("2023-07-31")
    assert str(li["date"].max()).startswith("2023-08-13")


def test_ids_and_values(small):
    path, _ = small["a10"]
    con = duckdb.connect()
    con.execute(f"create table raw as select * from {read_csv_sql(path)}")
    lo, hi = _one(con, "select min(length(user_id)), max(length(user_id)) from raw")
    assert lo >= 34 and hi <= 39
    li = read_line_items(path, con)
    for col in ("item_id", "category_id"):
        lens = li[col].str.len()
        assert lens.min() >= 34 and lens.max() <= 39
        assert li[col].str.fullmatch(r"[1-9][0-9]*").all()
    sub = con.sql("""select unnest(string_split(trim(sub_category, '[]'), ', ')) s from raw
                     where sub_category <> '[]'""").df()["s"]
    assert sub.str.len().between(34, 39).all()
    assert set(_one(con, "select list(distinct platform) from raw")[0]) <= {"Site", "Android", "iOS"}
    # times: empty exactly on engagement / pageview rows, format and date agree
    bad = _one(
        con,
        """select count(*) from raw where (utc_event_time is null) <>
                       (event_type in ('user_engagement', 'pageview'))""",
    )[0]
    assert bad == 0
    assert (
        _one(
            con,
            """select count(*) from raw where utc_event_time is not null and
        (not regexp_full_match(utc_event_time, '\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\+00:00')
         or left(utc_event_time, 10) <> utc_event_date)""",
        )[0]
        == 0
    )
    assert (
        _one(
            con,
            """select count(*) from raw where event_type in ('user_engagement', 'pageview')
        and ("ecom.nm" <> '[]' or "ecom.price100" <> '[]' or "ecom.qty" <> '[]'
             or main_category <> '[]' or sub_category <> '[]')""",
        )[0]
        == 0
    )
    # aligned lists
    assert (
        _one(
            con,
            """select count(*) from raw where
        len(string_split("ecom.nm", ',')) <> len(string_split("ecom.price100", ','))
        or len(string_split("ecom.nm", ',')) <> len(string_split("ecom.qty", ','))
        or len(string_split("ecom.nm", ',')) <> len(string_split(main_category, ','))
        or len(string_split("ecom.nm", ',')) <> len(string_split(sub_category, ','))""",
        )[0]
        == 0
    )
    # one platform per user
    assert (
        _one(con, "select count(*) from (select user_id from raw group by 1 having count(distinct platform) > 1)")[0]
        == 0
    )


def test_multi_item_lists_are_quoted(small):
    path, _ = small["a8"]
    multi = [line for line in path.read_text().splitlines() if ", " in line]
    assert multi, "expected multi-item purchase rows"
    for line in multi:
        assert ',ec.purchase,"[' in line
        fields = next(csv.reader([line]))
        assert fields[5].startswith("[") and ", " in fields[7]
        assert len(fields[5].split(", ")) == len(fields[6].split(", ")) == len(fields[7].split(", "))
    # single-item lists are not quoted
    assert '"' not in next(line for line in path.read_text().splitlines() if ",ec.view_item," in line)


def test_deterministic(small, tmp_path):
    path, _ = small["a8"]
    again = tmp_path / "again.csv"
    generate_export(GeneratorConfig(rows=20_000, seed=3, chunk_rows=3_000), again)
    assert _sha(again) == _sha(path)
    assert _sha(small["b8"][0]) != _sha(path)
    # the planted truth is rebuilt identically
    t1, t2 = (
        planted_structure(GeneratorConfig(rows=20_000, seed=3)),
        planted_structure(GeneratorConfig(rows=20_000, seed=3)),
    )
    assert np.array_equal(t1.item_price100, t2.item_price100)
    assert np.array_equal(t1.complement_pairs, t2.complement_pairs)
    assert np.array_equal(t1.user_tier, t2.user_tier)


def test_failed_run_leaves_no_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "_write_chunk", boom)
    out = tmp_path / "x.csv"
    with pytest.raises(RuntimeError):
        generate_export(GeneratorConfig(rows=5_000, seed=1), out)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- statistics


def test_event_mix_and_users(big):
    con = big["con"]
    target = {
        "ec.view_item": 88.40,
        "ec.add_to_cart": 6.58,
        "user_engagement": 2.95,
        "ec.purchase": 1.14,
        "pageview": 0.93,
    }
    mix = dict(con.sql("select event_type, 100.0 * count(*) / sum(count(*)) over () from raw group by 1").fetchall())
    for event, share in target.items():
        assert abs(mix[event] - share) <= 1.0, (event, mix[event])
    users = _one(con, "select count(distinct user_id) from raw")[0]
    assert abs(users - STATS_ROWS / 100.7) / (STATS_ROWS / 100.7) < 0.05
    plat = dict(
        con.sql("""select platform, 100.0 * count(*) / sum(count(*)) over ()
                           from (select distinct user_id, platform from raw) group by 1""").fetchall()
    )
    for p, share in {"Site": 52.1, "Android": 32.8, "iOS": 15.2}.items():
        assert abs(plat[p] - share) <= 2.0, (p, plat[p])
    commerce = dict(
        con.sql("""select platform, 100.0 * count(*) / sum(count(*)) over ()
                               from raw where event_type like 'ec.%' group by 1""").fetchall()
    )
    for p, share in {"Site": 9, "Android": 58, "iOS": 33}.items():
        assert abs(commerce[p] - share) <= 5.0, (p, commerce[p])
    viewers, carters, buyers, both = _one(
        con,
        """
        select count(distinct user_id) filter (event_type = 'ec.view_item'),
               count(distinct user_id) filter (event_type = 'ec.add_to_cart'),
               count(distinct user_id) filter (event_type = 'ec.purchase'),
               count(distinct user_id) filter (event_type = 'ec.purchase' and user_id in
                   (select user_id from raw where event_type = 'ec.add_to_cart'))
        from raw""",
    )
    assert abs(100 * viewers / users - 80.8) < 4
    assert abs(100 * carters / users - 40.7) < 4
    assert abs(100 * buyers / users - 24.7) < 4
    assert both / buyers > 0.95
    items = big["li"]["item_id"].nunique()
    assert 0.75 < items / (STATS_ROWS / 7.2) < 1.25


def test_line_items_prices_and_time(big):
    con = big["con"]
    multi, mean_size, max_size = _one(
        con,
        """select avg((n > 1)::int), avg(n), max(n) from
        (select row_id, count(*) n from li where event_type = 'purchase' group by 1)""",
    )
    assert 0.10 <= multi <= 0.20
    assert 1.2 <= mean_size <= 1.55 and max_size <= 13
    assert _one(con, "select avg((event_type <> 'purchase' and position > 1)::int) from li")[0] == 0
    assert _one(con, "select avg((qty = 1)::int) from li")[0] > 0.998
    p5, p50, p95 = _one(con, "select quantile_cont(price100, [0.05, 0.5, 0.95]) from li")[0]
    for got, want in [(p5, 15_600), (p50, 85_500), (p95, 441_580)]:
        assert abs(got / want - 1) <= 0.25, (got, want)
    med = dict(con.sql("select event_type, median(price100) from li group by 1").fetchall())
    assert abs(med["purchase"] / 43_700 - 1) <= 0.25, med
    assert abs(med["view_item"] / 88_000 - 1) <= 0.25, med
    zeros = _one(
        con, "select avg((price100 = 0)::int), avg((price100 = 0)::int) filter (event_type = 'view_item') from li"
    )
    assert 0.002 < zeros[0] < 0.01 and zeros[1] >= zeros[0]
    hours = dict(con.sql("select hour(ts), count(*) / sum(count(*)) over () from li group by 1").fetchall())
    assert all(0.04 <= hours[h] <= 0.075 for h in range(7, 20))
    assert all(hours[h] <= 0.02 for h in (0, 1))
    dau = dict(
        con.sql(
            "select dayofweek(date::date), avg(n) from (select utc_event_date date, "
            "count(distinct user_id) n from raw group by 1) group by 1"
        ).fetchall()
    )
    assert dau[6] < min(dau[d] for d in (1, 2, 3, 4))  # Saturday dip
    per_user = con.sql("select count(*) n from raw group by user_id").df()["n"]
    assert per_user.quantile(0.99) > 8 * per_user.median()  # heavy tail
    per_item = big["li"].groupby("item_id").size()
    assert per_item.max() > 50 * per_item.median()  # long tail of items


# --------------------------------------------------------------------------- planted structure


def test_categories_match_the_truth(big):
    li = big["li"]
    assert li["item"].notna().all() and li["user"].notna().all()
    assert (li["category_id"] == li["planted_category_id"]).all()


def test_complements_are_bought_together(big):
    li, truth = big["li"], big["truth"]
    buys = li[li["event_type"] == "purchase"][["row_id", "item"]].drop_duplicates()
    n_baskets = buys["row_id"].nunique()
    count = buys.groupby("item").size()
    pairs = pd.DataFrame(truth.complement_pairs, columns=["a", "b"])
    a = buys.rename(columns={"item": "a"})
    b = buys.rename(columns={"item": "b"})
    co = a.merge(b, on="row_id").merge(pairs, on=["a", "b"])
    observed = len(co)
    expected = (
        float((count.reindex(pairs["a"]).fillna(0).to_numpy() * count.reindex(pairs["b"]).fillna(0).to_numpy()).sum())
        / n_baskets
    )
    assert observed >= 30
    assert observed / max(expected, 1e-9) >= 10


def test_rebuy_items_are_bought_again_on_other_days(big):
    li, truth = big["li"], big["truth"]
    buys = li[li["event_type"] == "purchase"]
    days = buys.groupby(["user", "item"])["day"].nunique().reset_index()
    days["rebuy"] = np.isin(days["item"], truth.rebuy_items)
    rate = days.groupby("rebuy")["day"].apply(lambda d: (d >= 2).mean())
    assert (days["rebuy"] & (days["day"] >= 2)).sum() >= 20
    assert rate[True] >= 5 * max(rate[False], 1e-3)


def test_trends_rise_and_fade(big):
    li, truth = big["li"], big["truth"]
    week2 = li["day"] >= 7
    for items, rising in [(truth.rising_items, True), (truth.fading_items, False)]:
        hit = np.isin(li["item"], items)
        s1, s2 = hit[~week2].mean(), hit[week2].mean()
        assert (s2 > 1.5 * s1) if rising else (s1 > 1.5 * s2), (s1, s2)


def test_purchases_follow_tastes_and_tier(big):
    li, truth = big["li"], big["truth"]
    buys = li[li["event_type"] == "purchase"].copy()
    users = buys["user"].to_numpy().astype(np.int64)
    taste = truth.user_taste[users]
    in_taste = (taste == buys["category"].to_numpy()[:, None]).any(axis=1)
    baseline = np.where(taste >= 0, truth.cat_weight[np.maximum(taste, 0)], 0).sum(axis=1)
    assert in_taste.mean() >= 0.6 and in_taste.mean() >= 2 * baseline.mean()
    buys["log_price"] = np.log(buys["price100"].clip(lower=100))
    per_user = buys.groupby("user").agg(
        tier=("tier", "first"), z=("price_z", "mean"), lp=("log_price", "mean"), n=("item", "size")
    )
    per_user = per_user[per_user["n"] >= 3]
    assert per_user["tier"].corr(per_user["z"]) >= 0.4
    assert per_user["tier"].corr(per_user["lp"]) >= 0.2


def test_sessions_view_then_cart_then_buy(big):
    con = big["con"]
    carted_after_view = _one(
        con,
        """
        select avg((exists (select 1 from li v where v.event_type = 'view_item' and v.user_id = c.user_id
                and v.item_id = c.item_id and v.date = c.date and v.ts < c.ts))::int)
        from li c where c.event_type = 'add_to_cart'""",
    )[0]
    bought_after_cart = _one(
        con,
        """
        select avg((exists (select 1 from li c where c.event_type = 'add_to_cart' and c.user_id = p.user_id
                and c.item_id = p.item_id and c.date = p.date and c.ts < p.ts))::int)
        from li p where p.event_type = 'purchase'""",
    )[0]
    assert carted_after_view >= 0.8, carted_after_view
    assert bought_after_cart >= 0.6, bought_after_cart
