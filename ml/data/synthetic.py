"""A realistic, deterministic, streaming generator of the ``ab_test.csv`` export.

The generative model (documented in ``docs/generator.md``) plants structure a recommender
can learn and tests can verify: categories and sub-categories, users with category tastes
and a personal price tier, complement pairs bought together, re-bought (consumable) items,
rising and fading items, and sessions in which views lead to carts and purchases.

Everything is rebuilt from the seed: :func:`planted_structure` returns the catalogue and the
users (the planted truth) without writing anything; :func:`generate_export` streams the rows
in user chunks (numpy for the numbers, DuckDB for formatting and CSV writing) into a temp
file beside the output that is renamed at the end.
"""
from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import duckdb
import numpy as np
import pandas as pd

from ml.vocabulary import BASE_COLUMNS, CATEGORY_COLUMNS, EVENT_TYPES, PLATFORMS

START_DATE = np.datetime64("2023-07-31")
N_DAYS = 14
DATES = [str(START_DATE + np.timedelta64(d, "D")) for d in range(N_DAYS)]
# day-of-week activity (Mon..Sun); 2023-07-31 is a Monday; dip on Saturday
WEEKDAY_WEIGHT = np.array([1.0, 1.0, 0.99, 0.98, 0.94, 0.80, 0.93])
# share of events per UTC hour, read off the real 0.1 % sample (Moscow daytime)
HOUR_WEIGHT = np.array([
    426, 421, 582, 796, 1239, 1576, 1955, 2168, 2317, 2227, 2354, 2453,
    2487, 2357, 2254, 2259, 2291, 2355, 2689, 2510, 1945, 1325, 704, 452], dtype=float)

# event type codes (index into ml.vocabulary.EVENT_TYPES)
VIEW, CART, PURCHASE, ENGAGEMENT, PAGEVIEW = range(5)
SITE = 0  # index into ml.vocabulary.PLATFORMS: the web site, whose users engage and page-view more

# purposes of the independent random streams
_S_CATALOGUE, _S_USERS, _S_COUNTS, _S_CHUNK = 1, 2, 3, 4
# keys of the id hashes
_K_USER, _K_ITEM, _K_CAT, _K_SUB = 11, 12, 13, 14


@dataclass(frozen=True)
class GeneratorConfig:
    """Knobs of the generator. Defaults reproduce the statistics of the real export."""

    rows: int = 1_000_000
    seed: int = 7
    with_categories: bool = False
    # volume
    rows_per_user: float = 100.7
    rows_per_item_seen: float = 7.2
    catalogue_factor: float = 1.6       # catalogue size / expected distinct items seen
    chunk_rows: int = 1_000_000
    # event mix (shares of rows)
    event_shares: tuple[float, ...] = (0.8840, 0.0658, 0.0114, 0.0295, 0.0093)
    # users
    platform_shares: tuple[float, float, float] = (0.521, 0.328, 0.152)
    platform_activity: tuple[float, float, float] = (0.15, 1.0, 1.25)
    viewer_share: tuple[float, float, float] = (0.655, 0.975, 0.975)
    carter_share: tuple[float, float, float] = (0.27, 0.67, 0.67)   # of viewers
    buyer_share: float = 0.60            # of cart users
    activity_sigma: float = 1.25         # log-normal spread of activity per user
    max_taste_categories: int = 3
    explore: float = 0.10                # share of draws outside the user's tastes
    # catalogue
    n_categories: int = 48
    zipf_exponent: float = 0.95          # popularity by rank inside a category
    category_zipf: float = 0.8
    price_log_median_rub: float = 6.86
    category_price_sigma: float = 0.45
    item_price_sigma: float = 1.07
    anchor_share: float = 0.03           # most popular items per category that have a complement
    rebuy_share: float = 0.015           # consumable items per category
    trend_share: float = 0.002           # rising (and as many fading) items per category
    # behaviour
    candidates: int = 3                  # popularity-weighted candidates per item draw
    purchase_candidates: int = 6
    purchase_cheap_shift: float = 0.7    # buyers pick items this far (in z) below their tier
    cart_cheap_shift: float = 0.25
    session_focus: float = 0.65          # browse views in the session's category
    review_share: float = 0.22           # browse views repeating an item the user viewed
    rows_per_session: float = 12.0
    multi_item_share: float = 0.156
    multi_extra_p: float = 0.42          # geometric extra items beyond 2 (mean size ~3.37)
    complement_prob: float = 0.85        # 2nd item of a multi basket is the anchor's complement
    staple_prob: float = 0.30            # purchase row starts with the user's staple item
    trend_rate: float = 0.03             # max share of a category's draws sent to trend items
    zero_price: tuple[float, float, float] = (0.0055, 0.003, 0.001)
    odd_qty: float = 1e-4
    gap_seconds: float = 40.0            # mean gap between events of a session
    duckdb_memory_limit: str = "1GB"


@dataclass
class GenerateStats:
    rows: int
    users: int
    seconds: float
    items: int = 0                      # catalogue size (items that may appear)
    path: str = ""


# --------------------------------------------------------------------------- ids

def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def id_parts(seed: int, kind: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) uint64 halves of the 128-bit id of ``index``: 2**110 <= id < 2**127 (34..39 digits)."""
    index = np.asarray(index, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed * 64 + kind], dtype=np.uint64))[0]
        hi = _splitmix64(index ^ key)
        lo = _splitmix64(hi ^ index ^ np.uint64(0x5851F42D4C957F2D))
    hi &= np.uint64((1 << 63) - 1)      # below 2**127: DuckDB's HUGEINT prints it fast
    hi |= np.uint64(1 << 46)
    return hi, lo


def id_strings(seed: int, kind: int, index) -> np.ndarray:
    """Decimal text of the 128-bit ids (object array). Meant for checks, not bulk output."""
    hi, lo = id_parts(seed, kind, np.atleast_1d(np.asarray(index)))
    return np.array([str((int(h) << 64) | int(l)) for h, l in zip(hi, lo)], dtype=object)


def _rng(seed: int, *purpose: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *purpose])))


# --------------------------------------------------------------------------- catalogue

@dataclass
class PlantedStructure:
    """The planted truth, rebuilt deterministically from the config (seed, rows).

    Items are numbered category by category, most popular first inside a category
    (``item_rank``). Id strings come from :meth:`item_ids`, :meth:`user_ids`,
    :meth:`category_ids`, :meth:`subcategory_ids`.
    """

    config: GeneratorConfig
    # categories
    cat_offset: np.ndarray          # first item of each category (n_categories + 1)
    cat_weight: np.ndarray          # popularity of each category (sums to 1)
    cat_price_mu: np.ndarray        # log price (rubles) centre of each category
    cat_partner: np.ndarray         # category complements are taken from
    cat_n_sub: np.ndarray
    # items
    item_category: np.ndarray       # int16
    item_subcategory: np.ndarray    # int32, global sub-category index
    item_rank: np.ndarray           # rank of popularity inside the category
    item_z: np.ndarray              # standardised log price inside the category (price tier)
    item_price100: np.ndarray       # int64, multiple of 100
    item_complement: np.ndarray     # complement item or -1
    item_rebuy: np.ndarray          # bool
    item_trend: np.ndarray          # int8: +1 rising, -1 fading, 0 steady
    rebuy_list: np.ndarray
    rebuy_offset: np.ndarray
    rising_list: np.ndarray
    rising_offset: np.ndarray
    fading_list: np.ndarray
    fading_offset: np.ndarray
    # users
    user_platform: np.ndarray       # int8 index into PLATFORMS
    user_tier: np.ndarray           # float32, N(0,1): preferred item_z
    user_taste: np.ndarray          # int16 [U, k], -1 padded
    user_taste_cum: np.ndarray      # float32 [U, k] cumulative taste weights
    user_staple: np.ndarray         # int64 re-buy item of the top taste category or -1
    user_activity: np.ndarray       # float32 activity weight
    user_window_start: np.ndarray   # int8
    user_window_span: np.ndarray    # int8
    counts: np.ndarray = field(repr=False, default=None)  # int32 [U, 5] rows per event type

    # ---- convenience views of the truth
    @property
    def n_items(self) -> int:
        return int(self.item_category.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_platform.shape[0])

    @property
    def complement_pairs(self) -> np.ndarray:
        """[n, 2] item indices (anchor, complement)."""
        anchors = np.flatnonzero(self.item_complement >= 0)
        return np.stack([anchors, self.item_complement[anchors]], axis=1)

    @property
    def rebuy_items(self) -> np.ndarray:
        return np.flatnonzero(self.item_rebuy)

    @property
    def rising_items(self) -> np.ndarray:
        return np.flatnonzero(self.item_trend > 0)

    @property
    def fading_items(self) -> np.ndarray:
        return np.flatnonzero(self.item_trend < 0)

    def item_ids(self, index=None) -> np.ndarray:
        index = np.arange(self.n_items) if index is None else index
        return id_strings(self.config.seed, _K_ITEM, index)

    def user_ids(self, index=None) -> np.ndarray:
        index = np.arange(self.n_users) if index is None else index
        return id_strings(self.config.seed, _K_USER, index)

    def category_ids(self, index=None) -> np.ndarray:
        index = np.arange(len(self.cat_weight)) if index is None else index
        return id_strings(self.config.seed, _K_CAT, index)

    def subcategory_ids(self, index=None) -> np.ndarray:
        index = np.arange(int(self.cat_n_sub.sum())) if index is None else index
        return id_strings(self.config.seed, _K_SUB, index)

    def items_frame(self) -> pd.DataFrame:
        """One row per catalogue item with its id, category id and planted roles."""
        return pd.DataFrame({
            "item_id": self.item_ids(),
            "item": np.arange(self.n_items),
            "category": self.item_category.astype(np.int64),
            "category_id": self.category_ids()[self.item_category],
            "subcategory": self.item_subcategory,
            "rank": self.item_rank,
            "price100": self.item_price100,
            "price_z": self.item_z,
            "complement": self.item_complement,
            "rebuy": self.item_rebuy,
            "trend": self.item_trend,
        })

    def users_frame(self) -> pd.DataFrame:
        taste = self.user_taste
        return pd.DataFrame({
            "user_id": self.user_ids(),
            "user": np.arange(self.n_users),
            "platform": np.array(PLATFORMS)[self.user_platform],
            "tier": self.user_tier,
            "taste": [tuple(int(c) for c in row if c >= 0) for row in taste],
            "staple": self.user_staple,
            "rows": self.counts.sum(axis=1) if self.counts is not None else 0,
        })


def _lists(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(groups, kind="stable")
    offset = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=n_groups), out=offset[1:])
    return values[order].astype(np.int64), offset


def _build_catalogue(config: GeneratorConfig) -> dict:
    rng = _rng(config.seed, _S_CATALOGUE)
    C = config.n_categories
    expected_seen = max(config.rows, 1) / config.rows_per_item_seen
    n_items = max(int(round(expected_seen * config.catalogue_factor)), 4 * C)

    cat_weight = (np.arange(1, C + 1, dtype=float) ** -config.category_zipf)
    cat_weight *= rng.lognormal(0.0, 0.3, C)
    cat_weight /= cat_weight.sum()
    # category sizes follow their popularity (with a floor) and sum to n_items
    share = 0.5 * cat_weight + 0.5 / C
    sizes = np.maximum(2, np.floor(share * n_items).astype(np.int64))
    sizes[np.argmax(sizes)] += n_items - sizes.sum()
    cat_offset = np.zeros(C + 1, dtype=np.int64)
    np.cumsum(sizes, out=cat_offset[1:])
    n_items = int(cat_offset[-1])
    item_category = np.repeat(np.arange(C, dtype=np.int16), sizes)
    item_rank = np.arange(n_items, dtype=np.int64) - cat_offset[item_category]

    # prices: category centre (a few expensive categories: right skew) + item tier
    # stratified normal quantiles (randomly assigned) keep the price distribution stable
    # across seeds; a right skew gives a few expensive categories; centred on popularity
    q = np.array([NormalDist().inv_cdf((i + 0.5) / C) for i in range(C)])
    spread = config.category_price_sigma * q
    cat_price_mu = rng.permutation(spread)
    cat_price_mu += config.price_log_median_rub - float(cat_weight @ cat_price_mu)
    item_z = rng.standard_normal(n_items).astype(np.float32)

    # sub-categories: 4..12 per category
    cat_n_sub = rng.integers(4, 13, C)
    sub_offset = np.concatenate([[0], np.cumsum(cat_n_sub)])
    item_subcategory = (sub_offset[item_category]
                        + np.floor(rng.random(n_items) * cat_n_sub[item_category])).astype(np.int32)

    # re-buy (consumable) items: a share of each category among its top 20 % ranks, cheap
    top = item_rank < np.maximum(2, 0.2 * sizes[item_category])
    item_rebuy = top & (rng.random(n_items) < config.rebuy_share / 0.2)
    for c in range(C):      # at least one per category
        if not item_rebuy[cat_offset[c]:cat_offset[c + 1]].any():
            item_rebuy[cat_offset[c] + min(1, sizes[c] - 1)] = True
    item_z[item_rebuy] = -np.abs(item_z[item_rebuy]) - 0.6

    # complements: top ranks of each category point to a cheap, fairly popular item of the
    # category's partner category
    cat_partner = (np.arange(C) + rng.integers(1, C, C)) % C
    n_anchor = np.maximum(1, np.ceil(config.anchor_share * sizes)).astype(np.int64)
    anchor = (item_rank < n_anchor[item_category]) & ~item_rebuy
    anchors = np.flatnonzero(anchor)
    partner = cat_partner[item_category[anchors]]
    best = None
    best_z = None
    for _ in range(4):
        r = _zipf_rank(rng.random(len(anchors)), sizes[partner], config.zipf_exponent)
        cand = cat_offset[partner] + r
        cz = item_z[cand]
        if best is None:
            best, best_z = cand, cz
        else:
            take = cz < best_z
            best = np.where(take, cand, best)
            best_z = np.where(take, cz, best_z)
    item_complement = np.full(n_items, -1, dtype=np.int64)
    item_complement[anchors] = best
    item_z[best] = np.minimum(item_z[best], -0.3)    # accessories are cheap

    # trends: rising and fading items among the non-anchor, non-rebuy ranks
    item_trend = np.zeros(n_items, dtype=np.int8)
    free = ~anchor & ~item_rebuy & (item_rank >= n_anchor[item_category])
    free &= ~np.isin(np.arange(n_items), best)
    n_trend = np.maximum(1, np.round(config.trend_share * sizes)).astype(np.int64)
    for c in range(C):
        pool = np.flatnonzero(free[cat_offset[c]:cat_offset[c + 1]]) + cat_offset[c]
        pool = pool[pool < cat_offset[c] + max(2 * n_trend[c], sizes[c] // 2)] if len(pool) > 4 else pool
        k = int(min(n_trend[c], len(pool) // 2))
        if k == 0:
            continue
        chosen = rng.choice(pool, 2 * k, replace=False)
        item_trend[chosen[:k]] = 1
        item_trend[chosen[k:]] = -1

    zf = item_z.astype(float)
    log_price = cat_price_mu[item_category] + config.item_price_sigma * zf + 0.06 * np.maximum(zf, 0) ** 2
    item_price100 = np.clip(np.round(np.exp(log_price)), 1, 300_000).astype(np.int64) * 100

    rebuy_list, rebuy_offset = _lists(np.flatnonzero(item_rebuy), item_category[item_rebuy].astype(np.int64), C)
    rise = item_trend > 0
    fade = item_trend < 0
    rising_list, rising_offset = _lists(np.flatnonzero(rise), item_category[rise].astype(np.int64), C)
    fading_list, fading_offset = _lists(np.flatnonzero(fade), item_category[fade].astype(np.int64), C)
    return dict(
        cat_offset=cat_offset, cat_weight=cat_weight, cat_price_mu=cat_price_mu,
        cat_partner=cat_partner, cat_n_sub=cat_n_sub,
        item_category=item_category, item_subcategory=item_subcategory, item_rank=item_rank,
        item_z=item_z, item_price100=item_price100, item_complement=item_complement,
        item_rebuy=item_rebuy, item_trend=item_trend,
        rebuy_list=rebuy_list, rebuy_offset=rebuy_offset,
        rising_list=rising_list, rising_offset=rising_offset,
        fading_list=fading_list, fading_offset=fading_offset,
    )


def _zipf_rank(u: np.ndarray, n: np.ndarray, s: float) -> np.ndarray:
    """Rank in [0, n) with P(rank) ~ (rank + 1) ** -s (continuous inverse CDF)."""
    a = 1.0 - s
    n = np.asarray(n, dtype=float)
    x = (1.0 + u * ((n + 1.0) ** a - 1.0)) ** (1.0 / a) - 1.0
    return np.minimum(x.astype(np.int64), n.astype(np.int64) - 1)


# --------------------------------------------------------------------------- users

def _allocate(rng, total: int, weight: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Split ``total`` rows over eligible users: one each, the rest multinomial by weight."""
    out = np.zeros(len(weight), dtype=np.int64)
    if total <= 0:
        return out
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:                       # tiny exports: anyone may carry the rows
        idx = np.arange(len(weight))
    w = weight[idx].astype(float)
    if total < len(idx):
        chosen = rng.choice(idx, total, replace=False, p=w / w.sum())
        out[chosen] = 1
        return out
    out[idx] = 1 + rng.multinomial(total - len(idx), w / w.sum())
    return out


def _build_users(config: GeneratorConfig, cat: dict) -> dict:
    rng = _rng(config.seed, _S_USERS)
    N = int(config.rows)
    U = max(1, int(round(N / config.rows_per_user)))
    C = config.n_categories
    # platforms in exact proportions (largest remainder), shuffled
    pshare = np.asarray(config.platform_shares, dtype=float) / sum(config.platform_shares)
    n_plat = np.floor(pshare * U).astype(np.int64)
    n_plat[np.argsort(-(pshare * U - n_plat))[: U - n_plat.sum()]] += 1
    platform = rng.permutation(np.repeat(np.arange(3, dtype=np.int8), n_plat))
    tier = rng.standard_normal(U).astype(np.float32)
    activity = np.exp(config.activity_sigma * rng.standard_normal(U))
    activity = np.minimum(activity, np.quantile(activity, 0.9995) if U > 100 else activity.max())
    activity = (activity * np.asarray(config.platform_activity)[platform]).astype(np.float32)

    # tastes: 1..k categories drawn by category popularity, Dirichlet weights
    k = config.max_taste_categories
    n_taste = rng.integers(1, k + 1, U)
    taste = rng.choice(C, (U, k), p=cat["cat_weight"]).astype(np.int16)
    w = rng.gamma(1.0, 1.0, (U, k))
    w[np.arange(k)[None, :] >= n_taste[:, None]] = 0.0
    order = np.argsort(-w, axis=1)
    w = np.take_along_axis(w, order, axis=1)
    taste = np.take_along_axis(taste, order, axis=1)
    taste[w == 0] = -1
    cum = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    cum[:, -1] = 1.0
    taste_cum = cum.astype(np.float32)

    # staple: a re-buy item of the top taste category
    top = taste[:, 0].astype(np.int64)
    n_rebuy = cat["rebuy_offset"][top + 1] - cat["rebuy_offset"][top]
    pick = np.floor(rng.random(U) ** 2 * n_rebuy).astype(np.int64)   # favour popular ones
    staple = np.where(n_rebuy > 0, cat["rebuy_list"][np.minimum(cat["rebuy_offset"][top] + pick,
                                                                 len(cat["rebuy_list"]) - 1)], -1)

    # funnel flags
    viewer = rng.random(U) < np.asarray(config.viewer_share)[platform]
    carter = viewer & (rng.random(U) < np.asarray(config.carter_share)[platform])
    buyer = (carter & (rng.random(U) < config.buyer_share)) | (viewer & ~carter & (rng.random(U) < 0.004))
    site = platform == SITE
    engager = ~viewer | (site & (rng.random(U) < 0.55)) | (~site & (rng.random(U) < 0.25))
    pageviewer = (site & (rng.random(U) < 0.5)) | (~viewer & site)

    # exact row totals per event type
    shares = np.asarray(config.event_shares, dtype=float)
    shares = shares / shares.sum()
    totals = np.floor(shares * N).astype(np.int64)
    totals[VIEW] = N - totals[1:].sum()
    crng = _rng(config.seed, _S_COUNTS)
    cart_rate = np.exp(0.5 * crng.standard_normal(U))
    buy_rate = np.exp(0.6 * crng.standard_normal(U))
    counts = np.zeros((U, 5), dtype=np.int64)
    counts[:, CART] = _allocate(crng, int(totals[CART]), activity * cart_rate, carter)
    counts[:, PURCHASE] = _allocate(crng, int(totals[PURCHASE]), activity ** 0.8 * buy_rate, buyer)
    soft = np.where(site, 1.0, 0.35) * (1.0 + activity) ** 0.3
    counts[:, ENGAGEMENT] = _allocate(crng, int(totals[ENGAGEMENT]), soft, engager)
    counts[:, PAGEVIEW] = _allocate(crng, int(totals[PAGEVIEW]), soft, pageviewer)
    view_eligible = viewer | (counts[:, CART] > 0) | (counts[:, PURCHASE] > 0)
    counts[:, VIEW] = _allocate(crng, int(totals[VIEW]), activity, view_eligible)
    assert counts.sum() == N

    # active-day window: heavier users are active on more days
    n_sessions = np.maximum(1, (counts[:, :3].sum(axis=1) / config.rows_per_session))
    span = np.minimum(N_DAYS, 1 + rng.poisson(2.0 * np.sqrt(n_sessions))).astype(np.int8)
    start = rng.integers(0, N_DAYS, U).astype(np.int8)
    return dict(
        user_platform=platform, user_tier=tier, user_taste=taste, user_taste_cum=taste_cum,
        user_staple=staple.astype(np.int64), user_activity=activity,
        user_window_start=start, user_window_span=span, counts=counts.astype(np.int32),
    )


def planted_structure(config: GeneratorConfig) -> PlantedStructure:
    """The catalogue and users behind ``generate_export(config, ...)``, rebuilt from the seed."""
    cat = _build_catalogue(config)
    users = _build_users(config, cat)
    return PlantedStructure(config=config, **cat, **users)


# --------------------------------------------------------------------------- chunk generation

class _ChunkMaker:
    def __init__(self, truth: PlantedStructure):
        self.t = truth
        self.c = truth.config
        cat_n = np.diff(truth.cat_offset)
        self.cat_n = cat_n
        self.cat_cum = np.cumsum(truth.cat_weight)
        self.cat_cum[-1] = 1.0
        self.rise_n = np.diff(truth.rising_offset)
        self.fade_n = np.diff(truth.fading_offset)
        day_w = WEEKDAY_WEIGHT[np.arange(N_DAYS) % 7]
        self.day_accept = day_w / day_w.max()
        self.hour_cum = np.cumsum(HOUR_WEIGHT / HOUR_WEIGHT.sum())
        self.hour_cum[-1] = 1.0

    # -- categories and items
    def taste_category(self, rng, users: np.ndarray) -> np.ndarray:
        t = self.t
        u = rng.random(len(users)).astype(np.float32)
        cum = t.user_taste_cum[users]
        slot = (u[:, None] > cum).sum(axis=1)
        slot = np.minimum(slot, cum.shape[1] - 1)
        cats = t.user_taste[users, slot].astype(np.int64)
        explore = (rng.random(len(users)) < self.c.explore) | (cats < 0)
        if explore.any():
            cats[explore] = np.searchsorted(self.cat_cum, rng.random(int(explore.sum())))
        return np.minimum(cats, len(self.cat_n) - 1)

    def draw_items(self, rng, cats, users, days, k: int, shift: float) -> np.ndarray:
        """k popularity-weighted candidates per draw; keep the one nearest to tier - shift."""
        t = self.t
        n = len(cats)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        tiers = t.user_tier[users]
        off = t.cat_offset[cats]
        size = self.cat_n[cats]
        best = None
        best_score = None
        for _ in range(k):
            item = off + _zipf_rank(rng.random(n), size, self.c.zipf_exponent)
            z = t.item_z[item]
            score = np.abs(z - tiers + shift)
            if best is None:
                best, best_score = item, score
            else:
                take = score < best_score
                best = np.where(take, item, best)
                best_score = np.where(take, score, best_score)
        # trends: a share of the draws growing (rising) or shrinking (fading) over the days
        u = rng.random(n)
        frac = days / (N_DAYS - 1)
        p_rise = self.c.trend_rate * frac
        p_fade = self.c.trend_rate * (1.0 - frac)
        rise = (u < p_rise) & (self.rise_n[cats] > 0)
        fade = (u >= p_rise) & (u < p_rise + p_fade) & (self.fade_n[cats] > 0)
        if rise.any():
            c = cats[rise]
            j = t.rising_offset[c] + np.floor(rng.random(len(c)) * self.rise_n[c]).astype(np.int64)
            best[rise] = t.rising_list[j]
        if fade.any():
            c = cats[fade]
            j = t.fading_offset[c] + np.floor(rng.random(len(c)) * self.fade_n[c]).astype(np.int64)
            best[fade] = t.fading_list[j]
        return best

    def make(self, chunk: int, u0: int, u1: int) -> dict:
        t, c = self.t, self.c
        rng = _rng(c.seed, _S_CHUNK, chunk)
        users = np.arange(u0, u1, dtype=np.int64)
        counts = t.counts[u0:u1].astype(np.int64)
        nu = len(users)
        nv, nc, npr, ne, npv = (counts[:, i] for i in range(5))

        # ---- sessions: purchase sessions first, then browse sessions; engagement-only users
        commerce = nv + nc + npr
        n_cs = np.where(commerce > 0, np.maximum(npr, np.ceil(commerce / c.rows_per_session)), 0)
        n_es = np.where(commerce > 0, 0, np.ceil((ne + npv) / 3.0))
        n_sess = (n_cs + n_es).astype(np.int64)
        sess_off = np.concatenate([[0], np.cumsum(n_sess)])
        S = int(sess_off[-1])
        s_user = np.repeat(np.arange(nu), n_sess)
        gu = users[s_user]
        span = t.user_window_span[gu].astype(np.int64)
        start = t.user_window_start[gu].astype(np.int64)
        day = (start + np.floor(rng.random(S) * span).astype(np.int64)) % N_DAYS
        redraw = rng.random(S) > self.day_accept[day]
        day[redraw] = (start[redraw] + np.floor(rng.random(int(redraw.sum())) * span[redraw]).astype(np.int64)) % N_DAYS
        hour = np.searchsorted(self.hour_cum, rng.random(S))
        s_start = hour * 3600 + np.floor(rng.random(S) * 3600).astype(np.int64)
        s_cat = self.taste_category(rng, gu)

        def user_rows(cnt):
            ru = np.repeat(np.arange(nu), cnt)
            off = np.concatenate([[0], np.cumsum(cnt)])
            rank = np.arange(int(off[-1])) - off[ru]
            return ru, rank, off

        def random_session(ru, n_of_user):
            return sess_off[ru] + np.floor(rng.random(len(ru)) * n_of_user[ru]).astype(np.int64)

        # ---- purchases -> line items
        p_u, p_rank, _ = user_rows(npr)
        P = len(p_u)
        p_sess = sess_off[p_u] + p_rank
        multi = rng.random(P) < c.multi_item_share
        size = np.ones(P, dtype=np.int64)
        size[multi] = np.minimum(13, 2 + rng.geometric(c.multi_extra_p, int(multi.sum())) - 1)
        l_row = np.repeat(np.arange(P), size)
        l_off = np.concatenate([[0], np.cumsum(size)])
        l_pos = np.arange(len(l_row)) - l_off[l_row]
        L = len(l_row)
        l_u = p_u[l_row]
        l_sess = p_sess[l_row]
        l_day = day[l_sess]
        focus = rng.random(L) < 0.5
        l_cat = np.where((l_pos == 0) | focus, s_cat[l_sess], self.taste_category(rng, users[l_u]))
        l_item = self.draw_items(rng, l_cat, users[l_u], l_day, c.purchase_candidates, c.purchase_cheap_shift)
        first = l_off[:-1]
        staple = t.user_staple[users[p_u]]
        use_staple = (staple >= 0) & (rng.random(P) < c.staple_prob)
        l_item[first[use_staple]] = staple[use_staple]
        second = l_off[:-1][multi] + 1
        comp = t.item_complement[l_item[l_off[:-1][multi]]]
        use_comp = (comp >= 0) & (rng.random(len(comp)) < c.complement_prob)
        l_item[second[use_comp]] = comp[use_comp]
        nL = np.bincount(l_u, minlength=nu)
        line_off = np.concatenate([[0], np.cumsum(nL)])

        # ---- carts: purchased lines first (same session), then abandoned carts
        c_u, c_rank, _ = user_rows(nc)
        from_line = c_rank < nL[c_u]
        li = line_off[c_u] + np.minimum(c_rank, np.maximum(nL[c_u] - 1, 0))
        c_sess = np.where(from_line, l_sess[np.minimum(li, max(L - 1, 0))] if L else 0, 0)
        ab = ~from_line
        c_sess[ab] = random_session(c_u[ab], n_cs)
        c_item = np.zeros(len(c_u), dtype=np.int64)
        if L:
            c_item[from_line] = l_item[li[from_line]]
        ab_cat = np.where(rng.random(int(ab.sum())) < c.session_focus, s_cat[c_sess[ab]],
                          self.taste_category(rng, users[c_u[ab]]))
        c_item[ab] = self.draw_items(rng, ab_cat, users[c_u[ab]], day[c_sess[ab]], c.candidates, c.cart_cheap_shift)
        cart_off = np.concatenate([[0], np.cumsum(nc)])

        # ---- views: carted items first (same session), then browsing
        v_u, v_rank, _ = user_rows(nv)
        from_cart = v_rank < nc[v_u]
        ci = cart_off[v_u] + np.minimum(v_rank, np.maximum(nc[v_u] - 1, 0))
        V = len(v_u)
        v_sess = np.zeros(V, dtype=np.int64)
        v_item = np.zeros(V, dtype=np.int64)
        if len(c_u):
            v_sess[from_cart] = c_sess[ci[from_cart]]
            v_item[from_cart] = c_item[ci[from_cart]]
        br = np.flatnonzero(~from_cart)
        b_u = v_u[br]
        v_sess[br] = random_session(b_u, n_cs)
        b_cat = np.where(rng.random(len(br)) < c.session_focus, s_cat[v_sess[br]],
                         self.taste_category(rng, users[b_u]))
        fresh = self.draw_items(rng, b_cat, users[b_u], day[v_sess[br]], c.candidates, 0.0)
        # re-views: repeat the fresh draw of another browse view of the same user
        n_browse = (nv - np.minimum(nv, nc))[b_u]
        first_b = np.concatenate([[0], np.cumsum(nv - np.minimum(nv, nc))])[b_u]
        src = first_b + np.floor(rng.random(len(br)) * n_browse).astype(np.int64)
        rev = rng.random(len(br)) < c.review_share
        fresh = np.where(rev, fresh[src], fresh) if len(br) else fresh
        v_item[br] = fresh

        # ---- engagement and pageview rows
        e_u, _, _ = user_rows(ne)
        g_u, _, _ = user_rows(npv)
        e_sess = random_session(e_u, n_sess)
        g_sess = random_session(g_u, n_sess)

        # ---- assemble rows (purchases carry their first line item here)
        etype = np.concatenate([np.full(V, VIEW), np.full(len(c_u), CART), np.full(P, PURCHASE),
                                np.full(len(e_u), ENGAGEMENT), np.full(len(g_u), PAGEVIEW)]).astype(np.int8)
        sess = np.concatenate([v_sess, c_sess, p_sess, e_sess, g_sess])
        item = np.concatenate([v_item, c_item, l_item[first] if P else np.zeros(0, np.int64),
                               np.full(len(e_u) + len(g_u), -1)])
        p_index = np.concatenate([np.full(V + len(c_u), -1), np.arange(P), np.full(len(e_u) + len(g_u), -1)])
        stage = np.minimum(etype, 2)
        stage[etype >= ENGAGEMENT] = rng.integers(0, 3, int((etype >= ENGAGEMENT).sum()))
        n = len(etype)
        order = np.lexsort((rng.random(n), stage, sess))
        etype, sess, item, p_index = etype[order], sess[order], item[order], p_index[order]
        # timestamps: session start + cumulated gaps, kept inside the session's day
        gap = 1 + np.floor(rng.exponential(c.gap_seconds, n)).astype(np.int64)
        cum = np.cumsum(gap)
        sess_first = np.searchsorted(sess, np.arange(S))
        base = np.concatenate([[0], cum])[sess_first]
        within = cum - base[sess]
        dur = np.zeros(S, dtype=np.int64)
        np.maximum.at(dur, sess, within) if n else None
        s_begin = np.maximum(0, np.minimum(s_start, 86399 - dur))
        sec = np.minimum(86399, s_begin[sess] + within)
        ts = day[sess] * 86400 + sec
        out = np.argsort(ts, kind="stable")
        etype, sess, item, p_index, ts = etype[out], sess[out], item[out], p_index[out], ts[out]
        row_user = users[s_user[sess]]

        # ---- per-row values
        commerce_row = etype <= PURCHASE
        it = np.where(item >= 0, item, 0)
        price = np.where(commerce_row, t.item_price100[it], 0)
        zp = np.asarray(c.zero_price)[np.minimum(etype, 2)]
        price[commerce_row & (rng.random(n) < zp)] = 0
        qty = np.ones(n, dtype=np.int64)
        odd = commerce_row & (etype > VIEW) & (rng.random(n) < c.odd_qty * 8)
        qty[odd] = 1 + rng.geometric(0.5, int(odd.sum()))
        huge = odd & (rng.random(n) < 0.02)
        qty[huge] = rng.integers(20, 222, int(huge.sum()))
        n_items = np.where(commerce_row, 1, 0).astype(np.int8)

        # multi-item purchase rows: line items in row order
        mrow = np.flatnonzero((etype == PURCHASE) & (p_index >= 0))
        mrow = mrow[size[p_index[mrow]] > 1]
        n_items[mrow] = 2
        m_lines = None
        if len(mrow):
            pi = p_index[mrow]
            reps = size[pi]
            m_r = np.repeat(np.arange(len(mrow)), reps)
            m_pos = np.arange(int(reps.sum())) - np.concatenate([[0], np.cumsum(reps)])[m_r]
            m_l = l_off[pi][m_r] + m_pos
            m_item = l_item[m_l]
            m_price = t.item_price100[m_item]
            m_price[rng.random(len(m_item)) < c.zero_price[2]] = 0
            m_lines = dict(r=m_r, pos=m_pos, item=m_item, price=m_price, qty=np.ones(len(m_item), dtype=np.int64))

        return dict(etype=etype, ts=ts, user=row_user, platform=t.user_platform[row_user],
                    item=item, price=price, qty=qty, n_items=n_items, mrow=mrow, m_lines=m_lines,
                    null_time=etype >= ENGAGEMENT)


# --------------------------------------------------------------------------- formatting

def _frame(truth: PlantedStructure, ch: dict) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    seed = truth.config.seed
    cats = truth.config.with_categories
    uhi, ulo = id_parts(seed, _K_USER, ch["user"])
    it = np.where(ch["item"] >= 0, ch["item"], 0)
    ihi, ilo = id_parts(seed, _K_ITEM, it)
    ts = np.where(ch["null_time"], -1, ch["ts"])
    cols = {
        "plat": ch["platform"].astype(np.int8), "ts": ts.astype(np.int64),
        "day": (ch["ts"] // 86400).astype(np.int8), "uhi": uhi, "ulo": ulo,
        "et": ch["etype"], "n": ch["n_items"], "price": ch["price"], "qty": ch["qty"],
        "ihi": ihi, "ilo": ilo,
    }
    if cats:
        cat = truth.item_category[it].astype(np.int64)
        sub = truth.item_subcategory[it].astype(np.int64)
        cols["chi"], cols["clo"] = id_parts(seed, _K_CAT, cat)
        cols["shi"], cols["slo"] = id_parts(seed, _K_SUB, sub)
    cols["mrow"] = np.full(len(ts), -1, dtype=np.int64)
    cols["mrow"][ch["mrow"]] = np.arange(len(ch["mrow"]))
    rows = pd.DataFrame(cols)
    lines = None
    if ch["m_lines"] is not None:
        m = ch["m_lines"]
        lh, ll = id_parts(seed, _K_ITEM, m["item"])
        lc = {"r": m["r"], "pos": m["pos"], "price": m["price"], "qty": m["qty"], "ihi": lh, "ilo": ll}
        if cats:
            lc["chi"], lc["clo"] = id_parts(seed, _K_CAT, truth.item_category[m["item"]].astype(np.int64))
            lc["shi"], lc["slo"] = id_parts(seed, _K_SUB, truth.item_subcategory[m["item"]].astype(np.int64))
        lines = pd.DataFrame(lc)
    return rows, lines


def _uid(h: str, l: str) -> str:
    return f"(({h}::HUGEINT << 64) + {l})::VARCHAR"


def _list_sql(single: str, multi: str) -> str:
    return f"CASE WHEN n = 0 THEN '[]' WHEN n = 1 THEN '[' || {single} || ']' ELSE m.{multi} END"


def _write_chunk(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, lines: pd.DataFrame | None,
                 path: str, with_categories: bool) -> None:
    plats = "[" + ", ".join(f"'{p}'" for p in PLATFORMS) + "]"
    etypes = "[" + ", ".join(f"'{e}'" for e in EVENT_TYPES) + "]"
    dates = "[" + ", ".join(f"'{d}'" for d in DATES) + "]"
    con.register("rows_df", rows)
    extra = ["m_price", "m_qty", "m_nm"] + (["m_cat", "m_sub"] if with_categories else [])
    if lines is not None:
        con.register("lines_df", lines)
        aggs = [
            "'[' || string_agg(price::VARCHAR, ', ' ORDER BY pos) || ']' AS m_price",
            "'[' || string_agg(qty::VARCHAR, ', ' ORDER BY pos) || ']' AS m_qty",
            f"'[' || string_agg({_uid('ihi', 'ilo')}, ', ' ORDER BY pos) || ']' AS m_nm",
        ]
        if with_categories:
            aggs += [f"'[' || string_agg({_uid('chi', 'clo')}, ', ' ORDER BY pos) || ']' AS m_cat",
                     f"'[' || string_agg({_uid('shi', 'slo')}, ', ' ORDER BY pos) || ']' AS m_sub"]
        multi = f"(SELECT r, {', '.join(aggs)} FROM lines_df GROUP BY r)"
    else:
        multi = "(SELECT NULL::BIGINT AS r, " + ", ".join(f"NULL::VARCHAR AS {e}" for e in extra) + " WHERE false)"
    select = [
        f"{plats}[plat + 1] AS platform",
        "CASE WHEN ts >= 0 THEN strftime(TIMESTAMP '2023-07-31' + to_seconds(ts), "
        "'%Y-%m-%d %H:%M:%S+00:00') END AS utc_event_time",
        f"{dates}[day + 1] AS utc_event_date",
        f"{_uid('uhi', 'ulo')} AS user_id",
        f"{etypes}[et + 1] AS event_type",
        f"{_list_sql('price::VARCHAR', 'm_price')} AS \"ecom.price100\"",
        f"{_list_sql('qty::VARCHAR', 'm_qty')} AS \"ecom.qty\"",
        f"{_list_sql(_uid('ihi', 'ilo'), 'm_nm')} AS \"ecom.nm\"",
    ]
    if with_categories:
        select += [f"{_list_sql(_uid('chi', 'clo'), 'm_cat')} AS main_category",
                   f"{_list_sql(_uid('shi', 'slo'), 'm_sub')} AS sub_category"]
    escaped = path.replace("'", "''")
    con.execute(f"""
        COPY (
            SELECT {', '.join(select)}
            FROM rows_df LEFT JOIN {multi} AS m ON rows_df.mrow = m.r
            ORDER BY rows_df.ord
        ) TO '{escaped}' (FORMAT csv, HEADER false, DELIMITER ',', QUOTE '"')
    """)
    con.unregister("rows_df")
    if lines is not None:
        con.unregister("lines_df")


def _append(dst, src_path: str) -> None:
    with open(src_path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        try:
            while offset < size:
                sent = os.copy_file_range(src.fileno(), dst.fileno(), size - offset)
                if sent == 0:
                    break
                offset += sent
        except (AttributeError, OSError):
            src.seek(offset)
            shutil.copyfileobj(src, dst, 16 << 20)


def _chunks(counts: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    per_user = counts.sum(axis=1).astype(np.int64)
    cum = np.cumsum(per_user)
    bounds = [0]
    target = chunk_rows
    while bounds[-1] < len(per_user):
        nxt = int(np.searchsorted(cum, target, side="left")) + 1
        nxt = max(nxt, bounds[-1] + 1)
        nxt = min(nxt, len(per_user))
        bounds.append(nxt)
        target = cum[nxt - 1] + chunk_rows
    return list(zip(bounds[:-1], bounds[1:]))


def generate_export(config: GeneratorConfig, out: Path) -> GenerateStats:
    """Write ``config.rows`` rows in the ``ab_test.csv`` layout to ``out`` (atomically)."""
    t0 = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth = planted_structure(config)
    maker = _ChunkMaker(truth)
    chunks = _chunks(truth.counts, config.chunk_rows)
    header = ",".join(BASE_COLUMNS + (CATEGORY_COLUMNS if config.with_categories else [])) + "\n"

    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    part_dir = tempfile.mkdtemp(prefix=f".{out.name}.parts.", dir=out.parent)
    work: queue.Queue = queue.Queue(maxsize=1)
    errors: list[BaseException] = []
    try:
        with os.fdopen(fd, "wb") as dst:
            dst.write(header.encode())
            dst.flush()

            def writer() -> None:
                con = duckdb.connect()
                con.execute("SET threads = 2")
                con.execute(f"SET memory_limit = '{config.duckdb_memory_limit}'")
                con.execute("SET preserve_insertion_order = true")
                try:
                    while True:
                        job = work.get()
                        if job is None:
                            return
                        if errors:
                            continue
                        i, rows, lines = job
                        part = os.path.join(part_dir, f"part-{i:05d}.csv")
                        _write_chunk(con, rows, lines, part, config.with_categories)
                        _append(dst, part)
                        os.unlink(part)
                except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                    errors.append(exc)
                    while work.get() is not None:
                        pass
                finally:
                    con.close()

            thread = threading.Thread(target=writer, name="generate-writer", daemon=True)
            thread.start()
            try:
                for i, (u0, u1) in enumerate(chunks):
                    if errors:
                        break
                    ch = maker.make(i, u0, u1)
                    rows, lines = _frame(truth, ch)
                    rows["ord"] = np.arange(len(rows), dtype=np.int64)
                    work.put((i, rows, lines))
                    del ch, rows, lines
            finally:
                work.put(None)
                thread.join()
            if errors:
                raise errors[0]
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    finally:
        shutil.rmtree(part_dir, ignore_errors=True)
    users = int((truth.counts.sum(axis=1) > 0).sum())
    return GenerateStats(rows=int(truth.counts.sum()), users=users,
                         seconds=time.perf_counter() - t0, items=truth.n_items, path=str(out))
