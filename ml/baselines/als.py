"""Implicit ALS (Hu, Koren, Volinsky 2008) through the optional ``implicit`` library."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ml.baselines.base import BaseRecommender


class ALSRecommender(BaseRecommender):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) via the ``implicit`` package.

    ``implicit`` is an optional extra (``pip install -e '.[als]'``): its wheels do not cover
    every platform, and only an evaluation baseline uses it. Constructing this class without it
    raises ImportError with the reason, so callers can skip it. Confidence = 1 + alpha * log1p(weighted count).
    """

    min_score = -np.inf

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 10.0,
        iterations: int = 15,
        event_weights: Mapping[str, float] | None = None,
        filter_purchased: bool = False,
        random_state: int = 7,
    ) -> None:
        try:
            import implicit  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("ALSRecommender needs the 'implicit' package (not installed)") from exc
        super().__init__(event_weights, filter_purchased)
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state

    def _fit_model(self, h: pd.DataFrame, user_codes: np.ndarray, item_codes: np.ndarray) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        conf = self.X_.copy().astype(np.float32)
        conf.data = np.log1p(conf.data)
        # implicit parallelises itself; a BLAS thread pool underneath would oversubscribe the cores.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
            )
            model.fit(conf, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors)
        self.item_factors_ = np.asarray(model.item_factors)

    def _score_batch(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T
