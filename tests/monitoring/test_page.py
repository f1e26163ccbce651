"""The monitor page (ml/monitoring/page.py, ml/reports/monitor.py, `recsys monitor`): planted runs
give the page its series, the last run's warning and the readout (or why there is none); a home
without runs gets a page saying so; and the page is rendered by a headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows import cli
from ml.config import Settings
from ml.monitoring import drift, page
from ml.pipeline import runs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
START = datetime(2026, 11, 1, 3)
WARNING = "monitor_feature_psi warn (2 rows): 0.4321 (item_trend)"


def monitors(psi: float, coverage: float, overlap: float | None, warn: str = "") -> dict:
    """Test results as ``drift.run_monitors`` records them, with the values they judged; the
    test named ``warn`` warns."""
    results = {
        "monitor_feature_psi": {"value": psi, "feature": "item_trend", "score_psi": psi / 2},
        "monitor_catalogue_coverage": {"value": coverage},
        "monitor_cold_user_share": {"value": 0.125},
        "monitor_list_overlap": {"value": overlap},
        "monitor_ndcg_drop": {"value": -0.01},
    }
    return {
        name: {"status": "warn" if name == warn else "pass", "failures": 2 if name == warn else 0, **values}
        for name, values in results.items()
    }


def plant(settings: Settings) -> None:
    """Four runs: a first publication (nothing to compare), a rejected run, a published one whose
    list overlap warned, and the last, published with a PSI warning."""
    planted = [
        ("v1", "published", 0.2105, monitors(0.0, 0.31, None)),
        ("v2", "rejected", 0.1502, None),
        ("v3", "published", 0.2208, monitors(0.0512, 0.3333, 0.41, warn="monitor_list_overlap")),
        ("v4", "published", 0.2311, monitors(0.4321, 0.3456, 0.7654, warn="monitor_feature_psi")),
    ]
    for day, (version, status, ndcg, result) in enumerate(planted):
        runs.record(
            settings,
            {
                "run_id": version,
                "status": status,
                "started_at": START + timedelta(days=day),
                "published_list": "ranker" if status == "published" else None,
                "ndcg": ndcg,
                "popular_ndcg": 0.1,
                "durations": {},
                "monitors": result,
            },
        )


def test_the_page_shows_the_series_the_warning_and_why_there_is_no_readout(tmp_path):
    settings = Settings(home=tmp_path / "home")
    plant(settings)
    data = page.gather(settings)
    assert [run.run_id for run in data.runs] == ["v1", "v2", "v3", "v4"]
    assert data.runs[-1].values["catalogue_coverage"] == 0.3456
    assert data.runs[1].values == dict.fromkeys(page.MONITOR_SERIES.values())
    assert data.warnings == [WARNING]
    assert data.runs[2].warnings == ["monitor_list_overlap warn (2 rows): 0.41"]
    assert (data.runs[2].flagged, data.runs[3].flagged) == (["list_overlap"], ["psi_max"])
    assert data.readout is None and "no warehouse" in data.readout_missing

    html = page.write_page(data, tmp_path / "monitor.html").read_text()
    text = re.sub(r"\s+", " ", html)
    assert f"Warning: {WARNING}" in text
    assert "<code>v3</code>: monitor_list_overlap warn (2 rows): 0.41" in text  # an earlier run's
    for shown in ("0.231", "0.221", "34.6 %", "76.5 %", "12.5 %", "0.432", "item_trend", "rejected"):
        assert shown in text, shown
    assert text.count("data:image/png;base64,") == 3  # NDCG, list quality, drift
    assert "No readout: no warehouse at" in text
    assert "http://" not in html and "https://" not in html  # self-contained

    summary = page.summary(data)
    assert "last run v4, published" in summary and WARNING in summary and "readout: none" in summary


def test_the_readout_is_read_from_the_build_database_when_it_holds_outcomes(tmp_path):
    settings = Settings(home=tmp_path / "home")
    plant(settings)
    settings.build_db.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.build_db)) as con:
        con.execute(
            "create table outcomes_by_user as select 'v4' as model_version, "
            "case when i % 2 = 0 then 'treatment' else 'control' end as experiment_group, "
            "'u' || i as user_id, timestamp '2026-11-05' as first_exposed_at, "
            "(i % 3 = 0) as viewed_shown, (i % 5 = 0) as carted_shown, (i % 7 = 0) as bought_shown, "
            "10.0 as shown_revenue_rub, 100.0 as revenue_rub, 7 as outcome_days, true as window_complete "
            "from range(2000) t(i)"
        )
    data = page.gather(settings)
    assert data.readout is not None and data.readout_missing is None
    text = re.sub(r"\s+", " ", page.write_page(data, tmp_path / "monitor.html").read_text())
    assert "Publication <code>v4</code>" in text and "bought a shown item" in text
    bought = data.readout.comparison("bought_shown")
    assert f"{100 * bought.difference:+.2f} %" in text and f"{bought.users_needed:,}" in text
    assert "readout of publication v4" in page.summary(data)


def test_the_readout_says_when_the_outcome_models_are_not_built(tmp_path):
    settings = Settings(home=tmp_path / "home")
    settings.build_db.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(settings.build_db)).close()
    assert page.last_readout(settings.build_db) == (
        None,
        "the outcome models are not built: `recsys outcomes` builds them over the exposure log",
    )


def test_a_home_without_runs_gets_a_page_saying_so(tmp_path, capsys):
    home = tmp_path / "empty"
    assert cli.main(["monitor", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "no runs yet" in out and str(home / "reports" / "monitor.html") in out
    assert "No runs yet" in (home / "reports" / "monitor.html").read_text()


def test_the_cli_writes_the_page_and_prints_the_summary(tmp_path, capsys):
    settings = Settings(home=tmp_path / "home")
    plant(settings)
    out = tmp_path / "elsewhere" / "page.html"
    assert cli.main(["monitor", "--home", str(settings.home), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert WARNING in printed and f"-> {out}" in printed
    assert WARNING in out.read_text()


def test_the_recorded_values_are_the_ones_the_monitor_models_measured(tmp_path):
    """``drift.with_values`` adds what each test judged; NaN (no previous run) is not known."""
    build_db = tmp_path / "build.duckdb"
    with duckdb.connect(str(build_db)) as con:
        con.execute(
            "create table monitor_run_quality as select 0.1 as cold_user_share, 0.3 as catalogue_coverage, "
            "cast('nan' as double) as list_overlap, 0.02 as ndcg_drop, 0.05 as score_psi"
        )
        con.execute(
            "create table monitor_feature_stability as select * from (values ('score', 0.05), "
            "('item_trend', 0.4), ('user_n_events', null)) t(feature, psi)"
        )
    results = {name: {"status": "pass", "failures": 0} for name in [*drift.TEST_COLUMNS, "monitor_feature_psi"]}
    valued = drift.with_values(results, build_db)
    assert valued["monitor_catalogue_coverage"] == {"status": "pass", "failures": 0, "value": 0.3}
    assert valued["monitor_list_overlap"]["value"] is None
    assert valued["monitor_feature_psi"] == {
        "status": "pass",
        "failures": 0,
        "value": 0.4,
        "feature": "item_trend",
        "score_psi": 0.05,
    }
    assert runs.describe_monitors(valued) == "5 of 5 passed"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium on this machine to render the page with")
def test_a_headless_browser_renders_the_page(tmp_path):
    settings = Settings(home=tmp_path / "home")
    plant(settings)
    html = page.write_page(page.gather(settings), tmp_path / "monitor.html")
    shot = tmp_path / "monitor.png"
    flags = ["--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,2000", html.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", html.as_uri()], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert WARNING in re.sub(r"\s+", " ", dom)
    assert shot.stat().st_size > 50_000  # a blank 1200x2000 PNG is a few kB
    image = pytest.importorskip("PIL.Image")
    with image.open(shot) as picture:
        assert picture.size == (1200, 2000)
        colours = picture.convert("RGB").getcolors(maxcolors=1_000_000)
    assert len(colours) > 100  # text, charts and the warning's colours, not one blank fill
