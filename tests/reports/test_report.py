"""HTML reports: self-contained pages (embedded PNGs, no network) that render what is present
and say truthfully what it is."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from flows.cli import main as cli_main
from ml.reports import render_evaluation_report, render_profile_report
from ml.vocabulary import KNOWN_COLUMNS
from ml.warehouse.profile import training_gaps

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_PNG = re.compile(r'<img[^>]+src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"')
URL = re.compile(r"https?://|//cdn|<script|<link", re.IGNORECASE)


def _interval(low: float, high: float) -> dict:
    return {"low": low, "high": high}


def _full_result() -> dict:
    """Every section's data, shaped as ml.pipeline.steps.train_and_evaluate and ml.experiments.offline write it."""
    edges = [10 ** (-4 + i * 0.4) for i in range(11)]
    ranking = {
        "ndcg": _interval(0.11, 0.13),
        "recall": _interval(0.17, 0.19),
        "precision": _interval(0.02, 0.04),
        "map": _interval(0.06, 0.08),
        "hit_rate": _interval(0.25, 0.27),
        "mrr": _interval(0.10, 0.12),
    }
    return {
        "title": "Ranker vs baselines",
        "dataset": {"input": "/data/ab_test.csv", "cutoff": "2023-08-10 00:00:00", "horizon_days": 3},
        "split": {
            "cutoff": "2023-08-10 00:00:00",
            "holdout_cutoff": "2023-08-10 00:00:00",
            "holdout_end": "2023-08-13 00:00:00",
            "horizon_days": 3,
            "k": 10,
            "warm_users": 1234,
            "cold_users": 99,
            "candidate_rows": 50_000,
            "window_purchases": 4_000,
            "cutoffs": {"1": "2023-08-10 00:00:00", "2": "2023-08-07 00:00:00", "3": "2023-08-04 00:00:00"},
        },
        "metrics": {
            "ranker": {
                "recall": 0.18,
                "precision": 0.03,
                "ndcg": 0.12,
                "map": 0.07,
                "hit_rate": 0.26,
                "mrr": 0.11,
                "coverage": 0.34,
                "novelty": 11.2,
                "popularity_pct": 0.944,
                "missed_offer_share": 0.17,
                "offer_precision": 0.73,
                "n_users": 1234,
            },
            "repurchase": {
                "recall": 0.17,
                "precision": 0.03,
                "ndcg": 0.118,
                "map": 0.069,
                "hit_rate": 0.25,
                "mrr": 0.1,
                "popularity_pct": 0.999,
                "missed_offer_share": 0.31,
                "n_users": 1234,
            },
            "popular": {
                "recall": 0.04,
                "precision": 0.007,
                "ndcg": 0.02,
                "popularity_pct": 0.998,
                "n_users": 1234,
                "missed_offer_share": 0.5,
            },
        },
        "intervals": {
            "resamples": 1000,
            "level": 0.95,
            "seed": 0,
            "unit": "user",
            "reference": "ranker",
            "lists": {"ranker": ranking, "repurchase": ranking, "popular": {"ndcg": _interval(0.015, 0.025)}},
            "differences": {
                "repurchase": {"ndcg": {"difference": 0.002, "low": -0.003, "high": 0.007, "within_noise": True}},
                "popular": {"ndcg": {"difference": 0.1, "low": 0.09, "high": 0.11, "within_noise": False}},
            },
        },
        "pilot": {
            "missed_offer_share": {
                "value": 0.17,
                "target": 0.2,
                "direction": "max",
                "passed": True,
                "definition": "buyers whose purchase was not offered",
            },
            "offer_precision": {
                "value": 0.66,
                "target": 0.7,
                "direction": "min",
                "passed": False,
                "definition": "relevant share of offers",
            },
        },
        "classifier": {
            "roc_auc": 0.88,
            "average_precision": 0.41,
            "precision": 0.52,
            "recall": 0.47,
            "threshold": 0.35,
            "positive_rate": 0.03,
        },
        "classifier_curves": {
            "roc": {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.6, 1.0]},
            "pr": {"recall": [0.0, 0.5, 1.0], "precision": [1.0, 0.3, 0.03]},
            "positive_rate": 0.03,
            "threshold": 0.35,
            "at_threshold": {"fpr": 0.05, "tpr": 0.47, "precision": 0.52},
        },
        "score_distribution": {
            "bins": edges,
            "scale": "log",
            "clipped_below": 1e-4,
            "positive": [1, 1, 2, 2, 3, 5, 8, 9, 9, 10],
            "negative": [50, 40, 30, 20, 10, 8, 5, 3, 2, 1],
        },
        "candidate_recall": {"all": 0.46, "by_source": {"history": 0.31, "co_purchase": 0.12}},
        "cross_validation": [
            {"params": {"learning_rate": 0.05, "max_leaf_nodes": 15}, "fold_scores": {"2->1": 0.12, "3->2": 0.10}},
            {"params": {"learning_rate": 0.15, "max_leaf_nodes": 63}, "fold_scores": {"2->1": 0.14, "3->2": 0.09}},
        ],
        "judged_params": {"learning_rate": 0.05, "max_leaf_nodes": 15, "max_iter": 120},
        "final_params": {"learning_rate": 0.15, "max_leaf_nodes": 63, "max_iter": 120},
        "baseline_params": {"repurchase": {"half_life_days": 30}},
        "validation_curves": [
            {
                "param": "learning_rate",
                "values": [0.03, 0.05, 0.1, 0.3],
                "chosen": 0.05,
                "train_score": [0.8, 0.85, 0.9, 0.99],
                "valid_score": [0.79, 0.8, 0.86, 0.78],
                "metric": "ndcg@10",
                "train_users": 3000,
            }
        ],
        "feature_importance": [
            {"feature": "views", "importance_mean": 0.12, "importance_std": 0.01},
            {"feature": "price_ratio", "importance_mean": 0.01, "importance_std": 0.02},
        ],
        "cold_users": {"recall": 0.03, "ndcg": 0.01, "n_users": 99},
        "gate": {
            "decision": "rejected",
            "reason": "offer precision <b>below</b> target",
            "list": "ranker",
            "candidates": ["ranker", "repurchase", "popular"],
        },
        "notes": ["trained on 11 days"],
    }


def _section(page: str, anchor: str) -> str:
    """The HTML of one section."""
    return re.search(rf'<section class="card" id="{anchor}">(.*?)</section>', page, re.S).group(1)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)))


def test_evaluation_report_is_self_contained_with_every_section(tmp_path):
    path = render_evaluation_report(_full_result(), tmp_path / "sub" / "eval.html")
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # pilot, ranking panels, PR, ROC, score histogram, candidates, one validation curve, importance
    assert len(EMBEDDED_PNG.findall(page)) == 8
    for anchor in ("setup", "pilot", "metrics", "classifier", "candidates", "tuning", "importance", "cold", "notes"):
        assert f'id="{anchor}"' in page and f'href="#{anchor}"' in page
    assert "FAIL" in page and "PASS" in page and "rejected" in page
    assert "&lt;b&gt;below&lt;/b&gt;" in page  # text is escaped, never injected
    assert not URL.search(page)  # nothing fetched from the network: no URL, script or stylesheet link
    assert "Recall@10" in page and "1,234" in page


def test_evaluation_report_says_what_was_judged_and_chosen(tmp_path):
    page = render_evaluation_report(_full_result(), tmp_path / "eval.html").read_text()
    setup = _text(_section(page, "setup"))
    assert "/data/ab_test.csv" in setup
    assert "[2023-08-10 00:00:00, 2023-08-13 00:00:00), 3 days" in setup
    assert "learning_rate = 0.05, max_leaf_nodes = 15" in setup  # judged
    assert "learning_rate = 0.15, max_leaf_nodes = 63" in setup  # published
    assert "1,000 bootstrap resamples" in setup
    tuning = _section(page, "tuning")
    chosen = re.findall(r'<tr class="chosen">(.*?)</tr>', tuning, re.S)
    assert [_text(row).split()[-1] for row in chosen] == ["judged", "published"]
    assert "Ringed: the value the judged model used" in tuning
    assert "Not how the parameters were chosen" in tuning
    # The gate's banner: the list, and whether its lead over the runner-up is more than noise.
    assert "Gate's list: <b>ranker</b>" in page
    banner = html.unescape(re.search(r'<div class="gate.*?</div>\s*</div>', page, re.S).group(0))
    assert "ranker's NDCG lead over the runner-up, repurchase: +0.002" in banner and "within noise" in banner


def test_only_metrics_with_a_direction_are_judged_best(tmp_path):
    page = render_evaluation_report(_full_result(), tmp_path / "eval.html").read_text()
    metrics = _section(page, "metrics")
    best = re.findall(r'<td class="best">([^<]+)', metrics)
    assert "0.170" in best  # the lowest missed-offer share: lower is better
    assert "0.999" not in best and "0.944" not in best  # popularity percentile: descriptive
    assert "0.120" in best and "0.500" not in best
    # Paired differences: beyond noise is coloured, within noise says so.
    assert re.search(r'<td class="ahead">\+0.100<span class="ci">\+0.090 to \+0.110', metrics)
    assert re.search(r'<td class="noise">\+0.002.*?within noise</span>', metrics)
    classifier = _text(_section(page, "classifier"))
    assert "Classifier precision at score ≥ 0.35" in classifier and "Classifier recall at score ≥ 0.35" in classifier
    assert "Precision@10" not in classifier.split("they are not")[0]


def test_validation_curves_without_a_recorded_choice_say_so(tmp_path):
    result = _full_result()
    del result["judged_params"], result["validation_curves"][0]["chosen"]
    page = render_evaluation_report(result, tmp_path / "eval.html").read_text()
    assert "is not recorded for this run" in page and "Ringed" not in page


def test_evaluation_report_skips_absent_sections(tmp_path):
    page = render_evaluation_report(
        {"metrics": {"popular": {"recall": 0.1, "ndcg": 0.05}}}, tmp_path / "min.html"
    ).read_text()
    assert len(EMBEDDED_PNG.findall(page)) == 1  # just the ranking panels
    assert 'id="metrics"' in page
    for anchor in ("setup", "pilot", "classifier", "candidates", "tuning", "importance", "cold", "notes"):
        assert f'id="{anchor}"' not in page
    assert "Difference from" not in page and 'class="gate' not in page
    # Counts only (no ranking metric): a table and no chart, still a valid page.
    page = render_evaluation_report({"metrics": {"ranker": {"n_users": 5}}}, tmp_path / "n.html").read_text()
    assert "<table>" in page and not EMBEDDED_PNG.search(page)


def test_scores_of_older_runs_in_linear_bins_get_a_log_share_axis(tmp_path):
    result = {
        "metrics": {"ranker": {"ndcg": 0.1}},
        "classifier": {"roc_auc": 0.8, "threshold": 0.5},
        "score_distribution": {
            "bins": [i / 10 for i in range(11)],
            "positive": [5, 1, 1, 0, 0, 0, 0, 0, 0, 0],
            "negative": [990, 8, 1, 1, 0, 0, 0, 0, 0, 0],
        },
    }
    page = render_evaluation_report(result, tmp_path / "old.html").read_text()
    assert "share axis on a log scale" in page and len(EMBEDDED_PNG.findall(page)) == 2


def test_templates_ship_in_the_built_package(tmp_path):
    """The wheel setuptools builds from pyproject holds the templates (package data)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    for package in ("ml", "flows"):
        subprocess.run(["cp", "-r", str(ROOT / package), str(source / package)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
    )
    wheel = next((tmp_path / "dist").glob("recsys-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("base.html.j2", "macros.html.j2", "evaluation.html.j2", "profile.html.j2", "style.css"):
        assert f"ml/reports/templates/{template}" in names


BROKEN_ROWS = [
    "Android,2023-08-01 10:00:00+00:00,2023-08-01,user-16,ec.view_item,[100],[1],[505]",
    "Tablet,2023-08-01 10:00:00+00:00,2023-08-01,18,ec.view_item,[100],[1],[505]",
    "Android,2023-08-01 10:00:00+00:00,2023-08-01,19,ec.view_item",
]


def test_profile_cli_reports_sections_reject_reasons_and_what_training_lacks(tmp_path, capsys):
    export = tmp_path / "ab.csv"  # 8 columns: no categories
    assert cli_main(["generate", "--rows", "20000", "--seed", "1", "--out", str(export)]) == 0
    with export.open("a") as handle:  # a few rows the warehouse must quarantine
        handle.write("\n".join(BROKEN_ROWS) + "\n")
    home = tmp_path / "home"
    assert cli_main(["--home", str(home), "profile", "--input", str(export)]) == 0

    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no category columns (8-column export)" in warnings[0]
    assert "left out of the fit" in warnings[0]
    page = (home / "reports" / "profile.html").read_text()
    assert "Warning: no category columns (8-column export)" in _section(page, "training")
    for anchor in ("training", "quality", "events", "prices", "activity", "tails"):
        assert f'id="{anchor}"' in page
    # event mix, funnel, prices, daily, hourly, rank-frequency
    assert len(EMBEDDED_PNG.findall(page)) == 6
    assert not URL.search(page)
    for reason in ("bad_user_id", "unknown_platform", "malformed_row"):
        assert f"<code>{reason}</code>" in page
    assert "user-16" in page  # the first example row of a reason, as written
    assert "Missing values per column" in page and "utc_event_time" in page
    # The warehouse ran in a temporary home that is gone afterwards.
    assert sorted(p.name for p in home.iterdir()) == ["reports"]


def _profile(columns: int = 10, purchases: int = 5, platforms: tuple[str, ...] = ("Site", "iOS")) -> dict:
    names = KNOWN_COLUMNS[:columns]
    return {
        "rows": 100,
        "columns": names,
        "missing": [{"column": name, "missing": 0, "empty_list": 0} for name in names],
        "event_mix": [{"event_type": "ec.view_item", "rows": 95}, {"event_type": "ec.purchase", "rows": purchases}],
        "platforms": [{"platform": name} for name in platforms],
    }


@pytest.mark.parametrize(
    "profile, lacks",
    [
        (_profile(), []),
        (_profile(columns=8), ["no category columns"]),
        (_profile(purchases=0), ["no purchases"]),
        (_profile(platforms=("iOS",)), ["a single platform (iOS)"]),
        (
            _profile(columns=8, purchases=0, platforms=("Site", "(missing)")),
            ["no category columns", "no purchases", "a single platform (Site)"],
        ),
    ],
)
def test_training_gaps_name_each_lack_once(profile, lacks):
    gaps = training_gaps(profile)
    assert len(gaps) == len(lacks) and all(gap.startswith(lack) for gap, lack in zip(gaps, lacks))


def test_empty_category_columns_are_a_lack_too():
    profile = _profile()
    for entry in profile["missing"]:
        if entry["column"] in ("main_category", "sub_category"):
            entry.update(missing=60, empty_list=40)
    assert training_gaps(profile)[0].startswith("the category columns are empty")


def test_profile_report_renders_without_warehouse_or_activity(tmp_path):
    profile = {
        "input": "x.csv",
        "rows": 0,
        "rejected": {"error": "dbt run failed: boom"},
        "warnings": [],
        "missing": [{"column": "user_id", "missing": 0, "empty_list": 0}],
    }
    page = render_profile_report(profile, tmp_path / "p.html").read_text()
    assert "could not validate" in page and "boom" in page
    assert 'id="events"' not in page and "The export has what training uses" in page


def test_a_file_that_is_not_an_export_is_refused_with_the_reason(tmp_path, capsys):
    other = tmp_path / "orders.csv"
    other.write_text("order,amount\n1,2\n")
    home = tmp_path / "home"
    for command in (
        ["profile", "--input", str(other)],
        ["evaluate", "--input", str(other), "--cutoff", "2023-08-10", "--horizon-days", "3"],
        ["profile", "--input", str(tmp_path / "missing.csv")],
    ):
        assert cli_main(["--home", str(home), *command]) == 2
    errors = capsys.readouterr().err
    assert "orders.csv is not an ab_test.csv export: the header lacks platform" in errors
    assert "input export not found" in errors


def test_repeat_explore_gets_its_own_table_not_the_descriptive_one(tmp_path):
    split = {
        "repeat_recall": 0.6,
        "repeat_ndcg": 0.43,
        "explore_recall": 0.015,
        "explore_ndcg": 0.0074,
        "repeat_share_truth": 0.14,
        "repeat_share_lists": 0.86,
        "repeat_buyers": 7655,
        "explore_buyers": 13032,
    }
    metrics = {"ranker": {"ndcg": 0.15, **split}, "popular": {"ndcg": 0.07}}
    page = render_evaluation_report({"metrics": metrics}, tmp_path / "r.html").read_text()
    repeat = _text(_section(page, "repeat"))
    assert "NDCG@k, repeat" in repeat and "ranker 0.600 0.430 0.015 0.0074 0.140 0.860 7,655 13,032" in repeat
    assert "popular" not in repeat  # a list without the split is not shown as empty
    assert "repeat" not in _text(_section(page, "metrics"))
    page = render_evaluation_report({"metrics": {"popular": {"ndcg": 0.07}}}, tmp_path / "old.html").read_text()
    assert 'id="repeat"' not in page


def test_the_model_family_choice_shows_its_fold_scores_and_wins(tmp_path):
    result = _full_result()
    for row, kind in zip(result["cross_validation"], ("hgb", "logreg")):
        row["kind"] = kind
    result["cross_validation"][1]["params"] = {"C": 1.0}
    result["diagnostics"] = {
        "model_kind": "hgb",
        "family_choice": {
            "chosen": "hgb",
            "folds": ["3->2"],
            "families": {
                "hgb": {"fold_scores": {"3->2": 0.10}, "mean": 0.10, "folds_won": 1},
                "logreg": {"fold_scores": {"3->2": 0.09}, "mean": 0.09, "folds_won": 0},
            },
            "reason": "hgb: best mean NDCG over the 1 fold(s) before the holdout (hgb 0.1000, logreg 0.0900); won 1 of 1 fold(s)",
        },
    }
    tuning = _section(render_evaluation_report(result, tmp_path / "eval.html").read_text(), "tuning")
    assert "Model family, chosen on the folds before the holdout" in tuning
    assert "hgb: best mean NDCG over the 1 fold(s) before the holdout" in html.unescape(tuning)
    chosen = [_text(row).split() for row in re.findall(r'<tr class="chosen">(.*?)</tr>', tuning, re.S)]
    assert chosen[0] == ["hgb", "0.100", "0.100", "1", "yes"]
    assert [row[0] for row in chosen[1:]] == ["hgb"] and chosen[1][-1] == "judged"  # logreg's C = 1 row is not marked
