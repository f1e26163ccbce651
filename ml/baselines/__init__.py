"""Simple recommenders every learned model must beat, one per module, and their fair tuning.

Why these: reproducibility studies (Dacrema et al.) found that tuned popularity, item-kNN and
EASE beat most published neural recommenders, and on purchase data the user's own repurchases
are a strong signal. ``base`` holds the shared fit/recommend contract; ``tuning`` picks each
one's knobs on a time split inside the history and judges it on the same window as the ranker.
"""

from ml.baselines.als import ALSRecommender
from ml.baselines.base import (
    BaseRecommender,
    popularity_scores,
    topk_dense,
    topk_sparse,
    topn_per_row_sparse,
)
from ml.baselines.ease import EASERecommender
from ml.baselines.item_knn import ItemKNNRecommender
from ml.baselines.popular import PopularRecommender
from ml.baselines.repurchase import RepurchaseRecommender
from ml.baselines.tifu_knn import TIFUKNNRecommender

__all__ = [
    "ALSRecommender",
    "BaseRecommender",
    "EASERecommender",
    "ItemKNNRecommender",
    "PopularRecommender",
    "RepurchaseRecommender",
    "TIFUKNNRecommender",
    "popularity_scores",
    "topk_dense",
    "topk_sparse",
    "topn_per_row_sparse",
]
