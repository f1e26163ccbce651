"""Benchmark of ``recsys generate``: rows/s and peak memory of the generating process.

Run: ``.venv/bin/python -m benchmarks.bench_generate [--rows 1000000 10000000] [--full]``.
Each size runs in its own child process (``python -m flows.cli generate``) so that its peak RSS
(``ru_maxrss`` of the waited-for child) is measured alone. Results go to
``benchmarks/results/generate-<timestamp>.json``. Output files are written to a temp dir
and deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FULL_ROWS = 49_701_624


def run_once(rows: int, seed: int, workdir: Path, with_categories: bool = False) -> dict:
    out = workdir / f"gen-{rows}.csv"
    cmd = [
        sys.executable,
        "-c",
        "import resource, sys; from flows.cli import main; rc = main(sys.argv[1:]); "
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)",
        "generate",
        "--rows",
        str(rows),
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    if with_categories:
        cmd.append("--with-categories")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"generate failed: {proc.stderr[-2000:]}")
    rss_kb = max(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("MAXRSS_KB"))
    size = out.stat().st_size
    with open(out, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
    out.unlink()
    return {
        "rows": rows,
        "seed": seed,
        "with_categories": with_categories,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "file_mb": round(size / 2**20, 1),
        "data_lines": lines - 1,
        "exact_rows": lines - 1 == rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--full", action="store_true", help=f"also generate the full {FULL_ROWS:,} rows")
    parser.add_argument("--with-categories", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="where to write the temp files (default: system temp)")
    args = parser.parse_args(argv)
    sizes = list(args.rows) + ([FULL_ROWS] if args.full else [])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-generate-", dir=args.dir) as tmp:
        for rows in sizes:
            r = run_once(rows, args.seed, Path(tmp), args.with_categories)
            results.append(r)
            print(
                f"{rows:>12,} rows  {r['seconds']:8.1f} s  {r['rows_per_second']:>10,} rows/s  "
                f"peak RSS {r['peak_rss_mb']:8.1f} MB  file {r['file_mb']:9.1f} MB  exact={r['exact_rows']}",
                flush=True,
            )
    # the child's own ru_maxrss is reported; RUSAGE_CHILDREN gives the max over all children
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = {
        "benchmark": "generate",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "max_child_rss_mb": round(children_kb / 1024, 1),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"generate-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
