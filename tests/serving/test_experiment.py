"""The control group (ml/serving/experiment.py): one split in Python and in SQL, and what the API
answers a control user."""

from __future__ import annotations

import duckdb
from fastapi.testclient import TestClient

from ml.serving import api
from ml.serving.experiment import CONTROL_SQL, in_control
from ml.serving.exposures import ExposureLog
from tests.serving.test_exposures import stored
from tests.serving.test_serving import PROJECT_ROOT, UNKNOWN, WARM_FULL


def test_python_and_sql_draw_the_same_split():
    users = [str(u) for u in range(10_000)] + ["9" * 40]
    con = duckdb.connect()
    over_a_column = CONTROL_SQL.replace("$user_id", "user_id")  # every user in one query
    for share, salt in ((0.5, "recsys-control"), (0.1, "another experiment"), (0.0, "x"), (1.0, "x")):
        in_sql = {
            user
            for user, control in con.execute(
                f"select user_id, {over_a_column} from unnest($users) as t(user_id)",
                {"users": users, "salt": salt, "share": share},
            ).fetchall()
            if control
        }
        in_python = {user for user in users if in_control(user, share, salt)}
        assert in_sql == in_python
        assert abs(len(in_python) / len(users) - share) < 0.02


def test_the_readme_gives_sql_readers_this_assignment():
    assert CONTROL_SQL in (PROJECT_ROOT / "README.md").read_text()


def test_a_new_salt_draws_an_independent_split_and_a_larger_share_keeps_control_users():
    users = [str(u) for u in range(10_000)]
    first = {u for u in users if in_control(u, 0.5, "a")}
    other = {u for u in users if in_control(u, 0.5, "b")}
    assert 0.2 < len(first & other) / len(users) < 0.3  # independent halves overlap on a quarter
    assert first <= {u for u in users if in_control(u, 0.6, "a")}


def test_a_control_user_gets_the_cold_start_list_of_their_platform_logged_as_control(tmp_path, shared_serving_db):
    answers, kinds = {}, {}
    for share in (0.0, 1.0):
        log = ExposureLog(tmp_path / str(share))
        app = api.create_app(shared_serving_db, exposures=log, control_share=share)
        with TestClient(app) as client:
            answers[share] = client.get(f"/recommendations/{WARM_FULL}").json()
            answers[share, "cold"] = client.get(f"/recommendations/{UNKNOWN}?platform=iOS").json()
        kinds[share] = {(r["user_id"], r["list_kind"]) for r in stored(tmp_path / str(share))}
    assert kinds[0.0] == {(WARM_FULL, "personal"), (UNKNOWN, "fallback")}
    assert kinds[1.0] == {(WARM_FULL, "control"), (UNKNOWN, "control")}
    assert answers[0.0]["source"] == "personal"
    # 101's profile says iOS: in control, the list an unknown user on iOS gets
    assert answers[1.0]["source"] == "fallback:iOS"
    assert answers[1.0]["items"] == answers[0.0, "cold"]["items"] == answers[1.0, "cold"]["items"]
