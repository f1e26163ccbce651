"""Time-based splits of an interaction log, and which users a split can evaluate.

Why time and not random: a random split lets a model train on tomorrow to predict today,
which inflates every metric and changes which model wins (see docs/anchors). Here the
history is everything strictly before a cutoff and the truth is what users *bought* in the
following horizon, which is the question the marketplace asks.

The interaction frame has at least ``user_id``, ``item_id``, ``ts`` (datetime64) and
``event_type`` (``view_item`` | ``add_to_cart`` | ``purchase``); ``ml.data.export.read_line_items``
returns a superset of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PURCHASE = "purchase"


def time_split(
    interactions: pd.DataFrame,
    cutoff: str | pd.Timestamp,
    horizon_days: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split at ``cutoff`` into ``(history, truth)``.

    * ``history``: every event (all types) with ``ts < cutoff`` - strictly before, so an
      event at the cutoff instant belongs to the future.
    * ``truth``: distinct ``(user_id, item_id)`` pairs purchased with
      ``cutoff <= ts < cutoff + horizon_days``.

    Rows without a timestamp (NaT) fall in neither side: their position in time is unknown,
    so using them could only leak.
    """
    cutoff = pd.Timestamp(cutoff)
    end = cutoff + pd.Timedelta(days=horizon_days)
    ts = interactions["ts"]
    history = interactions.loc[ts < cutoff].reset_index(drop=True)
    in_window = (ts >= cutoff) & (ts < end) & (interactions["event_type"] == PURCHASE)
    truth = interactions.loc[in_window, ["user_id", "item_id"]].drop_duplicates().reset_index(drop=True)
    return history, truth


def warm_users(history: pd.DataFrame, truth: pd.DataFrame, event_types: tuple[str, ...] | None = None) -> pd.Index:
    """Users who bought in the window *and* have history (of ``event_types``, default any).

    These are the users a personalised model can be judged on; sorted for determinism.
    """
    hist = history if event_types is None else history[history["event_type"].isin(event_types)]
    known = pd.Index(hist["user_id"].unique())
    buyers = pd.Index(truth["user_id"].unique())
    return buyers.intersection(known).sort_values()


def cold_users(history: pd.DataFrame, truth: pd.DataFrame, event_types: tuple[str, ...] | None = None) -> pd.Index:
    """Users who bought in the window but have no history: only fallback lists can serve them."""
    hist = history if event_types is None else history[history["event_type"].isin(event_types)]
    known = pd.Index(hist["user_id"].unique())
    buyers = pd.Index(truth["user_id"].unique())
    return buyers.difference(known).sort_values()


def restrict_truth(truth: pd.DataFrame, users: pd.Index) -> pd.DataFrame:
    """The truth rows of ``users`` only (e.g. the warm users), keeping the two columns."""
    return truth[truth["user_id"].isin(users)].reset_index(drop=True)


def user_sample(user_ids: pd.Series | pd.Index, max_users: int, seed: int = 0) -> pd.Index:
    """At most ``max_users`` of the distinct ``user_ids``: those with the smallest seeded hash.

    A hash, not a random draw: whether a user is in depends only on the user and the seed, so
    the same users are drawn at every cutoff and in every run, and a bigger export keeps them.
    """
    users = pd.Index(pd.unique(np.asarray(user_ids)))
    if len(users) <= max_users:
        return users
    hashed = pd.util.hash_array((f"{seed}:" + users.astype(str)).to_numpy(dtype=object))
    return users[np.argsort(hashed, kind="stable")[:max_users]]
