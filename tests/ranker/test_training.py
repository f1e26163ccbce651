"""Training on degenerate frames: what real exports produce must never crash a fit.

Purchase-only logs leave view and cart features empty, 8-column exports have no category,
some exports one platform, a short window one buyer, and a candidate source can yield nothing.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from ml.ranker import models
from ml.ranker.features import CATEGORICAL, FEATURES, LABEL, uninformative
from ml.ranker.models import features_used, scores
from ml.ranker.training import LabelledSet, NotEnoughHistory, fit


def candidate_frame(users: int = 60, per_user: int = 15, seed: int = 0) -> pd.DataFrame:
    """Candidates with every feature filled, labels driven by ``user_item_purchases``."""
    rng = np.random.default_rng(seed)
    n = users * per_user
    frame = pd.DataFrame({name: rng.gamma(2.0, 1.0, n) for name in FEATURES if name not in CATEGORICAL})
    frame["platform"] = rng.choice(["Site", "Android", "iOS"], n).astype(object)
    frame["primary_source"] = rng.choice(["history", "co_purchase", "category", "popular"], n).astype(object)
    frame["item_category"] = rng.choice([f"c{i}" for i in range(8)], n).astype(object)
    frame["price_above_tier"] = np.clip(rng.normal(0, 1, n), 0, None)
    frame["user_item_purchases"] = rng.poisson(0.5, n).astype(float)
    frame["user_id"] = np.repeat([f"u{i}" for i in range(users)], per_user).astype(object)
    frame["item_id"] = [f"i{i}" for i in range(n)]
    frame["anchor_item_id"] = np.nan
    chance = 0.05 + 0.4 * (frame["user_item_purchases"] > 0)
    frame[LABEL] = (rng.random(n) < chance).astype(int)
    return frame


def purchases_only(frame: pd.DataFrame) -> pd.DataFrame:
    views = ["user_views", "user_carts", "user_item_views", "user_item_carts"]
    return frame.assign(**{name: 0.0 for name in views}, item_cart_rate=0.1)


def no_categories(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(item_category=np.nan, category_score=np.nan, user_category_share=0.0, in_top_category=0.0)


def no_co_purchase(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(
        co_purchase_score=np.nan, primary_source=frame["primary_source"].replace("co_purchase", "history")
    )


def one_platform(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(platform="iOS")


def one_buyer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["user_id"] == "u0"].assign(**{LABEL: [1, 0] * 7 + [1]})


VARIANTS = {
    "purchases only": (
        purchases_only,
        {"user_views": "constant", "user_item_carts": "constant", "item_cart_rate": "constant"},
    ),
    "no category columns": (
        no_categories,
        {"item_category": "all missing", "category_score": "all missing", "user_category_share": "constant"},
    ),
    "a source yields nothing": (no_co_purchase, {"co_purchase_score": "all missing"}),
    "one platform": (one_platform, {"platform": "constant"}),
    "everything at once": (
        lambda f: one_platform(no_co_purchase(no_categories(purchases_only(f)))),
        {"platform": "constant", "item_category": "all missing"},
    ),
}


@pytest.mark.parametrize("kind", ["hgb", "logreg"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_degenerate_frames_fit_and_score(variant, kind):
    make, expected = VARIANTS[variant]
    frame = make(candidate_frame())
    dropped = uninformative(frame)
    assert expected.items() <= dropped.items()

    model = fit(kind, {}, LabelledSet(1, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]]))

    used = features_used(model)
    assert not set(used) & set(dropped) and "user_item_purchases" in used
    predicted = scores(model, frame)
    assert np.isfinite(predicted).all() and predicted.std() > 0


def test_a_window_with_one_buyer_still_fits():
    frame = one_buyer(candidate_frame())
    model = fit("hgb", {}, LabelledSet(1, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]]))
    assert np.isfinite(scores(model, frame)).all()


def test_scores_predicted_in_slices_equal_one_prediction_of_the_whole_frame(monkeypatch):
    frame = candidate_frame()
    model = fit("hgb", {}, LabelledSet(1, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]]))
    whole = scores(model, frame)
    monkeypatch.setattr(models, "PREDICT_ROWS", 7)
    assert len(frame) > 7 * 3 and len(frame) % 7
    np.testing.assert_array_equal(scores(model, frame), whole)
    assert scores(model, frame.iloc[:0]).shape == (0,)


def test_informative_columns_with_gaps_are_kept():
    frame = candidate_frame().assign(user_item_cycle_position=np.nan)
    frame.loc[::7, "user_item_cycle_position"] = 1.0  # present or absent is itself a signal
    assert "user_item_cycle_position" not in uninformative(frame)


def test_a_frame_where_nothing_varies_is_not_enough_history():
    frame = candidate_frame()
    for name in FEATURES:
        frame[name] = np.nan
    with pytest.raises(NotEnoughHistory):
        fit("hgb", {}, LabelledSet(1, frame, frame[["user_id", "item_id"]]))


def test_validation_curves_pass_through_the_chosen_parameters(monkeypatch):
    from ml.ranker import training
    from ml.ranker.models import DEFAULT_PARAMS

    fitted = []
    monkeypatch.setattr(training, "fit", lambda kind, params, data: fitted.append(params) or fit(kind, params, data))
    frame = candidate_frame()
    data = LabelledSet(2, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]])
    params = {**DEFAULT_PARAMS["hgb"], "learning_rate": 0.15, "max_leaf_nodes": 15, "max_iter": 10}
    lines = []
    curves = {
        curve["param"]: curve
        for curve in training.validation_curves("hgb", params, data, data, k=5, max_users=40, log=lines.append)
    }
    assert curves["learning_rate"]["chosen"] == 0.15 and 0.15 in curves["learning_rate"]["values"]
    assert curves["max_leaf_nodes"]["values"] == [4, 15, 63]  # already on the curve: not added twice
    assert all(len(c["valid_score"]) == len(c["values"]) and c["train_users"] == 40 for c in curves.values())
    # The chosen parameters are on both curves, fitted once: 4 + 3 points, 6 fits.
    assert len(fitted) == 6 and fitted.count(params) == 1
    assert [line.split(",")[0] for line in lines] == [f"  validation-curve fit {i}/6" for i in range(1, 7)]
    assert "ETA" in lines[0] and "ETA" not in lines[-1] and "train ndcg@5" in lines[-1]
    at_chosen = [
        (c["train_score"][c["values"].index(c["chosen"])], c["valid_score"][c["values"].index(c["chosen"])])
        for c in curves.values()
    ]
    assert at_chosen[0] == at_chosen[1]


def test_the_user_sample_is_deterministic_and_keeps_whole_users():
    from ml.evaluation.splitting import user_sample

    frame = candidate_frame(users=200)
    data = LabelledSet(1, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]])
    sampled = data.sample_users(50, seed=7)
    users = set(sampled.frame["user_id"])
    assert len(users) == 50 and users == set(data.sample_users(50, seed=7).frame["user_id"])
    assert users != set(data.sample_users(50, seed=8).frame["user_id"])  # the seed chooses the sample
    assert len(sampled.frame) == len(frame[frame["user_id"].isin(users)])  # every row of a sampled user
    assert set(sampled.truth["user_id"]) <= users
    # Whether a user is in depends on the user and the seed alone: a bigger export can displace
    # users from the sample, never bring in others of the smaller one.
    small = pd.Index(frame["user_id"].unique())
    bigger = small.append(pd.Index([f"u{i}" for i in range(200, 400)]))
    assert set(user_sample(bigger, 100, seed=7)) & set(small) <= set(user_sample(small, 100, seed=7))
    assert data.sample_users(500) is data  # fewer users than the bound: nothing is dropped


def test_weighted_bins_are_the_ones_the_trees_would_choose_with_the_weights():
    """The pre-binning only saves time: the same thresholds, the same model, the same scores."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from ml.ranker.models import WeightedBins
    from ml.ranker.training import user_balanced_weights

    frame = candidate_frame(users=300, per_user=20)  # 6,000 rows: more distinct values than bins
    numbers = frame[["item_popularity", "user_item_purchases", "price_above_tier"]].copy()
    numbers.loc[::9, "item_popularity"] = np.nan
    weights = user_balanced_weights(frame)

    def trees() -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(max_iter=20, early_stopping=False, random_state=0)

    direct = trees().fit(numbers, frame[LABEL], sample_weight=weights)
    bins = WeightedBins().fit(numbers, sample_weight=weights)
    binned = trees().fit(bins.transform(numbers), frame[LABEL], sample_weight=weights)

    for ours, theirs in zip(bins.thresholds_, direct._bin_mapper.bin_thresholds_):
        np.testing.assert_allclose(ours, theirs)
    assert len(bins.thresholds_[0]) == 254  # the quantile branch, not one threshold per value
    np.testing.assert_allclose(
        binned.predict_proba(bins.transform(numbers)), direct.predict_proba(numbers), rtol=0, atol=1e-12
    )


def test_the_search_logs_each_fit_with_n_of_total():
    from ml.ranker.training import search_params

    frame = candidate_frame()
    data = LabelledSet(2, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]])
    lines: list[str] = []
    search_params("hgb", {"learning_rate": [0.1, 0.2], "max_iter": [5]}, [(data, data)], k=5, log=lines.append)
    assert [line.split(",")[0].strip() for line in lines] == ["cross-validation fit 1/2", "cross-validation fit 2/2"]
    assert "ETA" in lines[0] and "ETA" not in lines[1]


def test_fits_side_by_side_give_the_results_of_fits_one_by_one(monkeypatch):
    """The search and the curves fit one model per core; the scores and their order are those of
    fitting one after the other."""
    from ml.ranker import training

    frames = [candidate_frame(seed=seed) for seed in (0, 1)]
    older, newer = (LabelledSet(i + 2, f, f[f[LABEL] == 1][["user_id", "item_id"]]) for i, f in enumerate(frames))
    grid = {"learning_rate": [0.1, 0.3], "max_leaf_nodes": [4, 15], "max_iter": [10]}
    params = {**training.DEFAULT_PARAMS["hgb"], "max_iter": 10}
    threads: set[str] = set()
    fit = training.fit
    monkeypatch.setattr(training, "fit", lambda *args: threads.add(threading.current_thread().name) or fit(*args))

    def run(workers: int):
        monkeypatch.setattr(training, "fit_workers", lambda: workers)
        search = training.search_params("hgb", grid, [(older, newer), (newer, older)], k=5, log=lambda line: None)
        curves = training.validation_curves("hgb", params, older, newer, k=5, log=lambda line: None)
        return search, curves

    side_by_side = run(3)
    assert len(threads) > 1
    threads.clear()
    one_by_one = run(1)
    assert threads == {threading.main_thread().name}
    assert side_by_side == one_by_one
    assert [list(result.fold_scores) for result in side_by_side[0]] == [[(2, 3), (3, 2)]] * 4


def test_progress_reports_done_of_total_with_an_estimate():
    from ml.progress import Progress, duration

    lines: list[str] = []
    progress = Progress("users scored", 4_000, lines.append)
    progress.update(1_000, "250,000 candidates")
    assert lines[0].startswith("  users scored 1,000/4,000, ") and ", ETA " in lines[0]
    assert lines[0].endswith(": 250,000 candidates")
    assert [duration(s) for s in (5, 65, 3725)] == ["5 s", "1 min 05 s", "1 h 02 min"]


def test_the_family_is_the_argmax_of_the_mean_fold_scores_with_its_wins():
    from ml.ranker.training import choose_family

    choice = choose_family({"hgb": {(4, 3): 0.20, (3, 2): 0.10}, "logreg": {(4, 3): 0.15, (3, 2): 0.16}})
    assert choice["chosen"] == "logreg" and choice["folds"] == ["4->3", "3->2"]
    assert choice["families"]["logreg"] == {"fold_scores": {"4->3": 0.15, "3->2": 0.16}, "mean": 0.155, "folds_won": 1}
    assert choice["families"]["hgb"]["mean"] == pytest.approx(0.15) and choice["families"]["hgb"]["folds_won"] == 1
    assert choice["reason"].startswith("logreg: best mean NDCG over the 2 fold(s)") and "won 1 of 2" in choice["reason"]
    tie = choose_family({"hgb": {(3, 2): 0.1}, "logreg": {(3, 2): 0.1}})
    assert tie["chosen"] == "hgb"  # the family named first
    nothing = choose_family({"hgb": {}, "logreg": {}})
    assert nothing["chosen"] == "hgb" and nothing["folds"] == [] and "no fold before the holdout" in nothing["reason"]


def test_the_holdout_fold_never_sways_the_family_only_the_published_knobs():
    """A family far better on the fold that validates on cutoff 1 (the holdout) but worse on the
    folds before it is not chosen; the holdout fold still tunes the chosen family's published
    knobs, as it did before."""
    from ml.pipeline.steps import choose_on_folds
    from ml.ranker.training import SearchResult, best_params

    searches = {
        "hgb": [
            SearchResult("hgb", {"learning_rate": 0.05}, {(3, 2): 0.12, (2, 1): 0.10}),
            SearchResult("hgb", {"learning_rate": 0.15}, {(3, 2): 0.11, (2, 1): 0.13}),
        ],
        "logreg": [SearchResult("logreg", {"C": 1.0}, {(3, 2): 0.11, (2, 1): 0.99})],
    }
    choice = choose_on_folds(searches)
    assert choice["chosen"] == "hgb" and choice["folds"] == ["3->2"]
    assert choice["families"]["hgb"]["fold_scores"] == {"3->2": 0.12}  # its best point on those folds
    assert best_params("hgb", searches["hgb"])["learning_rate"] == 0.15  # the published model's, all folds
    searches["logreg"][0].fold_scores[(2, 1)] = 0.0
    assert choose_on_folds(searches) == choice


def test_auto_searches_both_families_on_the_same_folds_and_only_the_chosen_one_on_the_holdout():
    """The choice is the argmax of the recorded means; the holdout fold (-> 1) is scored only
    for the chosen family, after the choice, to tune its published knobs."""
    from ml.config import Config
    from ml.pipeline.steps import search_families

    def labelled(index: int, seed: int) -> LabelledSet:
        frame = candidate_frame(seed=seed)
        return LabelledSet(index, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]])

    older, middle, holdout = labelled(3, 1), labelled(2, 2), labelled(1, 3)
    folds = [(LabelledSet.pooled([older, middle]), holdout), (older, middle)]
    searches, choice = search_families(Config(model_kind="auto"), folds, lambda line: None)
    means = {kind: family["mean"] for kind, family in choice["families"].items()}
    best = {kind: max(r.fold_scores[(3, 2)] for r in results) for kind, results in searches.items()}
    assert choice["folds"] == ["3->2"] and means == best and choice["chosen"] == max(means, key=means.get)
    other = ({"hgb", "logreg"} - {choice["chosen"]}).pop()
    assert all(set(r.fold_scores) == {(3, 2), (2, 1)} for r in searches[choice["chosen"]])
    assert all(set(r.fold_scores) == {(3, 2)} for r in searches[other])
    alone, only = search_families(Config(model_kind="logreg"), folds, lambda line: None)
    assert set(alone) == {"logreg"} and only["chosen"] == "logreg" and set(only["families"]) == {"logreg"}


def test_the_model_kind_setting_is_checked_and_auto_searches_both_families():
    from ml.config import Config, ConfigError
    from ml.pipeline.steps import families

    assert Config().model_kind == "auto" and families(Config()) == ("hgb", "logreg")
    assert families(Config(model_kind="logreg")) == ("logreg",)
    with pytest.raises(ConfigError, match="--model-kind"):
        Config(model_kind="trees")


@pytest.mark.parametrize("kind", ["hgb", "logreg"])
def test_permutation_importance_equals_scikit_learns_on_the_whole_pipeline(kind):
    """Shuffling a feature's prepared columns (one-hot, missing indicators) is shuffling the feature."""
    from sklearn.inspection import permutation_importance

    from ml.ranker.training import feature_importance

    frame = candidate_frame(users=80).assign(user_views=0.0)  # a constant feature: not used
    frame.loc[::5, "user_item_purchases"] = np.nan  # a missing-value indicator for logistic regression
    ios_buys = (frame["platform"] == "iOS") & (np.arange(len(frame)) % 3 == 0)
    frame[LABEL] = frame[LABEL] | ios_buys.astype(int)  # a one-hot feature the models use
    data = LabelledSet(1, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]])
    model = fit(kind, {}, data)
    lines = []
    ours = {row["feature"]: row for row in feature_importance(model, data, max_rows=500, n_repeats=3, log=lines.append)}
    assert len(lines) == 4 and lines[-1].startswith(
        f"  permutation importance, features {len(FEATURES)}/{len(FEATURES)}, "
    )

    rows = frame.sample(n=500, random_state=0)
    reference = permutation_importance(
        model, rows[FEATURES], rows[LABEL], scoring="average_precision", n_repeats=3, random_state=0
    )
    for name, mean, std in zip(FEATURES, reference.importances_mean, reference.importances_std):
        assert ours[name]["importance_mean"] == pytest.approx(mean, abs=1e-12), name
        assert ours[name]["importance_std"] == pytest.approx(std, abs=1e-12), name
    assert ours["user_views"]["importance_mean"] == 0.0
    assert abs(ours["user_item_purchases"]["importance_mean"]) > 0.01 and abs(ours["platform"]["importance_mean"]) > 0


def test_a_model_fitted_beside_another_fit_is_the_model_fitted_alone():
    """train_and_evaluate fits the published model in a thread while the judged one is fitted."""
    from concurrent.futures import ThreadPoolExecutor

    frame = candidate_frame(users=120)
    data = LabelledSet(1, frame, frame[frame[LABEL] == 1][["user_id", "item_id"]])
    other = LabelledSet(2, candidate_frame(users=120, seed=1), frame.iloc[:0][["user_id", "item_id"]])
    alone = scores(fit("hgb", {}, data), frame)
    with ThreadPoolExecutor(max_workers=1) as background:
        beside = background.submit(fit, "hgb", {}, data)
        fit("hgb", {"max_leaf_nodes": 63}, other)
        np.testing.assert_array_equal(scores(beside.result(), frame), alone)
