"""The synthetic export's events: one chunk of users' rows at a time, drawn from the planted
structure (tastes, complements, re-buys, trends, view -> cart -> purchase sessions)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.data.synthetic.structure import (
    CART,
    ENGAGEMENT,
    HOUR_WEIGHT,
    ID_KEY_CATEGORY,
    ID_KEY_ITEM,
    ID_KEY_SUB_CATEGORY,
    ID_KEY_USER,
    N_DAYS,
    PAGEVIEW,
    PURCHASE,
    STREAM_CHUNK,
    VIEW,
    WEEKDAY_WEIGHT,
    PlantedStructure,
    _zipf_rank,
    id_parts,
    random_stream,
)


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
        rng = random_stream(c.seed, STREAM_CHUNK, chunk)
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
        ab_cat = np.where(
            rng.random(int(ab.sum())) < c.session_focus, s_cat[c_sess[ab]], self.taste_category(rng, users[c_u[ab]])
        )
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
        b_cat = np.where(rng.random(len(br)) < c.session_focus, s_cat[v_sess[br]], self.taste_category(rng, users[b_u]))
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
        etype = np.concatenate(
            [
                np.full(V, VIEW),
                np.full(len(c_u), CART),
                np.full(P, PURCHASE),
                np.full(len(e_u), ENGAGEMENT),
                np.full(len(g_u), PAGEVIEW),
            ]
        ).astype(np.int8)
        sess = np.concatenate([v_sess, c_sess, p_sess, e_sess, g_sess])
        item = np.concatenate(
            [v_item, c_item, l_item[first] if P else np.zeros(0, np.int64), np.full(len(e_u) + len(g_u), -1)]
        )
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

        return dict(
            etype=etype,
            ts=ts,
            user=row_user,
            platform=t.user_platform[row_user],
            item=item,
            price=price,
            qty=qty,
            n_items=n_items,
            mrow=mrow,
            m_lines=m_lines,
            null_time=etype >= ENGAGEMENT,
        )


# --------------------------------------------------------------------------- formatting


def _frame(truth: PlantedStructure, ch: dict) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    seed = truth.config.seed
    cats = truth.config.with_categories
    uhi, ulo = id_parts(seed, ID_KEY_USER, ch["user"])
    it = np.where(ch["item"] >= 0, ch["item"], 0)
    ihi, ilo = id_parts(seed, ID_KEY_ITEM, it)
    ts = np.where(ch["null_time"], -1, ch["ts"])
    cols = {
        "plat": ch["platform"].astype(np.int8),
        "ts": ts.astype(np.int64),
        "day": (ch["ts"] // 86400).astype(np.int8),
        "uhi": uhi,
        "ulo": ulo,
        "et": ch["etype"],
        "n": ch["n_items"],
        "price": ch["price"],
        "qty": ch["qty"],
        "ihi": ihi,
        "ilo": ilo,
    }
    if cats:
        cat = truth.item_category[it].astype(np.int64)
        sub = truth.item_subcategory[it].astype(np.int64)
        cols["chi"], cols["clo"] = id_parts(seed, ID_KEY_CATEGORY, cat)
        cols["shi"], cols["slo"] = id_parts(seed, ID_KEY_SUB_CATEGORY, sub)
    cols["mrow"] = np.full(len(ts), -1, dtype=np.int64)
    cols["mrow"][ch["mrow"]] = np.arange(len(ch["mrow"]))
    rows = pd.DataFrame(cols)
    lines = None
    if ch["m_lines"] is not None:
        m = ch["m_lines"]
        lh, ll = id_parts(seed, ID_KEY_ITEM, m["item"])
        lc = {"r": m["r"], "pos": m["pos"], "price": m["price"], "qty": m["qty"], "ihi": lh, "ilo": ll}
        if cats:
            lc["chi"], lc["clo"] = id_parts(seed, ID_KEY_CATEGORY, truth.item_category[m["item"]].astype(np.int64))
            lc["shi"], lc["slo"] = id_parts(
                seed, ID_KEY_SUB_CATEGORY, truth.item_subcategory[m["item"]].astype(np.int64)
            )
        lines = pd.DataFrame(lc)
    return rows, lines
