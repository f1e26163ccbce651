"""Marketplace recommender library: data generation, features, ranking, evaluation, publishing."""
import os

# scikit-learn's gradient boosting runs on OpenMP. With the default busy-waiting, its threads
# spin against any other busy process on a small machine and a fit can slow down tenfold;
# passive waiting costs nothing when the machine is idle. Must be set before sklearn loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
