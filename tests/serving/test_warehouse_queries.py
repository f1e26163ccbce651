"""The marketplace's SQL files (warehouse/queries/*.sql) run against a published serving file.

Every file is executed as its header says a marketplace engineer runs it: the file's text as a
DuckDB prepared statement with named ``$parameters``, on the serving file opened read-only (and
on the locked-down attach connection of the Python readers), with the header's own Python and
CLI examples run as written. The fixture data is ``tests/serving/test_serving.py``'s.
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from ml.vocabulary import FALLBACK_PLATFORMS

# The fixture builder and the publisher of the serving tests; `shared_serving_db` is in conftest.
from tests.serving.test_serving import (
    AS_OF,
    GEN,
    ITEM_WITH_PAIRS,
    KNOWN_COLD,
    UNKNOWN,
    UNKNOWN_ITEM,
    WARM_FULL,
    WARM_SHORT,
    make_build_db,
    publish,
    serving,
)

QUERIES = Path(__file__).resolve().parents[2] / "warehouse" / "queries"
EVIL = "x' or 1=1 --"

# The columns each query returns, in order; a new file without an entry here (and a test of
# its answers below) fails test_every_query_file_is_tested.
COLUMNS = {
    "personal_list": ["user_id", "item_id", "rank", "score", "reason", "source", "model_version", "generated_at"],
    "product_page": ["for_item_id", "item_id", "rank", "score", "final_score", "source", "src_rank", "personalised"],
    "cold_start": ["platform", "item_id", "rank", "score", "reason", "model_version", "generated_at"],
    "health": [
        "model_version",
        "list_source",
        "generated_at",
        "as_of",
        "age_hours",
        "is_fresh",
        "n_users",
        "n_rows",
        "pseudonymized",
        "recommendations_rows",
        "fallback_rows",
        "fallback_platforms",
        "similar_items_rows",
        "items_rows",
        "user_profiles_rows",
        "category_top_items_rows",
        "is_consistent",
    ],
}


def sql_of(name: str) -> str:
    return (QUERIES / f"{name}.sql").read_text()


def run(con, name: str, **params) -> list[dict]:
    """The file's text, executed with named parameters (never pasted into the SQL)."""
    cur = con.execute(sql_of(name), params)
    names = [d[0] for d in cur.description]
    assert names == COLUMNS[name], name
    return [dict(zip(names, row)) for row in cur.fetchall()]


def fallback_list(con, platform: str, n: int) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "select item_id from fallback_recommendations where platform = ? and rank <= ? order by rank", [platform, n]
        ).fetchall()
    ]


@pytest.fixture()
def con(shared_serving_db):
    """How a marketplace service opens the file: read-only, nothing else."""
    c = duckdb.connect(str(shared_serving_db), read_only=True)
    yield c
    c.close()


# ---------------------------------------------------------------------------- the files themselves
def test_every_query_file_is_tested():
    assert {p.stem for p in QUERIES.glob("*.sql")} == set(COLUMNS)


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_header_documents_the_query(name):
    """Each file starts with its comment block: what it answers, every parameter the SQL uses,
    a Python and a CLI example, and every column it returns."""
    text = sql_of(name)
    lines = text.splitlines()
    header = []
    for line in lines:
        if not line.startswith("--"):
            break
        header.append(line)
    header_text = "\n".join(header)
    body = "\n".join(lines[len(header) :])
    assert header[0].startswith(f"-- {name}.sql: ")
    for section in ("Answers:", "Parameters:", "From Python", "From the DuckDB CLI", "Returns"):
        assert section in header_text, (name, section)
    params = set(re.findall(r"\$(\w+)", body))
    assert params, name
    documented = set(re.findall(r"^--\s+\$(\w+)\s", header_text, flags=re.M))
    assert documented == params, (name, documented, params)
    returns = header_text.split("Returns", 1)[1]
    for column in COLUMNS[name]:
        assert re.search(rf"\b{column}\b", returns), (name, column)
    assert all(len(line) <= 120 for line in lines), name
    assert "?" not in body and "{" not in body, "named $parameters only, nothing to format in"


def _examples(name: str) -> tuple[dict, str]:
    """The parameters of the header's Python example, and the arguments of its CLI example."""
    header = sql_of(name)
    python = re.search(r"con\.execute\(sql, (\{.*\})\)", header)
    cli = re.search(r"execute q\((.*)\)\"$", header, flags=re.M)
    assert python and cli, name
    return ast.literal_eval(python.group(1)), cli.group(1)


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_header_examples_run_as_written(con, name):
    """The Python example (file text + dict of named parameters) and the CLI example
    (``prepare q as <file> execute q(...)``, one string as the shell passes it to ``duckdb -c``)
    return the same non-empty answer."""
    params, cli_args = _examples(name)
    from_python = con.execute(sql_of(name), params).fetchall()
    cur = con.cursor()
    try:
        from_cli = cur.execute(f"prepare q as {sql_of(name)} execute q({cli_args})").fetchall()
    finally:
        cur.close()
    assert from_python and from_cli == from_python, name


def test_queries_run_on_the_locked_down_reader(shared_serving_db):
    """The Python readers' connection (attach read-only, no file access, configuration locked)
    answers every file the same as a plain read-only connection."""
    locked = serving.open_serving(shared_serving_db)
    plain = duckdb.connect(str(shared_serving_db), read_only=True)
    try:
        for name in COLUMNS:
            params, _ = _examples(name)
            a, b = run(locked, name, **params), run(plain, name, **params)
            if name == "health":  # the age moves on between the two calls
                a[0].pop("age_hours"), b[0].pop("age_hours")
            assert a == b and a, name
    finally:
        locked.close()
        plain.close()


# ---------------------------------------------------------------------------- personal_list
def test_personal_list_warm_user_in_rank_order(con):
    rows = run(con, "personal_list", user_id=WARM_FULL, n=20, platform=None)
    assert [(r["item_id"], r["rank"]) for r in rows] == [(str(1020 + r), r) for r in range(1, 21)]
    assert [r["score"] for r in rows] == [1.0 / r for r in range(1, 21)]
    assert {(r["user_id"], r["source"], r["reason"], r["model_version"]) for r in rows} == {
        (WARM_FULL, "personal", "personal", "v1")
    }
    assert [r["item_id"] for r in run(con, "personal_list", user_id=WARM_FULL, n=3, platform="Site")] == [
        "1021",
        "1022",
        "1023",
    ]  # a personal list wins over the platform


def test_personal_list_short_list_is_topped_up(con):
    rows = run(con, "personal_list", user_id=WARM_SHORT, n=6, platform=None)
    assert [(r["item_id"], r["source"]) for r in rows] == [
        ("1003", "personal"),
        ("1002", "personal"),
        ("1004", "personal"),
        ("1006", "fallback:Android"),
        ("1007", "fallback:Android"),
        ("1008", "fallback:Android"),
    ]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_personal_list_unknown_user_gets_the_fallback(con):
    rows = run(con, "personal_list", user_id=UNKNOWN, n=20, platform=None)
    assert [r["item_id"] for r in rows] == fallback_list(con, "all", 20)
    assert [r["rank"] for r in rows] == list(range(1, 21))
    assert {(r["user_id"], r["source"]) for r in rows} == {(UNKNOWN, "fallback:all")}
    rows = run(con, "personal_list", user_id=UNKNOWN, n=5, platform="iOS")
    assert [r["item_id"] for r in rows] == fallback_list(con, "iOS", 5) == ["1011", "1012", "1013", "1014", "1015"]
    assert {r["source"] for r in rows} == {"fallback:iOS"}
    # known without a list: the profile's platform, unless the request names one
    assert {r["source"] for r in run(con, "personal_list", user_id=KNOWN_COLD, n=5, platform=None)} == {
        "fallback:Android"
    }
    assert {r["source"] for r in run(con, "personal_list", user_id=KNOWN_COLD, n=5, platform="Site")} == {
        "fallback:Site"
    }


# ---------------------------------------------------------------------------- product_page
def test_product_page_bought_together(con):
    rows = run(con, "product_page", item_id=ITEM_WITH_PAIRS, n=20, user_id=None)
    assert [r["item_id"] for r in rows] == ["1005", "1002", "1010", "1003", "1025"]  # similar_items' order
    assert {(r["for_item_id"], r["source"], r["personalised"]) for r in rows} == {
        (ITEM_WITH_PAIRS, "bought_together", False)
    }
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and [r["src_rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["item_id"] for r in run(con, "product_page", item_id=ITEM_WITH_PAIRS, n=2, user_id=None)] == [
        "1005",
        "1002",
    ]
    # 102: 1002 and 1003 are in their list; 1005 (5000 RUB) is far above their price band
    rows = run(con, "product_page", item_id=ITEM_WITH_PAIRS, n=20, user_id=WARM_SHORT)
    assert [r["item_id"] for r in rows] == ["1002", "1003", "1010", "1025", "1005"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and all(r["personalised"] for r in rows)
    assert rows[0]["final_score"] == pytest.approx(1.1829932879464828)
    # an unknown viewer keeps the stored order
    assert [r["item_id"] for r in run(con, "product_page", item_id=ITEM_WITH_PAIRS, n=20, user_id=UNKNOWN)] == [
        "1005",
        "1002",
        "1010",
        "1003",
        "1025",
    ]


def test_product_page_never_offers_the_item_itself(con):
    items = [r[0] for r in con.execute("select item_id from items order by item_id").fetchall()]
    sources = set()
    for item in [*items, UNKNOWN_ITEM]:
        for uid in (None, WARM_SHORT):
            rows = run(con, "product_page", item_id=item, n=40, user_id=uid)
            assert rows and item not in {r["item_id"] for r in rows}, (item, uid)
            assert {r["for_item_id"] for r in rows} == {item}
            assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
            sources |= {r["source"] for r in rows}
    assert sources == {"bought_together", "same_category", "fallback:all", "fallback:Android"}
    # an unknown item, anonymous: the 'all' list
    rows = run(con, "product_page", item_id=UNKNOWN_ITEM, n=3, user_id=None)
    assert [(r["item_id"], r["source"]) for r in rows] == [(i, "fallback:all") for i in fallback_list(con, "all", 3)]


# ---------------------------------------------------------------------------- cold_start
def test_cold_start_per_platform(con):
    lists = {}
    for p_idx, platform in enumerate(FALLBACK_PLATFORMS):
        rows = run(con, "cold_start", platform=platform, n=25)
        expected = [str(1001 + (r - 1 + 5 * p_idx) % 39) for r in range(1, 26)]  # make_build_db's lists
        assert [r["item_id"] for r in rows] == expected, platform
        assert [r["rank"] for r in rows] == list(range(1, 26))
        assert {(r["platform"], r["reason"], r["model_version"], r["generated_at"]) for r in rows} == {
            (platform, f"popular:{platform}", "v1", GEN)
        }
        lists[platform] = tuple(expected)
        assert [r["item_id"] for r in run(con, "cold_start", platform=platform, n=3)] == expected[:3]
    assert len(set(lists.values())) == 4
    # no platform, or one without a list: the 'all' list, and the platform column says so
    for platform in (None, "Windows"):
        rows = run(con, "cold_start", platform=platform, n=5)
        assert [(r["platform"], r["item_id"]) for r in rows] == [("all", i) for i in lists["all"][:5]]


# ---------------------------------------------------------------------------- health
def _table_counts(con) -> dict[str, int]:
    tables = (
        "recommendations",
        "fallback_recommendations",
        "similar_items",
        "items",
        "user_profiles",
        "category_top_items",
    )
    return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}  # fixed names


def _health_counts(row: dict) -> dict[str, int]:
    return {
        "recommendations": row["recommendations_rows"],
        "fallback_recommendations": row["fallback_rows"],
        "similar_items": row["similar_items_rows"],
        "items": row["items_rows"],
        "user_profiles": row["user_profiles_rows"],
        "category_top_items": row["category_top_items_rows"],
    }


def test_health_of_the_shared_fixture(con):
    rows = run(con, "health", max_age_hours=26)
    assert len(rows) == 1
    row = rows[0]
    assert (row["model_version"], row["list_source"], row["generated_at"], row["as_of"]) == ("v1", "ranker", GEN, AS_OF)
    assert (row["n_users"], row["n_rows"], row["pseudonymized"]) == (2, 23, False)
    assert _health_counts(row) == _table_counts(con)
    assert row["recommendations_rows"] == 23 and row["fallback_rows"] == 100 and row["fallback_platforms"] == 4
    assert row["is_consistent"] is True
    age = (datetime.now(UTC).replace(tzinfo=None) - GEN).total_seconds() / 3600
    assert row["age_hours"] == pytest.approx(age, abs=0.01)
    assert row["is_fresh"] is False  # generated in 2023
    assert run(con, "health", max_age_hours=age + 1)[0]["is_fresh"] is True


def test_health_reports_what_was_published(tmp_path):
    """A publication made now, of another version and list source, with more users: health
    says exactly that, with the row counts the publisher reported and the file holds."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    stamp = f"timestamp '{now:%Y-%m-%d %H:%M:%S}'"
    build = make_build_db(
        tmp_path / "build.duckdb",
        model_version="v7",
        extra_sql=f"""
        insert into pub_recommendations
        select '103', item_id, rank, score, 'baseline:popularity', 'v7', generated_at
        from pub_recommendations where user_id = '101' and rank <= 4;
        update pub_recommendations set reason = 'baseline:popularity', generated_at = {stamp};
        update pub_fallback_recommendations set generated_at = {stamp};""",
    )
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    result = publish(build, serving_db, model_version="v7", as_of=AS_OF, list_source="baseline:popularity")
    with duckdb.connect(str(serving_db), read_only=True) as c:
        row = run(c, "health", max_age_hours=1)[0]
        assert (row["model_version"], row["list_source"], row["generated_at"]) == ("v7", "baseline:popularity", now)
        assert (row["n_users"], row["n_rows"]) == (result.n_users, result.n_rows) == (3, 27)
        assert (
            _health_counts(row)
            == _table_counts(c)
            == {k: v for k, v in result.row_counts.items() if k != "publication"}
        )
        assert row["is_fresh"] is True and 0 <= row["age_hours"] < 1 and row["is_consistent"] is True
        assert run(c, "health", max_age_hours=0.0)[0]["is_fresh"] is (row["age_hours"] <= 0)


def test_health_and_lists_of_a_cold_start_publication(tmp_path):
    """No personal lists (list_source 'cold_start'): health says 0 users; everyone gets the
    popular list of their platform."""
    build = make_build_db(tmp_path / "build.duckdb", model_version="v3", recs_users=0)
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    publish(build, serving_db, model_version="v3", as_of=AS_OF, list_source="cold_start", require_recommendations=False)
    with duckdb.connect(str(serving_db), read_only=True) as c:
        row = run(c, "health", max_age_hours=26)[0]
        assert (row["model_version"], row["list_source"], row["n_users"], row["n_rows"]) == ("v3", "cold_start", 0, 0)
        assert row["recommendations_rows"] == 0 and row["is_consistent"] is True
        rows = run(c, "personal_list", user_id=WARM_FULL, n=5, platform=None)
        assert [r["item_id"] for r in rows] == fallback_list(c, "iOS", 5)
        assert {r["source"] for r in rows} == {"fallback:iOS"}


# ---------------------------------------------------------------------------- parameters are values
@pytest.mark.parametrize("evil", [EVIL, "1'; drop table items; --", "' union select * from items --"])
def test_sql_in_a_parameter_is_just_a_value(con, evil):
    rows = run(con, "personal_list", user_id=evil, n=5, platform=None)
    assert {(r["user_id"], r["source"]) for r in rows} == {(evil, "fallback:all")}  # an unknown user
    assert [r["item_id"] for r in rows] == fallback_list(con, "all", 5)
    rows = run(con, "personal_list", user_id=UNKNOWN, n=5, platform=evil)  # an unknown platform
    assert {r["source"] for r in rows} == {"fallback:all"} and len(rows) == 5
    rows = run(con, "product_page", item_id=evil, n=5, user_id=evil)  # an unknown item and user
    assert {(r["for_item_id"], r["source"], r["personalised"]) for r in rows} == {(evil, "fallback:all", False)}
    rows = run(con, "cold_start", platform=evil, n=100)  # pasted, "or 1=1" would return all 100 rows
    assert len(rows) == 25 and {r["platform"] for r in rows} == {"all"}
    with pytest.raises(duckdb.ConversionException):
        run(con, "health", max_age_hours=evil)
    assert _table_counts(con)["items"] == 40
