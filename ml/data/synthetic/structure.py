"""The planted truth of the synthetic export: its configuration, ids, catalogue and users.

Everything is rebuilt from the seed: :func:`planted_structure` returns the catalogue and the
users (what a recommender can learn, what tests verify) without writing anything; the model
is documented in ``docs/generator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from ml.vocabulary import PLATFORMS

START_DATE = np.datetime64("2023-07-31")
N_DAYS = 14
DATES = [str(START_DATE + np.timedelta64(d, "D")) for d in range(N_DAYS)]
# day-of-week activity (Mon..Sun); 2023-07-31 is a Monday; dip on Saturday
WEEKDAY_WEIGHT = np.array([1.0, 1.0, 0.99, 0.98, 0.94, 0.80, 0.93])
# share of events per UTC hour, read off the real 0.1 % sample (Moscow daytime)
HOUR_WEIGHT = np.array(
    [
        426,
        421,
        582,
        796,
        1239,
        1576,
        1955,
        2168,
        2317,
        2227,
        2354,
        2453,
        2487,
        2357,
        2254,
        2259,
        2291,
        2355,
        2689,
        2510,
        1945,
        1325,
        704,
        452,
    ],
    dtype=float,
)

# event type codes (index into ml.vocabulary.EVENT_TYPES)
VIEW, CART, PURCHASE, ENGAGEMENT, PAGEVIEW = range(5)
SITE = 0  # index into ml.vocabulary.PLATFORMS: the web site, whose users engage and page-view more

# purposes of the independent random streams
STREAM_CATALOGUE, STREAM_USERS, STREAM_COUNTS, STREAM_CHUNK = 1, 2, 3, 4
# keys of the id hashes
ID_KEY_USER, ID_KEY_ITEM, ID_KEY_CATEGORY, ID_KEY_SUB_CATEGORY = 11, 12, 13, 14


@dataclass(frozen=True)
class GeneratorConfig:
    """Knobs of the generator. Defaults reproduce the statistics of the real export."""

    rows: int = 1_000_000
    seed: int = 7
    with_categories: bool = False
    # volume
    rows_per_user: float = 100.7
    rows_per_item_seen: float = 7.2
    catalogue_factor: float = 1.6  # catalogue size / expected distinct items seen
    chunk_rows: int = 1_000_000
    # event mix (shares of rows)
    event_shares: tuple[float, ...] = (0.8840, 0.0658, 0.0114, 0.0295, 0.0093)
    # users
    platform_shares: tuple[float, float, float] = (0.521, 0.328, 0.152)
    platform_activity: tuple[float, float, float] = (0.15, 1.0, 1.25)
    viewer_share: tuple[float, float, float] = (0.655, 0.975, 0.975)
    carter_share: tuple[float, float, float] = (0.27, 0.67, 0.67)  # of viewers
    buyer_share: float = 0.60  # of cart users
    activity_sigma: float = 1.25  # log-normal spread of activity per user
    max_taste_categories: int = 3
    explore: float = 0.10  # share of draws outside the user's tastes
    # catalogue
    n_categories: int = 48
    zipf_exponent: float = 0.95  # popularity by rank inside a category
    category_zipf: float = 0.8
    price_log_median_rub: float = 6.86
    category_price_sigma: float = 0.45
    item_price_sigma: float = 1.07
    anchor_share: float = 0.03  # most popular items per category that have a complement
    rebuy_share: float = 0.015  # consumable items per category
    trend_share: float = 0.002  # rising (and as many fading) items per category
    # behaviour
    candidates: int = 3  # popularity-weighted candidates per item draw
    purchase_candidates: int = 6
    purchase_cheap_shift: float = 0.7  # buyers pick items this far (in z) below their tier
    cart_cheap_shift: float = 0.25
    session_focus: float = 0.65  # browse views in the session's category
    review_share: float = 0.22  # browse views repeating an item the user viewed
    rows_per_session: float = 12.0
    multi_item_share: float = 0.156
    multi_extra_p: float = 0.42  # geometric extra items beyond 2 (mean size ~3.37)
    complement_prob: float = 0.85  # 2nd item of a multi basket is the anchor's complement
    staple_prob: float = 0.30  # purchase row starts with the user's staple item
    trend_rate: float = 0.03  # max share of a category's draws sent to trend items
    zero_price: tuple[float, float, float] = (0.0055, 0.003, 0.001)
    odd_qty: float = 1e-4
    gap_seconds: float = 40.0  # mean gap between events of a session
    duckdb_memory_limit: str = "1GB"


@dataclass
class GenerateStats:
    rows: int
    users: int
    seconds: float
    items: int = 0  # catalogue size (items that may appear)
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
    hi &= np.uint64((1 << 63) - 1)  # below 2**127: DuckDB's HUGEINT prints it fast
    hi |= np.uint64(1 << 46)
    return hi, lo


def id_strings(seed: int, kind: int, index) -> np.ndarray:
    """Decimal text of the 128-bit ids (object array). Meant for checks, not bulk output."""
    hi, lo = id_parts(seed, kind, np.atleast_1d(np.asarray(index)))
    return np.array([str((int(high) << 64) | int(low)) for high, low in zip(hi, lo)], dtype=object)


def random_stream(seed: int, *purpose: int) -> np.random.Generator:
    """An independent generator per purpose (STREAM_*): each part of the data draws from its own
    stream, so changing how one part is drawn leaves the others as they were."""
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
    cat_offset: np.ndarray  # first item of each category (n_categories + 1)
    cat_weight: np.ndarray  # popularity of each category (sums to 1)
    cat_price_mu: np.ndarray  # log price (rubles) centre of each category
    cat_partner: np.ndarray  # category complements are taken from
    cat_n_sub: np.ndarray
    # items
    item_category: np.ndarray  # int16
    item_subcategory: np.ndarray  # int32, global sub-category index
    item_rank: np.ndarray  # rank of popularity inside the category
    item_z: np.ndarray  # standardised log price inside the category (price tier)
    item_price100: np.ndarray  # int64, multiple of 100
    item_complement: np.ndarray  # complement item or -1
    item_rebuy: np.ndarray  # bool
    item_trend: np.ndarray  # int8: +1 rising, -1 fading, 0 steady
    rebuy_list: np.ndarray
    rebuy_offset: np.ndarray
    rising_list: np.ndarray
    rising_offset: np.ndarray
    fading_list: np.ndarray
    fading_offset: np.ndarray
    # users
    user_platform: np.ndarray  # int8 index into PLATFORMS
    user_tier: np.ndarray  # float32, N(0,1): preferred item_z
    user_taste: np.ndarray  # int16 [U, k], -1 padded
    user_taste_cum: np.ndarray  # float32 [U, k] cumulative taste weights
    user_staple: np.ndarray  # int64 re-buy item of the top taste category or -1
    user_activity: np.ndarray  # float32 activity weight
    user_window_start: np.ndarray  # int8
    user_window_span: np.ndarray  # int8
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
        return id_strings(self.config.seed, ID_KEY_ITEM, index)

    def user_ids(self, index=None) -> np.ndarray:
        index = np.arange(self.n_users) if index is None else index
        return id_strings(self.config.seed, ID_KEY_USER, index)

    def category_ids(self, index=None) -> np.ndarray:
        index = np.arange(len(self.cat_weight)) if index is None else index
        return id_strings(self.config.seed, ID_KEY_CATEGORY, index)

    def subcategory_ids(self, index=None) -> np.ndarray:
        index = np.arange(int(self.cat_n_sub.sum())) if index is None else index
        return id_strings(self.config.seed, ID_KEY_SUB_CATEGORY, index)

    def items_frame(self) -> pd.DataFrame:
        """One row per catalogue item with its id, category id and planted roles."""
        return pd.DataFrame(
            {
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
            }
        )

    def users_frame(self) -> pd.DataFrame:
        taste = self.user_taste
        return pd.DataFrame(
            {
                "user_id": self.user_ids(),
                "user": np.arange(self.n_users),
                "platform": np.array(PLATFORMS)[self.user_platform],
                "tier": self.user_tier,
                "taste": [tuple(int(c) for c in row if c >= 0) for row in taste],
                "staple": self.user_staple,
                "rows": self.counts.sum(axis=1) if self.counts is not None else 0,
            }
        )


def _lists(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(groups, kind="stable")
    offset = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=n_groups), out=offset[1:])
    return values[order].astype(np.int64), offset


def _build_catalogue(config: GeneratorConfig) -> dict:
    rng = random_stream(config.seed, STREAM_CATALOGUE)
    C = config.n_categories
    expected_seen = max(config.rows, 1) / config.rows_per_item_seen
    n_items = max(int(round(expected_seen * config.catalogue_factor)), 4 * C)

    cat_weight = np.arange(1, C + 1, dtype=float) ** -config.category_zipf
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
    item_subcategory = (sub_offset[item_category] + np.floor(rng.random(n_items) * cat_n_sub[item_category])).astype(
        np.int32
    )

    # re-buy (consumable) items: a share of each category among its top 20 % ranks, cheap
    top = item_rank < np.maximum(2, 0.2 * sizes[item_category])
    item_rebuy = top & (rng.random(n_items) < config.rebuy_share / 0.2)
    for c in range(C):  # at least one per category
        if not item_rebuy[cat_offset[c] : cat_offset[c + 1]].any():
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
    item_z[best] = np.minimum(item_z[best], -0.3)  # accessories are cheap

    # trends: rising and fading items among the non-anchor, non-rebuy ranks
    item_trend = np.zeros(n_items, dtype=np.int8)
    free = ~anchor & ~item_rebuy & (item_rank >= n_anchor[item_category])
    free &= ~np.isin(np.arange(n_items), best)
    n_trend = np.maximum(1, np.round(config.trend_share * sizes)).astype(np.int64)
    for c in range(C):
        pool = np.flatnonzero(free[cat_offset[c] : cat_offset[c + 1]]) + cat_offset[c]
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
        cat_offset=cat_offset,
        cat_weight=cat_weight,
        cat_price_mu=cat_price_mu,
        cat_partner=cat_partner,
        cat_n_sub=cat_n_sub,
        item_category=item_category,
        item_subcategory=item_subcategory,
        item_rank=item_rank,
        item_z=item_z,
        item_price100=item_price100,
        item_complement=item_complement,
        item_rebuy=item_rebuy,
        item_trend=item_trend,
        rebuy_list=rebuy_list,
        rebuy_offset=rebuy_offset,
        rising_list=rising_list,
        rising_offset=rising_offset,
        fading_list=fading_list,
        fading_offset=fading_offset,
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
    if len(idx) == 0:  # tiny exports: anyone may carry the rows
        idx = np.arange(len(weight))
    w = weight[idx].astype(float)
    if total < len(idx):
        chosen = rng.choice(idx, total, replace=False, p=w / w.sum())
        out[chosen] = 1
        return out
    out[idx] = 1 + rng.multinomial(total - len(idx), w / w.sum())
    return out


def _build_users(config: GeneratorConfig, cat: dict) -> dict:
    rng = random_stream(config.seed, STREAM_USERS)
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
    pick = np.floor(rng.random(U) ** 2 * n_rebuy).astype(np.int64)  # favour popular ones
    staple = np.where(
        n_rebuy > 0, cat["rebuy_list"][np.minimum(cat["rebuy_offset"][top] + pick, len(cat["rebuy_list"]) - 1)], -1
    )

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
    crng = random_stream(config.seed, STREAM_COUNTS)
    cart_rate = np.exp(0.5 * crng.standard_normal(U))
    buy_rate = np.exp(0.6 * crng.standard_normal(U))
    counts = np.zeros((U, 5), dtype=np.int64)
    counts[:, CART] = _allocate(crng, int(totals[CART]), activity * cart_rate, carter)
    counts[:, PURCHASE] = _allocate(crng, int(totals[PURCHASE]), activity**0.8 * buy_rate, buyer)
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
        user_platform=platform,
        user_tier=tier,
        user_taste=taste,
        user_taste_cum=taste_cum,
        user_staple=staple.astype(np.int64),
        user_activity=activity,
        user_window_start=start,
        user_window_span=span,
        counts=counts.astype(np.int32),
    )


def planted_structure(config: GeneratorConfig) -> PlantedStructure:
    """The catalogue and users behind ``generate_export(config, ...)``, rebuilt from the seed."""
    cat = _build_catalogue(config)
    users = _build_users(config, cat)
    return PlantedStructure(config=config, **cat, **users)


# --------------------------------------------------------------------------- chunk generation
