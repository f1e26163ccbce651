"""Publishing the serving database and the marketplace's queries on it (ml/serving/)."""

from __future__ import annotations

import fcntl
import json
import math
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from ml import serving
from ml.serving import PublishError, publish, publisher, reader, schema

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GEN = datetime(2023, 8, 14, 3, 0, 0)
AS_OF = datetime(2023, 8, 13, 23, 59, 59)

# Users: 101 warm (iOS, 20 recs), 102 warm with a short list (Android, 3 recs),
# 201 known without list (Android), 999 unknown.
# Items 1001..1040; category 501 = 1001..1020, 502 = 1021..1039, 1040 has no category.
WARM_FULL, WARM_SHORT, KNOWN_COLD, UNKNOWN = "101", "102", "201", "999"
ITEM_WITH_PAIRS, NEW_ITEM_IN_CAT, NEW_ITEM_NO_CAT, UNKNOWN_ITEM = "1001", "1030", "1040", "7777"


def _items():
    rows = []
    for i in range(1001, 1041):
        cat = "501" if i <= 1020 else ("502" if i <= 1039 else None)
        price = float(100 * (1 + (i % 7)))  # 100..700
        rows.append((str(i), cat, price, float(2000 - i)))
    rows[4] = ("1005", "501", 5000.0, 1995.0)  # far above everybody's price tier
    return rows


def make_build_db(path: Path, *, model_version: str = "v1", recs_users: int = 2, extra_sql: str = "") -> Path:
    """A small build database with the ``pub_*`` tables the pipeline produces, every row
    stamped with ``model_version`` (the build's run)."""
    con = duckdb.connect(str(path))
    con.execute("""create or replace table pub_items (item_id varchar, category_id varchar,
                   price_rub double, popularity double, model_version varchar)""")
    con.executemany("insert into pub_items values (?, ?, ?, ?, ?)", [(*row, model_version) for row in _items()])
    con.execute("""create or replace table pub_recommendations (user_id varchar, item_id varchar,
                   rank integer, score double, reason varchar, model_version varchar,
                   generated_at timestamp)""")
    recs = []
    if recs_users >= 1:  # 101: items 1021..1040 (category 502), best first
        recs += [(WARM_FULL, str(1020 + r), r, 1.0 / r, "personal", model_version, GEN) for r in range(1, 21)]
    if recs_users >= 2:  # 102: three items
        recs += [
            (WARM_SHORT, str(i), r, 1.0 / r, "personal", model_version, GEN)
            for r, i in enumerate((1003, 1002, 1004), start=1)
        ]
    if recs:
        con.executemany("insert into pub_recommendations values (?, ?, ?, ?, ?, ?, ?)", recs)
    con.execute("""create or replace table pub_fallback_recommendations (platform varchar,
                   item_id varchar, rank integer, score double, reason varchar,
                   model_version varchar, generated_at timestamp)""")
    fb = []
    for p_idx, platform in enumerate(["Site", "Android", "iOS", "all"]):
        for r in range(1, 26):  # 25 items, rotated per platform so the lists differ
            item = 1001 + (r - 1 + 5 * p_idx) % 39
            fb.append((platform, str(item), r, 1.0 / r, f"popular:{platform}", model_version, GEN))
    con.executemany("insert into pub_fallback_recommendations values (?, ?, ?, ?, ?, ?, ?)", fb)
    con.execute("""create or replace table pub_similar_items (item_id varchar, similar_item_id varchar,
                   rank integer, score double, support_users integer, confidence double, lift double,
                   model_version varchar)""")
    sim = [
        (ITEM_WITH_PAIRS, s, r, 1.0 / r, 10 - r, 0.5 / r, 2.0, model_version)
        for r, s in enumerate(["1005", "1002", "1010", "1003", "1025"], start=1)
    ]
    sim += [("1002", "1001", 1, 1.0, 9, 0.4, 2.0, model_version)]
    con.executemany("insert into pub_similar_items values (?, ?, ?, ?, ?, ?, ?, ?)", sim)
    con.execute("""create or replace table pub_user_profiles (user_id varchar, platform varchar,
                   price_tier integer, top_category_id varchar, model_version varchar)""")
    con.executemany(
        "insert into pub_user_profiles values (?, ?, ?, ?, ?)",
        [  # tier 8: 256..511 RUB
            (WARM_FULL, "iOS", 8, "502", model_version),
            (WARM_SHORT, "Android", 8, "501", model_version),
            (KNOWN_COLD, "Android", 7, "501", model_version),
        ],
    )
    if extra_sql:
        con.execute(extra_sql)
    con.close()
    return path


@pytest.fixture()
def published(tmp_path):
    build = make_build_db(tmp_path / "build.duckdb")
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    result = publish(build, serving_db, model_version="v1", as_of=AS_OF)
    return build, serving_db, result


@pytest.fixture()
def con(shared_serving_db):
    c = serving.open_serving(shared_serving_db)
    yield c
    c.close()


# ---------------------------------------------------------------------------- publish
def test_publish_result_and_schema(published):
    _, serving_db, result = published
    assert serving_db.exists() and not Path(str(serving_db) + ".wal").exists()
    assert result.n_users == 2 and result.n_rows == 23
    assert result.row_counts["fallback_recommendations"] == 100
    assert result.generated_at == GEN and result.as_of == AS_OF
    assert [p.name for p in serving_db.parent.iterdir() if ".tmp" in p.name] == []
    assert list(publisher._private_dir(serving_db).iterdir()) == []
    c = duckdb.connect(str(serving_db), read_only=True)
    try:
        cols = c.execute(
            "select table_name, list(column_name order by column_index) from duckdb_columns() GROUP BY 1"
        ).fetchall()
        assert dict(cols)["recommendations"] == [
            "user_id",
            "item_id",
            "rank",
            "score",
            "reason",
            "model_version",
            "generated_at",
        ]
        assert dict(cols)["publication"] == [
            "model_version",
            "generated_at",
            "as_of",
            "n_users",
            "n_rows",
            "list_source",
            "pseudonymized",
            "pseudonym_key_id",
        ]
        assert dict(cols)["user_profiles"] == ["user_id", "platform", "price_tier", "top_category_id"]
        assert c.execute(
            "select model_version, n_users, n_rows, pseudonymized, pseudonym_key_id from publication"
        ).fetchall() == [("v1", 2, 23, False, None)]
        nullable = c.execute(
            "select is_nullable from duckdb_columns() where table_name = 'recommendations' AND column_name = 'user_id'"
        ).fetchone()[0]
        assert nullable is False
        macros = {
            r[0]
            for r in c.execute(
                "select function_name from duckdb_functions() where function_type = 'table_macro'"
            ).fetchall()
        }
        assert {"recommend", "related_items"} <= macros
        # a plain read-only connection (how other clients open it) can call the macros
        assert len(c.execute("select * from recommend('101', 20)").fetchall()) == 20
    finally:
        c.close()


@pytest.mark.parametrize(
    "extra_sql, message",
    [
        (
            "insert into pub_recommendations values ('101', '1001', 3, 0.1, 'personal', 'v2', timestamp '2023-08-14')",
            "duplicate (user_id, rank)",
        ),
        # another run rebuilt the features under this one: its items, profiles, pairs and popular lists
        (
            "update pub_items set model_version = 'v9'; update pub_user_profiles set model_version = 'v9'; "
            "update pub_similar_items set model_version = 'v9'; update pub_fallback_recommendations set model_version = 'v9'",
            "mixed build: publishing v2, but pub_fallback_recommendations comes from build(s) v9; pub_similar_items "
            "comes from build(s) v9; pub_items comes from build(s) v9; pub_user_profiles comes from build(s) v9 ",
        ),
        ("update pub_items set model_version = 'v9' where item_id = '1001'", "pub_items comes from build(s) v9"),
        ("alter table pub_user_profiles drop column model_version", "pub_user_profiles lacks column(s) model_version"),
        ("update pub_recommendations set rank = rank + 1 where user_id = '102'", "not 1..n"),
        ("update pub_recommendations set item_id = '1003' where user_id = '102' and rank = 2", "repeat an item"),
        ("delete from pub_fallback_recommendations where platform = 'iOS'", "platform(s) iOS"),
        ("drop table pub_similar_items", "pub_similar_items is missing"),
        ("alter table pub_items drop column popularity", "lacks column(s) popularity"),
        ("update pub_recommendations set item_id = null where rank = 1", "not null"),
        ("update pub_recommendations set score = 'nan'::double where rank = 1", "non-finite"),
        ("insert into pub_user_profiles values ('101', 'iOS', 1, '1', 'v2')", "PRIMARY KEY"),
    ],
)
def test_failed_publish_keeps_old_file(tmp_path, published, extra_sql, message):
    _, serving_db, _ = published
    before = (serving_db.stat().st_ino, serving_db.read_bytes())
    bad = make_build_db(tmp_path / "bad.duckdb", model_version="v2", extra_sql=extra_sql)
    with pytest.raises(PublishError) as err:
        publish(bad, serving_db, model_version="v2", as_of=AS_OF)
    assert message.lower() in str(err.value).lower()
    assert (serving_db.stat().st_ino, serving_db.read_bytes()) == before
    private = publisher._private_dir(serving_db)
    assert sorted(p.name for p in serving_db.parent.iterdir() if not p.name.endswith(".lock") and p != private) == [
        serving_db.name
    ]
    assert list(private.iterdir()) == []


def test_abandoned_temp_files_are_removed_never_a_publication_under_way(published):
    """What a publisher killed half-way left; the serving file and the lock stay."""
    _, serving_db, _ = published
    before = serving_db.read_bytes()
    private = publisher._private_dir(serving_db)
    temp = private / ".recommendations.4000000.0123456789ab.tmp.duckdb"
    abandoned = [temp, Path(f"{temp}.wal"), Path(f"{temp}.tmp")]
    for path in abandoned[:2]:
        path.write_bytes(b"half written")
    abandoned[2].mkdir()  # DuckDB's spill directory
    (abandoned[2] / "spill.block").write_bytes(b"spilled")
    with open(serving_db.parent / ".recommendations.duckdb.publish.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a publication under way: its temp file is not abandoned
        assert serving.remove_abandoned_temp_files(serving_db) == []
    assert all(path.exists() for path in abandoned)
    assert serving.remove_abandoned_temp_files(serving_db) == sorted(abandoned)
    assert sorted(p.name for p in serving_db.parent.iterdir()) == [
        ".recommendations.duckdb.publish.lock",
        ".recommendations.publishing",
        "recommendations.duckdb",
    ]
    assert list(private.iterdir()) == []
    assert serving_db.read_bytes() == before


def test_empty_recommendations_refused_unless_allowed(tmp_path, published):
    _, serving_db, _ = published
    cold = make_build_db(tmp_path / "cold.duckdb", model_version="v2", recs_users=0)
    with pytest.raises(PublishError, match="recommendations is empty"):
        publish(cold, serving_db, model_version="v2", as_of=AS_OF)
    result = publish(cold, serving_db, model_version="v2", as_of=AS_OF, require_recommendations=False)
    assert result.n_rows == 0
    with serving.open_serving(serving_db) as c:  # everybody gets a fallback list
        rows = serving.recommendations_for_user(c, WARM_FULL)
        assert len(rows) == 20 and rows[0]["source"] == "fallback:iOS"


def test_missing_build_db_and_locked_build_db(tmp_path):
    serving_db = tmp_path / "s.duckdb"
    with pytest.raises(PublishError, match="does not exist"):
        publish(tmp_path / "nope.duckdb", serving_db, model_version="v", as_of=AS_OF)
    build = make_build_db(tmp_path / "build.duckdb")
    holder = duckdb.connect(str(build))  # the caller forgot to close its read-write connection
    try:
        with pytest.raises(PublishError, match="close any read-write connection"):
            publish(build, serving_db, model_version="v", as_of=AS_OF)
    finally:
        holder.close()
    assert not serving_db.exists()


# ---------------------------------------------------------------------------- personal list
def test_warm_user_gets_personal_list(con):
    rows = serving.recommendations_for_user(con, WARM_FULL, n=20)
    assert [r["rank"] for r in rows] == list(range(1, 21))
    assert [r["item_id"] for r in rows] == [str(1020 + r) for r in range(1, 21)]
    assert {r["source"] for r in rows} == {"personal"} and rows[0]["model_version"] == "v1"
    assert len(serving.recommendations_for_user(con, WARM_FULL, n=5)) == 5


def test_short_list_is_topped_up_from_platform_fallback(con):
    rows = serving.recommendations_for_user(con, WARM_SHORT, n=10)
    assert [r["item_id"] for r in rows[:3]] == ["1003", "1002", "1004"]
    assert {r["source"] for r in rows[3:]} == {"fallback:Android"}
    assert len(rows) == 10 and len({r["item_id"] for r in rows}) == 10
    assert [r["rank"] for r in rows] == list(range(1, 11))


def test_known_user_without_list_gets_platform_fallback(con):
    rows = serving.recommendations_for_user(con, KNOWN_COLD, n=20)
    assert len(rows) == 20 and {r["source"] for r in rows} == {"fallback:Android"}
    # the request's platform wins over the profile's
    rows = serving.recommendations_for_user(con, KNOWN_COLD, n=20, platform="Site")
    assert {r["source"] for r in rows} == {"fallback:Site"}


def test_unknown_user_gets_all_fallback(con):
    rows = serving.recommendations_for_user(con, UNKNOWN, n=20)
    assert len(rows) == 20 and {r["source"] for r in rows} == {"fallback:all"}
    assert rows[0]["user_id"] == UNKNOWN
    assert {r["source"] for r in serving.recommendations_for_user(con, UNKNOWN, platform="iOS")} == {"fallback:iOS"}
    with pytest.raises(ValueError):
        serving.recommendations_for_user(con, UNKNOWN, platform="Windows")
    with pytest.raises(ValueError):
        serving.recommendations_for_user(con, UNKNOWN, n=0)


def test_input_is_never_sql(con):
    evil = "1' OR '1'='1"
    rows = serving.recommendations_for_user(con, evil, n=5)
    assert {r["source"] for r in rows} == {"fallback:all"}  # treated as an unknown id
    assert serving.similar_items(con, "1'; drop table items; --", n=3)[0]["source"] == "fallback:all"


# ---------------------------------------------------------------------------- product page
def test_similar_items_anonymous(con):
    rows = serving.similar_items(con, ITEM_WITH_PAIRS, n=20)
    assert [r["item_id"] for r in rows] == ["1005", "1002", "1010", "1003", "1025"]
    assert {r["source"] for r in rows} == {"bought_together"} and not rows[0]["personalised"]
    assert [r["item_id"] for r in serving.similar_items(con, ITEM_WITH_PAIRS, n=2)] == ["1005", "1002"]


def test_similar_items_reordered_for_known_user(con):
    # 102: 1002/1003 in the personal list, top category 501 (1025 is 502), tier 8 (362 RUB) => 1005 at
    # 5000 RUB is far above the tier and drops to the end.
    rows = serving.similar_items(con, ITEM_WITH_PAIRS, user_id=WARM_SHORT, n=20)
    ids = [r["item_id"] for r in rows]
    assert ids[:2] == ["1002", "1003"] and ids[-1] == "1005" and rows[0]["personalised"]
    assert sorted(ids) == sorted(["1005", "1002", "1010", "1003", "1025"])
    # an unknown user gets the anonymous order
    assert [r["item_id"] for r in serving.similar_items(con, ITEM_WITH_PAIRS, user_id=UNKNOWN)][0] == "1005"


def test_new_item_gets_same_category_near_its_price(con):
    rows = serving.similar_items(con, NEW_ITEM_IN_CAT, n=10)
    assert len(rows) == 10 and {r["source"] for r in rows} == {"same_category"}
    assert NEW_ITEM_IN_CAT not in {r["item_id"] for r in rows}
    assert all(1021 <= int(r["item_id"]) <= 1039 for r in rows)
    # same price as the new item (1030 -> 1030 % 7 = 1 -> 200 RUB) ranks before popularity alone
    assert int(rows[0]["item_id"]) % 7 == 1030 % 7


def test_item_without_category_or_unknown_gets_fallback(con):
    for item in (NEW_ITEM_NO_CAT, UNKNOWN_ITEM):
        rows = serving.similar_items(con, item, n=20)
        assert len(rows) == 20 and {r["source"] for r in rows} == {"fallback:all"}
        assert item not in {r["item_id"] for r in rows}
    # a known user gets their platform's fallback
    rows = serving.similar_items(con, UNKNOWN_ITEM, user_id=KNOWN_COLD, n=5)
    assert {r["source"] for r in rows} == {"fallback:Android"}


def test_publication_info(con):
    info = serving.publication_info(con)
    assert info["model_version"] == "v1" and info["n_rows"] == 23
    assert info["row_counts"]["items"] == 40 and info["row_counts"]["publication"] == 1


def test_connection_is_locked_down(con):
    with pytest.raises(duckdb.Error):
        con.execute("create table serving.x (a INT)")
    with pytest.raises(duckdb.Error):
        con.execute("select * from read_csv('/etc/passwd')")


# ---------------------------------------------------------------------------- swapping
def test_reader_sees_new_publication_in_process(tmp_path, published):
    build, serving_db, _ = published
    reader = serving.ServingReader(serving_db)
    old_cur = reader.cursor()
    assert serving.publication_info(old_cur)["model_version"] == "v1"
    publish(make_build_db(tmp_path / "b2.duckdb", model_version="v2"), serving_db, model_version="v2", as_of=AS_OF)
    # the cursor opened before the swap keeps reading the old file ...
    assert serving.publication_info(old_cur)["model_version"] == "v1"
    # ... the request that notices the new file does not wait for it: the old one answers
    # while a background thread opens and warms up the new one ...
    assert serving.publication_info(reader.cursor())["model_version"] == "v1"
    reader._loader.join(timeout=30)
    # ... and the next request sees the new one, without restart
    assert serving.publication_info(reader.cursor())["model_version"] == "v2"
    assert reader.reloads == 1
    reader.close()


def test_reader_keeps_old_file_when_new_one_cannot_be_opened(tmp_path, published, caplog):
    _, serving_db, _ = published
    reader = serving.ServingReader(serving_db)
    reader.cursor().close()
    broken = serving_db.parent / "broken.duckdb"
    broken.write_bytes(b"not a duckdb file" * 100)
    broken.replace(serving_db)  # a reader holding the old file keeps it (its inode lives on)
    reader.cursor().close()
    reader._loader.join(timeout=30)
    assert reader._loading is None and reader.reloads == 0  # failed, will be tried again
    assert "could not open new serving file" in caplog.text
    assert serving.publication_info(reader.cursor())["model_version"] == "v1"
    reader.close()


READER_SCRIPT = textwrap.dedent("""
    import json, pathlib, sys, time
    sys.path.insert(0, sys.argv[1])
    from ml import serving
    reader = serving.ServingReader(sys.argv[2])
    seen, errors, empties, n = set(), [], 0, 0
    stop = pathlib.Path(sys.argv[3])
    held = serving.open_serving(sys.argv[2])  # a connection held open on the first file throughout
    print("ready", flush=True)
    final = deadline = None  # the stop file names the last version: read until it is seen (30 s at most)
    while final is None or (final not in seen and time.monotonic() < deadline):
        if final is None and stop.exists():
            final, deadline = stop.read_text(), time.monotonic() + 30
        try:
            cur = reader.cursor()
            for uid in ("101", "102", "201", "999"):
                rows = serving.recommendations_for_user(cur, uid, n=20)
                empties += len(rows) == 0
                n += 1
            empties += len(serving.similar_items(cur, "1001", user_id="102")) == 0
            seen.add(serving.publication_info(cur)["model_version"])
            empties += len(serving.recommendations_for_user(held, "101")) == 0
            cur.close()
        except Exception as exc:
            errors.append(repr(exc))
    print(json.dumps({"seen": sorted(seen), "errors": errors[:5], "n_errors": len(errors),
                      "empties": empties, "queries": n}))
""")


def test_publish_while_another_process_reads(tmp_path, published):
    build, serving_db, _ = published
    script = tmp_path / "reader.py"
    script.write_text(READER_SCRIPT)
    builds = [make_build_db(tmp_path / f"b{i}.duckdb", model_version=f"v{i}") for i in range(2, 6)]
    stop = tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(PROJECT_ROOT), str(serving_db), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        for i, b in enumerate(builds, start=2):
            publish(b, serving_db, model_version=f"v{i}", as_of=AS_OF)
            time.sleep(0.3)
        stop.write_text("v5")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["n_errors"] == 0, report["errors"]
    assert report["empties"] == 0 and report["queries"] > 20
    assert "v5" in report["seen"] and len(report["seen"]) >= 3, report["seen"]
    with serving.open_serving(serving_db) as c:
        assert serving.publication_info(c)["model_version"] == "v5"


def test_fast_paths_match_the_macros(con):
    """The Python helpers skip the macro for full warm lists and anonymous product pages;
    they must return exactly what the documented SQL returns."""
    for uid in (WARM_FULL, WARM_SHORT, KNOWN_COLD, UNKNOWN):
        for n in (1, 3, 20, 30):
            for platform in (None, "iOS", "all"):
                fast = serving.recommendations_for_user(con, uid, n=n, platform=platform)
                macro = reader._rows(con.execute("select * from recommend(?, ?, plat := ?)", [uid, n, platform]))
                assert fast == macro, (uid, n, platform)
    for item in (ITEM_WITH_PAIRS, "1002", NEW_ITEM_IN_CAT, NEW_ITEM_NO_CAT, UNKNOWN_ITEM):
        for n in (1, 3, 20):
            fast = serving.similar_items(con, item, n=n)
            macro = reader._rows(con.execute("select * from related_items(?, ?)", [item, n]))
            assert fast == macro, (item, n)


# Product-page cases on top of the shared fixture: item 1011 bought together with 12 items
# (category 501 unless noted; 1019 at 2172 RUB = 6 x tier 8's price, 1012 without a price,
# 1099 not in items, 1040 without a category, 1005 at 5000 RUB, 1022/1031/1023 in 502,
# 1002/1004 in 102's list);
# 103 has a list but no profile, 202 a profile without price or category, 203 a tier below 1 RUB,
# 204 top category 503, 205 a platform without a fallback list.
# New items (no bought-together rows): 1015 in 501; 3002 in 501 without a price; 3001 alone in
# 504 (no other item: the fallback). Category 503 is larger than CATEGORY_TOP_K: 2001..2250,
# popularity falling by 1 every two items (2200 and 2201 tie at the top-K boundary), two
# items of equal popularity also equal in price; 2201..2250 cost 300 RUB like the new item
# 2300, all others 1000 RUB or more, so only the top-K cut keeps them out.
PAGE_ITEM = "1011"
BIG_CATEGORY_NEW_ITEM = "2300"
PAGE_SQL = """
update pub_items set price_rub = 6 * pow(2, 8.5) where item_id = '1019';
update pub_items set price_rub = null where item_id = '1012';
insert into pub_similar_items
select '1011', s, r, 1.0 / r, 5, 0.1, 2.0, 'v1'
from (values ('1019', 1), ('1013', 2), ('1014', 3), ('1012', 4), ('1099', 5), ('1040', 6), ('1005', 7),
             ('1022', 8), ('1031', 9), ('1023', 10), ('1002', 11), ('1004', 12)) t(s, r);
insert into pub_recommendations values
    ('103', '1023', 1, 1.0, 'personal', 'v1', timestamp '2023-08-14 03:00:00'),
    ('103', '1014', 2, 0.5, 'personal', 'v1', timestamp '2023-08-14 03:00:00'),
    ('103', '2150', 3, 0.3, 'personal', 'v1', timestamp '2023-08-14 03:00:00');
insert into pub_user_profiles values ('202', 'Site', null, null, 'v1'), ('203', 'iOS', -2, '501', 'v1'),
    ('204', 'Site', 8, '503', 'v1'), ('205', 'Windows', 8, '501', 'v1');
insert into pub_items values ('3001', '504', 300.0, 10.0, 'v1'), ('3002', '501', null, 10.0, 'v1'),
    ('2300', '503', 300.0, 0.5, 'v1');
insert into pub_items
select cast(i as varchar), '503',
       case when i > 2200 then 300.0 else 1000.0 + 100 * (((i - 2000) // 2) % 20) end,
       1000.0 - (i - 2000) // 2, 'v1'
from range(2001, 2251) r(i);
"""


@pytest.fixture(scope="module")
def page_con(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    serving_db = tmp / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp / "build.duckdb", extra_sql=PAGE_SQL), serving_db, model_version="v1", as_of=AS_OF)
    c = serving.open_serving(serving_db)
    yield c
    c.close()


def _related_macro(con, item: str, n: int, uid: str | None) -> list[dict]:
    return reader._rows(con.execute("select * from related_items(?, ?, uid := ?)", [item, n, uid]))


def test_product_page_matches_the_macro(page_con):
    """similar_items answers every product page without the macro and exactly as the macro
    would (same rows, columns, floats and order): bought together, new items (same category),
    items without a category or another top item of it, unknown items; for anonymous, unknown
    and known users of every kind; n below and above SAME_CATEGORY_MIN and the list lengths."""
    items = (
        ITEM_WITH_PAIRS,
        "1002",
        PAGE_ITEM,
        NEW_ITEM_IN_CAT,
        "1015",
        "3002",
        BIG_CATEGORY_NEW_ITEM,
        "2001",
        "2201",
        "3001",
        NEW_ITEM_NO_CAT,
        UNKNOWN_ITEM,
    )
    users = (None, WARM_FULL, WARM_SHORT, KNOWN_COLD, "103", "202", "203", "204", "205", UNKNOWN)
    sources = set()
    for item in items:
        for uid in users:
            for n in (1, 5, 12, 20, 60):
                macro = _related_macro(page_con, item, n, uid)
                assert macro, (item, uid, n)
                assert serving.similar_items(page_con, item, user_id=uid, n=n) == macro, (item, uid, n)
                sources |= {(r["source"], r["personalised"]) for r in macro}
    assert sources == {
        (s, p)
        for p in (False, True)
        for s in (
            "bought_together",
            "same_category",
            "fallback:all",
            "fallback:Site",
            "fallback:iOS",
            "fallback:Android",
        )
    } - {("fallback:Site", False), ("fallback:iOS", False), ("fallback:Android", False)}


def test_new_item_candidates_are_the_category_top_k(page_con):
    """The new-item page re-ranks the CATEGORY_TOP_K most popular items of the category by
    popularity / (1 + |ln price ratio|): cheap items near the new item's price that are not
    among the top K never appear (the macro and the fast path could both be wrong)."""
    top = page_con.execute(
        "select item_id, price_rub, popularity from items where category_id = '503' "
        "ORDER BY popularity DESC, item_id LIMIT ?",
        [schema.CATEGORY_TOP_K],
    ).fetchall()
    assert len(top) == schema.CATEGORY_TOP_K == 200 and top[-1][0] == "2200"  # the tie: 2201 is out
    expected = sorted(top, key=lambda r: (-r[2] / (1 + abs(math.log((r[1] + 1) / (300 + 1)))), r[0]))
    for uid in (None, UNKNOWN):
        for n in (5, 60):
            rows = serving.similar_items(page_con, BIG_CATEGORY_NEW_ITEM, user_id=uid, n=n)
            assert [r["item_id"] for r in rows] == [r[0] for r in expected[:n]], (uid, n)
            assert {r["source"] for r in rows} == {"same_category"}
    # a known user re-orders the best max(n, SAME_CATEGORY_MIN) of them: 103 has 2150 in the list
    rows = serving.similar_items(page_con, BIG_CATEGORY_NEW_ITEM, user_id="103", n=schema.SAME_CATEGORY_MIN)
    assert {r["item_id"] for r in rows} == {r[0] for r in expected[: schema.SAME_CATEGORY_MIN]}
    assert "2150" not in {r[0] for r in expected[: schema.SAME_CATEGORY_MIN]}
    # an item among the top K is not its own candidate
    assert "2001" not in {r["item_id"] for r in serving.similar_items(page_con, "2001", n=100)}


def test_category_top_items_table(page_con):
    counts = dict(page_con.execute("select category_id, count(*) from category_top_items group by 1").fetchall())
    assert counts == {"501": 21, "502": 19, "503": schema.CATEGORY_TOP_K, "504": 1}
    members = {
        r[0] for r in page_con.execute("select item_id from category_top_items where category_id = '503'").fetchall()
    }
    assert members == {str(i) for i in range(2001, 2201)}
    same = page_con.execute(
        "select count(*) from category_top_items t join items i using (item_id) "
        "where i.category_id = t.category_id and i.price_rub is not distinct from t.price_rub "
        "AND i.popularity = t.popularity"
    ).fetchone()[0]
    assert same == sum(counts.values())
    assert (
        page_con.execute(
            "select count(*) from duckdb_indexes() where table_name = 'category_top_items' "
            "AND expressions = '[category_id]'"
        ).fetchone()[0]
        == 1
    )
    assert serving.publication_info(page_con)["row_counts"]["category_top_items"] == sum(counts.values())


def test_long_id_lists_probe_the_items_key(page_con):
    """Re-ordering a list for a user reads its items by ``item_id = ANY(?)``; beyond DuckDB's
    dynamic_or_filter_threshold (default 50 ids) that scans items (millions of rows in
    production) instead of probing the primary key, unless open_serving raises it."""
    ids = [r[0] for r in page_con.execute("select item_id from items order by item_id limit 120").fetchall()]
    plan = page_con.execute("explain analyze " + reader._ITEM_ATTRS_SQL, [ids]).fetchall()[0][1]
    assert "Index Scan" in plan and "Sequential Scan" not in plan


def test_personalised_product_page_order(page_con):
    """What the equivalence above covers, spelled out (the macro and the fast path could both
    be wrong): 102 (top category 501, price tier 8: 2^8.5 = 362 RUB, 1002/1004 in the list)."""
    rows = serving.similar_items(page_con, PAGE_ITEM, user_id=WARM_SHORT, n=5)
    assert [(r["item_id"], r["src_rank"]) for r in rows] == [
        ("1013", 2),  # 0.631 x 1.25
        ("1019", 1),  # 1.0 x 1.25 x (3 x 362) / 2172 = 0.625 ...
        ("1014", 3),  # ... 0.5 x 1.25 = 0.625 as well: the tie goes to the lower src_rank
        ("1012", 4),  # no price: no penalty
        ("1002", 11),  # in the list, from beyond n: the whole list is re-ordered, then cut
    ]
    assert rows[1]["final_score"] == rows[2]["final_score"] == 0.625 and rows[0]["personalised"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    # 103: a list and no profile is known (1023, 1014 get the list boost only)
    rows = serving.similar_items(page_con, PAGE_ITEM, user_id="103", n=3)
    assert [r["item_id"] for r in rows] == ["1019", "1014", "1013"] and rows[0]["personalised"]
    # unknown: the anonymous order, not personalised
    rows = serving.similar_items(page_con, PAGE_ITEM, user_id=UNKNOWN, n=3)
    assert [r["item_id"] for r in rows] == ["1019", "1013", "1014"] and not rows[0]["personalised"]


def test_retired_connections_are_closed_after_grace(tmp_path, published):
    _, serving_db, _ = published
    reader = serving.ServingReader(serving_db, grace=0.0)
    reader.cursor().close()
    publish(make_build_db(tmp_path / "b2.duckdb", model_version="v2"), serving_db, model_version="v2", as_of=AS_OF)
    reader.cursor().close()  # reopens in the background, retires the v1 connection
    reader._loader.join(timeout=30)
    assert len(reader._retired) == 1
    time.sleep(0.01)
    reader.cursor().close()  # next check closes it
    assert reader._retired == []
    reader.close()
