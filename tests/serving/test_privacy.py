"""What a reader of the serving file can learn about a customer (docs/privacy.md): reasons that
name no item, an owner-only file, a price tier instead of the median, pseudonymous user ids."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat

import duckdb
import pytest
from fastapi.testclient import TestClient

from ml.config import ConfigError
from ml.serving import PublishError, api, privacy, publish, publisher
from tests.serving.test_serving import (
    AS_OF,
    ITEM_WITH_PAIRS,
    KNOWN_COLD,
    UNKNOWN,
    WARM_FULL,
    WARM_SHORT,
    make_build_db,
)

KEY = bytes(range(32))
# Raw ids long and odd enough that finding one in the file's bytes cannot be chance.
RAW = {uid: f"7301{uid}99999999999999999999{uid}" for uid in (WARM_FULL, WARM_SHORT, KNOWN_COLD)}
RAW_IDS_SQL = "; ".join(
    f"update {table} set user_id = '{raw}' where user_id = '{uid}'"
    for uid, raw in RAW.items()
    for table in ("pub_recommendations", "pub_user_profiles")
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _all_text(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every VARCHAR value of every table, and every macro's text."""
    values = []
    for table, column in con.execute(
        "select table_name, column_name from duckdb_columns() where "
        "data_type = 'VARCHAR' AND database_name = current_database()"
    ).fetchall():
        values += [r[0] for r in con.execute(f'select distinct "{column}" from "{table}"').fetchall()]
    values += [
        r[0]
        for r in con.execute(
            "select macro_definition from duckdb_functions() "
            "where database_name = current_database() and macro_definition is not null"
        ).fetchall()
    ]
    return [v for v in values if v is not None]


# ---------------------------------------------------------------------------- reasons
@pytest.mark.parametrize(
    "reason", ["history", "repurchase", "co_purchase:1002", "co_purchase", "category", "your_history", "ranker"]
)
def test_a_reason_that_could_name_the_users_items_is_refused(tmp_path, reason):
    """Only personal / trending / popular / baseline:<name> reach the file: a reader must not
    learn from ``reason`` which items a user bought or viewed, nor a co-purchase anchor."""
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp_path / "ok.duckdb"), serving_db, model_version="v1", as_of=AS_OF)
    before = serving_db.read_bytes()
    bad = make_build_db(
        tmp_path / "bad.duckdb",
        model_version="v2",
        extra_sql=(f"update pub_recommendations set reason = '{reason}' where user_id = '{WARM_SHORT}' and rank = 2"),
    )
    with pytest.raises(PublishError, match="CHECK"):
        publish(bad, serving_db, model_version="v2", as_of=AS_OF)
    assert serving_db.read_bytes() == before
    baseline = make_build_db(
        tmp_path / "baseline.duckdb",
        model_version="v3",
        extra_sql="update pub_recommendations set reason = 'baseline:repurchase'",
    )
    publish(baseline, serving_db, model_version="v3", as_of=AS_OF)


# ---------------------------------------------------------------------------- file mode
def test_the_serving_file_is_owner_only_at_every_moment(tmp_path, monkeypatch):
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    seen = {}
    validate = publisher._validate

    def spy(con, require):  # the moment the copy is complete: where is the file, who may open it?
        path = next(publisher._private_dir(serving_db).glob("*.tmp.duckdb"))
        seen["dir_mode"] = _mode(path.parent)
        return validate(con, require)

    monkeypatch.setattr(publisher, "_validate", spy)
    old_umask = os.umask(0o002)  # a permissive umask must not matter
    try:
        publish(make_build_db(tmp_path / "build.duckdb"), serving_db, model_version="v1", as_of=AS_OF)
    finally:
        os.umask(old_umask)
    assert seen["dir_mode"] == 0o700
    assert _mode(serving_db) == 0o600


def test_the_file_mode_is_a_setting(tmp_path, monkeypatch):
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    build = make_build_db(tmp_path / "build.duckdb")
    monkeypatch.setenv("RECSYS_SERVING_FILE_MODE", "0640")  # the marketplace's reader in the group
    publish(build, serving_db, model_version="v1", as_of=AS_OF)
    assert _mode(serving_db) == 0o640
    for bad in ("0666", "0755", "0400", "rw-r-----"):
        monkeypatch.setenv("RECSYS_SERVING_FILE_MODE", bad)
        with pytest.raises(ConfigError, match="RECSYS_SERVING_FILE_MODE"):
            publish(build, serving_db, model_version="v2", as_of=AS_OF)
    assert _mode(serving_db) == 0o640


# ---------------------------------------------------------------------------- user_profiles
def test_user_profiles_hold_a_price_tier_not_the_median(tmp_path):
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp_path / "build.duckdb"), serving_db, model_version="v1", as_of=AS_OF)
    with duckdb.connect(str(serving_db), read_only=True) as con:
        columns = con.execute(
            "select column_name, data_type from duckdb_columns() where table_name = 'user_profiles'"
        ).fetchall()
    assert columns == [
        ("user_id", "VARCHAR"),
        ("platform", "VARCHAR"),
        ("price_tier", "INTEGER"),
        ("top_category_id", "VARCHAR"),
    ]


# ---------------------------------------------------------------------------- pseudonyms
@pytest.fixture(scope="module")
def pseudonymous(tmp_path_factory):
    """The serving fixture with long raw ids, published with key."""
    tmp = tmp_path_factory.mktemp("pseudonymous")
    serving_db = tmp / "serving" / "recommendations.duckdb"
    publish(
        make_build_db(tmp / "build.duckdb", extra_sql=RAW_IDS_SQL),
        serving_db,
        model_version="v1",
        as_of=AS_OF,
        pseudonym_key=KEY,
    )
    return serving_db


def test_pseudonym_is_hmac_sha256_in_python_and_sql():
    expected = hmac.new(KEY, RAW[WARM_FULL].encode(), hashlib.sha256).hexdigest()[:32]
    assert privacy.pseudonym(KEY, RAW[WARM_FULL]) == expected
    assert privacy.pseudonyms(KEY, [RAW[WARM_FULL], "1"]) == [expected, privacy.pseudonym(KEY, "1")]
    with duckdb.connect() as con:
        con.execute(privacy.PSEUDONYM_MACRO)
        for uid in (RAW[WARM_FULL], "1", "9" * 40):
            assert con.execute("select pseudonym(?, ?)", [uid, KEY.hex()]).fetchone()[0] == privacy.pseudonym(KEY, uid)


def test_the_file_has_pseudonyms_only_and_never_the_key(pseudonymous):
    data = pseudonymous.read_bytes()
    for raw in RAW.values():
        assert raw.encode() not in data
    for secret in (KEY, KEY.hex().encode(), KEY.hex().upper().encode()):
        assert secret not in data
    with duckdb.connect(str(pseudonymous), read_only=True) as con:
        text = _all_text(con)
        ids = {
            r[0]
            for r in con.execute(
                "select user_id from recommendations union select user_id from user_profiles"
            ).fetchall()
        }
        publication = con.execute("select pseudonymized, pseudonym_key_id from publication").fetchone()
    assert not any(raw in value for raw in RAW.values() for value in text)
    assert not any(KEY.hex() in value.lower() for value in text)
    assert ids == {privacy.pseudonym(KEY, raw) for raw in RAW.values()}
    assert all(re.fullmatch("[0-9a-f]{32}", uid) for uid in ids)
    assert publication == (True, privacy.key_id(KEY))


def test_direct_sql_readers_pass_the_key_to_the_pseudonym_macro(pseudonymous):
    with duckdb.connect(str(pseudonymous), read_only=True) as con:
        rows = con.execute(
            "select item_id, source from recommend(pseudonym(?, ?), 5)", [RAW[WARM_FULL], KEY.hex()]
        ).fetchall()
        assert rows == [(str(1020 + r), "personal") for r in range(1, 6)]
        page = con.execute(
            "select item_id, personalised from related_items(?, 20, uid := pseudonym(?, ?))",
            [ITEM_WITH_PAIRS, RAW[WARM_SHORT], KEY.hex()],
        ).fetchall()
        assert page[0] == ("1002", True) and page[-1][0] == "1005"
        # the raw id alone is an unknown user
        assert {r[0] for r in con.execute("select source from recommend(?, 5)", [RAW[WARM_FULL]]).fetchall()} == {
            "fallback:all"
        }


def test_the_api_answers_by_the_raw_id(pseudonymous):
    with TestClient(api.create_app(pseudonymous, check_interval=0.0, pseudonym_key=KEY)) as client:
        body = client.get(f"/recommendations/{RAW[WARM_FULL]}?n=3").json()
        assert body["user_id"] == RAW[WARM_FULL] and body["source"] == "personal"
        assert [i["item_id"] for i in body["items"]] == ["1021", "1022", "1023"]
        assert client.get(f"/recommendations/{RAW[KNOWN_COLD]}").json()["source"] == "fallback:Android"
        assert client.get(f"/recommendations/{UNKNOWN}").json()["source"] == "fallback:all"
        page = client.get(f"/items/{ITEM_WITH_PAIRS}/similar?user_id={RAW[WARM_SHORT]}").json()
        assert page["personalised"] and page["user_id"] == RAW[WARM_SHORT]
        assert client.get("/health").json()["pseudonymized"] is True


@pytest.mark.parametrize("key", [None, bytes(32)])
def test_the_api_without_the_right_key_refuses_instead_of_serving_fallbacks(pseudonymous, key):
    with TestClient(api.create_app(pseudonymous, check_interval=0.0, pseudonym_key=key)) as client:
        for url in (f"/recommendations/{RAW[WARM_FULL]}", f"/items/{ITEM_WITH_PAIRS}/similar?user_id=1", "/health"):
            response = client.get(url)
            assert response.status_code == 503, url
            assert "pseudonyms" in response.json()["detail"]


def test_a_key_for_a_file_with_raw_ids_changes_nothing(tmp_path):
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp_path / "build.duckdb"), serving_db, model_version="v1", as_of=AS_OF)
    with TestClient(api.create_app(serving_db, check_interval=0.0, pseudonym_key=KEY)) as client:
        assert client.get(f"/recommendations/{WARM_FULL}").json()["source"] == "personal"
        assert client.get("/health").json()["pseudonymized"] is False


def test_the_key_is_made_once_owner_only_and_the_mode_stays_on(tmp_path):
    home = tmp_path / "home"
    assert privacy.publish_key(home, None) is None and not privacy.key_path(home).exists()
    key = privacy.publish_key(home, True)
    path = privacy.key_path(home)
    assert len(key) == 32 and path.read_text().strip() == key.hex()
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert privacy.publish_key(home, True) == key
    assert privacy.publish_key(home, None) == key  # a run that forgot the setting
    with pytest.raises(ConfigError, match="delete it"):
        privacy.publish_key(home, False)
    path.unlink()
    assert privacy.publish_key(home, False) is None
