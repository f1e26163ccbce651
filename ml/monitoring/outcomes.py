"""The pilot's readout: did the customers shown the lists follow them more than the control group?

The design doc's pilot succeeds if "the share of customers who follow the system's
recommendations grows by 15 %". Here that share is measured per publication on the dbt mart
``outcomes_by_user`` (``dbt_project/models/outcomes``: the API's exposure log joined to the
events of the next export): the share of exposed users who viewed, carted or bought an item
shown to them within ``outcome_days`` of their first exposure. The treatment group (users
asking for their own list) is compared with the control group (the same request answered with
the cold-start list, ``ml.serving.experiment``), each user counted once, in the group of their
first exposure, and only when the export covers their whole window.

Why a two-proportion z-interval and not a bootstrap: each metric is one yes/no per user, users
are independent, and the groups hold thousands of users, where the normal approximation is
accurate; it is exact arithmetic (no seed, no resampling cost) and its sample-size formula is
the same model, so the interval and the size it needs agree. The relative lift (the pilot's
"+15 %") gets the interval of the log risk ratio (delta method), mapped back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import duckdb

from ml.config import Config, Settings
from ml.warehouse.dbt import DbtError, run_dbt

METRICS = ("viewed_shown", "carted_shown", "bought_shown")
PILOT_LIFT = 0.15  # the design doc's success test: +15 % relative
ALPHA = 0.05
POWER = 0.8

# One row per (user, group) of one publication: the group of the user's first exposure.
_USERS_SQL = """
select experiment_group, viewed_shown, carted_shown, bought_shown, shown_revenue_rub, revenue_rub, outcome_days
from outcomes_by_user
where model_version = ? and experiment_group is not null and window_complete
qualify row_number() over (partition by user_id order by first_exposed_at, experiment_group) = 1"""
_LATEST_SQL = """
select model_version from outcomes_by_user where experiment_group is not null
group by model_version order by min(first_exposed_at) desc, model_version desc limit 1"""
_INCOMPLETE_SQL = """
select count(distinct user_id) from outcomes_by_user
where model_version = ? and experiment_group is not null and not window_complete"""


class OutcomesUnavailable(RuntimeError):
    """The home has no warehouse to read the exposures' outcomes from."""


@dataclass(frozen=True)
class Comparison:
    """One yes/no metric, treatment against control. The differences are treatment - control
    (``lift`` relative to control); every field about control is None without a control group,
    and the interval fields too when a rate is 0 (no interval can be formed)."""

    metric: str
    treatment_users: int
    treatment_rate: float
    control_users: int
    control_rate: float | None
    difference: float | None
    difference_low: float | None
    difference_high: float | None
    lift: float | None
    lift_low: float | None
    lift_high: float | None
    users_needed: int | None  # per group, to detect a PILOT_LIFT relative lift over control_rate

    @property
    def significant(self) -> bool:
        """The difference's interval excludes 0."""
        return self.difference_low is not None and (self.difference_low > 0 or self.difference_high < 0)


@dataclass(frozen=True)
class Readout:
    model_version: str
    outcome_days: int
    users_incomplete: int  # exposed users whose window the export does not cover yet (left out)
    comparisons: list[Comparison]
    revenue_share: dict[str, float | None]  # group -> revenue from shown items / all revenue in the window

    def comparison(self, metric: str) -> Comparison:
        return next(c for c in self.comparisons if c.metric == metric)

    def format(self) -> str:
        """The readout as a person reads it: one line per metric."""
        lines = [
            f"publication {self.model_version}: outcomes within {self.outcome_days} days of the first exposure "
            f"(left out: {self.users_incomplete:,} users whose window the export does not cover yet)"
        ]
        for c in self.comparisons:
            line = f"  {c.metric:13s} treatment {c.treatment_rate:.2%} of {c.treatment_users:,}"
            if c.control_rate is None:
                line += "; no control group (recsys api --control-share): no difference to read"
            else:
                line += f"  control {c.control_rate:.2%} of {c.control_users:,}"
                line += f"  difference {c.difference:+.2%}"
                if c.difference_low is not None:
                    line += f" (95% CI {c.difference_low:+.2%} .. {c.difference_high:+.2%})"
                if c.lift is not None and c.lift_low is not None:
                    line += f"  lift {c.lift:+.1%} (95% CI {c.lift_low:+.1%} .. {c.lift_high:+.1%})"
                if c.users_needed is not None:
                    line += f"  users per group to detect +{PILOT_LIFT:.0%}: {c.users_needed:,}"
            lines.append(line)
        shares = ", ".join(
            f"{group} {'n/a' if share is None else f'{share:.1%}'}" for group, share in self.revenue_share.items()
        )
        lines.append(f"  revenue share of shown items: {shares}")
        return "\n".join(lines)


def compare(
    metric: str, treated: int, treatment_users: int, controlled: int, control_users: int, confidence: float = 0.95
) -> Comparison:
    """``treated`` of ``treatment_users`` against ``controlled`` of ``control_users``: the rates,
    the difference with its (unpooled, Wald) interval, the relative lift with the log risk ratio's
    interval, and the users per group needed to detect a ``PILOT_LIFT`` lift over the control rate."""
    if treatment_users <= 0:
        raise ValueError("no treatment users")
    p_t = treated / treatment_users
    if control_users <= 0:
        return Comparison(metric, treatment_users, p_t, 0, None, None, None, None, None, None, None, None)
    p_c = controlled / control_users
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    diff = p_t - p_c
    se = math.sqrt(p_t * (1 - p_t) / treatment_users + p_c * (1 - p_c) / control_users)
    low, high = (diff - z * se, diff + z * se) if se > 0 else (None, None)
    lift = lift_low = lift_high = None
    if p_c > 0:
        lift = p_t / p_c - 1
        if p_t > 0:
            se_log = math.sqrt((1 - p_t) / treated + (1 - p_c) / controlled)
            lift_low, lift_high = (math.exp(math.log(p_t / p_c) + s * z * se_log) - 1 for s in (-1, 1))
    return Comparison(
        metric,
        treatment_users,
        p_t,
        control_users,
        p_c,
        diff,
        low,
        high,
        lift,
        lift_low,
        lift_high,
        users_needed(p_c),
    )


def users_needed(
    control_rate: float, lift: float = PILOT_LIFT, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Users per group for a two-sided two-proportion test at ``alpha`` to detect ``control_rate``
    rising by ``lift`` (relative) with probability ``power``: the standard formula
    n = (z_a/2 sqrt(2 p(1-p)) + z_b sqrt(p1(1-p1) + p2(1-p2)))^2 / (p2 - p1)^2, p the mean rate.
    None when the lifted rate is not a rate (0, or above 1)."""
    p1, p2 = control_rate, control_rate * (1 + lift)
    if not 0 < p1 < p2 < 1:
        return None
    normal = NormalDist()
    z_alpha, z_beta = normal.inv_cdf(1 - alpha / 2), normal.inv_cdf(power)
    mean = (p1 + p2) / 2
    root = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_beta * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root**2 / (p2 - p1) ** 2)


def readout(con: duckdb.DuckDBPyConnection, model_version: str | None = None) -> Readout | None:
    """The readout of one publication (default: the one first shown most recently) from a
    database holding ``outcomes_by_user``; None when no user was exposed to a home list."""
    if model_version is None:
        latest = con.execute(_LATEST_SQL).fetchone()
        if latest is None:
            return None
        model_version = latest[0]
    users = con.execute(_USERS_SQL, [model_version]).df()
    if users.empty:
        return None
    groups = {name: frame for name, frame in users.groupby("experiment_group")}
    treatment, control = groups.get("treatment"), groups.get("control")
    if treatment is None:
        return None
    n_c = 0 if control is None else len(control)
    comparisons = [
        compare(
            metric,
            int(treatment[metric].sum()),
            len(treatment),
            0 if control is None else int(control[metric].sum()),
            n_c,
        )
        for metric in METRICS
    ]
    revenue_share = {
        name: (
            float(frame["shown_revenue_rub"].sum() / frame["revenue_rub"].sum())
            if frame["revenue_rub"].sum() > 0
            else None
        )
        for name, frame in sorted(groups.items(), reverse=True)  # treatment first
    }
    incomplete = con.execute(_INCOMPLETE_SQL, [model_version]).fetchone()[0]
    return Readout(model_version, int(users["outcome_days"].iloc[0]), int(incomplete), comparisons, revenue_share)


def build_outcomes(settings: Settings, config: Config) -> None:
    """dbt build of the outcome models (tag ``outcomes``) in the home's warehouse, over its
    exposure log, with the config's ``outcome_days``. They join the events of the export the
    last run built (``int_line_items``), so that run must have read the export that follows the
    exposures. The caller holds the home's run lock: this writes the build database."""
    if not settings.build_db.exists():
        raise OutcomesUnavailable(f"no warehouse at {settings.build_db}: `recsys run` the new export first")
    try:
        run_dbt(settings, "build", config.dbt_overrides(), select="tag:outcomes")
    except DbtError as error:
        raise OutcomesUnavailable(str(error)) from None
