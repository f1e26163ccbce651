"""Benchmark of the evaluation's scale-sensitive parts on many users (were timed tests: a
wall-clock bound fails on a loaded machine without saying anything about the code).

Run: ``.venv/bin/python -m benchmarks.bench_metrics [--users 100000] [--k 10]``.
- ``ml.evaluation.metrics.evaluate_lists``: lists of K random items out of 5,000 per user, one true item each;
- ``ml.evaluation.bootstrap.intervals``: ten lists' per-user values for every user;
- the baselines (popular, repurchase, item-kNN) fitted on 1 M purchases of the users and
  recommending K items to 5,000 of them.
Results go to ``benchmarks/results/metrics-<timestamp>.json``.
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

from ml.baselines import ItemKNNRecommender, PopularRecommender, RepurchaseRecommender
from ml.evaluation import bootstrap, metrics

RESULTS = Path(__file__).resolve().parent / "results"


def run_once(users: int, k: int) -> dict:
    rng = np.random.default_rng(0)
    ids = np.array([f"u{i}" for i in range(users)])
    recs = pd.DataFrame(
        {
            "user_id": np.repeat(ids, k),
            "item_id": rng.integers(0, 5000, users * k).astype(str),
            "rank": np.tile(np.arange(1, k + 1), users),
        }
    )
    truth = pd.DataFrame({"user_id": ids, "item_id": rng.integers(0, 5000, users).astype(str)}).drop_duplicates()
    started = time.perf_counter()
    out = metrics.evaluate_lists(recs, truth, truth.copy(), k)
    seconds = time.perf_counter() - started
    assert 0 <= out["recall"] <= 1 and out["n_users"] == users  # the numbers timed are sane
    return {
        "what": "evaluate_lists",
        "users": users,
        "k": k,
        "seconds": round(seconds, 2),
        "users_per_second": round(users / seconds),
    }


def bootstrap_once(users: int, n_lists: int = 10) -> dict:
    rng = np.random.default_rng(0)
    index = pd.Index(np.arange(users).astype(str))
    lists = {
        f"list{i}": pd.DataFrame(
            {
                "n_truth": 1,
                "recall": rng.random(users),
                "precision": 0.1,
                "ndcg": rng.random(users),
                "ap": rng.random(users),
                "hit": rng.integers(0, 2, users),
                "rr": rng.random(users),
            },
            index=index,
        )
        for i in range(n_lists)
    }
    started = time.perf_counter()
    bootstrap.intervals(lists, reference="list0")
    return {
        "what": f"bootstrap.intervals, {n_lists} lists",
        "users": users,
        "seconds": round(time.perf_counter() - started, 2),
    }


def baselines_once(users: int, k: int, interactions: int = 1_000_000, asked: int = 5000) -> list[dict]:
    rng = np.random.default_rng(0)
    log = pd.DataFrame(
        {
            "user_id": rng.integers(0, users, interactions).astype(str),
            "item_id": (rng.zipf(1.3, interactions) % 20_000).astype(str),
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60 * 86400, interactions), unit="s"),
            "event_type": "purchase",
        }
    )
    asked_users = log["user_id"].unique()[:asked]
    results = []
    for model in (PopularRecommender(14), RepurchaseRecommender(), ItemKNNRecommender(50)):
        started = time.perf_counter()
        recs = model.fit(log).recommend(asked_users, k)
        assert len(recs) == k * len(asked_users)  # a full list for everyone asked
        results.append(
            {
                "what": f"{type(model).__name__} fit + recommend {asked:,}",
                "users": users,
                "interactions": interactions,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    results = [run_once(args.users, args.k), bootstrap_once(args.users), *baselines_once(args.users, args.k)]
    for result in results:
        print(f"{result['what']:<45} {result['users']:>10,} users  {result['seconds']:6.2f} s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"metrics-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "benchmark": "metrics",
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "cpus": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
