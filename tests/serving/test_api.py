"""The HTTP service over the serving database (ml/api.py)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient

from ml.serving import api, publish
from tests.serving.test_serving import (
    AS_OF,
    ITEM_WITH_PAIRS,
    KNOWN_COLD,
    NEW_ITEM_IN_CAT,
    PROJECT_ROOT,
    UNKNOWN,
    UNKNOWN_ITEM,
    WARM_FULL,
    WARM_SHORT,
    make_build_db,
)


@pytest.fixture()
def serving_db(tmp_path):
    path = tmp_path / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp_path / "build.duckdb"), path, model_version="v1", as_of=AS_OF)
    return path


@pytest.fixture()
def client(serving_db):
    """A service of its own (for tests that publish again)."""
    with TestClient(api.create_app(serving_db, check_interval=0.0)) as c:
        yield c


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory):
    """One service over one publication, for the read-only tests."""
    tmp = tmp_path_factory.mktemp("api")
    path = tmp / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp / "build.duckdb"), path, model_version="v1", as_of=AS_OF)
    with TestClient(api.create_app(path, check_interval=0.0)) as c:
        yield c


def test_recommendations_warm_and_cold(shared_client):
    client = shared_client
    body = client.get(f"/recommendations/{WARM_FULL}").json()
    assert body["source"] == "personal" and body["model_version"] == "v1"
    assert len(body["items"]) == 20 and body["items"][0] == {
        "item_id": "1021",
        "rank": 1,
        "score": 1.0,
        "reason": "personal",
        "source": "personal",
    }
    assert body["generated_at"] == "2023-08-14T03:00:00"
    assert len(client.get(f"/recommendations/{WARM_FULL}?n=3").json()["items"]) == 3
    assert client.get(f"/recommendations/{KNOWN_COLD}").json()["source"] == "fallback:Android"
    assert client.get(f"/recommendations/{KNOWN_COLD}?platform=iOS").json()["source"] == "fallback:iOS"
    unknown = client.get(f"/recommendations/{UNKNOWN}").json()
    assert unknown["source"] == "fallback:all" and len(unknown["items"]) == 20
    short = client.get(f"/recommendations/{WARM_SHORT}?n=10").json()["items"]
    assert [i["source"] for i in short[:4]] == ["personal"] * 3 + ["fallback:Android"]


def test_similar_endpoint(shared_client):
    client = shared_client
    body = client.get(f"/items/{ITEM_WITH_PAIRS}/similar").json()
    assert body["source"] == "bought_together" and not body["personalised"]
    assert [i["item_id"] for i in body["items"]] == ["1005", "1002", "1010", "1003", "1025"]
    mine = client.get(f"/items/{ITEM_WITH_PAIRS}/similar?user_id={WARM_SHORT}").json()
    assert mine["personalised"] and mine["items"][-1]["item_id"] == "1005"
    assert client.get(f"/items/{NEW_ITEM_IN_CAT}/similar?n=5").json()["source"] == "same_category"
    new = client.get(f"/items/{NEW_ITEM_IN_CAT}/similar?user_id={WARM_FULL}&n=5").json()
    assert new["source"] == "same_category" and new["personalised"] and len(new["items"]) == 5
    unknown = client.get(f"/items/{UNKNOWN_ITEM}/similar").json()
    assert unknown["source"] == "fallback:all" and len(unknown["items"]) == 20


def test_health(shared_client):
    client = shared_client
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model_version"] == "v1"
    assert body["n_users"] == 2 and body["n_rows"] == 23
    assert body["row_counts"]["recommendations"] == 23 and body["as_of"] == "2023-08-13T23:59:59"


@pytest.mark.parametrize(
    "url",
    [
        "/recommendations/abc",
        "/recommendations/12a",
        "/recommendations/" + "1" * 41,
        "/recommendations/-1",
        "/recommendations/1%27%20OR%201=1",
        "/recommendations/%20101",
        "/recommendations/101?n=0",
        "/recommendations/101?n=101",
        "/recommendations/101?n=x",
        "/recommendations/101?platform=Windows",
        "/items/1e5/similar",
        "/items/1001/similar?user_id=abc",
        "/items/1001/similar?user_id=",
        "/items/%F0%9F%98%80/similar",
    ],
)
def test_bad_input_is_4xx_with_message(shared_client, url):
    client = shared_client
    resp = client.get(url)
    assert 400 <= resp.status_code < 500, (url, resp.status_code, resp.text)
    body = resp.json()
    assert body["error"] == "invalid request" and "decimal digits" in body["rule"]


def test_max_length_id_is_accepted(shared_client):
    client = shared_client
    assert client.get("/recommendations/" + "9" * 40).json()["source"] == "fallback:all"


def test_new_publication_is_picked_up_without_restart(tmp_path, serving_db, client):
    assert client.get("/health").json()["model_version"] == "v1"
    publish(make_build_db(tmp_path / "b2.duckdb", model_version="v2"), serving_db, model_version="v2", as_of=AS_OF)
    assert client.get("/health").json()["model_version"] == "v1"  # answered while v2 warms up
    client.app.state.reader._loader.join(timeout=30)
    body = client.get("/health").json()
    assert body["model_version"] == "v2" and body["reloads"] == 1
    assert client.get(f"/recommendations/{WARM_FULL}").json()["model_version"] == "v2"


def test_no_serving_db_is_503(tmp_path):
    with TestClient(api.create_app(tmp_path / "missing.duckdb")) as c:
        resp = c.get("/health")
        assert resp.status_code == 503 and "no serving database" in resp.json()["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_over_http_while_publishing(tmp_path, serving_db):
    """``recsys api`` in its own process; publishing twice meanwhile never breaks a request; on
    SIGTERM it writes its exposure log (on by default): every item answered."""
    home = serving_db.parent.parent  # Settings(home).serving_db == home/serving/recommendations.duckdb
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--home", str(home), "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as http:
            for _ in range(100):
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                pytest.fail("api did not start: " + (proc.stderr.read() if proc.poll() is not None else ""))
            versions, answered = set(), 0
            for i in (2, 3):
                publish(
                    make_build_db(tmp_path / f"b{i}.duckdb", model_version=f"v{i}"),
                    serving_db,
                    model_version=f"v{i}",
                    as_of=AS_OF,
                )
                for _ in range(500):  # the new file is switched to once warmed up
                    r = http.get(f"/recommendations/{WARM_FULL}")
                    assert r.status_code == 200 and len(r.json()["items"]) == 20
                    answered += 20
                    versions.add(r.json()["model_version"])
                    if f"v{i}" in versions:
                        break
                    time.sleep(0.01)
            assert http.get("/health").json()["model_version"] == "v3"
            assert {"v2", "v3"} <= versions
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    logged = duckdb.execute("select count(*) from read_parquet(?)", [f"{home}/exposures/*/*.parquet"]).fetchone()[0]
    assert logged == answered


def test_no_page_loads_assets_from_a_cdn(serving_db):
    """/docs (Swagger UI from a CDN) and /redoc are off by default; the schema stays."""
    with TestClient(api.create_app(serving_db)) as client:
        assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").json()["paths"].keys() >= {"/recommendations/{user_id}", "/health"}
        for route in client.app.routes:
            if "GET" in getattr(route, "methods", ()) and "{" not in route.path:
                body = client.get(route.path).text
                assert "cdn" not in body and "<script" not in body, route.path
    with TestClient(api.create_app(serving_db, docs=True)) as client:  # recsys api --docs
        page = client.get("/docs").text
        scripts = re.findall(r'<script src="([^"]+)"', page)
        assert scripts and "cdn" not in page and all(src.startswith("/") for src in scripts)
        assert all(client.get(src).status_code == 200 for src in scripts)


def test_the_committed_schema_is_the_services():
    """docs/openapi.json cannot drift from the code: `make openapi` rewrites it."""
    committed = (PROJECT_ROOT / "docs" / "openapi.json").read_text()
    assert committed == api.openapi_json(), "docs/openapi.json is stale: run `make openapi`"


def test_the_schema_declares_the_real_error_bodies(serving_db, tmp_path):
    """The 422 and 503 bodies the service sends are the ones its schema declares."""
    schemas = json.loads(api.openapi_json())["components"]["schemas"]
    responses = json.loads(api.openapi_json())["paths"]["/recommendations/{user_id}"]["get"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/InvalidRequest")
    assert responses["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/Unavailable")
    with TestClient(api.create_app(serving_db)) as client:
        invalid = client.get("/recommendations/abc").json()
    with TestClient(api.create_app(tmp_path / "missing.duckdb")) as client:
        unavailable = client.get("/recommendations/1").json()
    assert set(invalid) <= set(schemas["InvalidRequest"]["properties"]) and invalid["error"] == "invalid request"
    assert api.InvalidRequest.model_validate(invalid) and api.Unavailable.model_validate(unavailable)
    assert set(unavailable) <= set(schemas["Unavailable"]["properties"])
