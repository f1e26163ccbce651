"""Benchmark of a nightly run on daily files against a cold run on the same files.

Run: ``.venv/bin/python -m benchmarks.bench_nightly [--rows 1000000] [--workdir DIR]``.
One generated export (with categories, seed 7) is split into one file per day
(``ml.data.export.split_by_day``). The nightly home runs ``recsys run --input DIR`` on all days
but the last, then the last day arrives and it runs again: that second run is measured. The
cold home runs once on all the days. Both use the product's defaults, so the nightly run also
reuses the last search (``diagnostics_every_days``) while the cold one searches. Stage times
come from the run log, the staging models' times from dbt's progress lines. Results go to
``benchmarks/results/nightly-<timestamp>.json``; the workdir is deleted unless given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.bench_pipeline import run_recsys
from benchmarks.bench_warehouse import RESULTS, ensure_export
from ml.data.export import split_by_day

STAGING = ("stg_ab_test__events", "int_events__validated", "int_line_items")


def run(home: Path, incoming: Path) -> dict:
    """``recsys run`` on the folder (``bench_pipeline.run_recsys``), with the seconds of the
    models that read and validate the export."""
    result = run_recsys(home, incoming)
    result["staging_node_seconds"] = {name: result["model_seconds"].get(name) for name in STAGING}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-nightly-"))
    try:
        export = workdir / "ab_test.csv"
        ensure_export(args.rows, 7, export, with_categories=True)
        days = split_by_day(export, workdir / "days")
        incoming = workdir / "incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        for day in days[:-1]:
            shutil.copy2(day, incoming / day.name)
        first = run(workdir / "nightly", incoming)
        shutil.copy2(days[-1], incoming / days[-1].name)
        nightly = run(workdir / "nightly", incoming)
        cold = run(workdir / "cold", incoming)
        result = {
            "rows": args.rows,
            "days": len(days),
            "first_run": first,
            "nightly": nightly,
            "cold": cold,
            "nightly_over_cold": round(nightly["wall_seconds"] / cold["wall_seconds"], 3),
        }
        print(json.dumps(result, indent=2), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"nightly-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
