"""The exposure log (ml/serving/exposures.py): what the API answered, stored as Parquet."""

from __future__ import annotations

import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import uvicorn
from fastapi.testclient import TestClient

from flows import cli
from ml.serving import api, exposures, publish
from ml.serving.exposures import COLUMNS, LIST_KINDS, ExposureLog
from tests.serving.test_serving import (
    AS_OF,
    ITEM_WITH_PAIRS,
    KNOWN_COLD,
    NEW_ITEM_IN_CAT,
    PROJECT_ROOT,
    UNKNOWN,
    WARM_FULL,
    WARM_SHORT,
    make_build_db,
)


def stored(directory: Path) -> list[dict]:
    """The log as a direct reader sees it (the README's query)."""
    con = duckdb.connect()
    rel = con.execute(
        "select * from read_parquet(?, hive_partitioning = true) order by served_at, request_id, rank",
        [str(directory / "*" / "*.parquet")],
    )
    names = [d[0] for d in rel.description]
    return [dict(zip(names, row)) for row in rel.fetchall()]


def test_records_read_back_as_written_one_directory_per_day(tmp_path, monkeypatch):
    times = iter([datetime(2026, 11, 29, 23, 59, 59), datetime(2026, 11, 30, 0, 0, 1)])
    monkeypatch.setattr(exposures, "_utc_now", lambda: next(times))
    log = ExposureLog(tmp_path / "exposures")
    log.start()
    assert log.record(
        "personal", [("1021", 1, "personal"), ("1005", 2, "fallback:iOS")], user_id="101", model_version="v1"
    )
    assert log.record(
        "product_page", [("1002", 1, "bought_together")], user_id=None, model_version="v1", anchor_item_id="1001"
    )
    log.close()

    rows = stored(tmp_path / "exposures")
    assert [name for name in rows[0]] == [*COLUMNS, "date"]
    assert [{k: v for k, v in r.items() if k != "request_id"} for r in rows] == [
        {
            "served_at": datetime(2026, 11, 29, 23, 59, 59),
            "list_kind": "personal",
            "user_id": "101",
            "anchor_item_id": None,
            "item_id": item,
            "rank": rank,
            "source": source,
            "model_version": "v1",
            "date": datetime(2026, 11, 29).date(),
        }
        for item, rank, source in [("1021", 1, "personal"), ("1005", 2, "fallback:iOS")]
    ] + [
        {
            "served_at": datetime(2026, 11, 30, 0, 0, 1),
            "list_kind": "product_page",
            "user_id": None,
            "anchor_item_id": "1001",
            "item_id": "1002",
            "rank": 1,
            "source": "bought_together",
            "model_version": "v1",
            "date": datetime(2026, 11, 30).date(),
        }
    ]
    assert rows[0]["request_id"] == rows[1]["request_id"] != rows[2]["request_id"]
    files = sorted(str(p.relative_to(tmp_path / "exposures")) for p in (tmp_path / "exposures").rglob("*"))
    assert files == [
        "date=2026-11-29",
        "date=2026-11-29/part-00000.parquet",
        "date=2026-11-30",
        "date=2026-11-30/part-00000.parquet",
    ]  # no temp file left behind
    assert (tmp_path / "exposures").stat().st_mode & 0o777 == 0o700  # raw ids: the owner's only
    assert log.counts() == {"logged": 3, "written": 3, "dropped": 0}


def log_once(directory: Path, user_id: str) -> None:
    log = ExposureLog(directory)
    log.start()
    log.record("fallback", [("1001", 1, "fallback:all")], user_id=user_id, model_version="v1")
    log.close()


def test_a_restart_appends_and_never_rewrites_a_file(tmp_path):
    log_once(tmp_path, "101")
    (first,) = tmp_path.glob("*/part-*.parquet")
    before = first.read_bytes()
    log_once(tmp_path, "102")  # a restarted service, the same day
    assert sorted(p.name for p in tmp_path.glob("*/part-*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert first.read_bytes() == before
    assert [r["user_id"] for r in stored(tmp_path)] == ["101", "102"]


def test_a_full_queue_drops_without_blocking_and_counts(tmp_path):
    log = ExposureLog(tmp_path, queue_size=2)  # not started: nothing drains the queue
    items = [("1001", 1, "fallback:all"), ("1002", 2, "fallback:all"), ("1003", 3, "fallback:all")]
    started = time.perf_counter()
    accepted = [log.record("fallback", items, user_id=str(u), model_version="v1") for u in range(5)]
    assert time.perf_counter() - started < 0.5
    assert accepted == [True, True, False, False, False]
    assert log.counts() == {"logged": 6, "written": 0, "dropped": 9}
    log.start()
    log.close()
    assert log.counts() == {"logged": 6, "written": 6, "dropped": 9}
    assert len(stored(tmp_path)) == 6


def test_every_answer_under_load_is_stored(tmp_path, shared_serving_db):
    """8 threads x 250 requests at once: the rows stored are exactly the items answered."""
    urls = [
        f"/recommendations/{WARM_FULL}",
        f"/recommendations/{WARM_SHORT}?n=10",
        f"/recommendations/{KNOWN_COLD}",
        f"/recommendations/{UNKNOWN}?n=5",
        f"/items/{ITEM_WITH_PAIRS}/similar",
        f"/items/{ITEM_WITH_PAIRS}/similar?user_id={WARM_SHORT}",
        f"/items/{NEW_ITEM_IN_CAT}/similar?n=5",
    ]
    # A small flush size: files are written while requests keep coming.
    log = ExposureLog(tmp_path / "exposures", flush_rows=5_000)
    app = api.create_app(shared_serving_db, check_interval=0.0, exposures=log)
    with TestClient(app) as client:

        def answered(i: int) -> Counter:
            served = Counter()
            for j in range(250):
                url = urls[(i + j) % len(urls)]
                body = client.get(url).json()
                user = body["user_id"]
                anchor = url.split("/")[2] if url.startswith("/items/") else None
                kind = "product_page" if anchor else ("personal" if body["source"] == "personal" else "fallback")
                served.update((kind, user, anchor, it["item_id"], it["rank"], it["source"]) for it in body["items"])
            return served

        with ThreadPoolExecutor(8) as pool:
            served = sum(pool.map(answered, range(8)), Counter())
        assert client.get("/health").json()["exposures"]["dropped"] == 0
    rows = stored(tmp_path / "exposures")
    kinds = Counter(k for k, *_ in served.elements())
    print(f"\n2000 requests, {kinds.total()} items answered {dict(kinds)}, {len(rows)} rows stored, {log.counts()}")
    assert kinds.keys() == set(LIST_KINDS) - {"control"} and kinds.total() > 20_000  # no control group
    assert len(rows) == kinds.total()
    assert (
        Counter((r["list_kind"], r["user_id"], r["anchor_item_id"], r["item_id"], r["rank"], r["source"]) for r in rows)
        == served
    )
    assert len({r["request_id"] for r in rows}) == 2000 and {r["model_version"] for r in rows} == {"v1"}
    assert log.counts() == {"logged": len(rows), "written": len(rows), "dropped": 0}
    assert len(list((tmp_path / "exposures").glob("*/part-*.parquet"))) > 1


def test_the_readmes_sql_path_logs_what_the_api_logs(tmp_path, shared_serving_db):
    """A direct SQL reader following the README writes the API's columns, types and rows."""
    copy_sql = re.search(r"```sql\n(copy \(.*?)```", (PROJECT_ROOT / "README.md").read_text(), re.DOTALL)[1]
    day = tmp_path / "date=2026-11-30"
    day.mkdir()
    con = duckdb.connect(str(shared_serving_db), read_only=True)
    for user in (WARM_SHORT, KNOWN_COLD):  # a topped-up personal list, a fallback list
        # request_id = the user: it tells these rows from the API's below
        params = {"served_at": datetime(2026, 11, 30, 12), "request_id": user, "user_id": user, "n": 10}
        con.execute(copy_sql, {**params, "path": str(day / f".part-sql-{user}")})
        (day / f".part-sql-{user}").rename(day / f"part-sql-{user}.parquet")
    log = ExposureLog(tmp_path)
    app = api.create_app(shared_serving_db, exposures=log)
    with TestClient(app) as client:
        for user in (WARM_SHORT, KNOWN_COLD):
            client.get(f"/recommendations/{user}?n=10")
    rows = stored(tmp_path)
    schemas = {
        path.name.startswith("part-sql"): con.execute("describe from read_parquet(?)", [str(path)]).fetchall()
        for path in tmp_path.glob("*/*.parquet")
    }
    assert schemas[True] == schemas[False]

    def lists(rows: list[dict], by_sql: bool) -> list[tuple]:
        picked = [r for r in rows if (r["request_id"] in (WARM_SHORT, KNOWN_COLD)) == by_sql]
        return sorted((r["list_kind"], r["user_id"], r["item_id"], r["rank"], r["source"]) for r in picked)

    assert len(rows) == 40 and lists(rows, by_sql=True) == lists(rows, by_sql=False)
    assert {r["list_kind"] for r in rows} == {"personal", "fallback"}


@pytest.fixture()
def home(tmp_path):
    publish(
        make_build_db(tmp_path / "build.duckdb"),
        tmp_path / "serving" / "recommendations.duckdb",
        model_version="v1",
        as_of=AS_OF,
    )
    return tmp_path


def test_recsys_api_logs_by_default_and_not_when_off(home, monkeypatch):
    """``recsys api`` in-process, uvicorn replaced by a client that asks one question."""
    health = []

    def run(app, **_):
        with TestClient(app) as client:
            assert len(client.get(f"/recommendations/{WARM_FULL}").json()["items"]) == 20
            health.append(client.get("/health").json()["exposures"])

    monkeypatch.setattr(uvicorn, "run", run)
    assert cli.main(["--home", str(home), "api", "--exposure-log", "0"]) == 0
    monkeypatch.setenv("RECSYS_EXPOSURE_LOG", "0")
    assert cli.main(["--home", str(home), "api"]) == 0
    assert health == [None, None] and not (home / "exposures").exists()
    monkeypatch.delenv("RECSYS_EXPOSURE_LOG")
    assert cli.main(["--home", str(home), "api"]) == 0
    assert health[-1] == {"logged": 20, "written": 0, "dropped": 0}  # written at shutdown
    assert [r["list_kind"] for r in stored(home / "exposures")] == ["personal"] * 20
