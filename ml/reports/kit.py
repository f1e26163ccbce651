"""What both reports share: how numbers read, what each metric is called and which way is
better, and the Jinja2 templates (package data in ``templates/``) that turn a context into a page.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

# Ranking metrics: averaged over users (bootstrap intervals exist), higher is better.
RANKING = ["ndcg", "recall", "precision", "map", "hit_rate", "mrr"]
# Pooled over all (user, item) pairs: one direction each.
POOLED = {"offer_precision": "higher", "missed_offer_share": "lower"}
# Describe the lists; neither direction is "better" (a popular list is not wrong to be popular).
DESCRIPTIVE = ["coverage", "novelty", "popularity_pct"]

LABELS = {
    "recall": "Recall@k",
    "precision": "Precision@k",
    "ndcg": "NDCG@k",
    "map": "MAP@k",
    "hit_rate": "Hit rate@k",
    "mrr": "MRR@k",
    "coverage": "Catalogue coverage",
    "novelty": "Novelty (bits)",
    "popularity_pct": "Popularity percentile",
    "missed_offer_share": "Missed-offer share",
    "offer_precision": "Offer precision",
    "n_users": "Users evaluated",
    "n_users_with_list": "Users with a list",
    "repeat_recall": "Recall@k, repeat",
    "repeat_ndcg": "NDCG@k, repeat",
    "explore_recall": "Recall@k, explore",
    "explore_ndcg": "NDCG@k, explore",
    "repeat_share_truth": "Repeat share of purchases",
    "repeat_share_lists": "Repeat share of the list",
    "repeat_buyers": "Buyers with a repeat",
    "explore_buyers": "Buyers with a new item",
    "roc_auc": "ROC AUC",
    "average_precision": "Average precision",
}


def label(metric: str, k: Any = None) -> str:
    """The metric's name as a reader knows it, with the list length when given."""
    text = LABELS.get(metric, metric.replace("_", " "))
    return text.replace("@k", f"@{k}") if k is not None else text


def is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


def fmt(value: Any, metric: str = "") -> str:
    """A number as a person reads it: counts with separators, scores with 3-4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if not isinstance(value, float):
        return str(value)
    if metric.startswith("n_"):
        return f"{value:,.0f}"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.01:
        return f"{value:.3f}"
    if magnitude >= 0.001:
        return f"{value:.4f}"
    return f"{value:.2e}"


def signed(value: Any) -> str:
    """A difference, always with its sign, in fixed decimals so a column of them lines up."""
    if not is_number(value):
        return "–"
    return f"{value:+.4f}" if 0 < abs(value) < 0.001 else f"{value:+.3f}"


def pct(value: Any, digits: int = 1) -> str:
    return "–" if not is_number(value) else f"{100 * value:.{digits}f} %"


def signed_pct(value: Any, digits: int = 2) -> str:
    """A difference or relative lift as a percentage, always with its sign (the readout's columns)."""
    return "–" if not is_number(value) else f"{100 * value:+.{digits}f} %"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@cache
def _environment() -> jinja2.Environment:
    """Templates from the installed package; everything a template prints is escaped
    (a reason or a file name is text, never markup) and a missing variable is an error."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("ml.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(fmt=fmt, pct=pct, signed=signed, signed_pct=signed_pct, label=label)
    environment.tests["number"] = is_number
    return environment


def render(template: str, path: Path, **context: Any) -> Path:
    """Render ``templates/<template>`` with ``context`` to ``path``, written atomically."""
    page = _environment().get_template(template).render(**context)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
