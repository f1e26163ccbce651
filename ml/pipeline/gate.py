"""The quality gate: which list a run publishes, if any.

The ranker and the tuned simple baselines are judged on the same warm buyers of the newest
labelled window; the best one is published unless it is more than a margin below the list the
marketplace reads now. An export too thin to train on publishes cold-start lists, but never over
a published ranker's or baseline's lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class GateDecision:
    """Whether to publish, why, and which list: ``ranker``, a baseline's name or ``cold_start``."""

    publish: bool
    reason: str
    list_name: str | None = None

    @property
    def list_source(self) -> str | None:
        """How the publication names its personal lists: ``ranker``, ``baseline:<name>``, ``cold_start``."""
        if self.list_name in (None, "ranker", "cold_start"):
            return self.list_name
        return f"baseline:{self.list_name}"

    @property
    def status(self) -> str:
        """The run's status once its list is published (or not): the run log's ``status``."""
        if not self.publish:
            return "rejected"
        return "published_cold_start" if self.list_name == "cold_start" else "published"


def gate(
    metrics: dict[str, dict[str, Any]], published_ndcg: float | None, margin: float, candidates: list[str]
) -> GateDecision:
    """Publish the best of ``candidates`` on the holdout (NDCG@K), unless it is more than
    ``margin`` below the list now published.

    The ranker and the tuned simple baselines are judged on the same warm buyers, so a run on
    data where the ranker cannot win still publishes the best list available. Ties go to the
    first candidate (the ranker).
    """
    judged = [
        (name, metrics[name]["ndcg"])
        for name in candidates
        if name in metrics and np.isfinite(metrics[name].get("ndcg", np.nan))
    ]
    if not judged:
        return GateDecision(False, "no list could be judged on the holdout window")
    best, best_ndcg = max(judged, key=lambda pair: pair[1])
    others = [pair for pair in judged if pair[0] != best]
    if published_ndcg is not None and best_ndcg < published_ndcg * (1 - margin):
        return GateDecision(
            False,
            f"the best list ({best}, NDCG@K {best_ndcg:.4f}) is more than {margin:.0%} "
            f"below the published list's {published_ndcg:.4f}",
            best,
        )
    if not others:
        return GateDecision(True, f"{best}: NDCG@K {best_ndcg:.4f}, nothing else judged", best)
    runner_up, runner_up_ndcg = max(others, key=lambda pair: pair[1])
    if best == "ranker":
        return GateDecision(
            True, f"ranker NDCG@K {best_ndcg:.4f} beats the best baseline ({runner_up} {runner_up_ndcg:.4f})", best
        )
    ranker = dict(judged).get("ranker", float("nan"))
    return GateDecision(
        True, f"baseline {best} NDCG@K {best_ndcg:.4f} beats the ranker ({ranker:.4f}): its lists are published", best
    )


def gate_without_ranker(published_ndcg: float | None, reason: str) -> GateDecision:
    """No ranker could be trained: publish the cold-start lists only while no ranker's lists
    are published (they would be better than a popularity list for the users they cover)."""
    if published_ndcg is not None:
        return GateDecision(False, f"{reason}; the published lists stay")
    return GateDecision(True, f"cold-start lists only: {reason}", "cold_start")
