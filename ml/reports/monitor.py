"""The monitor page: the runs' series (holdout NDCG, list quality, drift), their warnings and
the last outcome readout, drawn from plain values (``ml.monitoring.page`` gathers them).

A series no run recorded is left out with a note, never drawn empty; a home without runs gets
a page that says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ml.reports import kit, plots
from ml.reports.plots import BAD, MUTED, PALETTE

# The readout's yes/no metrics (ml.monitoring.outcomes.METRICS) as a reader says them.
OUTCOMES = {
    "viewed_shown": "viewed a shown item",
    "carted_shown": "carted a shown item",
    "bought_shown": "bought a shown item",
}
TITLES = {
    "warnings": "Warnings",
    "series": "Over runs",
    "readout": "Last readout",
    "runs": "Runs",
}
# The charts: (title, y label, [(series, legend label)], reference lines [(y, label)], y limits).
CHARTS = [
    (
        "Holdout NDCG@K",
        "NDCG@K (higher is better)",
        [("ndcg", "published list"), ("popular_ndcg", "popular list")],
        [],
        None,
    ),
    (
        "List quality",
        "share",
        [
            ("catalogue_coverage", "catalogue coverage"),
            ("cold_user_share", "cold-user share"),
            ("list_overlap", "list overlap with previous"),
        ],
        [],
        (0, 1.02),
    ),
    (
        "Drift (population stability index)",
        "PSI vs the previous run",
        [("psi_max", "largest feature PSI"), ("score_psi", "published scores' PSI")],
        [(0.1, "0.1: shifting"), (0.25, "0.25: shifted")],
        None,
    ),
]
GOOD_STATUSES = ("published", "published_cold_start")


def render_monitor_page(
    *,
    runs: Sequence[Mapping[str, Any]],
    readout: Mapping[str, Any] | None,
    readout_missing: str | None,
    warnings: Sequence[str],
    home: str,
    pilot_lift: float,
    path: Path,
) -> Path:
    """Write the page to ``path``. ``runs`` oldest first, each with ``run_id``, ``started_at``,
    ``status``, ``ndcg``, ``popular_ndcg``, ``published_list``, ``values`` (series name -> value
    or None) and ``warnings``; ``readout`` as ``ml.monitoring.outcomes.Readout`` fields."""
    last = runs[-1] if runs else None
    chips = [("home", home), ("runs", str(len(runs)))]
    if last:
        chips += [("last run", str(last["run_id"])), ("status", str(last["status"]))]
    sections = ["warnings", "series", "readout", "runs"] if runs else ["readout"]
    return kit.render(
        "monitor.html.j2",
        path,
        title="Recommender monitor",
        chips=chips,
        toc=[(anchor, TITLES[anchor]) for anchor in sections],
        titles=TITLES,
        last=last,
        warnings=list(warnings),
        earlier=[(run["run_id"], text) for run in runs[:-1] for text in run["warnings"]][::-1],
        charts=_charts(runs) if runs else {"figures": [], "missing": []},
        readout=_readout(readout, pilot_lift) if readout else None,
        readout_missing=readout_missing,
        rows=[_row(run) for run in reversed(runs)],
        generated=kit.now(),
    )


def _charts(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One chart per group with at least one recorded value. The NDCG of a run that published
    nothing is a grey cross, off the line; a value a failing test judged is ringed red."""
    labels = [f"{run['started_at']:%m-%d %H:%M}" for run in runs]
    figures, missing = [], []
    for title, ylabel, series, references, limits in CHARTS:
        values = {name: [_value(run, name) for run in runs] for name, _ in series}
        if not any(kit.is_number(v) for column in values.values() for v in column):
            missing.append(title)
            continue
        fig = plots.figure(5.6, 3.3)
        ax = fig.add_subplot()
        for (name, legend), color in zip(series, PALETTE):
            points = [(i, v) for i, v in enumerate(values[name]) if kit.is_number(v)]
            published = [(i, v) for i, v in points if name != "ndcg" or runs[i]["status"] in GOOD_STATUSES]
            if published:
                ax.plot(*zip(*published), marker="o", markersize=4, linewidth=1.8, color=color, label=legend)
            unpublished = [point for point in points if point not in published]
            if unpublished:
                ax.scatter(*zip(*unpublished), marker="x", s=36, color=MUTED, zorder=4, label="run not published")
        for y, text in references:
            ax.axhline(y, color=MUTED, linestyle="--", linewidth=1)
            ax.annotate(
                text,
                (0, y),
                xycoords=("axes fraction", "data"),
                xytext=(3, 2),
                textcoords="offset points",
                fontsize=7.5,
                color="#64748b",
            )
        rings = [
            (i, values[name][i])
            for i, run in enumerate(runs)
            for name, _ in series
            if name in run["flagged"] and kit.is_number(values[name][i])
        ]
        if rings:
            ax.scatter(*zip(*rings), s=90, facecolors="none", edgecolors=BAD, linewidths=1.6, zorder=5, label="warning")
        if limits:
            ax.set_ylim(*limits)
        step = max(1, len(labels) // 8)
        ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=30, ha="right")
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_title(title, loc="left")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8, frameon=False)
        plots.style(ax)
        figures.append(plots.embed(fig, _caption(title), title))
    return {"figures": figures, "missing": missing}


def _caption(title: str) -> str:
    captions = {
        "Holdout NDCG@K": "Each run's holdout NDCG of the list it published, beside the popular list's: the gate "
        "publishes only lists that beat it; a grey cross: a run that published nothing (the NDCG of the list it judged).",
        "List quality": "Catalogue coverage: items with events that a published list shows. Cold-user share: users "
        "without a personal list. List overlap: mean Jaccard of a user's list now and in the previous publication.",
        "Drift (population stability index)": "PSI of each run's main features and published scores against the "
        "previous run, on the previous run's deciles: under 0.1 stable, over 0.25 shifted.",
    }
    return captions[title]


def _value(run: Mapping[str, Any], name: str) -> Any:
    return run[name] if name in ("ndcg", "popular_ndcg") else run["values"].get(name)


def _row(run: Mapping[str, Any]) -> dict[str, Any]:
    values = run["values"]
    return {
        "run_id": run["run_id"],
        "started": f"{run['started_at']:%Y-%m-%d %H:%M}",
        "status": run["status"],
        "good": run["status"] in GOOD_STATUSES,
        "reason": run.get("reason") or "",
        "list": run.get("published_list") or "–",
        "ndcg": run["ndcg"],
        "cells": [values.get(name) for name in ("catalogue_coverage", "cold_user_share", "list_overlap")],
        "psi": values.get("psi_max"),
        "psi_feature": run.get("psi_feature"),
        "score_psi": values.get("score_psi"),
        "warnings": len(run["warnings"]),
    }


def _readout(readout: Mapping[str, Any], pilot_lift: float) -> dict[str, Any]:
    """The comparisons as table rows, and whether a control group exists at all."""
    comparisons = readout["comparisons"]
    return {
        "model_version": readout["model_version"],
        "outcome_days": readout["outcome_days"],
        "users_incomplete": readout["users_incomplete"],
        "control": any(c["control_rate"] is not None for c in comparisons),
        "comparisons": [{**c, "name": OUTCOMES.get(c["metric"], c["metric"])} for c in comparisons],
        "revenue_share": list(readout["revenue_share"].items()),
        "pilot_lift": pilot_lift,
    }
