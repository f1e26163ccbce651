"""The export profile page: what an export holds before any training, and what training will lack.

The numbers come from ``ml.warehouse.profile`` (the warehouse's own quarantine, DuckDB aggregates
over the file, the training gaps); this module only draws the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ml.reports import kit, plots
from ml.reports.plots import EVENT_COLORS, MUTED, PALETTE, Embedded

TITLES = {
    "training": "Before training",
    "quality": "Data quality",
    "events": "Events and funnel",
    "prices": "Prices",
    "activity": "Activity over time",
    "tails": "Long tails",
}


def render_profile_report(profile: Mapping[str, Any], path: Path) -> Path:
    """Write the export profile (from :func:`profile_export`) as a self-contained HTML page."""
    sections: dict[str, Any] = {"training": profile.get("warnings"), "quality": _quality(profile)}
    if profile.get("event_mix"):
        sections["events"] = _events(profile)
    if profile.get("prices"):
        sections["prices"] = _prices(profile["prices"])
    if profile.get("daily") or profile.get("hourly"):
        sections["activity"] = _activity(profile)
    if profile.get("tails"):
        sections["tails"] = _tails(profile["tails"])
    if sections["training"] is None:  # a profile from before the check
        del sections["training"]
    seconds = profile.get("seconds")
    return kit.render(
        "profile.html.j2",
        path,
        title=f"Export profile: {Path(str(profile.get('input', 'export'))).name}",
        chips=_chips(profile),
        sections=sections,
        titles=TITLES,
        toc=[(anchor, title) for anchor, title in TITLES.items() if anchor in sections],
        generated=profile.get("generated_at") or kit.now(),
        seconds=seconds if kit.is_number(seconds) else None,
    )


def _chips(profile: Mapping[str, Any]) -> list[tuple[str, str]]:
    chips = [("input", str(profile.get("input", "")))]
    if profile.get("bytes") is not None:
        chips.append(("size", f"{profile['bytes'] / 1e6:,.1f} MB"))
    for key in ("rows", "users", "items"):
        if profile.get(key) is not None:
            chips.append((key, kit.fmt(profile[key])))
    days = [str(d["day"])[:10] for d in profile.get("daily") or []]
    if days:
        chips.append(("days", f"{days[0]} … {days[-1]} ({len(days)})"))
    if profile.get("columns"):
        chips.append(("columns", str(len(profile["columns"]))))
    return chips


def _quality(profile: Mapping[str, Any]) -> dict[str, Any]:
    rows_total = profile.get("rows") or 0
    rejected = dict(profile.get("rejected") or {})
    if rejected and not rejected.get("error"):
        staged = rejected.get("staged_rows") or rows_total
        rejected["staged"] = staged
        rejected["share"] = rejected.get("total", 0) / staged if staged else None
        top = max((r["rows"] for r in rejected.get("by_reason", [])), default=1)
        examples = rejected.get("examples") or {}
        rejected["reasons"] = [
            {**r, "bar": r["rows"] / top, "example": examples.get(r["reason"], "")}
            for r in rejected.get("by_reason", [])
        ]
    missing = [
        {
            **m,
            "share": m["missing"] / rows_total if rows_total else 0.0,
            "note": "empty for pageview / user_engagement rows by design"
            if m["column"] == "utc_event_time" and m["missing"]
            else "",
        }
        for m in profile.get("missing") or []
    ]
    return {"rejected": rejected, "missing": missing}


def _events(profile: Mapping[str, Any]) -> dict[str, Any]:
    mix = profile["event_mix"]
    total = sum(r["rows"] for r in mix) or 1
    fig = plots.figure(5.6, 0.42 * len(mix) + 1.1)
    ax = fig.add_subplot()
    ordered = mix[::-1]
    bars = ax.barh(
        [r["event_type"] for r in ordered],
        [r["rows"] for r in ordered],
        color=[EVENT_COLORS.get(r["event_type"], MUTED) for r in ordered],
        height=0.62,
    )
    ax.bar_label(
        bars, labels=[f"{r['rows']:,}  ({100 * r['rows'] / total:.1f} %)" for r in ordered], fontsize=8.5, padding=3
    )
    ax.set_xscale("log")
    ax.set_xlim(right=max(r["rows"] for r in mix) * 12)
    ax.set_xlabel("rows (log scale)")
    plots.style(ax, "x")
    figures = [plots.embed(fig, "Rows per event type.")]

    funnel = profile.get("funnel") or {}
    if funnel.get("users"):
        stages = [("viewed", funnel["viewers"]), ("added to cart", funnel["carters"]), ("bought", funnel["buyers"])]
        fig = plots.figure(5.6, 3.0)
        ax = fig.add_subplot()
        bars = ax.bar(
            [s for s, _ in stages],
            [n for _, n in stages],
            width=0.6,
            color=[EVENT_COLORS["ec.view_item"], EVENT_COLORS["ec.add_to_cart"], EVENT_COLORS["ec.purchase"]],
        )
        labels = [f"{stages[0][1]:,}"]
        for (_, previous), (_, n) in zip(stages, stages[1:]):
            labels.append(f"{n:,}\n({100 * n / previous:.0f} % of previous)" if previous else f"{n:,}")
        ax.bar_label(bars, labels=labels, fontsize=8.5, padding=2)
        ax.set_ylim(0, max(n for _, n in stages) * 1.28 or 1)
        ax.set_ylabel("users")
        plots.style(ax)
        figures.append(
            plots.embed(
                fig,
                f"Users with at least one event of each kind (of {funnel['users']:,} users; "
                f"{funnel['buyers_who_carted']:,} buyers also carted).",
            )
        )
    return {"figures": figures, "total": total, "mix": mix, "platforms": profile.get("platforms") or []}


def _prices(prices: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    fig = plots.figure(6.8, 3.3)
    ax = fig.add_subplot()
    for event_type, p in prices.items():
        hist = p.get("hist") or []
        if not hist:
            continue
        n_positive = sum(c for _, c in hist) or 1
        # Every bin between the first and the last, empty ones included, so the outline stays honest.
        counts = {round(lo, 1): c for lo, c in hist}
        start, stop = min(lo for lo, _ in hist), max(lo for lo, _ in hist)
        grid = [round(start + i / 10, 1) for i in range(int(round((stop - start) * 10)) + 1)]
        values = [counts.get(g, 0) / n_positive for g in grid]
        edges = [10**g for g in grid] + [10 ** (grid[-1] + 0.1)]
        color = EVENT_COLORS.get(event_type, MUTED)
        ax.stairs(values, edges, color=color, linewidth=1.6, label=f"{event_type} (median {p['median'] / 100:,.0f})")
        ax.stairs(values, edges, color=color, fill=True, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("unit price (price100 / 100, log scale)")
    ax.set_ylabel("share of line items")
    ax.legend(fontsize=8.5, frameon=False)
    plots.style(ax)
    return {
        "chart": plots.embed(fig, "Price distribution per event type, 10 bins per decade, each curve normalised to 1."),
        "rows": [{"event_type": t, **p} for t, p in prices.items()],
    }


def _activity(profile: Mapping[str, Any]) -> list[Embedded]:
    figures = []
    daily = profile.get("daily") or []
    if daily:
        from matplotlib import dates as mdates

        fig = plots.figure(5.8, 3.2)
        ax = fig.add_subplot()
        days = [datetime.fromisoformat(str(d["day"])[:10]) for d in daily]
        bottom = [0] * len(days)
        other = [d["rows"] - d["views"] - d["carts"] - d["purchases"] for d in daily]
        for name, values, color in (
            ("views", [d["views"] for d in daily], EVENT_COLORS["ec.view_item"]),
            ("carts", [d["carts"] for d in daily], EVENT_COLORS["ec.add_to_cart"]),
            ("purchases", [d["purchases"] for d in daily], EVENT_COLORS["ec.purchase"]),
            ("other", other, MUTED),
        ):
            if any(values):
                ax.bar(days, values, bottom=bottom, color=color, label=name, width=0.8)
                bottom = [b + v for b, v in zip(bottom, values)]
        users = ax.twinx()
        users.plot(
            days,
            [d["users"] for d in daily],
            color="#0f172a",
            marker="o",
            markersize=3,
            linewidth=1.4,
            label="active users",
        )
        users.set_ylim(0, max(d["users"] for d in daily) * 1.15)
        users.tick_params(labelsize=8.5, colors="#0f172a")
        users.spines["top"].set_visible(False)
        users.set_ylabel("active users", fontsize=9)
        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_ylabel("rows")
        handles, names = ax.get_legend_handles_labels()
        user_handles, user_names = users.get_legend_handles_labels()
        ax.legend(handles + user_handles, names + user_names, fontsize=7.5, frameon=False, ncols=3, loc="upper left")
        ax.set_ylim(0, max(bottom) * 1.3)
        plots.style(ax)
        figures.append(plots.embed(fig, "Rows per day by event type (bars) and daily active users (line)."))
    hourly = profile.get("hourly") or []
    if hourly:
        fig = plots.figure(5.8, 3.2)
        ax = fig.add_subplot()
        total = sum(h["rows"] for h in hourly) or 1
        purchases = sum(h["purchases"] for h in hourly) or 1
        ax.bar(
            [h["hour"] for h in hourly],
            [100 * h["rows"] / total for h in hourly],
            color="#93c5fd",
            label="all timed events",
            width=0.8,
        )
        ax.plot(
            [h["hour"] for h in hourly],
            [100 * h["purchases"] / purchases for h in hourly],
            color=EVENT_COLORS["ec.purchase"],
            marker="o",
            markersize=3,
            label="purchases",
        )
        ax.set_xticks(range(0, 24, 3))
        ax.set_xlim(-0.6, 23.6)
        ax.set_xlabel("hour of day (UTC)")
        ax.set_ylabel("% of events")
        ax.legend(fontsize=8, frameon=False)
        plots.style(ax)
        untimed = profile.get("rows_without_time") or 0
        figures.append(
            plots.embed(
                fig,
                "Share of events per hour of day"
                + (f" ({untimed:,} rows without a time are not counted)." if untimed else "."),
            )
        )
    return figures


def _tails(tails: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    fig = plots.figure(6.4, 3.4)
    ax = fig.add_subplot()
    for (kind, tail), color in zip(tails.items(), (PALETTE[0], PALETTE[1])):
        curve = tail.get("curve") or []
        if curve:
            ax.loglog(
                [c[0] for c in curve],
                [c[1] for c in curve],
                color=color,
                linewidth=2,
                label=f"{kind} (events per {kind[:-1]})",
            )
    ax.set_xlabel("rank (most active first)")
    ax.set_ylabel("events")
    ax.legend(fontsize=8.5, frameon=False)
    plots.style(ax, "both")
    return {
        "chart": plots.embed(fig, "Rank-frequency (log-log): a straight falling line is a power law."),
        "rows": [{"kind": kind, **tail} for kind, tail in tails.items() if tail.get("count")],
    }
