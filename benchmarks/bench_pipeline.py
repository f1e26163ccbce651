"""End-to-end benchmark of ``recsys run``: seconds per stage and peak memory, per input size.

Run: ``.venv/bin/python -m benchmarks.bench_pipeline [--rows 1000000 10000000]``.
Each size generates an export (with categories), then runs the whole pipeline in a child
process in a fresh home; stage times come from the run log (``model_runs.durations``), peak
memory from ``ru_maxrss`` of the waited-for descendants (dbt runs as a grandchild).
Results go to ``benchmarks/results/pipeline-<timestamp>.json``; the homes are deleted.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_size(rows: int, workdir: Path) -> dict:
    export = workdir / f"ab_{rows}.csv"
    home = workdir / f"home_{rows}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "generate",
            "--rows",
            str(rows),
            "--seed",
            "7",
            "--out",
            str(export),
            "--with-categories",
        ],
        cwd=ROOT,
        check=True,
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--home", str(home), "run", "--input", str(export)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    with duckdb.connect(str(home / "runs.duckdb"), read_only=True) as con:
        status, durations, users, recs, ndcg, popular = con.execute(
            "select status, durations, users_scored, recommendations, ndcg, popular_ndcg from model_runs "
            "order by started_at desc limit 1"
        ).fetchone()
    return {
        "rows": rows,
        "status": status,
        "wall_seconds": round(seconds, 1),
        "stage_seconds": json.loads(durations),
        "users_scored": users,
        "recommendations": recs,
        "holdout_ndcg": ndcg,
        "popular_ndcg": popular,
        "peak_rss_gb": round(max(peak_kb, before) / 1024 / 1024, 2),
        "peak_rss_note": "largest process among the run and its children (dbt, Prefect server)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    results = []
    try:
        for rows in sorted(args.rows):
            result = run_size(rows, workdir)
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"pipeline-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
