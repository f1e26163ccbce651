"""The whole pipeline on generated data: a published table, a ranker that beats popularity,
price sanity, the run log, atomic publication under concurrent readers and killed runs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from ml.config import Config, Settings
from ml.data.synthetic import GeneratorConfig, generate_export, planted_structure
from tests.exports import event

ROWS = 300_000
PHONE_BUYER = "99999999999999999999999999999999999"


def _price_test_rows(config: GeneratorConfig) -> tuple[list[list[str]], dict]:
    """A user who bought cheap items of one category and one very expensive item of it."""
    items = planted_structure(config).items_frame()
    category = items["category_id"].value_counts().index[0]
    in_category = items[items["category_id"] == category].sort_values("price100")
    cheap = in_category.iloc[len(in_category) // 10 : len(in_category) // 10 + 5]
    phone = in_category.iloc[-1]
    rows = []
    for day, item in enumerate(cheap.itertuples(), start=1):
        at = f"2023-08-{day:02d} 12:00:00"
        rows.append(event(PHONE_BUYER, "ec.view_item", [item.item_id], at, prices=[item.price100]))
        rows.append(
            event(PHONE_BUYER, "ec.purchase", [item.item_id], at.replace("12:00", "12:05"), prices=[item.price100])
        )
    rows.append(event(PHONE_BUYER, "ec.purchase", [phone.item_id], "2023-08-09 18:00:00", prices=[phone.price100]))
    return (
        [r + [f"[{category}]", "[0]"] for r in rows],
        {
            "category": category,
            "cheap_median": float(np.median(cheap["price100"])) / 100,
            "phone_price": float(phone["price100"]) / 100,
        },
    )


@pytest.fixture(scope="session")
def demo_export(tmp_path_factory) -> tuple[Path, dict]:
    config = GeneratorConfig(rows=ROWS, seed=3, with_categories=True)
    path = tmp_path_factory.mktemp("export") / "ab_test.csv"
    generate_export(config, path)
    extra, facts = _price_test_rows(config)
    with open(path, "a") as handle:
        for row in extra:
            handle.write(",".join(f'"{v}"' if "," in v else v for v in row) + "\n")
    return path, facts


@pytest.fixture(scope="session")
def published(prefect_harness, demo_export, tmp_path_factory) -> tuple[Settings, dict]:
    from flows.pipeline import recommendation_pipeline

    home = tmp_path_factory.mktemp("home")
    run = recommendation_pipeline(Config(home=home, input_path=demo_export[0]))
    return Settings(home=home), run


def serving_query(settings: Settings, sql: str, params=()) -> list[tuple]:
    with duckdb.connect(str(settings.serving_db), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.mark.slow  # runs dbt or the whole flow
def test_run_publishes_recommendations_and_logs_the_run(published):
    settings, run = published
    assert run["status"] == "published", run.get("reason")
    users, rows, max_rank = serving_query(
        settings, "select count(distinct user_id), count(*), max(rank) from recommendations"
    )[0]
    assert users > 1000 and rows >= users * 10 and max_rank == 20
    assert serving_query(settings, "select count(distinct platform) from fallback_recommendations")[0][0] == 4
    assert serving_query(settings, "select count(*) from similar_items")[0][0] > 0
    version = serving_query(settings, "select model_version from publication")[0][0]
    assert version == run["model_version"]
    model_dir = settings.models_dir / version
    for name in ("model.joblib", "model.json", "evaluation.json"):
        assert (model_dir / name).exists(), name
    card = json.loads((model_dir / "model.json").read_text())
    assert {"params", "features", "library_versions", "trained_on", "metrics"} <= set(card)
    with duckdb.connect(str(settings.home / "runs.duckdb"), read_only=True) as con:
        logged = con.execute("select status, rows_exported, durations from model_runs").fetchall()
    assert logged[0][0] == "published" and logged[0][1] == ROWS + 11
    assert run["published_list"] == "ranker" and run["horizon_days"] == 3 and "horizon 3 d" in run["time_scale"]


@pytest.mark.slow  # runs dbt or the whole flow
def test_the_serving_file_names_no_item_a_user_has_and_no_exact_price(published):
    """docs/privacy.md: the build's reasons name the user's own items (history, repurchase,
    co_purchase:<item>); the published ones do not, and profiles carry a price band."""
    settings, _ = published
    reasons = {row[0] for row in serving_query(settings, "select distinct reason from recommendations")}
    assert "personal" in reasons and reasons <= {"personal", "trending", "popular"}
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        named = con.execute("""select count(*) from ml_recommendations r join int_line_items b
                               on b.user_id = r.user_id and b.event_type = 'purchase'
                               and r.reason = 'co_purchase:' || b.item_id""").fetchone()[0]
        medians = dict(
            con.execute("""select user_id, price_median_rub from user_features
                                      where cutoff_at = (select max(cutoff_at) from user_features)""").fetchall()
        )
    assert named > 0  # what the serving file used to show
    profiles = serving_query(settings, "select * from user_profiles")
    assert len(profiles) > 1000 and len(profiles[0]) == 4
    for user_id, _, tier, _ in profiles:
        median = medians[user_id]
        assert (tier is None) == (median is None)
        assert median is None or 2**tier <= median < 2 ** (tier + 1)


@pytest.mark.slow  # runs dbt or the whole flow
def test_ranker_beats_popularity_on_the_holdout(published):
    settings, run = published
    evaluation = json.loads((settings.models_dir / run["model_version"] / "evaluation.json").read_text())
    ranker, popular = evaluation["metrics"]["ranker"], evaluation["metrics"]["popular"]
    assert ranker["ndcg"] > popular["ndcg"] * 1.5
    assert ranker["recall"] > popular["recall"]
    assert evaluation["classifier"]["roc_auc"] > 0.7
    assert {c["param"] for c in evaluation["validation_curves"]} == {"learning_rate", "max_leaf_nodes"}
    # What the report needs to tell the truth: intervals around every list, differences with the
    # gate's list, the curves through the parameters used.
    intervals = evaluation["intervals"]
    assert intervals["lists"]["ranker"]["ndcg"]["low"] < ranker["ndcg"] < intervals["lists"]["ranker"]["ndcg"]["high"]
    assert intervals["reference"] == evaluation["gate"]["list"] == "ranker"
    assert intervals["differences"]["popular"]["ndcg"]["within_noise"] is False
    assert all(c["chosen"] == evaluation["judged_params"][c["param"]] for c in evaluation["validation_curves"])
    page = (settings.models_dir / run["model_version"] / "evaluation.html").read_text()
    assert 'id="tuning"' in page and "Difference from ranker" in page
    importance = {row["feature"]: row["importance_mean"] for row in evaluation["feature_importance"]}
    top = max(importance, key=importance.get)
    # Sense check: what the user did with the item (or how well the item converts) must lead,
    # never a property of the user alone.
    assert top.startswith("user_item_") or top in {
        "history_score",
        "repurchase_score",
        "co_purchase_score",
        "primary_source",
        "item_purchase_rate",
        "item_rebuy_rate",
        "in_top_category",
    }, top
    assert importance["platform"] < importance[top] / 5


@pytest.mark.slow  # runs dbt or the whole flow
def test_expensive_items_of_a_cheap_buyers_category_are_not_recommended(published, demo_export):
    settings, _ = published
    facts = demo_export[1]
    recommended = serving_query(
        settings,
        """
        select r.item_id, i.price_rub, i.category_id from recommendations r
        join items i using (item_id) where r.user_id = ? order by r.rank""",
        [PHONE_BUYER],
    )
    assert len(recommended) == 20
    same_category = [price for _, price, category in recommended if category == facts["category"]]
    assert same_category, "the buyer's category should still be recommended"
    assert max(same_category) < 3 * facts["cheap_median"] < facts["phone_price"]


@pytest.mark.slow  # runs dbt or the whole flow
def test_readers_never_block_and_a_killed_run_keeps_the_old_list(published, demo_export):
    settings, run = published
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(settings.serving_db)], stdout=subprocess.PIPE, text=True
    )
    command = [sys.executable, "-m", "flows.cli", "--home", str(settings.home), "run", "--input", str(demo_export[0])]
    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    new_version = serving_query(settings, "select model_version from publication")[0][0]
    assert new_version != run["model_version"]

    killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(25)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    reader.send_signal(signal.SIGTERM)
    output, _ = reader.communicate(timeout=30)
    stats = json.loads(output.strip().splitlines()[-1])
    assert stats["errors"] == 0 and stats["empty"] == 0 and stats["reads"] > 50
    assert set(stats["versions"]) == {run["model_version"], new_version}
    assert serving_query(settings, "select model_version from publication")[0][0] == new_version
    assert serving_query(settings, "select count(*) from recommendations")[0][0] > 0


READER = """
import json, signal, sys, time
from ml.serving import open_serving
stats = {"reads": 0, "errors": 0, "empty": 0, "versions": []}
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
while running:
    try:
        con = open_serving(sys.argv[1])
        version = con.execute("select model_version from publication").fetchone()[0]
        rows = con.execute("select count(*) from recommendations where user_id = "
                           "(select min(user_id) from recommendations)").fetchone()[0]
        con.close()
        stats["reads"] += 1
        stats["empty"] += rows == 0
        if version not in stats["versions"]:
            stats["versions"].append(version)
    except Exception as error:
        stats["errors"] += 1
        print(repr(error), file=sys.stderr)
    time.sleep(0.05)
print(json.dumps(stats))
"""


def test_nightly_deployment_has_its_schedule_and_the_whole_config(tmp_path):
    """`recsys serve`'s settings are the deployment's parameter; Prefect reads them back as the
    same Config (its own validation, not the environment of the process that runs it)."""
    from flows.pipeline import deployment, recommendation_pipeline

    config = Config(home=tmp_path, top_n=7, gate_margin=0.2, horizon_days=5)
    assert deployment(Config()).schedules[0].schedule.cron == "0 3 * * *"
    scheduled = deployment(config.updated(cron="30 4 * * 1"))
    assert scheduled.name == "nightly-retrain"
    assert [s.schedule.cron for s in scheduled.schedules] == ["30 4 * * 1"]
    assert scheduled.parameters["config"]["top_n"] == 7
    validated = recommendation_pipeline.validate_parameters(scheduled.parameters)["config"]
    assert validated == config.updated(cron="30 4 * * 1")


def test_the_metrics_table_artifact_has_a_row_per_judged_list():
    from ml.pipeline.runs import metrics_table

    run = {
        "published_list": "baseline:popular",
        "metrics": {
            "ranker": {"ndcg": 0.123456, "recall": float("nan"), "n_users": 60},
            "popular": {"ndcg": 0.2, "recall": 0.3, "n_users": 60},
            "classifier": {"roc_auc": 0.7},
            "candidate_recall": 0.5,
        },
    }
    rows = metrics_table(run)
    assert [(row["list"], row["published"]) for row in rows] == [("ranker", False), ("popular", True)]
    assert rows[0]["ndcg"] == 0.1235 and rows[0]["recall"] is None and rows[0]["n_users"] == 60
    assert metrics_table({"status": "failed"}) == []


class InvertedModel(ClassifierMixin, BaseEstimator):
    """A deliberately broken model: a real pipeline whose scores are turned upside down."""

    def __init__(self, inner=None):
        self.inner = inner

    def fit(self, X, y, **fit_params):
        self.inner.fit(X, y, **fit_params)
        self.classes_ = self.inner.classes_
        return self

    def predict_proba(self, X):
        return self.inner.predict_proba(X)[:, ::-1]

    @property
    def named_steps(self):
        return self.inner.named_steps


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_broken_ranker_loses_the_gate_to_the_best_baseline(published, demo_export, monkeypatch):
    """Never publish a list worse than the best simple one: the winning baseline's lists go out."""
    from flows.pipeline import recommendation_pipeline
    from ml.pipeline import runs
    from ml.ranker import training

    settings, _ = published
    real = training.make_classifier
    monkeypatch.setattr(training, "make_classifier", lambda kind, **params: InvertedModel(real(kind, **params)))
    monkeypatch.setattr(runs, "published_ndcg", lambda _settings: None)  # judged as if nothing were published
    run = recommendation_pipeline(Config(home=settings.home, input_path=demo_export[0]))

    assert run["status"] == "published" and run["published_list"].startswith("baseline:"), run.get("reason")
    winner = run["published_list"].removeprefix("baseline:")
    judged = {name: run["metrics"][name]["ndcg"] for name in ("ranker", "popular_tuned", "repurchase", "item_knn")}
    assert max(judged, key=judged.get) == winner and "beats the ranker" in run["reason"]
    assert run["ndcg"] == judged[winner]
    assert serving_query(settings, "select model_version, list_source from publication") == [
        (run["model_version"], run["published_list"])
    ]
    assert serving_query(settings, "select distinct reason from recommendations") == [(run["published_list"],)]
    users, max_rank = serving_query(settings, "select count(distinct user_id), max(rank) from recommendations")[0]
    assert users == run["users_scored"] > 1000 and max_rank == 20
    with duckdb.connect(str(settings.home / "runs.duckdb"), read_only=True) as con:
        logged = con.execute(
            "select status, published_list from model_runs where run_id = ?", [run["run_id"]]
        ).fetchone()
    assert logged == ("published", run["published_list"])


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_list_far_below_the_published_one_is_rejected_and_the_old_list_stays(
    published, demo_export, monkeypatch, capsys
):
    """Through the command, as cron runs it: a rejected run exits 3 and the old list stays."""
    from flows.cli import main
    from ml.pipeline import runs

    settings, _ = published
    before = serving_query(settings, "select model_version, n_rows from publication")[0]
    monkeypatch.setattr(runs, "published_ndcg", lambda _settings: 0.99)
    assert main(["--home", str(settings.home), "run", "--input", str(demo_export[0])]) == 3
    assert "rejected" in capsys.readouterr().out

    assert serving_query(settings, "select model_version, n_rows from publication")[0] == before
    with duckdb.connect(str(settings.home / "runs.duckdb"), read_only=True) as con:
        status, reason = con.execute(
            "select status, reason from model_runs order by started_at desc limit 1"
        ).fetchone()
    assert status == "rejected" and "below the published list's 0.99" in reason


def test_gate_rules():
    from ml.pipeline.gate import gate

    candidates = ["ranker", "repurchase", "popular_tuned"]
    metrics = {"ranker": {"ndcg": 0.20}, "repurchase": {"ndcg": 0.15}, "popular_tuned": {"ndcg": 0.05}}
    assert gate(metrics, None, 0.1, candidates).list_name == "ranker"
    assert gate(metrics, 0.21, 0.1, candidates).publish
    assert not gate(metrics, 0.30, 0.1, candidates).publish
    weak = {**metrics, "ranker": {"ndcg": 0.04}}
    decision = gate(weak, None, 0.1, candidates)
    assert decision.publish and decision.list_name == "repurchase"
    tie = {**metrics, "repurchase": {"ndcg": 0.20}}
    assert gate(tie, None, 0.1, candidates).list_name == "ranker"
    no_ranker = {name: value for name, value in metrics.items() if name != "ranker"}
    assert gate(no_ranker, None, 0.1, candidates).list_name == "repurchase"
    assert not gate({"ranker": {"ndcg": float("nan")}}, None, 0.1, candidates).publish


def _cutoffs(horizon: int, stride: int, labelled: int) -> dict:
    """Cutoffs laid out as ``int_cutoffs`` lays them out."""
    from ml.warehouse.tables import Cutoff

    serve_at = pd.Timestamp("2023-08-31")
    cutoffs = {0: Cutoff(0, serve_at, None)}
    for k in range(1, labelled + 1):
        end = serve_at - pd.Timedelta(days=stride * (k - 1))
        cutoffs[k] = Cutoff(k, end - pd.Timedelta(days=horizon), end)
    return cutoffs


def test_a_model_learns_only_from_windows_that_end_by_the_cutoff_it_is_judged_at():
    from ml.pipeline.steps import windows_before

    end_to_end = _cutoffs(horizon=6, stride=6, labelled=5)
    assert windows_before(end_to_end, [1, 2, 3, 4, 5], 1) == [2, 3, 4, 5]
    assert windows_before(end_to_end, [1, 2, 4, 5], 2) == [4, 5]  # an unusable cutoff is skipped
    overlapping = _cutoffs(horizon=6, stride=3, labelled=5)
    usable = [1, 2, 3, 4, 5]
    assert [windows_before(overlapping, usable, index) for index in usable] == [[3, 4, 5], [4, 5], [5], [], []]


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_thin_export_publishes_the_cold_start_lists(prefect_harness, tmp_path):
    """Two days of events cannot train a ranker; the popular and bought-together lists still go out."""
    from flows.pipeline import recommendation_pipeline
    from ml.serving import open_serving, recommendations_for_user
    from tests.exports import write_export

    rows = []
    for user in range(1, 31):
        platform = ["Site", "Android", "iOS"][user % 3]
        basket = [101, 102] if user % 2 else [101, 103 + user % 4]
        rows.append(event(user, "ec.view_item", basket, "2023-08-01 10:00:00", platform=platform))
        rows.append(event(user, "ec.purchase", basket, "2023-08-01 10:05:00", platform=platform))
        rows.append(event(user, "ec.purchase", [101], "2023-08-02 09:00:00", platform=platform))
    export = write_export(tmp_path / "thin.csv", rows)
    home = tmp_path / "home"

    run = recommendation_pipeline(Config(home=home, input_path=export))

    assert run["status"] == "published_cold_start"
    assert "not enough labelled history" in run["reason"]
    settings = Settings(home=home)
    assert serving_query(settings, "select count(*) from recommendations") == [(0,)]
    con = open_serving(settings.serving_db)
    try:
        for user in ("1", "someone-new"):
            answer = recommendations_for_user(con, user, n=3)
            assert [row["item_id"] for row in answer][:1] == ["101"]
            assert all(row["source"].startswith("fallback:") for row in answer)
        bought_with = [
            row["item_id"] for row in con.execute("select * from related_items('101', 5)").df().to_dict("records")
        ]
        assert "102" in bought_with
    finally:
        con.close()
    with duckdb.connect(str(home / "runs.duckdb"), read_only=True) as con:
        assert con.execute("select status from model_runs").fetchall() == [("published_cold_start",)]


@pytest.mark.slow  # runs dbt or the whole flow
def test_diagnostics_and_the_holdout_run_on_bounded_user_samples(published, demo_export):
    """The search, curves, importance and logistic reference learn from a bounded sample of whole
    users, the holdout, the baselines and the gate judge a bounded sample; the published fit
    learns from every user."""
    from ml.pipeline import runs, steps
    from ml.ranker.scoring import score_serving

    settings, run = published
    full = run["diagnostics"]
    assert full["users"] == full["of"] > 100  # the demo has fewer labelled users than the default bound
    assert f"on {full['users']:,} of {full['of']:,} labelled users" in runs.summary(settings, run)

    config = Config(
        home=settings.home,
        input_path=demo_export[0],
        horizon_days=run["horizon_days"],
        diagnostics_users=100,
        holdout_users=100,
        diagnostics_every_days=0,
    )
    lines: list[str] = []
    outcome = steps.train_and_evaluate(settings, config, "sampled", lines.append)

    record = outcome.evaluation["diagnostics"]
    assert record["users"] == 100 and record["of"] == full["of"]
    assert record["holdout_users"] == 100 and record["holdout_of"] == full["holdout_of"] > 100
    assert set(record["steps"]) == {
        "cross_validation",
        "validation_curves",
        "feature_importance",
        "logistic_regression",
    }
    assert outcome.model.metadata["diagnostics"] == record
    assert all(curve["train_users"] <= 2 * 100 for curve in outcome.evaluation["validation_curves"])  # 2 cutoffs
    metrics = outcome.evaluation["metrics"]
    judged = {metrics[name]["n_users"] for name in ("ranker", "logistic_regression", "repurchase", "item_knn")}
    assert judged == {100}  # every list of the gate on the same sampled users
    assert run["metrics"]["ranker"]["n_users"] == full["holdout_of"]  # under the default bound: every user
    published_card = json.loads((settings.models_dir / run["model_version"] / "model.json").read_text())
    assert outcome.model.metadata["trained_on"]["rows"] == published_card["trained_on"]["rows"]
    assert any(line.startswith("  cross-validation fit 1/") for line in lines)

    lines.clear()
    written = score_serving(settings.build_db, outcome.model.pipeline, 20, lines.append)
    assert lines[-2].startswith(f"  candidates scored {written['candidates']:,}/{written['candidates']:,}, ")
    assert lines[-1].startswith(f"  ranked: the top 20 of {written['users']:,} users, ")


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_run_within_a_week_of_data_reuses_the_last_search_and_skips_the_diagnostics(
    published, demo_export, monkeypatch
):
    """Nightly runs between two searches reuse the chosen parameters (the ranker's and the gate
    baselines' knobs) and say so in model.json, the report and the run summary; data a week newer,
    an older export, or other label windows or K, searches again."""
    from ml.baselines import tuning
    from ml.pipeline import runs, steps

    settings, run = published
    searched = run["diagnostics"]
    assert "cross_validation" in searched["steps"] and searched["model_setting"] == "auto"
    evaluation = json.loads((settings.models_dir / run["model_version"] / "evaluation.json").read_text())
    assert searched["baseline_params"] == evaluation["baseline_params"]  # the search records the baselines' knobs
    config = Config(home=settings.home, input_path=demo_export[0], horizon_days=run["horizon_days"])
    lines: list[str] = []

    def no_tuning(*args, **kwargs):
        raise AssertionError("a run between two searches tuned a baseline")

    monkeypatch.setattr(tuning, "tune", no_tuning)
    outcome = steps.train_and_evaluate(settings, config, "nightly", lines.append)

    record = outcome.evaluation["diagnostics"]
    assert record["steps"] == [] and record["reused_from"]["run_id"] == run["run_id"]
    assert record["judged_params"] == searched["judged_params"] and record["final_params"] == searched["final_params"]
    assert record["baseline_params"] == outcome.evaluation["baseline_params"] == searched["baseline_params"]
    assert outcome.model.params == searched["final_params"] and outcome.model.metadata["diagnostics"] == record
    assert outcome.model.kind == record["model_kind"] == searched["model_kind"]  # the family is reused too
    assert "validation_curves" not in outcome.evaluation and "feature_importance" not in outcome.evaluation
    assert "logistic_regression" not in outcome.evaluation["metrics"] and "cross_validation" not in outcome.seconds
    assert outcome.evaluation["metrics"]["ranker"]["n_users"] == run["metrics"]["ranker"]["n_users"]
    assert any(run["run_id"] in note for note in outcome.evaluation["notes"])
    assert not any("cross-validation fit" in line or "validation-curve fit" in line for line in lines)
    judged_baselines = [line for line in lines if line.startswith("  baseline ")]  # progress of every step
    assert len(judged_baselines) == len(tuning.gate_specs()) and all(
        "(knobs reused)" in line for line in judged_baselines
    )
    assert any(line.startswith("  judged on the holdout in ") for line in lines)
    assert any(line.startswith(f"  diagnostics not run: parameters of run {run['run_id']}") for line in lines)
    assert runs.describe_diagnostics(record).startswith(f"not run: parameters of run {run['run_id']}")

    week = pd.Timedelta(days=config.diagnostics_every_days)
    as_of = pd.Timestamp(run["as_of"])
    recipe = searched["search_recipe"]
    assert recipe == {"horizon_days": run["horizon_days"], "labelled_cutoffs": 3, "cutoffs_per_horizon": 1, "k": 10}
    assert record["search_recipe"] == recipe

    def reusable(setting: Config, serve_at: pd.Timestamp, **changed: int) -> dict | None:
        return steps.reusable_search(settings, setting, serve_at, {**recipe, **changed})

    assert reusable(config, as_of + week - pd.Timedelta(seconds=1))["run_id"] == run["run_id"]
    assert reusable(config, as_of + week) is None
    assert reusable(config, as_of - pd.Timedelta(days=1)) is None
    assert reusable(config.updated(diagnostics_every_days=0), as_of) is None
    assert reusable(config.updated(model_kind="logreg"), as_of) is None
    assert reusable(config.updated(model_kind="hgb"), as_of) is None
    for changed in (
        {"horizon_days": recipe["horizon_days"] + 1},
        {"labelled_cutoffs": 5},
        {"cutoffs_per_horizon": 2},
        {"k": 20},
    ):
        assert reusable(config, as_of, **changed) is None  # parameters chosen for other windows or another K


@pytest.mark.slow  # runs dbt or the whole flow
def test_the_model_family_is_chosen_on_the_folds_before_the_holdout(published):
    """Under ``auto`` both families are searched on the same folds; the one with the best mean
    over the folds that never validate on cutoff 1 is fitted, judged and published."""
    settings, run = published
    evaluation = json.loads((settings.models_dir / run["model_version"] / "evaluation.json").read_text())
    card = json.loads((settings.models_dir / run["model_version"] / "model.json").read_text())
    choice = evaluation["diagnostics"]["family_choice"]
    assert set(choice["families"]) == {"hgb", "logreg"} and choice["folds"]
    assert not any(fold.endswith("->1") for fold in choice["folds"])
    means = {kind: family["mean"] for kind, family in choice["families"].items()}
    assert choice["chosen"] == max(means, key=means.get) == evaluation["diagnostics"]["model_kind"] == card["kind"]
    assert {row["kind"] for row in evaluation["cross_validation"]} == {"hgb", "logreg"}
    for kind, family in choice["families"].items():  # each family's best grid point on those folds
        rows = [row["fold_scores"] for row in evaluation["cross_validation"] if row["kind"] == kind]
        best = max(rows, key=lambda scores: np.mean([scores[fold] for fold in choice["folds"]]))
        assert family["fold_scores"] == {fold: best[fold] for fold in choice["folds"]}
    page = (settings.models_dir / run["model_version"] / "evaluation.html").read_text()
    assert "Model family, chosen on the folds before the holdout" in page


def test_dbt_nodes_are_logged_with_n_of_total_and_an_estimate():
    from ml.pipeline import steps

    lines: list[str] = []
    on_node = steps._dbt_progress(lines.append)
    on_node("stg_ab_test__events", "success", 1.25, 1, 4)
    on_node("candidates", "success", 0.5, 4, 4)
    assert lines[0].startswith("  dbt nodes 1/4, ") and ", ETA " in lines[0]
    assert lines[0].endswith(": stg_ab_test__events success (1.2 s)") and "ETA" not in lines[1]


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_nightly_run_on_daily_files_publishes_what_a_cold_run_on_the_same_days_does(prefect_harness, tmp_path):
    """One file a day: the night's run stages only the new day and publishes the same lists as
    a cold run over the same files (same seed; both search, as a week's first night does)."""
    from flows.pipeline import recommendation_pipeline
    from ml.data.export import split_by_day

    export = tmp_path / "ab_test.csv"
    generate_export(GeneratorConfig(rows=60_000, seed=11, with_categories=True), export)
    days = split_by_day(export, tmp_path / "days")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for day in days[:-1]:
        shutil.copy2(day, incoming / day.name)

    def run(home: Path) -> tuple[dict, pd.DataFrame]:
        outcome = recommendation_pipeline(
            Config(home=home, input_path=incoming, horizon_days=3, diagnostics_every_days=0, min_holdout_buyers=20)
        )
        with duckdb.connect(str(Settings(home=home).serving_db), read_only=True) as con:
            lists = con.execute("select user_id, item_id, rank, score, reason from recommendations").df()
        return outcome, lists.sort_values(["user_id", "rank"], ignore_index=True)

    first, _ = run(tmp_path / "nightly")
    shutil.copy2(days[-1], incoming / days[-1].name)
    nightly, nightly_lists = run(tmp_path / "nightly")
    cold, cold_lists = run(tmp_path / "cold")

    assert first["status"] == nightly["status"] == cold["status"] == "published"
    assert nightly["as_of"] == cold["as_of"] > first["as_of"]
    assert nightly["rows_exported"] == cold["rows_exported"] == 60_000
    pd.testing.assert_frame_equal(nightly_lists, cold_lists)
