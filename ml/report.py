"""Self-contained HTML reports: one file, no network, plots embedded as base64 PNG.

Two reports:

* :func:`render_evaluation_report` turns an evaluation result dict (metrics of the ranker and
  its baselines, pilot targets, classifier quality, candidate recall, validation curves,
  permutation importance, score distributions, the publish gate) into a page. Every section
  is optional except ``metrics``: what is absent is simply not drawn.
* :func:`profile_export` describes an export *before* any training (missing values, the
  warehouse's quarantine reasons, event mix, funnel, prices, activity over time, long
  tails), all aggregated in DuckDB SQL so a 10 M-row file never enters pandas;
  :func:`render_profile_report` draws it. ``recsys profile`` runs both.

Plots use matplotlib's object API (``Figure`` + the Agg canvas, never ``pyplot``), so
rendering touches no global state and works in threads and on headless machines.
"""
from __future__ import annotations

import base64
import html
import io
import math
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------
# Look and feel
# --------------------------------------------------------------------------------------------

PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#06b6d4", "#84cc16",
           "#ec4899", "#64748b"]
GOOD, BAD, MUTED = "#16a34a", "#dc2626", "#94a3b8"
EVENT_COLORS = {"ec.view_item": "#2563eb", "ec.add_to_cart": "#f59e0b", "ec.purchase": "#10b981",
                "user_engagement": "#8b5cf6", "pageview": "#94a3b8"}
#: Metrics where a smaller value is better (everything else: larger is better).
LOWER_IS_BETTER = {"missed_offer_share"}
#: Metrics that are not "the higher the better" scores (not highlighted, not in the bar chart).
NEUTRAL = {"n_users", "n_items", "users", "novelty"}
METRIC_LABELS = {
    "recall": "Recall@k", "precision": "Precision@k", "ndcg": "NDCG@k", "map": "MAP@k",
    "hit_rate": "Hit rate@k", "mrr": "MRR", "coverage": "Catalogue coverage",
    "novelty": "Novelty (bits)", "missed_offer_share": "Missed-offer share",
    "offer_precision": "Offer precision", "n_users": "Users evaluated", "roc_auc": "ROC AUC",
    "average_precision": "Average precision", "threshold": "Threshold",
}

CSS = """
:root { --ink:#0f172a; --sub:#475569; --line:#e2e8f0; --bg:#f8fafc; --card:#fff;
        --good:#16a34a; --bad:#dc2626; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 24px 60px; }
header { margin-bottom:18px; }
h1 { font-size:26px; margin:0 0 6px; letter-spacing:-.01em; }
h2 { font-size:18px; margin:0 0 4px; }
h3 { font-size:14px; margin:14px 0 6px; color:var(--sub); text-transform:uppercase; letter-spacing:.04em; }
p.lead { color:var(--sub); margin:0 0 14px; font-size:14px; }
.meta { display:flex; flex-wrap:wrap; gap:8px; margin-top:8px; }
.chip { background:#eef2ff; color:#3730a3; border-radius:999px; padding:2px 10px; font-size:13px; }
.chip code { background:none; padding:0; }
section.card { background:var(--card); border:1px solid var(--line); border-radius:12px;
               padding:18px 20px; margin:16px 0; box-shadow:0 1px 2px rgba(15,23,42,.04); }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(440px, 1fr)); gap:14px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:12px; margin:10px 0 4px; }
.kpi { border:1px solid var(--line); border-radius:10px; padding:10px 14px; background:#fcfdff; }
.kpi .label { font-size:12px; color:var(--sub); text-transform:uppercase; letter-spacing:.04em; }
.kpi .value { font-size:24px; font-weight:650; font-variant-numeric:tabular-nums; }
.kpi .note { font-size:12px; color:var(--sub); }
.kpi.pass { border-color:#bbf7d0; background:#f0fdf4; }
.kpi.fail { border-color:#fecaca; background:#fef2f2; }
.badge { display:inline-block; border-radius:6px; padding:1px 8px; font-size:12px; font-weight:650; }
.badge.pass { background:#dcfce7; color:#166534; } .badge.fail { background:#fee2e2; color:#991b1b; }
.badge.info { background:#e0e7ff; color:#3730a3; }
.gate { display:flex; align-items:center; gap:14px; border-radius:12px; padding:14px 18px; margin:16px 0;
        font-size:15px; }
.gate.published { background:#f0fdf4; border:1px solid #bbf7d0; }
.gate.rejected { background:#fef2f2; border:1px solid #fecaca; }
.gate .decision { font-size:20px; font-weight:700; text-transform:uppercase; letter-spacing:.03em; }
.gate.published .decision { color:var(--good); } .gate.rejected .decision { color:var(--bad); }
figure { margin:0; } figure img { width:100%; height:auto; display:block; }
figcaption { font-size:12.5px; color:var(--sub); margin-top:4px; }
table { border-collapse:collapse; width:100%; font-size:13.5px; font-variant-numeric:tabular-nums; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:right; vertical-align:top; }
th:first-child, td:first-child { text-align:left; }
th { background:#f1f5f9; font-weight:600; color:#334155; }
td.best { font-weight:700; color:var(--accent); }
td.text, th.text { text-align:left; }
td.raw { font-family:ui-monospace, Menlo, Consolas, monospace; font-size:12px; color:#334155;
         text-align:left; word-break:break-all; max-width:560px; }
.warn { background:#fffbeb; border:1px solid #fde68a; border-radius:8px; padding:10px 14px; color:#92400e; }
.ok { background:#f0fdf4; border:1px solid #bbf7d0; border-radius:8px; padding:10px 14px; color:#166534; }
ul.notes { margin:6px 0 0 18px; padding:0; } ul.notes li { margin:3px 0; }
.bar { height:8px; background:#e2e8f0; border-radius:4px; overflow:hidden; min-width:80px; }
.bar > span { display:block; height:100%; background:#f59e0b; }
code { font-family:ui-monospace, Menlo, Consolas, monospace; font-size:12.5px; }
footer { color:var(--sub); font-size:12px; margin-top:24px; }
nav.toc { display:flex; flex-wrap:wrap; gap:6px 14px; font-size:13px; margin-top:10px; }
nav.toc a { color:var(--accent); text-decoration:none; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, metric: str = "") -> str:
    """A number as a person reads it: counts with separators, scores with 3-4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if metric.startswith("n_"):
            return f"{value:,.0f}"
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if magnitude >= 100:
            return f"{value:,.0f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        if magnitude >= 0.001:
            return f"{value:.4f}".rstrip("0").rstrip(".") if magnitude < 0.01 else f"{value:.3f}"
        return f"{value:.2e}"
    return _esc(value)


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _figure(width: float = 6.4, height: float = 3.4):
    """A new matplotlib figure (object API, Agg canvas) with the report's style."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax, grid_axis: str = "y") -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#cbd5e1")
    ax.tick_params(colors="#334155", labelsize=9)
    ax.grid(axis=grid_axis, color="#e2e8f0", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.title.set_fontsize(11)
    ax.xaxis.label.set_fontsize(9.5)
    ax.yaxis.label.set_fontsize(9.5)
    ax.xaxis.label.set_color("#334155")
    ax.yaxis.label.set_color("#334155")


def _png(fig, caption: str = "", alt: str = "") -> str:
    """The figure as an ``<img>`` with a base64 PNG data URI (2x pixels for sharp screens)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=160, facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    # Never stretched beyond its design size: fonts stay the size they were drawn at.
    width = round(fig.get_figwidth() * fig.dpi * 1.1)
    return (f'<figure style="max-width:{width}px"><img alt="{_esc(alt or caption)}" '
            f'src="data:image/png;base64,{data}">{cap}</figure>')


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], text_cols: Iterable[int] = ()) -> str:
    """An HTML table; cells are already-escaped HTML (use ``_esc``/``_fmt``)."""
    text_cols = set(text_cols)
    head = "".join(f'<th class="text">{h}</th>' if i in text_cols else f"<th>{h}</th>"
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, tuple):  # (html, css class)
                cells.append(f'<td class="{cell[1]}">{cell[0]}</td>')
            else:
                cells.append(f'<td class="text">{cell}</td>' if i in text_cols else f"<td>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(anchor: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section class="card" id="{anchor}"><h2>{_esc(title)}</h2>{lead_html}{body}</section>'


def _page(title: str, header_html: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    toc = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t, _ in sections)
    body = "".join(html_ for _, _, html_ in sections)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body><main>"
        f"{header_html}<nav class=\"toc\">{toc}</nav>{body}<footer>{footer}</footer>"
        "</main></body></html>"
    )


def _write(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------------------
# Evaluation report
# --------------------------------------------------------------------------------------------

def render_evaluation_report(result: Mapping[str, Any], path: Path) -> Path:
    """Write the evaluation report for ``result`` (see the module docstring) to ``path``.

    Only ``metrics`` (``{model: {metric: value}}``) is required; every other section is
    drawn when present and skipped otherwise. Returns ``path``.
    """
    metrics: Mapping[str, Mapping[str, Any]] = result["metrics"]
    title = result.get("title") or "Recommender evaluation"
    sections: list[tuple[str, str, str]] = []

    gate = result.get("gate")
    pilot = result.get("pilot")
    if pilot:
        sections.append(("pilot", "Pilot targets", _pilot_section(pilot)))
    sections.append(("metrics", "Ranking quality", _metrics_section(metrics, result.get("split", {}))))
    if result.get("classifier") or result.get("score_distribution"):
        sections.append(("classifier", "Purchase classifier",
                         _classifier_section(result.get("classifier") or {},
                                             result.get("score_distribution"))))
    if result.get("candidate_recall"):
        sections.append(("candidates", "Candidate recall", _candidates_section(result["candidate_recall"])))
    if result.get("validation_curves"):
        sections.append(("validation", "Validation curves", _validation_section(result["validation_curves"])))
    if result.get("feature_importance"):
        sections.append(("importance", "Feature importance", _importance_section(result["feature_importance"])))
    if result.get("cold_users"):
        sections.append(("cold", "Cold users", _cold_section(result["cold_users"], metrics)))
    if result.get("notes"):
        items = "".join(f"<li>{_esc(n)}</li>" for n in result["notes"])
        sections.append(("notes", "Notes", _section("notes", "Notes", "", f'<ul class="notes">{items}</ul>')))

    header = f"<header><h1>{_esc(title)}</h1><div class=\"meta\">{_eval_chips(result)}</div></header>"
    if gate:
        decision = str(gate.get("decision", "")).lower()
        css = "published" if decision == "published" else "rejected"
        header += (f'<div class="gate {css}"><span class="decision">{_esc(decision or "?")}</span>'
                   f'<span>{_esc(gate.get("reason", ""))}</span></div>')
    page = _page(title, header, sections, f"Generated {_now()} by ml.report")
    return _write(path, page)


def _eval_chips(result: Mapping[str, Any]) -> str:
    chips = []
    dataset = result.get("dataset") or {}
    if dataset.get("name"):
        chips.append(f"dataset <b>{_esc(dataset['name'])}</b>")
    if dataset.get("input"):
        chips.append(f"input <code>{_esc(dataset['input'])}</code>")
    split = result.get("split") or {}
    for key, value in dataset.items():  # the split's own chips below say cutoff and horizon once
        if key not in ("name", "input", "cutoff", "horizon_days") and isinstance(value, (str, int, float)):
            chips.append(f"{_esc(key.replace('_', ' '))} {_fmt(value)}")
    for key in ("cutoff", "horizon_days"):
        if split.get(key) is None and dataset.get(key) is not None:
            split = {**split, key: dataset[key]}
    if split.get("cutoff"):
        chips.append(f"cutoff {_esc(split['cutoff'])}")
    if split.get("horizon_days") is not None:
        chips.append(f"horizon {_fmt(split['horizon_days'])} days")
    if split.get("k") is not None:
        chips.append(f"k = {_esc(split['k'])}")
    return "".join(f'<span class="chip">{c}</span>' for c in chips)


def _passed(entry: Mapping[str, Any]) -> bool | None:
    if "passed" in entry and entry["passed"] is not None:
        return bool(entry["passed"])
    value, target = entry.get("value"), entry.get("target")
    if not (_is_number(value) and _is_number(target)):
        return None
    return value <= target if entry.get("direction") == "max" else value >= target


def _pilot_section(pilot: Mapping[str, Mapping[str, Any]]) -> str:
    tiles, names, values, targets, verdicts = [], [], [], [], []
    for name, entry in pilot.items():
        passed = _passed(entry)
        css = "" if passed is None else ("pass" if passed else "fail")
        badge = ("" if passed is None else
                 f'<span class="badge {css}">{"PASS" if passed else "FAIL"}</span>')
        word = "at most" if entry.get("direction") == "max" else "at least"
        target = entry.get("target")
        tiles.append(
            f'<div class="kpi {css}"><div class="label">{_esc(_label(name))} {badge}</div>'
            f'<div class="value">{_fmt(entry.get("value"), name)}</div>'
            f'<div class="note">target: {word} {_fmt(target, name)}</div></div>')
        if _is_number(entry.get("value")) and _is_number(target):
            names.append(_label(name)), values.append(float(entry["value"]))
            targets.append((float(target), entry.get("direction", "min"))), verdicts.append(passed)
    body = f'<div class="kpis">{"".join(tiles)}</div>'
    plot = ""
    if names:
        fig = _figure(6.4, 0.55 * len(names) + 1.0)
        ax = fig.add_subplot()
        ys = list(range(len(names)))[::-1]
        colors = [MUTED if v is None else (GOOD if v else BAD) for v in verdicts]
        ax.barh(ys, values, color=colors, height=0.55)
        for y, value, (target, direction) in zip(ys, values, targets):
            ax.plot([target, target], [y - 0.38, y + 0.38], color="#0f172a", linewidth=2)
            ax.annotate(f"target {'≤' if direction == 'max' else '≥'} {target:g}", (target, y + 0.38),
                        xytext=(3, 1), textcoords="offset points", fontsize=8, color="#0f172a")
            ax.annotate(f"{value:.3f}", (max(value, target), y), xytext=(6, -3), textcoords="offset points",
                        fontsize=9, color="#0f172a", fontweight="bold")
        ax.set_yticks(ys, names)
        upper = max(values + [t for t, _ in targets])
        ax.set_xlim(0, max(1.0, upper * 1.15))
        _style(ax, "x")
        plot = _png(fig, "Bars: measured value (green = target met, red = missed); black tick: target.")
    definitions = [f"<li><b>{_esc(_label(n))}</b>: {_esc(e['definition'])}</li>"
                   for n, e in pilot.items() if e.get("definition")]
    if definitions:
        body += f'<div class="grid"><div>{plot}</div><div><h3>Definitions</h3><ul class="notes">{"".join(definitions)}</ul></div></div>'
    else:
        body += plot
    return _section("pilot", "Pilot targets", "What the pilot agreed to judge the recommender by.", body)


def _metrics_section(metrics: Mapping[str, Mapping[str, Any]], split: Mapping[str, Any]) -> str:
    models = list(metrics)
    metric_names: list[str] = []
    for values in metrics.values():
        for name in values:
            if name not in metric_names:
                metric_names.append(name)
    # The table: one row per metric, best model per row highlighted.
    rows = []
    for name in metric_names:
        values = [metrics[m].get(name) for m in models]
        numeric = [v for v in values if _is_number(v)]
        best = None
        if name not in NEUTRAL and len(numeric) > 1:
            best = min(numeric) if name in LOWER_IS_BETTER else max(numeric)
        cells: list[Any] = [_esc(_label(name)) + (" ↓" if name in LOWER_IS_BETTER else "")]
        for v in values:
            cells.append((_fmt(v, name), "best") if best is not None and v == best else _fmt(v, name))
        rows.append(cells)
    table = _table(["metric"] + [_esc(m) for m in models], rows)
    # The chart: scores in [0, 1] only (counts and bits have other scales).
    plotted = [n for n in metric_names if n not in NEUTRAL and all(
        (not _is_number(metrics[m].get(n))) or 0 <= metrics[m][n] <= 1 for m in models)
        and any(_is_number(metrics[m].get(n)) for m in models)]
    chart = ""
    if plotted:
        fig = _figure(max(6.4, 0.9 * len(plotted) * max(1, len(models)) / 2.2), 3.6)
        ax = fig.add_subplot()
        width = 0.8 / max(1, len(models))
        for i, model in enumerate(models):
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(plotted))]
            ys = [float(metrics[model].get(n)) if _is_number(metrics[model].get(n)) else 0.0 for n in plotted]
            color = PALETTE[i % len(PALETTE)]
            bars = ax.bar(xs, ys, width * 0.92, label=model, color=color,
                          alpha=1.0 if i == 0 else 0.8)
            if len(models) * len(plotted) <= 24:
                ax.bar_label(bars, labels=[f"{y:.2f}" if y >= 0.01 else (f"{y:.0e}" if y else "")
                                           for y in ys], fontsize=6.5, padding=1, color="#334155")
        ax.set_xticks(range(len(plotted)), [_label(n).replace("@k", "") for n in plotted],
                      rotation=20 if len(plotted) > 5 else 0, ha="right" if len(plotted) > 5 else "center")
        top = max((float(metrics[m][n]) for m in models for n in plotted if _is_number(metrics[m].get(n))),
                  default=1.0)
        ax.set_ylim(0, min(1.05, top * 1.2) if top > 0 else 1)
        ax.legend(fontsize=8.5, frameon=False, ncols=min(len(models), 5), loc="upper left")
        _style(ax)
        k = split.get("k")
        chart = _png(fig, f"Scores in [0, 1] per model{f' at k = {k}' if k else ''}; the first model "
                          "is the ranker, the others its baselines.")
    lead = ("Each model's top-k lists scored against what users bought in the test window. "
            "Bold: best value per metric (↓: lower is better).")
    return _section("metrics", "Ranking quality", lead, chart + table)


def _classifier_section(classifier: Mapping[str, Any], distribution: Mapping[str, Any] | None) -> str:
    tiles = "".join(
        f'<div class="kpi"><div class="label">{_esc(_label(k))}</div>'
        f'<div class="value">{_fmt(v, k)}</div></div>'
        for k, v in classifier.items() if _is_number(v))
    body = f'<div class="kpis">{tiles}</div>' if tiles else ""
    if distribution and distribution.get("bins") is not None:
        body += _score_plot(distribution, classifier.get("threshold"))
    lead = "Does the model separate the (user, item) pairs that were bought from those that were not?"
    return _section("classifier", "Purchase classifier", lead, body)


def _score_plot(distribution: Mapping[str, Any], threshold: Any) -> str:
    bins = [float(b) for b in distribution["bins"]]
    series = {name: [float(v) for v in distribution.get(name) or []] for name in ("positive", "negative")}
    n = max((len(v) for v in series.values()), default=0)
    if n == 0:
        return ""
    if len(bins) == n + 1:
        edges = bins
    else:  # bin centres given: rebuild edges halfway between them
        step = (bins[1] - bins[0]) if len(bins) > 1 else 1.0
        edges = [bins[0] - step / 2] + [(a + b) / 2 for a, b in zip(bins, bins[1:])] + [bins[-1] + step / 2]
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    colors = {"positive": GOOD, "negative": "#64748b"}
    for name, counts in series.items():
        if not counts:
            continue
        total = sum(counts) or 1.0
        shares = [c / total for c in counts]
        ax.stairs(shares, edges[:len(shares) + 1], fill=True, alpha=0.28, color=colors[name])
        ax.stairs(shares, edges[:len(shares) + 1], color=colors[name], linewidth=1.6,
                  label=f"{'bought' if name == 'positive' else 'not bought'} (n = {sum(counts):,.0f})")
    if _is_number(threshold):
        ax.axvline(float(threshold), color="#0f172a", linestyle="--", linewidth=1.2)
        ax.annotate(f"threshold {float(threshold):.2f}", (float(threshold), 0), xycoords=("data", "axes fraction"),
                    xytext=(4, 4), textcoords="offset points", fontsize=8, rotation=90, va="bottom")
    ax.set_xlabel("model score")
    ax.set_ylabel("share of pairs")
    ax.legend(fontsize=8.5, frameon=False, loc="best")
    _style(ax)
    return _png(fig, "Score distribution of bought vs not-bought pairs, each normalised to 1: "
                     "the less they overlap, the better.")


def _candidates_section(candidate_recall: Mapping[str, Any]) -> str:
    by_source = dict(candidate_recall.get("by_source") or {})
    overall = candidate_recall.get("all")
    items = sorted(((k, float(v)) for k, v in by_source.items() if _is_number(v)), key=lambda kv: kv[1])
    if _is_number(overall):
        items.append(("all sources (union)", float(overall)))
    body = ""
    if _is_number(overall):
        body += (f'<div class="kpis"><div class="kpi"><div class="label">Recall of the union</div>'
                 f'<div class="value">{_pct(float(overall))}</div>'
                 f'<div class="note">the ranker cannot do better than this</div></div></div>')
    if items:
        fig = _figure(6.4, 0.42 * len(items) + 1.0)
        ax = fig.add_subplot()
        colors = [PALETTE[0] if name.startswith("all sources") else "#93c5fd" for name, _ in items]
        bars = ax.barh([name for name, _ in items], [v for _, v in items], color=colors, height=0.6)
        ax.bar_label(bars, labels=[_pct(v) for _, v in items], fontsize=8.5, padding=3)
        ax.set_xlim(0, min(1.0, max(v for _, v in items) * 1.25) or 1.0)
        ax.set_xlabel("share of test purchases found among the candidates")
        _style(ax, "x")
        body += _png(fig, "Recall of each candidate source alone, and of their union.")
    return _section("candidates", "Candidate recall",
                    "Which share of the items users went on to buy each candidate source proposes.", body)


def _validation_section(curves: Sequence[Mapping[str, Any]]) -> str:
    figures = []
    for curve in curves:
        values = list(curve.get("values") or [])
        if not values:
            continue
        fig = _figure(5.2, 3.0)
        ax = fig.add_subplot()
        numeric = all(_is_number(v) for v in values)
        xs = [float(v) for v in values] if numeric else list(range(len(values)))
        for key, label, color, marker in (("train_score", "train", "#94a3b8", "o"),
                                          ("valid_score", "validation", PALETTE[0], "s")):
            ys = curve.get(key)
            if ys:
                ax.plot(xs[:len(ys)], ys, marker=marker, color=color, label=label, linewidth=1.8, markersize=4)
        valid = curve.get("valid_score") or []
        if valid:
            best = max(range(len(valid)), key=lambda i: valid[i])
            ax.scatter([xs[best]], [valid[best]], s=90, facecolors="none", edgecolors=BAD, linewidths=1.6,
                       zorder=5, label=f"best: {values[best]}")
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 50:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in values], rotation=20)
        ax.set_xlabel(str(curve.get("param", "parameter")))
        ax.set_ylabel(str(curve.get("metric", "score")))
        ax.set_title(f"{curve.get('param', '')}", loc="left")
        ax.legend(fontsize=8, frameon=False)
        _style(ax)
        figures.append(_png(fig, f"{curve.get('metric', 'score')} against {curve.get('param', 'the parameter')}; "
                                 "a widening gap between train and validation means over-fitting."))
    body = f'<div class="grid">{"".join(figures)}</div>'
    return _section("validation", "Validation curves", "How the chosen hyper-parameters were found.", body)


def _importance_section(importance: Sequence[Mapping[str, Any]], top: int = 20) -> str:
    rows = sorted((r for r in importance if _is_number(r.get("importance_mean"))),
                  key=lambda r: r["importance_mean"], reverse=True)[:top]
    if not rows:
        return _section("importance", "Feature importance", "", "<p>No importances given.</p>")
    rows = rows[::-1]
    fig = _figure(6.4, 0.3 * len(rows) + 1.1)
    ax = fig.add_subplot()
    means = [float(r["importance_mean"]) for r in rows]
    stds = [float(r.get("importance_std") or 0.0) for r in rows]
    ax.barh([str(r["feature"]) for r in rows], means, xerr=stds, color=PALETTE[0], alpha=0.85, height=0.65,
            error_kw={"ecolor": "#334155", "capsize": 2.5, "elinewidth": 1})
    ax.axvline(0, color="#334155", linewidth=0.8)
    ax.set_xlabel("drop in score when the feature is shuffled (mean ± std)")
    _style(ax, "x")
    lead = (f"Permutation importance{' (top ' + str(top) + ')' if len(importance) > top else ''}: "
            "features whose shuffling costs nothing carry no signal the model uses.")
    return _section("importance", "Feature importance", lead,
                    _png(fig, "Bars cross zero when the effect is within noise."))


def _cold_section(cold: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]]) -> str:
    ranker = next(iter(metrics.values()), {})
    rows = [[_esc(_label(k)), _fmt(v, k), _fmt(ranker.get(k), k)] for k, v in cold.items()]
    return _section("cold", "Cold users",
                    "Users without history before the cutoff get the fallback lists.",
                    _table(["metric", "cold users", f"{_esc(next(iter(metrics), 'ranker'))} (warm)"], rows))


# --------------------------------------------------------------------------------------------
# Export profile
# --------------------------------------------------------------------------------------------

def profile_export(input_path: Path, settings_home: Path) -> dict[str, Any]:
    """Describe an export (``ab_test.csv`` layout) before any training; a JSON-able dict.

    All aggregates run in DuckDB over :func:`ml.export.read_csv_sql`; nothing row-level
    reaches Python. Rejected rows come from the warehouse's own validation: dbt runs
    ``+rejected_rows`` into a temporary home under ``settings_home`` (deleted afterwards),
    so the reasons are exactly those a build would quarantine.
    """
    import duckdb

    from ml.export import check_export, read_csv_sql

    input_path = check_export(input_path).resolve()
    settings_home = Path(settings_home)
    started = time.perf_counter()
    profile: dict[str, Any] = {"input": str(input_path), "bytes": input_path.stat().st_size,
                               "generated_at": _now()}
    profile["rejected"] = _warehouse_rejects(input_path, settings_home)

    settings_home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="profile-spill-", dir=settings_home) as spill:
        con = duckdb.connect()
        con.execute(f"set temp_directory = '{spill}'")
        con.execute("set enable_progress_bar = false")
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"create temp table raw as select * from {read_csv_sql(input_path)}")
        columns = [r[0] for r in con.execute("describe raw").fetchall()]
        profile["columns"] = columns
        profile.update(_sql_profile(con, columns))
        con.close()
    profile["seconds"] = time.perf_counter() - started
    return profile


def _warehouse_rejects(input_path: Path, settings_home: Path) -> dict[str, Any]:
    import duckdb

    from ml.config import Settings
    from ml.warehouse import DbtError, dbt_vars, run_dbt

    settings_home.mkdir(parents=True, exist_ok=True)
    tmp_home = Path(tempfile.mkdtemp(prefix="profile-", dir=settings_home))
    try:
        settings = Settings(home=tmp_home)
        try:
            run_dbt(settings, "run", dbt_vars(input_path), select="+rejected_rows")
        except DbtError as error:
            return {"error": str(error)}
        with duckdb.connect(str(settings.build_db), read_only=True) as con:
            staged = con.execute("select count(*) from stg_ab_test__events").fetchall()[0][0]
            by_reason = con.execute("""
                select reject_reason, count(*) as n from rejected_rows group by 1 order by n desc, 1
            """).fetchall()
            # The row as written: every raw_* field the quarantine keeps (whatever the model's
            # current columns are), or the unsplittable line itself.
            present = [r[0] for r in con.execute("describe rejected_rows").fetchall()]
            fields = [c for c in present if c.startswith("raw_") and c != "raw_line"]
            joined = ("concat_ws(',', " + ", ".join(f"coalesce({f}::varchar, '')" for f in fields) + ")"
                      if fields else "''")
            line = "raw_line" if "raw_line" in present else "null"
            order = ", ".join(c for c in ("event_row_id nulls last", "line_number") if c.split()[0] in present)
            examples = con.execute(f"""
                select reject_reason, coalesce({line}, {joined}) as example
                from rejected_rows
                qualify row_number() over (partition by reject_reason{' order by ' + order if order else ''}) = 1
            """).fetchall()
        total = sum(n for _, n in by_reason)
        return {"staged_rows": int(staged), "total": int(total),
                "by_reason": [{"reason": r, "rows": int(n)} for r, n in by_reason],
                "examples": {r: e[:400] for r, e in examples}}
    finally:
        shutil.rmtree(tmp_home, ignore_errors=True)


def _records(con, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value.__class__.__name__ == "Decimal":
        return float(value)
    return value


def _sql_profile(con, columns: list[str]) -> dict[str, Any]:
    q = lambda c: '"' + c.replace('"', '""') + '"'  # noqa: E731
    out: dict[str, Any] = {}
    totals = con.execute("select count(*), count(distinct user_id) from raw").fetchall()[0]
    out["rows"], out["users"] = int(totals[0]), int(totals[1])

    # Missing values: NULL or blank text; list columns also count "[]" (an empty list).
    parts = []
    for c in columns:
        parts.append(f"count_if({q(c)} is null or trim({q(c)}) = '')")
        parts.append(f"count_if(trim({q(c)}) = '[]')")
    counts = con.execute(f"select {', '.join(parts)} from raw").fetchall()[0]
    out["missing"] = [{"column": c, "missing": int(counts[2 * i]), "empty_list": int(counts[2 * i + 1])}
                      for i, c in enumerate(columns)]

    con.execute(f"""
        create temp table ev as
        select platform, event_type, user_id,
               try_strptime(utc_event_time, '%Y-%m-%d %H:%M:%S%z') as ts,
               try_cast(utc_event_date as date) as day,
               try_cast("ecom.nm" as varchar[]) as items,
               try_cast("ecom.price100" as bigint[]) as prices
        from raw
    """)
    con.execute("drop table raw")

    out["event_mix"] = _records(con, """
        select coalesce(event_type, '(missing)') as event_type, count(*) as rows,
               count(distinct user_id) as users, sum(len(items)) as line_items
        from ev group by 1 order by rows desc""")
    out["platforms"] = _records(con, """
        select coalesce(platform, '(missing)') as platform, count(*) as rows,
               count(distinct user_id) as users,
               count_if(event_type like 'ec.%') as commerce_rows
        from ev group by 1 order by rows desc""")
    out["funnel"] = _records(con, """
        with u as (
            select user_id,
                   bool_or(event_type = 'ec.view_item') as v,
                   bool_or(event_type = 'ec.add_to_cart') as c,
                   bool_or(event_type = 'ec.purchase') as p
            from ev group by user_id)
        select count(*) as users, count_if(v) as viewers, count_if(c) as carters, count_if(p) as buyers,
               count_if(v and c) as viewers_who_carted, count_if(v and c and p) as viewers_who_carted_and_bought,
               count_if(c and p) as buyers_who_carted
        from u""")[0]

    # Prices per commerce event type: log-spaced histogram (10 bins per decade) and quantiles.
    con.execute("""
        create temp table prices as
        select event_type, unnest(prices) as p100 from ev
        where event_type like 'ec.%' and len(prices) > 0""")
    out["prices"] = {}
    for row in _records(con, """
            select event_type, count(*) as n, count_if(p100 = 0) as zeros,
                   quantile_cont(p100, [0.05, 0.5, 0.95, 0.99]) as q, max(p100) as max
            from prices where p100 is not null group by 1 order by n desc"""):
        out["prices"][row["event_type"]] = {
            "n": int(row["n"]), "zeros": int(row["zeros"]), "max": row["max"],
            "p5": row["q"][0], "median": row["q"][1], "p95": row["q"][2], "p99": row["q"][3],
            "hist": []}
    for event_type, lo, n in con.execute("""
            select event_type, floor(log10(p100 / 100.0) * 10) / 10 as lo, count(*)
            from prices where p100 > 0 group by all order by 1, 2""").fetchall():
        out["prices"][event_type]["hist"].append([float(lo), int(n)])
    con.execute("drop table prices")

    out["daily"] = _records(con, """
        select day, count(*) as rows, count(distinct user_id) as users,
               count_if(event_type = 'ec.view_item') as views,
               count_if(event_type = 'ec.add_to_cart') as carts,
               count_if(event_type = 'ec.purchase') as purchases
        from ev where day is not null group by day order by day""")
    out["hourly"] = _records(con, """
        select hour(ts) as hour, count(*) as rows,
               count_if(event_type = 'ec.purchase') as purchases
        from ev where ts is not null group by 1 order by 1""")
    out["rows_without_time"] = con.execute("select count_if(ts is null) from ev").fetchall()[0][0]

    # Long tails: rank-frequency curves, sampled at ~40 log-spaced ranks per decade.
    con.execute("""
        create temp table item_counts as
        select item_id, count(*) as n
        from (select unnest(items) as item_id from ev where event_type like 'ec.%')
        where item_id is not null group by 1""")
    con.execute("create temp table user_counts as select user_id, count(*) as n from ev group by 1")
    out["tails"] = {}
    for kind, table in (("users", "user_counts"), ("items", "item_counts")):
        stats = _records(con, f"""
            with r as (select n, row_number() over (order by n desc) as rk,
                              sum(n) over (order by n desc rows unbounded preceding) as cum
                       from {table}),
                 t as (select count(*) as k, sum(n) as total from {table})
            select t.k as count, t.total as events,
                   (select max(cum) from r where rk <= greatest(1, t.k // 100)) / t.total as top1_share,
                   (select max(cum) from r where rk <= greatest(1, t.k // 10)) / t.total as top10_share,
                   (select count(*) from {table} where n = 1) / t.k as share_once,
                   (select median(n) from {table}) as median,
                   (select max(n) from {table}) as max
            from t""")[0] if con.execute(f"select count(*) from {table}").fetchall()[0][0] else {}
        curve = con.execute(f"""
            with r as (select n, row_number() over (order by n desc) as rk from {table}),
                 picks as (select distinct greatest(1, round(pow(10, i / 40.0)))::bigint as rk
                           from range(0, 400) t(i))
            select rk, n from r where rk in (select rk from picks) or rk = (select max(rk) from r)
            order by rk""").fetchall()
        out["tails"][kind] = {**stats, "curve": [[int(a), int(b)] for a, b in curve]}
    out["items"] = out["tails"]["items"].get("count", 0)
    return _jsonable(out)


def render_profile_report(profile: Mapping[str, Any], path: Path) -> Path:
    """Write the export profile (from :func:`profile_export`) as a self-contained HTML page."""
    sections: list[tuple[str, str, str]] = []
    sections.append(("quality", "Data quality", _quality_section(profile)))
    if profile.get("event_mix"):
        sections.append(("events", "Events and funnel", _events_section(profile)))
    if profile.get("prices"):
        sections.append(("prices", "Prices", _prices_section(profile["prices"])))
    if profile.get("daily") or profile.get("hourly"):
        sections.append(("activity", "Activity over time", _activity_section(profile)))
    if profile.get("tails"):
        sections.append(("tails", "Long tails", _tails_section(profile["tails"])))

    name = Path(str(profile.get("input", "export"))).name
    title = f"Export profile: {name}"
    days = [d["day"] for d in profile.get("daily") or []]
    chips = [f"input <code>{_esc(profile.get('input', ''))}</code>"]
    if profile.get("bytes") is not None:
        chips.append(f"{profile['bytes'] / 1e6:,.1f} MB")
    for key in ("rows", "users", "items"):
        if profile.get(key) is not None:
            chips.append(f"<b>{_fmt(profile[key])}</b> {key}")
    if days:
        chips.append(f"{_esc(str(days[0])[:10])} … {_esc(str(days[-1])[:10])} ({len(days)} days)")
    columns = profile.get("columns") or []
    if columns:
        chips.append(f"{len(columns)} columns")
    header = ("<header><h1>" + _esc(title) + "</h1><div class=\"meta\">"
              + "".join(f'<span class="chip">{c}</span>' for c in chips) + "</div></header>")
    seconds = profile.get("seconds")
    footer = (f"Generated {_esc(profile.get('generated_at', _now()))} by ml.report"
              + (f" in {seconds:.1f} s" if _is_number(seconds) else "")
              + ". Aggregates cover every row the CSV reader could split (rejected rows included); "
                "the rejected-rows table is the warehouse's own verdict.")
    return _write(path, _page(title, header, sections, footer))


def _quality_section(profile: Mapping[str, Any]) -> str:
    rows_total = profile.get("rows") or 0
    body = ""
    rejected = profile.get("rejected") or {}
    body += "<h3>Rejected rows (warehouse validation)</h3>"
    if rejected.get("error"):
        body += f'<div class="warn">The warehouse could not validate this file: {_esc(rejected["error"])}</div>'
    elif rejected:
        total, staged = rejected.get("total", 0), rejected.get("staged_rows") or rows_total
        if total == 0:
            body += (f'<div class="ok">No row rejected: all {_fmt(staged)} rows pass the warehouse\'s '
                     "checks.</div>")
        else:
            share = total / staged if staged else None
            body += (f'<div class="warn"><b>{_fmt(total)}</b> rows ({_pct(share, 2)} of {_fmt(staged)}) '
                     "would be quarantined in <code>rejected_rows</code>.</div>")
            examples = rejected.get("examples") or {}
            top = max((r["rows"] for r in rejected.get("by_reason", [])), default=1)
            rows = [[f"<code>{_esc(r['reason'])}</code>", _fmt(r["rows"]),
                     f'<div class="bar"><span style="width:{100 * r["rows"] / top:.0f}%"></span></div>',
                     (_esc(examples.get(r["reason"], "")), "raw")]
                    for r in rejected.get("by_reason", [])]
            body += _table(["reason", "rows", "", "first example (as written)"], rows, text_cols=[2, 3])
    missing = profile.get("missing") or []
    if missing:
        body += "<h3>Missing values per column</h3>"
        rows = []
        for m in missing:
            share = m["missing"] / rows_total if rows_total else 0.0
            note = ""
            if m["column"] == "utc_event_time" and m["missing"]:
                note = "empty for pageview / user_engagement rows by design"
            rows.append([f"<code>{_esc(m['column'])}</code>", _fmt(m["missing"]), _pct(share, 2),
                         f'<div class="bar"><span style="width:{100 * share:.1f}%"></span></div>',
                         _fmt(m["empty_list"]) if m["empty_list"] else "–", _esc(note)])
        body += _table(["column", "missing (null or blank)", "share", "", "empty list []", "note"], rows,
                       text_cols=[3, 5])
    return _section("quality", "Data quality",
                    "What would be lost before the first model sees the data.", body)


def _events_section(profile: Mapping[str, Any]) -> str:
    mix = profile["event_mix"]
    total = sum(r["rows"] for r in mix) or 1
    fig = _figure(5.6, 0.42 * len(mix) + 1.1)
    ax = fig.add_subplot()
    ordered = mix[::-1]
    bars = ax.barh([r["event_type"] for r in ordered], [r["rows"] for r in ordered],
                   color=[EVENT_COLORS.get(r["event_type"], MUTED) for r in ordered], height=0.62)
    ax.bar_label(bars, labels=[f"{r['rows']:,}  ({100 * r['rows'] / total:.1f} %)" for r in ordered],
                 fontsize=8.5, padding=3)
    ax.set_xscale("log")
    ax.set_xlim(right=max(r["rows"] for r in mix) * 12)
    ax.set_xlabel("rows (log scale)")
    _style(ax, "x")
    mix_png = _png(fig, "Rows per event type.")

    funnel_png = ""
    funnel = profile.get("funnel") or {}
    if funnel.get("users"):
        stages = [("viewed", funnel["viewers"]), ("added to cart", funnel["carters"]),
                  ("bought", funnel["buyers"])]
        fig = _figure(5.6, 3.0)
        ax = fig.add_subplot()
        colors = [EVENT_COLORS["ec.view_item"], EVENT_COLORS["ec.add_to_cart"], EVENT_COLORS["ec.purchase"]]
        bars = ax.bar([s for s, _ in stages], [n for _, n in stages], color=colors, width=0.6)
        labels = [f"{stages[0][1]:,}"]
        for (_, prev), (_, n) in zip(stages, stages[1:]):
            labels.append(f"{n:,}\n({100 * n / prev:.0f} % of previous)" if prev else f"{n:,}")
        ax.bar_label(bars, labels=labels, fontsize=8.5, padding=2)
        ax.set_ylim(0, max(n for _, n in stages) * 1.28 or 1)
        ax.set_ylabel("users")
        _style(ax)
        funnel_png = _png(fig, f"Users with at least one event of each kind "
                               f"(of {funnel['users']:,} users; {funnel['buyers_who_carted']:,} buyers also carted).")
    body = f'<div class="grid">{mix_png}{funnel_png}</div>'
    rows = [[f"<code>{_esc(r['event_type'])}</code>", _fmt(r["rows"]), _pct(r["rows"] / total),
             _fmt(r["users"]), _fmt(r["line_items"] or 0)] for r in mix]
    body += _table(["event type", "rows", "share", "users", "line items"], rows)
    platforms = profile.get("platforms") or []
    if platforms:
        body += "<h3>Platforms</h3>" + _table(
            ["platform", "rows", "users", "commerce rows", "rows per user"],
            [[_esc(p["platform"]), _fmt(p["rows"]), _fmt(p["users"]), _fmt(p["commerce_rows"]),
              f"{p['rows'] / p['users']:.1f}" if p["users"] else "–"] for p in platforms])
    return _section("events", "Events and funnel", "", body)


def _prices_section(prices: Mapping[str, Mapping[str, Any]]) -> str:
    fig = _figure(6.8, 3.3)
    ax = fig.add_subplot()
    for event_type, p in prices.items():
        hist = p.get("hist") or []
        if not hist:
            continue
        n_pos = sum(c for _, c in hist) or 1
        edges = [10 ** lo for lo, _ in hist]
        los = [lo for lo, _ in hist]
        # Fill gaps between non-empty bins so the step outline stays honest.
        full = {round(lo, 1): c for lo, c in hist}
        start, stop = min(los), max(los)
        grid = [round(start + i / 10, 1) for i in range(int(round((stop - start) * 10)) + 1)]
        values = [full.get(g, 0) / n_pos for g in grid]
        edges = [10 ** g for g in grid] + [10 ** (grid[-1] + 0.1)]
        color = EVENT_COLORS.get(event_type, MUTED)
        ax.stairs(values, edges, color=color, linewidth=1.6,
                  label=f"{event_type} (median {p['median'] / 100:,.0f})")
        ax.stairs(values, edges, color=color, fill=True, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("unit price (price100 / 100, log scale)")
    ax.set_ylabel("share of line items")
    ax.legend(fontsize=8.5, frameon=False)
    _style(ax)
    body = _png(fig, "Price distribution per event type, 10 bins per decade, each curve normalised to 1.")
    rows = [[f"<code>{_esc(t)}</code>", _fmt(p["n"]), _fmt(p["zeros"]),
             _fmt(p["p5"] / 100), _fmt(p["median"] / 100), _fmt(p["p95"] / 100), _fmt(p["p99"] / 100),
             _fmt(p["max"] / 100)] for t, p in prices.items()]
    body += _table(["event type", "priced line items", "zero prices", "p5", "median", "p95", "p99", "max"], rows)
    return _section("prices", "Prices", "Prices are price100 / 100 (roubles for the marketplace export).", body)


def _activity_section(profile: Mapping[str, Any]) -> str:
    figures = []
    daily = profile.get("daily") or []
    if daily:
        from matplotlib import dates as mdates

        fig = _figure(5.8, 3.2)
        ax = fig.add_subplot()
        days = [datetime.fromisoformat(str(d["day"])[:10]) for d in daily]
        bottom = [0] * len(days)
        other = [d["rows"] - d["views"] - d["carts"] - d["purchases"] for d in daily]
        for label, values, color in (("views", [d["views"] for d in daily], EVENT_COLORS["ec.view_item"]),
                                     ("carts", [d["carts"] for d in daily], EVENT_COLORS["ec.add_to_cart"]),
                                     ("purchases", [d["purchases"] for d in daily], EVENT_COLORS["ec.purchase"]),
                                     ("other", other, MUTED)):
            if any(values):
                ax.bar(days, values, bottom=bottom, color=color, label=label, width=0.8)
                bottom = [b + v for b, v in zip(bottom, values)]
        ax2 = ax.twinx()
        ax2.plot(days, [d["users"] for d in daily], color="#0f172a", marker="o", markersize=3,
                 linewidth=1.4, label="active users")
        ax2.set_ylim(0, max(d["users"] for d in daily) * 1.15)
        ax2.tick_params(labelsize=8.5, colors="#0f172a")
        ax2.spines["top"].set_visible(False)
        ax2.set_ylabel("active users", fontsize=9)
        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_ylabel("rows")
        handles = ax.get_legend_handles_labels()
        handles2 = ax2.get_legend_handles_labels()
        ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], fontsize=7.5, frameon=False,
                  ncols=3, loc="upper left")
        ax.set_ylim(0, max(bottom) * 1.3)
        _style(ax)
        figures.append(_png(fig, "Rows per day by event type (bars) and daily active users (line)."))
    hourly = profile.get("hourly") or []
    if hourly:
        fig = _figure(5.8, 3.2)
        ax = fig.add_subplot()
        total = sum(h["rows"] for h in hourly) or 1
        purchases = sum(h["purchases"] for h in hourly) or 1
        ax.bar([h["hour"] for h in hourly], [100 * h["rows"] / total for h in hourly],
               color="#93c5fd", label="all timed events", width=0.8)
        ax.plot([h["hour"] for h in hourly], [100 * h["purchases"] / purchases for h in hourly],
                color=EVENT_COLORS["ec.purchase"], marker="o", markersize=3, label="purchases")
        ax.set_xticks(range(0, 24, 3))
        ax.set_xlim(-0.6, 23.6)
        ax.set_xlabel("hour of day (UTC)")
        ax.set_ylabel("% of events")
        ax.legend(fontsize=8, frameon=False)
        _style(ax)
        untimed = profile.get("rows_without_time") or 0
        figures.append(_png(fig, "Share of events per hour of day" +
                            (f" ({untimed:,} rows without a time are not counted)." if untimed else ".")))
    return _section("activity", "Activity over time", "", f'<div class="grid">{"".join(figures)}</div>')


def _tails_section(tails: Mapping[str, Mapping[str, Any]]) -> str:
    fig = _figure(6.4, 3.4)
    ax = fig.add_subplot()
    for (kind, tail), color in zip(tails.items(), (PALETTE[0], PALETTE[1])):
        curve = tail.get("curve") or []
        if curve:
            ax.loglog([c[0] for c in curve], [c[1] for c in curve], color=color, linewidth=2,
                      label=f"{kind} (events per {kind[:-1]})")
    ax.set_xlabel("rank (most active first)")
    ax.set_ylabel("events")
    ax.legend(fontsize=8.5, frameon=False)
    _style(ax, "both")
    rows = []
    for kind, tail in tails.items():
        if not tail.get("count"):
            continue
        rows.append([_esc(kind), _fmt(tail["count"]), _fmt(tail["events"]), _fmt(tail.get("median")),
                     _fmt(tail.get("max")), _pct(tail.get("top1_share")), _pct(tail.get("top10_share")),
                     _pct(tail.get("share_once"))])
    table = _table(["", "count", "events", "median", "max", "top 1 % share", "top 10 % share",
                    "seen once"], rows)
    body = (f'<div class="grid">{_png(fig, "Rank-frequency (log-log): a straight falling line is a power law.")}'
            f"<div>{table}<p class=\"lead\" style=\"margin-top:10px\">Item events count line items of "
            "commerce rows. A long tail of items seen once is what collaborative filtering cannot learn "
            "from; popular and content-based fallbacks have to cover it.</p></div></div>")
    return _section("tails", "Long tails", "How concentrated activity is on few users and few items.", body)
