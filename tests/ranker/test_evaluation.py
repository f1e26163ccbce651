"""The classifier's curves and score histogram in the evaluation: what the report draws."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve, roc_curve

from ml.ranker.holdout import _classifier_metrics, _score_histogram, classifier_curves


def _scored(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Purchase probabilities as candidates have them: mostly tiny, 3 % bought."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.03).astype(int)
    scores = np.clip(rng.beta(0.5, 30, n) * np.where(labels == 1, 6, 1), 0, 1)
    return labels, scores


def test_curves_are_thinned_and_place_the_threshold_on_them():
    labels, scores = _scored()
    metrics = _classifier_metrics(labels, scores, threshold=0.05)
    curves = classifier_curves(labels, scores, threshold=0.05)
    roc, pr = curves["roc"], curves["pr"]
    assert len(roc["fpr"]) <= 202 and len(pr["recall"]) <= 202
    # Evenly along the curve: no gap between two kept points is longer than a few average steps
    # beyond the longest straight segment of the full curve.
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    for (xs, ys), (full_x, full_y) in (
        ((roc["fpr"], roc["tpr"]), (fpr, tpr)),
        ((pr["recall"], pr["precision"]), (recall, precision)),
    ):
        full = np.hypot(np.diff(full_x), np.diff(full_y))
        assert np.hypot(np.diff(xs), np.diff(ys)).max() <= full.max() + 3 * full.sum() / 200
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert curves["at_threshold"]["tpr"] == pytest.approx(metrics["recall"])
    assert curves["at_threshold"]["precision"] == pytest.approx(metrics["precision"])
    assert curves["positive_rate"] == pytest.approx(labels.mean())
    assert classifier_curves(np.zeros(5, dtype=int), np.linspace(0, 1, 5), 0.5) == {}


def test_score_histogram_bins_are_log_spaced_and_show_the_spread():
    labels, scores = _scored()
    histogram = _score_histogram(labels, scores)
    edges = np.array(histogram["bins"])
    assert histogram["scale"] == "log" and edges[-1] == pytest.approx(1.0)
    assert np.allclose(edges[1:] / edges[:-1], edges[1] / edges[0])  # a constant ratio
    counts = np.array(histogram["negative"]) + np.array(histogram["positive"])
    assert counts.sum() == len(scores)  # scores below the first edge are counted in the first bin
    assert counts.max() < 0.25 * len(scores)  # linear bins put ~90 % of these in the first bin
