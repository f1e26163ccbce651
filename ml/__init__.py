"""Marketplace recommender library, one sub-package per role (docs/architecture.md):
``data`` -> ``warehouse`` -> ``ranker`` / ``baselines`` -> ``serving`` -> ``reports`` ->
``pipeline`` -> ``experiments``, over ``config``, ``vocabulary`` and ``evaluation``.
A package imports only from packages before it; ``flows`` (the Prefect flow and the CLI) sits on top.
"""

import os

# scikit-learn's gradient boosting runs on OpenMP. With the default busy-waiting, its threads
# spin against any other busy process on a small machine and a fit can slow down tenfold.
# Passive waiting costs little in prediction (few, large parallel regions) but makes fits on
# two threads tenfold slower even on an idle machine, so fits run on one (ml.ranker.training.fit).
# Must be set before sklearn loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
