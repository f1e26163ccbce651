"""A run is alone in its home, publishes only what its own build made, leaves no process behind
when killed, and cleans what killed runs left (issue 10: items 1, 8 and 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from ml.config import PROJECT_ROOT, Config, Settings
from ml.pipeline import runlock, steps
from ml.serving import PublishError, publish
from tests.exports import event, write_export

pytestmark = pytest.mark.slow


def thin_export(path: Path, first_item: int = 101) -> Path:
    """Two days of 30 buyers: no ranker can be trained, so a run publishes its cold-start lists
    (about 20 s on a running Prefect server)."""
    rows = []
    for user in range(1, 31):
        platform = ["Site", "Android", "iOS"][user % 3]
        basket = [first_item, first_item + 1] if user % 2 else [first_item, first_item + 2 + user % 4]
        rows.append(event(user, "ec.view_item", basket, "2023-08-01 10:00:00", platform=platform))
        rows.append(event(user, "ec.purchase", basket, "2023-08-01 10:05:00", platform=platform))
        rows.append(event(user, "ec.purchase", [first_item], "2023-08-02 09:00:00", platform=platform))
    return write_export(path, rows)


@pytest.fixture()
def export(tmp_path) -> Path:
    return thin_export(tmp_path / "thin.csv")


def recsys(home: Path, *argv: str, env: dict) -> subprocess.Popen:
    """`recsys --home HOME ARGV` in its own process, output (stdout and stderr) in one pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--home", str(home), *argv],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def harness_env(**extra: str) -> dict:
    """The environment for a `recsys` child that uses the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **extra}


def own_server_env(**extra: str) -> dict:
    """The environment for a `recsys` child that starts its own temporary Prefect server."""
    return {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, **extra}


def processes_of(home: Path) -> list[str]:
    """Live processes (not zombies) whose command line or environment names the home: the run
    itself (--home), dbt (RECSYS_BUILD_DB) and its Prefect server (its database's path)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            text = (proc / "cmdline").read_bytes() + b"\0" + (proc / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and str(home).encode() in text:
            found.append(f"{proc.name}: {text[:200]!r}")
    return found


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def lock_holder(home: Path) -> int | None:
    try:
        return json.loads(runlock.lock_path(home).read_text() or "null")["pid"]
    except (OSError, TypeError, ValueError):
        return None


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    return output


# --------------------------------------------------------------------------------------------
# (1) one run per home
# --------------------------------------------------------------------------------------------
def test_a_second_run_is_refused_and_one_that_waits_runs_after(prefect_harness, export, tmp_path):
    home = tmp_path / "home"
    env = harness_env()
    first = recsys(home, "run", "--input", str(export), env=env)
    try:
        wait_until(lambda: lock_holder(home) == first.pid, 120, "the first run to take the lock")
        refused = recsys(home, "run", "--input", str(export), env=env)
        refused_output = finish(refused, 120)
        waiting = recsys(home, "run", "--input", str(export), "--wait", env=env)
        assert first.poll() is None, "the first run ended too early for this test"
    finally:
        first_output = finish(first)
    waited_output = finish(waiting)

    assert refused.returncode == 2, refused_output
    assert refused_output.strip().count("\n") == 0 and "Traceback" not in refused_output, refused_output
    assert refused_output.startswith(f"error: home {home.resolve()} is busy: pid {first.pid} (started 20")
    assert first.returncode == 0, first_output[-3000:]
    assert waiting.returncode == 0, waited_output[-3000:]
    assert f"waiting for pid {first.pid} (started " in waited_output
    with duckdb.connect(str(home / "runs.duckdb"), read_only=True) as con:
        runs = con.execute("select status, started_at, finished_at from model_runs order by started_at").fetchall()
    assert [status for status, _, _ in runs] == ["published_cold_start"] * 2  # the refused run never started
    assert runs[1][1] >= runs[0][2]  # the waiting run started after the first one ended


def test_the_flow_takes_the_lock_itself_and_a_killed_holder_leaves_none(prefect_harness, export, tmp_path):
    """A deployment (`recsys serve`) starts the flow without the CLI: the flow refuses a busy home.
    The lock dies with its holder, even a SIGKILLed one."""
    from flows.pipeline import recommendation_pipeline

    home = tmp_path / "home"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ml.pipeline import runlock\n"
            "with runlock.hold(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)",
            str(home),
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(runlock.HomeBusy, match=f"pid {holder.pid} "):
            recommendation_pipeline(Config(home=home, input_path=export))
    finally:
        holder.kill()
        holder.wait()
    with runlock.hold(home):  # at once: no stale lock
        assert lock_holder(home) == os.getpid()
    assert not (home / "build.duckdb").exists()  # the refused flow touched nothing


def test_publish_refuses_a_build_another_run_rebuilt_meanwhile(tmp_path):
    """The issue's probe: run A builds its warehouse from X; run B rebuilds it from Y; A builds
    its serving tables and publishes. The stamps show the mix; the old file stays."""
    settings = Settings(home=tmp_path / "home")
    x, y = thin_export(tmp_path / "x.csv"), thin_export(tmp_path / "y.csv", first_item=501)
    config = Config(horizon_days=1)
    steps.ingest(settings, config, x, "run-a")
    steps.build_features(settings, config, x, "run-a")
    steps.ingest(settings, config, y, "run-b")
    steps.build_features(settings, config, y, "run-b")
    from ml.warehouse.lists import no_personal_lists

    no_personal_lists(settings.build_db)
    steps.build_serving_tables(settings, config, x, "run-a", datetime(2023, 8, 3))
    settings.serving_db.parent.mkdir(parents=True)
    settings.serving_db.write_bytes(b"the list published before")

    with pytest.raises(
        PublishError,
        match="mixed build: publishing run-a, but pub_fallback_recommendations "
        "comes from build.s. run-b; pub_similar_items comes from",
    ):
        publish(
            settings.build_db,
            settings.serving_db,
            model_version="run-a",
            as_of=datetime(2023, 8, 3),
            require_recommendations=False,
        )
    assert settings.serving_db.read_bytes() == b"the list published before"
    result = publish(
        settings.build_db,
        settings.serving_db,
        model_version="run-b",
        as_of=datetime(2023, 8, 3),
        require_recommendations=False,
    )  # B's own build is whole: it publishes
    assert result.row_counts["items"] > 0


# --------------------------------------------------------------------------------------------
# (8) the temporary Prefect server
# --------------------------------------------------------------------------------------------
def test_nothing_outlives_a_killed_run(export, tmp_path):
    home = tmp_path / "home"
    run = recsys(home, "run", "--input", str(export), env=own_server_env(PREFECT_LOGGING_LEVEL="INFO"))
    lines = []
    try:
        for line in run.stdout:  # server up, then the first dbt model: the run has children now
            lines.append(line)
            if " dbt " in line:
                break
        assert any("temporary Prefect server on" in line for line in lines), "".join(lines)
        assert processes_of(home)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    wait_until(lambda: not processes_of(home), 15, f"the killed run's processes to end: {processes_of(home)}")


def test_the_server_startup_timeout_is_honoured(export, tmp_path):
    home = tmp_path / "home"
    started = time.monotonic()
    run = recsys(home, "run", "--input", str(export), env=own_server_env(RECSYS_PREFECT_STARTUP_TIMEOUT="1"))
    output = finish(run, 120)
    assert run.returncode == 1, output
    assert "error: the temporary Prefect server did not answer within 1 s" in output and "Traceback" not in output
    assert time.monotonic() - started < 30  # Python's start-up and imports, then 1 s
    assert not processes_of(home)

    bad = recsys(home, "run", "--input", str(export), env=own_server_env(RECSYS_PREFECT_STARTUP_TIMEOUT="soon"))
    assert bad.wait(120) == 2
    assert "error: RECSYS_PREFECT_STARTUP_TIMEOUT: input should be a valid number" in finish(bad)


# --------------------------------------------------------------------------------------------
# (9) leftovers of killed runs
# --------------------------------------------------------------------------------------------
def test_the_next_run_removes_what_killed_runs_left_and_says_so(prefect_harness, export, tmp_path):
    settings = Settings(home=tmp_path / "home")
    settings.serving_dir.mkdir(parents=True)
    private = settings.serving_dir / ".recommendations.publishing"  # where publish builds its file
    private.mkdir(mode=0o700)
    temp = private / ".recommendations.4000000.0123456789ab.tmp.duckdb"
    temp.write_bytes(b"half a database")
    Path(f"{temp}.wal").write_bytes(b"its log")
    settings.build_db.write_bytes(b"not a database: opening it would fail the run")
    Path(f"{settings.build_db}.wal").write_bytes(b"a killed build's log")

    run = recsys(settings.home, "run", "--input", str(export), env=harness_env(PREFECT_LOGGING_LEVEL="INFO"))
    output = finish(run)

    assert run.returncode == 0, output[-3000:]
    assert f"removed {temp}, left by a publication that was killed half-way" in output
    assert f"removed {temp}.wal, left by" in output
    assert f"removed {settings.build_db} and its WAL, left by a killed build" in output
    assert sorted(p.name for p in settings.serving_dir.iterdir()) == [
        ".recommendations.duckdb.publish.lock",
        ".recommendations.publishing",
        "recommendations.duckdb",
    ]
    assert list(private.iterdir()) == []
    assert not Path(f"{settings.build_db}.wal").exists()
