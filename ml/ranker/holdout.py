"""The ranker judged on the newest labelled window: list metrics, classifier metrics, candidate recall.

The model judged here is trained one horizon earlier than the window it is judged on, with the
same recipe as the model that is then published; the popularity list it must beat is computed
at the same cutoff. Evaluated users: users with history who bought in the window ("warm").
Buyers without history are cold users: they get the fallback list and are reported apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from ml.evaluation.metrics import HistorySummary, ListScores, evaluate_lists, score_lists
from ml.ranker.features import LABEL
from ml.ranker.ranking import top_k

SOURCES = ["history", "repurchase", "co_purchase", "category", "trending", "popular"]

PILOT_TARGETS = {
    "missed_offer_share": {
        "target": 0.20,
        "direction": "max",
        "definition": "Of the (user, item) purchases in the window by evaluated users, the share "
        "that was not in the user's top-K list: 1 - hits / purchases, pooled.",
    },
    "offer_precision": {
        "target": 0.70,
        "direction": "min",
        "definition": "Of the items offered in the evaluated users' top-K lists, the share the "
        "user bought in the window: hits / offered items, pooled (micro precision@K).",
    },
    "roc_auc": {
        "target": 0.85,
        "direction": "min",
        "definition": "ROC AUC of the suitable / not-suitable classifier over all candidate rows "
        "of the window (positive = bought in the window).",
    },
}


def ranking_scores(
    frame: pd.DataFrame,
    model_scores: np.ndarray,
    truth: pd.DataFrame,
    history: pd.DataFrame | HistorySummary,
    k: int,
    catalogue: int | None = None,
) -> ListScores:
    """The list metrics (and their per-user values) of the top-``k`` lists ranked by
    ``model_scores``, over the warm users (the users of ``frame``): what a reference model is
    compared on. ``catalogue``: the items coverage divides by (default: those in ``history``)."""
    warm_users = pd.Index(frame["user_id"].unique())
    return score_lists(
        top_k(frame, model_scores, k),
        truth[truth["user_id"].isin(warm_users)],
        history,
        k,
        catalogue,
        users=warm_users,
    )


def evaluate_holdout(
    frame: pd.DataFrame,
    model_scores: np.ndarray,
    truth: pd.DataFrame,
    history: pd.DataFrame | HistorySummary,
    popular: pd.DataFrame,
    k: int,
    catalogue: int | None = None,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Every number of the evaluation report for one scored window (see module docstring), and
    the per-user metric values of the ``ranker`` and ``popular`` lists (for bootstrap intervals).
    ``catalogue``: the items coverage divides by (default: those in ``history``)."""
    warm_users = pd.Index(frame["user_id"].unique())
    warm_truth = truth[truth["user_id"].isin(warm_users)]
    cold_truth = truth[~truth["user_id"].isin(warm_users)]
    history = HistorySummary.of(history)
    if catalogue is None:
        catalogue = history.items

    lists = {
        "ranker": ranking_scores(frame, model_scores, truth, history, k, catalogue),
        "popular": score_lists(
            _same_list_for_all(popular, warm_users), warm_truth, history, k, catalogue, users=warm_users
        ),
    }
    metrics = {name: scored.metrics for name, scored in lists.items()}
    cold_users = pd.Index(cold_truth["user_id"].unique())
    cold = (
        evaluate_lists(_same_list_for_all(popular, cold_users), cold_truth, history, k, catalogue, users=cold_users)
        if len(cold_users)
        else {"n_users": 0}
    )

    labels = frame[LABEL].to_numpy()
    classifier = _classifier_metrics(labels, model_scores)
    pilot = {}
    for name, spec in PILOT_TARGETS.items():
        value = classifier["roc_auc"] if name == "roc_auc" else metrics["ranker"][name]
        passed = value <= spec["target"] if spec["direction"] == "max" else value >= spec["target"]
        pilot[name] = {**spec, "value": value, "passed": bool(passed)}

    return {
        "split": {
            "k": k,
            "warm_users": len(warm_users),
            "cold_users": len(cold_users),
            "candidate_rows": len(frame),
            "window_purchases": len(truth),
        },
        "metrics": metrics,
        "cold_users": cold,
        "classifier": classifier,
        "classifier_curves": classifier_curves(labels, model_scores, classifier["threshold"]),
        "pilot": pilot,
        "candidate_recall": candidate_recall(frame, warm_truth),
        "score_distribution": _score_histogram(labels, model_scores),
    }, {name: scored.per_user for name, scored in lists.items()}


def candidate_recall(frame: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """Share of the window's purchases (by users with candidates) that the candidates contain,
    overall and per source: the ceiling of any ranking of these candidates."""
    if truth.empty:
        return {"all": float("nan"), "by_source": {}}
    hits = truth.merge(frame, on=["user_id", "item_id"], how="left", indicator=True)
    found = hits["_merge"] == "both"
    by_source = {source: float((found & hits[f"{source}_score"].notna()).mean()) for source in SOURCES}
    return {"all": float(found.mean()), "by_source": by_source}


def _same_list_for_all(popular: pd.DataFrame, users: pd.Index) -> pd.DataFrame:
    if len(users) == 0 or popular.empty:
        return pd.DataFrame(columns=["user_id", "item_id", "rank", "score"])
    lists = pd.DataFrame({"user_id": np.repeat(users.to_numpy(), len(popular))})
    lists["item_id"] = np.tile(popular["item_id"].to_numpy(), len(users))
    lists["rank"] = np.tile(popular["rank"].to_numpy(), len(users))
    lists["score"] = -lists["rank"].astype(float)
    return lists


def _classifier_metrics(labels: np.ndarray, model_scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    if labels.min() == labels.max():
        return {
            "roc_auc": float("nan"),
            "average_precision": float("nan"),
            "precision": float("nan"),
            "recall": float("nan"),
            "threshold": threshold,
        }
    predicted = model_scores >= threshold
    return {
        "roc_auc": float(roc_auc_score(labels, model_scores)),
        "average_precision": float(average_precision_score(labels, model_scores)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "threshold": threshold,
        "positive_rate": float(labels.mean()),
    }


def classifier_curves(
    labels: np.ndarray, model_scores: np.ndarray, threshold: float, points: int = 200
) -> dict[str, Any]:
    """ROC and precision-recall curves, each thinned to about ``points`` points for the report,
    and where the ``threshold`` of the classifier metrics lies on them."""
    if labels.min() == labels.max():
        return {}
    fpr, tpr, _ = roc_curve(labels, model_scores)
    precision, recall, _ = precision_recall_curve(labels, model_scores)
    fpr, tpr = _thin(fpr, tpr, points)
    recall, precision = _thin(recall, precision, points)
    predicted = model_scores >= threshold
    negatives = labels == 0
    return {
        "roc": {"fpr": fpr, "tpr": tpr},
        "pr": {"recall": recall, "precision": precision},
        "positive_rate": float(labels.mean()),
        "threshold": threshold,
        "at_threshold": {
            "fpr": float(predicted[negatives].mean()),
            "tpr": float(predicted[~negatives].mean()),
            "precision": float(labels[predicted].mean()) if predicted.any() else None,
        },
    }


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> tuple[list[float], list[float]]:
    """About ``points`` points evenly spaced along the curve (not along its thresholds: most
    thresholds crowd where scores are low), both ends kept, rounded for a small JSON."""
    along = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    keep = np.unique(
        np.concatenate([np.searchsorted(along, np.linspace(0.0, along[-1], points)), [0, len(x) - 1]]).clip(
            0, len(x) - 1
        )
    )
    return np.round(x[keep], 5).tolist(), np.round(y[keep], 5).tolist()


def _score_histogram(labels: np.ndarray, model_scores: np.ndarray, bins: int = 30) -> dict[str, Any]:
    """Counts of bought and not-bought pairs in log-spaced score bins.

    Purchase probabilities are mostly tiny (a few % of candidates are bought): linear bins put
    nearly everything in the first one. The bins span the decades from the 0.1 % quantile of
    the scores (rounded down to a power of ten) to 1; lower scores are counted in the first bin.
    """
    positive = model_scores[model_scores > 0]
    low = 10.0 ** np.floor(np.log10(np.quantile(positive, 0.001))) if len(positive) else 1e-4
    edges = np.geomspace(low, 1.0, bins + 1)
    clipped = np.clip(model_scores, low, 1.0)
    return {
        "bins": edges.tolist(),
        "scale": "log",
        "clipped_below": float(low),
        "positive": np.histogram(clipped[labels == 1], edges)[0].tolist(),
        "negative": np.histogram(clipped[labels == 0], edges)[0].tolist(),
    }
