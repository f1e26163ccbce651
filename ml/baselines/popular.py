"""Most popular items in a recent window: the list any personal recommender must beat."""

from __future__ import annotations

from collections.abc import Mapping

from ml.baselines.base import BaseRecommender


class PopularRecommender(BaseRecommender):
    """The same bestseller list for everyone: popular in the last ``window_days``.

    Popularity counts distinct users per (item, event type), weighted by ``event_weights``
    (e.g. ``{"purchase": 1, "add_to_cart": 0.3}``); all-time popularity breaks ties and
    fills the list when the window holds fewer than k items. ``window_days=None`` means
    the whole history. The cold-start fallback of every other model.
    """

    def __init__(
        self,
        window_days: float | None = 28,
        event_weights: Mapping[str, float] | None = None,
        filter_purchased: bool = False,
    ) -> None:
        super().__init__(event_weights, filter_purchased, fallback_window_days=window_days)
        self.window_days = window_days
