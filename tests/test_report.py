"""HTML reports: self-contained pages (embedded PNGs, no network) that render what is present."""
from __future__ import annotations

import re
from pathlib import Path

from ml.cli import main as cli_main
from ml.report import render_evaluation_report, render_profile_report

EMBEDDED_PNG = re.compile(r'<img[^>]+src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"')


def _full_result() -> dict:
    bins = [i / 10 for i in range(11)]
    return {
        "title": "Ranker vs baselines",
        "dataset": {"name": "demo", "input": "/data/ab_test.csv"},
        "split": {"cutoff": "2023-08-10", "horizon_days": 3, "k": 10},
        "metrics": {
            "ranker": {"recall": 0.18, "precision": 0.03, "ndcg": 0.12, "map": 0.07, "hit_rate": 0.26,
                       "mrr": 0.11, "coverage": 0.34, "novelty": 11.2, "missed_offer_share": 0.17,
                       "offer_precision": 0.73, "n_users": 1234},
            "popular": {"recall": 0.04, "precision": 0.007, "ndcg": 0.02, "n_users": 1234,
                        "missed_offer_share": 0.5},
            "repurchase": {"recall": 0.12, "precision": 0.02, "ndcg": 0.09, "n_users": 1234},
        },
        "pilot": {
            "missed_offer_share": {"value": 0.17, "target": 0.2, "direction": "max", "passed": True,
                                   "definition": "buyers whose purchase was not offered"},
            "offer_precision": {"value": 0.66, "target": 0.7, "direction": "min", "passed": False,
                                "definition": "relevant share of offers"},
            "roc_auc": {"value": 0.88, "target": 0.85, "direction": "min", "passed": True,
                        "definition": "classifier ROC AUC"},
        },
        "classifier": {"roc_auc": 0.88, "average_precision": 0.41, "precision": 0.52, "recall": 0.47,
                       "threshold": 0.35},
        "candidate_recall": {"all": 0.46, "by_source": {"history": 0.31, "co_purchase": 0.12}},
        "validation_curves": [{"param": "learning_rate", "values": [0.01, 0.1, 1.0],
                               "train_score": [0.8, 0.9, 0.99], "valid_score": [0.79, 0.86, 0.78],
                               "metric": "roc_auc"}],
        "feature_importance": [{"feature": "views", "importance_mean": 0.12, "importance_std": 0.01},
                               {"feature": "price_ratio", "importance_mean": 0.01, "importance_std": 0.02}],
        "score_distribution": {"bins": bins, "positive": [1, 1, 2, 2, 3, 5, 8, 9, 9, 10],
                               "negative": [50, 40, 30, 20, 10, 8, 5, 3, 2, 1]},
        "cold_users": {"recall": 0.03, "n_users": 99},
        "gate": {"decision": "rejected", "reason": "offer precision <b>below</b> target"},
        "notes": ["trained on 11 days"],
    }


def test_evaluation_report_is_self_contained_with_every_section(tmp_path):
    path = render_evaluation_report(_full_result(), tmp_path / "sub" / "eval.html")
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # pilot, metrics, scores, candidates, validation curve, importance: six plots
    assert len(EMBEDDED_PNG.findall(page)) == 6
    for anchor in ("pilot", "metrics", "classifier", "candidates", "validation", "importance",
                   "cold", "notes"):
        assert f'id="{anchor}"' in page
    assert "FAIL" in page and "PASS" in page and "rejected" in page
    assert "&lt;b&gt;below&lt;/b&gt;" in page  # text is escaped, never injected
    assert not re.search(r'(src|href)="https?:', page)  # nothing fetched from the network
    assert "Recall@k" in page and "1,234" in page


def test_evaluation_report_skips_absent_sections(tmp_path):
    page = render_evaluation_report({"metrics": {"popular": {"recall": 0.1, "ndcg": 0.05}}},
                                    tmp_path / "min.html").read_text()
    assert len(EMBEDDED_PNG.findall(page)) == 1  # just the metrics chart
    assert 'id="metrics"' in page
    for anchor in ("pilot", "classifier", "candidates", "validation", "importance", "cold", "notes"):
        assert f'id="{anchor}"' not in page
    # Counts only (no score in [0, 1]): a table and no chart, still a valid page.
    page = render_evaluation_report({"metrics": {"ranker": {"n_users": 5}}}, tmp_path / "n.html").read_text()
    assert "<table>" in page and not EMBEDDED_PNG.search(page)


BROKEN_ROWS = [
    "Android,2023-08-01 10:00:00+00:00,2023-08-01,user-16,ec.view_item,[100],[1],[505]",
    "Tablet,2023-08-01 10:00:00+00:00,2023-08-01,18,ec.view_item,[100],[1],[505]",
    "Android,2023-08-01 10:00:00+00:00,2023-08-01,19,ec.view_item",
]


def test_profile_cli_reports_sections_and_warehouse_reject_reasons(tmp_path):
    export = tmp_path / "ab.csv"
    assert cli_main(["generate", "--rows", "20000", "--seed", "1", "--out", str(export)]) == 0
    with export.open("a") as handle:  # a few rows the warehouse must quarantine
        handle.write("\n".join(BROKEN_ROWS) + "\n")
    home = tmp_path / "home"
    assert cli_main(["--home", str(home), "profile", "--input", str(export)]) == 0

    page = (home / "reports" / "profile.html").read_text()
    for anchor in ("quality", "events", "prices", "activity", "tails"):
        assert f'id="{anchor}"' in page
    # event mix, funnel, prices, daily, hourly, rank-frequency
    assert len(EMBEDDED_PNG.findall(page)) == 6
    assert not re.search(r'(src|href)="https?:', page)
    for reason in ("bad_user_id", "unknown_platform", "malformed_row"):
        assert f"<code>{reason}</code>" in page
    assert "user-16" in page  # the first example row of a reason, as written
    assert "Missing values per column" in page and "utc_event_time" in page
    # The warehouse ran in a temporary home that is gone afterwards.
    assert sorted(p.name for p in home.iterdir()) == ["reports"]


def test_profile_report_renders_without_warehouse_or_activity(tmp_path):
    profile = {"input": "x.csv", "rows": 0, "rejected": {"error": "dbt run failed: boom"},
               "missing": [{"column": "user_id", "missing": 0, "empty_list": 0}]}
    page = render_profile_report(profile, tmp_path / "p.html").read_text()
    assert "could not validate" in page and "boom" in page
    assert 'id="events"' not in page


def test_a_file_that_is_not_an_export_is_refused_with_the_reason(tmp_path, capsys):
    other = tmp_path / "orders.csv"
    other.write_text("order,amount\n1,2\n")
    home = tmp_path / "home"
    for command in (["profile", "--input", str(other)],
                    ["evaluate", "--input", str(other), "--cutoff", "2023-08-10", "--horizon-days", "3"],
                    ["profile", "--input", str(tmp_path / "missing.csv")]):
        assert cli_main(["--home", str(home), *command]) == 2
    errors = capsys.readouterr().err
    assert "orders.csv is not an ab_test.csv export: the header lacks platform" in errors
    assert "input export not found" in errors
