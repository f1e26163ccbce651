"""The evaluation report: what ``evaluation.json`` holds, as a page that says what it shows.

Everything is computed before (``ml.pipeline.steps.train_and_evaluate``, ``ml.experiments.offline``); this module
only arranges and draws it. Only ``metrics`` is required: a section whose data is absent (an
older run, a thin export) is left out, never drawn empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ml.evaluation.metrics import REPEAT_EXPLORE
from ml.reports import kit, plots
from ml.reports.plots import BAD, GOOD, INK, MUTED, PALETTE, Embedded

# Sections in page order, with their titles (the table of contents).
TITLES = {
    "setup": "What was judged",
    "pilot": "Pilot targets",
    "metrics": "Ranking quality",
    "repeat": "Repeat vs explore",
    "classifier": "Purchase classifier",
    "candidates": "Candidate recall",
    "tuning": "Hyper-parameters",
    "importance": "Feature importance",
    "cold": "Cold buyers",
    "notes": "Notes",
}


def render_evaluation_report(result: Mapping[str, Any], path: Path) -> Path:
    """Write the report of ``result`` (an evaluation dict) to ``path``; returns ``path``."""
    metrics: Mapping[str, Mapping[str, Any]] = result["metrics"]
    split = result.get("split") or {}
    k = split.get("k")
    intervals = result.get("intervals") or {}
    sections: dict[str, Any] = {}
    setup = _setup(result)
    if setup:
        sections["setup"] = setup
    if result.get("pilot"):
        sections["pilot"] = _pilot(result["pilot"])
    sections["metrics"] = _ranking(metrics, intervals, k, (result.get("gate") or {}).get("list"))
    repeat = _repeat_explore(metrics)
    if repeat:
        sections["repeat"] = repeat
    if result.get("classifier") or result.get("score_distribution"):
        sections["classifier"] = _classifier(
            result.get("classifier") or {}, result.get("classifier_curves") or {}, result.get("score_distribution")
        )
    if result.get("candidate_recall"):
        sections["candidates"] = _candidates(result["candidate_recall"])
    if result.get("validation_curves") or result.get("cross_validation"):
        sections["tuning"] = _tuning(result)
    if result.get("feature_importance"):
        sections["importance"] = _importance(result["feature_importance"])
    if result.get("cold_users"):
        sections["cold"] = _cold(result["cold_users"], result.get("cold_users_baselines") or {}, metrics)
    if result.get("notes"):
        sections["notes"] = list(result["notes"])
    return kit.render(
        "evaluation.html.j2",
        path,
        title=result.get("title") or "Recommender evaluation",
        chips=_chips(result),
        gate=_gate(result.get("gate"), intervals, metrics),
        sections=sections,
        toc=[(anchor, title) for anchor, title in TITLES.items() if anchor in sections],
        titles=TITLES,
        generated=kit.now(),
        k=k,
    )


def _chips(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    dataset, split = result.get("dataset") or {}, result.get("split") or {}
    chips = []
    if dataset.get("input"):
        chips.append(("input", Path(str(dataset["input"])).name))
    start = split.get("holdout_cutoff") or split.get("cutoff") or dataset.get("cutoff")
    horizon = split.get("horizon_days") or dataset.get("horizon_days")
    if start:
        chips.append(("holdout from", str(start)[:16]))
    if horizon is not None:
        chips.append(("horizon", f"{kit.fmt(horizon)} days"))
    if split.get("k") is not None:
        chips.append(("k", str(split["k"])))
    if split.get("warm_users") is not None:
        chips.append(("buyers judged", kit.fmt(split["warm_users"])))
    return chips


def _gate(
    gate: Mapping[str, Any] | None, intervals: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The gate's decision, the list it chose and whether the choice is beyond noise."""
    if not gate:
        return None
    return {
        "decision": str(gate.get("decision") or "?"),
        "list": gate.get("list"),
        "reason": str(gate.get("reason") or ""),
        "noise": _noise_of_choice(gate, intervals, metrics),
    }


def _noise_of_choice(
    gate: Mapping[str, Any], intervals: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Whether the chosen list's NDCG lead over the gate's runner-up is larger than the noise
    (the intervals compare every list with the gate's choice)."""
    chosen, differences = gate.get("list"), intervals.get("differences") or {}
    if chosen is None or intervals.get("reference") != chosen:
        return None
    rivals = [
        name
        for name in gate.get("candidates") or differences
        if name in differences and kit.is_number(metrics.get(name, {}).get("ndcg"))
    ]
    if not rivals:
        return None
    runner_up = max(rivals, key=lambda name: metrics[name]["ndcg"])
    lead = differences[runner_up]["ndcg"]
    if lead.get("within_noise") is None:
        return None
    verdict = "within noise: this holdout cannot tell the two apart" if lead["within_noise"] else "beyond noise"
    return (
        f"{chosen}'s NDCG lead over the runner-up, {runner_up}: {kit.signed(lead['difference'])} "
        f"({intervals.get('level', 0.95):.0%} interval {kit.signed(lead['low'])} to "
        f"{kit.signed(lead['high'])}), {verdict}."
    )


def _setup(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What was judged, on what, with which parameters: the facts a reader checks first."""
    dataset, split = result.get("dataset") or {}, result.get("split") or {}
    facts = []
    if dataset.get("input"):
        facts.append(("Input file", str(dataset["input"])))
    start, end = split.get("holdout_cutoff") or split.get("cutoff"), split.get("holdout_end")
    if start:
        window = f"[{start}, {end})" if end else f"from {start}"
        days = split.get("horizon_days") or dataset.get("horizon_days")
        facts.append(
            (
                "Holdout window",
                window
                + (f", {kit.fmt(days)} days" if days is not None else "")
                + ": models learn before it, lists are judged on what was bought in it",
            )
        )
    if split.get("cutoffs"):
        facts.append(
            (
                "Labelled cutoffs",
                "; ".join(
                    f"{index}: {str(at)[:10]}"
                    for index, at in sorted(split["cutoffs"].items(), key=lambda kv: int(kv[0]))
                )
                + " (1 = the holdout; the judged model learns from 2 and older)",
            )
        )
    counts = [
        (split.get("warm_users"), "buyers with history judged"),
        (split.get("cold_users"), "cold buyers"),
        (split.get("window_purchases"), "purchases in the window"),
        (split.get("candidate_rows"), "candidate rows scored"),
    ]
    if any(value is not None for value, _ in counts):
        facts.append(("Counts", ", ".join(f"{kit.fmt(value)} {what}" for value, what in counts if value is not None)))
    if split.get("k") is not None:
        facts.append(("List length", f"k = {split['k']}"))
    for key, name in (("judged_params", "Judged model"), ("final_params", "Published model")):
        if result.get(key):
            facts.append((name, _params_text(result[key])))
    for name, params in (result.get("baseline_params") or {}).items():
        facts.append((f"Baseline {name}", _params_text(params) or "defaults"))
    intervals = result.get("intervals") or {}
    if intervals.get("resamples"):
        facts.append(
            (
                "Intervals",
                f"{intervals['level']:.0%} percentile intervals from "
                f"{kit.fmt(intervals['resamples'])} bootstrap resamples of the "
                f"{intervals.get('unit', 'user')}s (seed {intervals.get('seed')}); "
                "differences are paired: the same resampled users for both lists",
            )
        )
    return facts


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} = {value}" for name, value in params.items())


# --------------------------------------------------------------------------------------------
# Pilot targets
# --------------------------------------------------------------------------------------------


def _passed(entry: Mapping[str, Any]) -> bool | None:
    if entry.get("passed") is not None:
        return bool(entry["passed"])
    value, target = entry.get("value"), entry.get("target")
    if not (kit.is_number(value) and kit.is_number(target)):
        return None
    return value <= target if entry.get("direction") == "max" else value >= target


def _pilot(pilot: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    tiles = [
        {
            "name": name,
            "value": entry.get("value"),
            "target": entry.get("target"),
            "word": "at most" if entry.get("direction") == "max" else "at least",
            "passed": _passed(entry),
            "definition": entry.get("definition"),
        }
        for name, entry in pilot.items()
    ]
    drawn = [tile for tile in tiles if kit.is_number(tile["value"]) and kit.is_number(tile["target"])]
    return {"tiles": tiles, "chart": _pilot_chart(drawn, pilot) if drawn else None}


def _pilot_chart(tiles: Sequence[Mapping[str, Any]], pilot: Mapping[str, Mapping[str, Any]]) -> Embedded:
    fig = plots.figure(6.4, 0.55 * len(tiles) + 1.2)
    ax = fig.add_subplot()
    ys = list(range(len(tiles)))[::-1]
    ax.barh(
        ys,
        [t["value"] for t in tiles],
        height=0.55,
        color=[MUTED if t["passed"] is None else (GOOD if t["passed"] else BAD) for t in tiles],
    )
    for y, tile in zip(ys, tiles):
        target, at_most = float(tile["target"]), pilot[tile["name"]].get("direction") == "max"
        ax.plot([target, target], [y - 0.38, y + 0.38], color=INK, linewidth=2)
        ax.annotate(
            f"target {'≤' if at_most else '≥'} {target:g}",
            (target, y + 0.38),
            xytext=(3, 1),
            textcoords="offset points",
            fontsize=8,
            color=INK,
        )
        ax.annotate(
            f"{tile['value']:.3f}",
            (max(tile["value"], target), y),
            xytext=(6, -3),
            textcoords="offset points",
            fontsize=9,
            color=INK,
            fontweight="bold",
        )
    ax.set_yticks(ys, [kit.label(t["name"]) for t in tiles])
    ax.set_xlim(0, max(1.0, max(max(t["value"], t["target"]) for t in tiles) * 1.15))
    ax.set_xlabel("measured value (each against its own target)")
    plots.style(ax, "x")
    return plots.embed(fig, "Bars: measured value (green = target met, red = missed); black tick: the target.")


# --------------------------------------------------------------------------------------------
# Ranking quality
# --------------------------------------------------------------------------------------------


def _ranking(
    metrics: Mapping[str, Mapping[str, Any]], intervals: Mapping[str, Any], k: Any, gate_list: str | None
) -> dict[str, Any]:
    """Three tables, one per kind of number, so nothing is bolded "best" in the wrong direction:
    the user-averaged ranking metrics with intervals (higher is better), the pooled pilot metrics
    (each with its direction) and the descriptive ones (no better direction)."""
    models = list(metrics)
    ranking = [m for m in kit.RANKING if any(kit.is_number(metrics[model].get(m)) for model in models)]
    pooled = [m for m in kit.POOLED if any(kit.is_number(metrics[model].get(m)) for model in models)]
    descriptive = [m for m in kit.DESCRIPTIVE + ["n_users"] if any(m in metrics[model] for model in models)]
    known = {*kit.RANKING, *kit.POOLED, *kit.DESCRIPTIVE, *REPEAT_EXPLORE, "n_users", "n_users_with_list"}
    other = [m for model in models for m in metrics[model] if m not in known]
    descriptive += list(dict.fromkeys(other))  # unknown keys: shown, never judged
    bounds = intervals.get("lists") or {}

    def best(metric: str, direction: str) -> float | None:
        values = [metrics[model].get(metric) for model in models if kit.is_number(metrics[model].get(metric))]
        if len(values) < 2:
            return None
        return max(values) if direction == "higher" else min(values)

    def cell(model: str, metric: str, direction: str | None) -> dict[str, Any]:
        value = metrics[model].get(metric)
        top = best(metric, direction) if direction else None
        interval = (bounds.get(model) or {}).get(metric) or {}
        return {
            "metric": metric,
            "value": value,
            "best": top is not None and value == top,
            "low": interval.get("low"),
            "high": interval.get("high"),
        }

    rows = [
        {
            "model": model,
            "ranking": [cell(model, m, "higher") for m in ranking],
            "pooled": [cell(model, m, kit.POOLED[m]) for m in pooled],
            "descriptive": [cell(model, m, None) for m in descriptive],
        }
        for model in models
    ]
    reference = intervals.get("reference")
    differences = [
        {"model": name, "cells": [_difference(diffs.get(m) or {}) for m in ranking]}
        for name, diffs in (intervals.get("differences") or {}).items()
    ]
    return {
        "ranking": ranking,
        "pooled": pooled,
        "descriptive": descriptive,
        "rows": rows,
        "reference": reference,
        "differences": differences,
        "level": intervals.get("level", 0.95),
        "reference_role": "the gate's list" if reference == gate_list else "the best list",
        "has_intervals": bool(bounds),
        "directions": kit.POOLED,
        "chart": _ranking_chart(
            metrics,
            ranking,
            bounds,
            reference or gate_list,
            k,
            intervals.get("level", 0.95),
            compared=bool(differences),
        )
        if ranking
        else None,
    }


def _repeat_explore(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Each list's split into repurchases and first purchases, for the lists that have it (older
    runs do not): its own table, because a list's lead can come entirely from what buyers rebuy."""
    models = [model for model in metrics if any(m in metrics[model] for m in REPEAT_EXPLORE)]
    if not models:
        return None
    return {
        "columns": REPEAT_EXPLORE,
        "rows": [(model, [metrics[model].get(m) for m in REPEAT_EXPLORE]) for model in models],
    }


def _difference(cell: Mapping[str, Any]) -> dict[str, Any]:
    """A paired difference (reference minus the other list) and how to read it."""
    noise = cell.get("within_noise")
    verdict = None if noise is None else ("noise" if noise else ("ahead" if cell["difference"] > 0 else "behind"))
    return {**cell, "verdict": verdict}


def _ranking_chart(
    metrics: Mapping[str, Mapping[str, Any]],
    ranking: Sequence[str],
    bounds: Mapping[str, Any],
    highlight: str | None,
    k: Any,
    level: float,
    compared: bool,
) -> Embedded:
    """One panel per ranking metric (each has its own scale), one bar per list, interval whiskers;
    ``highlight`` (the list the others are ``compared`` with, or the gate's) drawn dark."""
    models = list(metrics)
    columns = min(3, len(ranking))
    rows = -(-len(ranking) // columns)
    fig = plots.figure(3.7 * columns, rows * (0.26 * len(models) + 1.0) + 0.3)
    ys = list(range(len(models)))[::-1]
    colors = [PALETTE[0] if model == highlight else "#93c5fd" for model in models]
    for index, metric in enumerate(ranking):
        ax = fig.add_subplot(rows, columns, index + 1)
        values = [float(metrics[m][metric]) if kit.is_number(metrics[m].get(metric)) else 0.0 for m in models]
        errors = [[0.0] * len(models), [0.0] * len(models)]
        for i, model in enumerate(models):
            interval = (bounds.get(model) or {}).get(metric) or {}
            if kit.is_number(interval.get("low")) and kit.is_number(interval.get("high")):
                errors[0][i], errors[1][i] = values[i] - interval["low"], interval["high"] - values[i]
        ax.barh(
            ys,
            values,
            xerr=errors if bounds else None,
            color=colors,
            height=0.62,
            error_kw={"ecolor": INK, "elinewidth": 1, "capsize": 2.5},
        )
        for y, value, high in zip(ys, values, errors[1]):
            ax.annotate(
                kit.fmt(value),
                (value + high, y),
                xytext=(3, -3),
                textcoords="offset points",
                fontsize=7.5,
                color="#334155",
            )
        ax.set_yticks(ys, models if index % columns == 0 else [""] * len(models), fontsize=8.5)
        ax.tick_params(axis="y", length=0)
        ax.set_xlim(0, max(max(v + h for v, h in zip(values, errors[1])) * 1.3, 1e-3))
        ax.set_title(kit.label(metric, k), loc="left")
        ax.set_xlabel("higher is better")
        plots.style(ax, "x")
    role = "the list the others are compared with" if compared else "the gate's list"
    caption = (
        "Each panel is one metric on its own scale, averaged over the judged buyers"
        + (" (precision over all judged users)" if "precision" in ranking else "")
        + (f"; whiskers: {level:.0%} bootstrap interval over users" if bounds else "")
        + (f"; dark bar: {highlight}, {role}." if highlight else ".")
    )
    return plots.embed(fig, caption, "Ranking metrics per list")


# --------------------------------------------------------------------------------------------
# Purchase classifier
# --------------------------------------------------------------------------------------------


def _classifier(
    classifier: Mapping[str, Any], curves: Mapping[str, Any], distribution: Mapping[str, Any] | None
) -> dict[str, Any]:
    threshold = classifier.get("threshold", curves.get("threshold"))
    at = f"score ≥ {threshold:g}" if kit.is_number(threshold) else "the threshold"
    tiles = [
        (name, classifier.get(key), note)
        for key, name, note in (
            ("roc_auc", "ROC AUC", "a bought pair scores above a not-bought one"),
            ("average_precision", "Average precision", "area under the precision-recall curve"),
            ("positive_rate", "Base rate", "share of candidate pairs bought: AP of a random order"),
            ("precision", f"Classifier precision at {at}", "bought, of the pairs at or above it"),
            ("recall", f"Classifier recall at {at}", "of the bought pairs, the share at or above it"),
        )
        if kit.is_number(classifier.get(key))
    ]
    figures = []
    if curves.get("pr"):
        figures.append(_pr_chart(curves, classifier.get("average_precision"), at))
    if curves.get("roc"):
        figures.append(_roc_chart(curves, classifier.get("roc_auc"), at))
    if distribution and distribution.get("bins"):
        histogram = _score_chart(distribution, threshold)
        if histogram:
            figures.append(histogram)
    return {"tiles": tiles, "figures": figures, "at": at}


def _pr_chart(curves: Mapping[str, Any], average_precision: Any, at: str) -> Embedded:
    fig = plots.figure(5.2, 3.6)
    ax = fig.add_subplot()
    ax.plot(
        curves["pr"]["recall"],
        curves["pr"]["precision"],
        color=PALETTE[0],
        linewidth=1.8,
        label="ranker's classifier" + (f" (AP {average_precision:.3f})" if kit.is_number(average_precision) else ""),
    )
    if kit.is_number(curves.get("positive_rate")):
        ax.axhline(
            curves["positive_rate"],
            color=MUTED,
            linestyle="--",
            linewidth=1.2,
            label=f"random order ({curves['positive_rate']:.3f})",
        )
    point = curves.get("at_threshold") or {}
    if kit.is_number(point.get("precision")):
        ax.scatter([point["tpr"]], [point["precision"]], color=BAD, zorder=5, s=30, label=at)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (share of bought pairs at or above the score)")
    ax.set_ylabel("precision (bought share)")
    ax.legend(fontsize=8, frameon=False)
    plots.style(ax, "both")
    return plots.embed(
        fig, "Precision-recall curve over all candidate pairs of the holdout, every score as a threshold."
    )


def _roc_chart(curves: Mapping[str, Any], roc_auc: Any, at: str) -> Embedded:
    fig = plots.figure(5.2, 3.6)
    ax = fig.add_subplot()
    ax.plot(
        curves["roc"]["fpr"],
        curves["roc"]["tpr"],
        color=PALETTE[0],
        linewidth=1.8,
        label="ranker's classifier" + (f" (AUC {roc_auc:.3f})" if kit.is_number(roc_auc) else ""),
    )
    ax.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1.2, label="random order (0.5)")
    point = curves.get("at_threshold") or {}
    if kit.is_number(point.get("fpr")):
        ax.scatter([point["fpr"]], [point["tpr"]], color=BAD, zorder=5, s=30, label=at)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (not-bought pairs at or above the score)")
    ax.set_ylabel("true-positive rate (recall)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    plots.style(ax, "both")
    return plots.embed(fig, "ROC curve over all candidate pairs of the holdout.")


def _score_chart(distribution: Mapping[str, Any], threshold: Any) -> Embedded | None:
    """Bought and not-bought pairs per score bin, each normalised to 1. Runs since the bins are
    log-spaced draw a log score axis; older runs' linear bins get a log share axis instead
    (nearly every pair scores in their first bin)."""
    edges = [float(b) for b in distribution["bins"]]
    series = {name: [float(v) for v in distribution.get(name) or []] for name in ("positive", "negative")}
    if not any(series.values()) or len(edges) != max(len(v) for v in series.values()) + 1:
        return None
    log_bins = distribution.get("scale") == "log"
    fig = plots.figure(5.2, 3.6)
    ax = fig.add_subplot()
    for name, color in (("negative", "#64748b"), ("positive", GOOD)):
        counts = series[name]
        if not counts:
            continue
        total = sum(counts) or 1.0
        shares = [c / total for c in counts]
        ax.stairs(shares, edges, fill=True, alpha=0.25, color=color)
        ax.stairs(
            shares,
            edges,
            color=color,
            linewidth=1.6,
            label=f"{'bought' if name == 'positive' else 'not bought'} (n = {sum(counts):,.0f})",
        )
    if kit.is_number(threshold):
        ax.axvline(float(threshold), color=INK, linestyle="--", linewidth=1.1)
        ax.annotate(
            f"threshold {float(threshold):g}",
            (float(threshold), 1),
            xycoords=("data", "axes fraction"),
            xytext=(-4, -4),
            textcoords="offset points",
            fontsize=8,
            rotation=90,
            va="top",
            ha="right",
        )
    if log_bins:
        ax.set_xscale("log")
        ax.set_xlabel("model score (log scale)")
        caption = (
            f"Score distribution in {len(edges) - 1} log-spaced bins (equal width on the log axis); "
            f"scores below {distribution.get('clipped_below', edges[0]):g} are counted in the first bin. "
            "Each class normalised to 1: the less they overlap, the better."
        )
    else:
        ax.set_yscale("log")
        ax.set_xlabel("model score")
        caption = (
            f"Score distribution in {len(edges) - 1} equal-width bins, share axis on a log scale "
            "(most pairs score near 0). Each class normalised to 1."
        )
    ax.set_ylabel("share of the class's pairs")
    ax.legend(fontsize=8, frameon=False, loc="upper left" if log_bins else "upper right")
    plots.style(ax)
    return plots.embed(fig, caption)


# --------------------------------------------------------------------------------------------
# Candidates, hyper-parameters, importance, cold buyers
# --------------------------------------------------------------------------------------------


def _candidates(candidate_recall: Mapping[str, Any]) -> dict[str, Any]:
    overall = candidate_recall.get("all")
    items = sorted(
        ((name, float(v)) for name, v in (candidate_recall.get("by_source") or {}).items() if kit.is_number(v)),
        key=lambda kv: kv[1],
    )
    if kit.is_number(overall):
        items.append(("all sources (union)", float(overall)))
    chart = None
    if items:
        fig = plots.figure(6.4, 0.42 * len(items) + 1.0)
        ax = fig.add_subplot()
        bars = ax.barh(
            [name for name, _ in items],
            [v for _, v in items],
            height=0.6,
            color=[PALETTE[0] if name.startswith("all sources") else "#93c5fd" for name, _ in items],
        )
        ax.bar_label(bars, labels=[kit.pct(v) for _, v in items], fontsize=8.5, padding=3)
        ax.set_xlim(0, min(1.0, max(v for _, v in items) * 1.25) or 1.0)
        ax.set_xlabel("share of the window's purchases found among the candidates")
        plots.style(ax, "x")
        chart = plots.embed(fig, "Recall of each candidate source alone, and of their union.")
    return {"overall": overall if kit.is_number(overall) else None, "chart": chart}


def _tuning(result: Mapping[str, Any]) -> dict[str, Any]:
    """The cross-validation that chose the parameters, and validation curves around the choice."""
    judged, final = result.get("judged_params") or {}, result.get("final_params") or {}
    cutoffs = {str(index): str(at)[:10] for index, at in ((result.get("split") or {}).get("cutoffs") or {}).items()}
    search = result.get("cross_validation") or []
    folds = list(dict.fromkeys(fold for row in search for fold in row.get("fold_scores", {})))
    names = list(dict.fromkeys(name for row in search for name in row.get("params", {})))
    kind = (result.get("diagnostics") or {}).get("model_kind")

    def fold_title(fold: str) -> str:
        train, valid = fold.split("->")
        return f"cutoffs ≥ {train} → {valid}" + (f" ({cutoffs[valid]})" if valid in cutoffs else "")

    def mean(scores: Mapping[str, float], keep) -> float | None:
        chosen = [v for fold, v in scores.items() if keep(fold) and kit.is_number(v)]
        return sum(chosen) / len(chosen) if chosen else None

    rows = []
    for row in search:
        params, scores = row.get("params", {}), row.get("fold_scores", {})
        marks = [
            name
            for name, chosen in (("judged", judged), ("published", final))
            if chosen and row.get("kind", kind) == kind and all(chosen.get(p) == v for p, v in params.items())
        ]
        rows.append(
            {
                "kind": row.get("kind"),
                "params": [params.get(name) for name in names],
                "scores": [scores.get(f) for f in folds],
                "judged_mean": mean(scores, lambda fold: not fold.endswith("->1")),
                "all_mean": mean(scores, lambda fold: True),
                "marks": marks,
            }
        )
    chosen_names = list(dict.fromkeys([*judged, *final]))
    return {
        "names": names,
        "folds": [fold_title(f) for f in folds],
        "rows": rows,
        "kinds": any(row["kind"] for row in rows),
        "family": _family_choice((result.get("diagnostics") or {}).get("family_choice"), fold_title),
        "params": [(name, judged.get(name), final.get(name)) for name in chosen_names],
        "curves": [_validation_chart(c, judged) for c in result.get("validation_curves") or [] if c.get("values")],
    }


def _family_choice(choice: Mapping[str, Any] | None, fold_title: Callable[[str], str]) -> dict[str, Any] | None:
    """Each model family's best NDCG on the folds before the holdout, which chose the family."""
    if not choice or not choice.get("families"):
        return None
    return {
        "reason": choice.get("reason"),
        "folds": [fold_title(fold) for fold in choice.get("folds", [])],
        "rows": [
            {
                "kind": kind,
                "scores": [family["fold_scores"].get(fold) for fold in choice.get("folds", [])],
                "mean": family.get("mean"),
                "won": family.get("folds_won"),
                "chosen": kind == choice.get("chosen"),
            }
            for kind, family in choice["families"].items()
        ],
    }


def _validation_chart(curve: Mapping[str, Any], judged: Mapping[str, Any]) -> Embedded:
    values = list(curve["values"])
    param = str(curve.get("param", "parameter"))
    chosen = curve.get("chosen", judged.get(param))
    numeric = all(kit.is_number(v) for v in values)
    xs = [float(v) for v in values] if numeric else list(range(len(values)))
    fig = plots.figure(5.2, 3.2)
    ax = fig.add_subplot()
    for key, name, color, marker in (
        ("train_score", "train (user sample)", "#94a3b8", "o"),
        ("valid_score", "validation (holdout)", PALETTE[0], "s"),
    ):
        ys = curve.get(key) or []
        ax.plot(xs[: len(ys)], ys, marker=marker, color=color, label=name, linewidth=1.8, markersize=4)
    valid = curve.get("valid_score") or []
    if chosen in values and values.index(chosen) < len(valid):
        i = values.index(chosen)
        ax.scatter(
            [xs[i]],
            [valid[i]],
            s=110,
            facecolors="none",
            edgecolors=BAD,
            linewidths=1.8,
            zorder=5,
            label=f"used: {chosen}",
        )
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{v:g}" for v in xs])
        ax.minorticks_off()
    elif not numeric:
        ax.set_xticks(xs, [str(v) for v in values])
    ax.set_xlabel(param)
    ax.set_ylabel(str(curve.get("metric", "score")))
    ax.legend(fontsize=8, frameon=False)
    plots.style(ax)
    users = curve.get("train_users")
    caption = (
        f"{param} moved while the other parameters stay at the judged model's values; trained on "
        + (f"{kit.fmt(users)} users" if users else "a sample of users")
        + " of its training data. "
        + (
            "Ringed: the value the judged model used. "
            if chosen in values
            else "The value the judged model used is not recorded for this run. "
        )
        + "Validation falling while training rises = over-fitting; both low = under-fitting."
    )
    return plots.embed(fig, caption)


def _importance(importance: Sequence[Mapping[str, Any]], top: int = 20) -> dict[str, Any]:
    rows = sorted(
        (r for r in importance if kit.is_number(r.get("importance_mean"))),
        key=lambda r: r["importance_mean"],
        reverse=True,
    )[:top][::-1]
    if not rows:
        return {"chart": None, "top": None}
    fig = plots.figure(6.4, 0.3 * len(rows) + 1.1)
    ax = fig.add_subplot()
    ax.barh(
        [str(r["feature"]) for r in rows],
        [float(r["importance_mean"]) for r in rows],
        xerr=[float(r.get("importance_std") or 0.0) for r in rows],
        color=PALETTE[0],
        alpha=0.85,
        height=0.65,
        error_kw={"ecolor": "#334155", "capsize": 2.5, "elinewidth": 1},
    )
    ax.axvline(0, color="#334155", linewidth=0.8)
    ax.set_xlabel("drop in average precision when the feature is shuffled (mean ± std)")
    plots.style(ax, "x")
    return {
        "chart": plots.embed(fig, "Bars whose whisker crosses zero are within noise."),
        "top": top if len(importance) > top else None,
    }


def _cold(
    cold: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The popular list on the cold buyers (and ``recsys evaluate``'s tuned one), the first
    list's values on the buyers with history beside them for scale."""
    columns = {"popular": cold, **baselines}
    reference = next(iter(metrics), None)
    shown = [m for m in [*kit.RANKING, "n_users"] if any(m in values for values in columns.values())]
    rows = [
        (
            metric,
            [values.get(metric) for values in columns.values()],
            metrics[reference].get(metric) if reference else None,
        )
        for metric in shown
    ]
    return {"columns": list(columns), "rows": rows, "reference": reference}
