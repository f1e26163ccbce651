"""Benchmark of ``ml.metrics.evaluate_lists`` on many users (was a timed test: a wall-clock
bound fails on a loaded machine without saying anything about the code).

Run: ``.venv/bin/python -m benchmarks.bench_metrics [--users 100000] [--k 10]``.
Lists of K random items out of 5,000 per user, one true item each. Results go to
``benchmarks/results/metrics-<timestamp>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ml import metrics

RESULTS = Path(__file__).resolve().parent / "results"


def run_once(users: int, k: int) -> dict:
    rng = np.random.default_rng(0)
    ids = np.array([f"u{i}" for i in range(users)])
    recs = pd.DataFrame({"user_id": np.repeat(ids, k), "item_id": rng.integers(0, 5000, users * k).astype(str),
                         "rank": np.tile(np.arange(1, k + 1), users)})
    truth = pd.DataFrame({"user_id": ids, "item_id": rng.integers(0, 5000, users).astype(str)}).drop_duplicates()
    started = time.perf_counter()
    out = metrics.evaluate_lists(recs, truth, truth.copy(), k)
    seconds = time.perf_counter() - started
    assert 0 <= out["recall"] <= 1 and out["n_users"] == users  # the numbers timed are sane
    return {"users": users, "k": k, "seconds": round(seconds, 2), "users_per_second": round(users / seconds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    result = run_once(args.users, args.k)
    print(f"{result['users']:>10,} users  K={result['k']}  {result['seconds']:6.2f} s  "
          f"{result['users_per_second']:>10,} users/s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"metrics-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"benchmark": "metrics", "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                "cpus": os.cpu_count(), "results": [result]}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
