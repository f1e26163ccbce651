"""End-to-end benchmark of ``recsys run`` and the capacity model: cost per stage, per dbt model,
peak memory and disk, per input size, and each cost's growth fitted between the two largest sizes.

Run: ``.venv/bin/python -m benchmarks.bench_pipeline [--rows 1000000 10000000 49700000]``.
Each size generates an export (with categories), then runs the whole pipeline in a child
process in a fresh home; stage times come from the run log (``model_runs.durations``), dbt
model times from the run's ``dbt nodes`` progress lines, peak memory from ``ru_maxrss`` of the
waited-for descendants (dbt runs as a grandchild), peak disk from the home's size sampled every
two seconds. Growth: cost ~ rows^b, ``b`` from the two largest sizes, projected to
``--project`` rows (``--table FILE...`` prints it for earlier results files, e.g. sizes run
apart). Results go to ``benchmarks/results/pipeline-<timestamp>.json`` and a
markdown table to stdout; the homes are deleted, the exports too unless ``--workdir`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from benchmarks.bench_warehouse import dir_bytes, ensure_export

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = {path.stem for path in (ROOT / "dbt_project" / "models").rglob("*.sql")}
NODE_LINE = re.compile(r"dbt nodes [\d,]+/[\d,]+, [^:]*: (\S+) \w+ \((\d+(?:\.\d+)?) s\)")


@contextmanager
def peak_disk(folder: Path, every: float = 2.0) -> Iterator[dict]:
    """The largest size ``folder`` reached while the block ran (build database, spill, serving)."""
    seen = {"peak_bytes": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            seen["peak_bytes"] = max(seen["peak_bytes"], dir_bytes(folder))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()


def model_seconds(log: str) -> dict[str, float]:
    """Seconds per dbt model (summed over the run's builds), from its progress lines."""
    seconds: dict[str, float] = {}
    for name, spent in NODE_LINE.findall(log):
        if name in MODELS:
            seconds[name] = round(seconds.get(name, 0.0) + float(spent), 1)
    return seconds


def run_recsys(home: Path, export: Path) -> dict:
    """``recsys run --input export`` in its own process and home (its log is kept beside the home):
    wall time, the run log's stage times, dbt model times, peak memory and peak disk. ``ru_maxrss``
    of children only rises, so the runs of one benchmark must come in growing sizes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    home.mkdir(parents=True, exist_ok=True)
    with peak_disk(home) as disk:
        proc = subprocess.run(
            [sys.executable, "-m", "flows.cli", "--home", str(home), "run", "--input", str(export)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    home.with_name(f"{home.name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    with duckdb.connect(str(home / "runs.duckdb"), read_only=True) as con:
        status, durations, users, recs, ndcg, popular = con.execute(
            "select status, durations, users_scored, recommendations, ndcg, popular_ndcg from model_runs "
            "order by started_at desc limit 1"
        ).fetchone()
    return {
        "status": status,
        "wall_seconds": round(seconds, 1),
        "stage_seconds": json.loads(durations),
        "users_scored": users,
        "recommendations": recs,
        "holdout_ndcg": ndcg,
        "popular_ndcg": popular,
        "peak_rss_gb": round(max(peak_kb, before) / 1024 / 1024, 2),
        "peak_rss_note": "largest process among the run and its children (dbt, Prefect server)",
        "peak_disk_gb": round(disk["peak_bytes"] / 1e9, 2),
        "home_after_gb": round(dir_bytes(home) / 1e9, 2),
        "model_seconds": model_seconds(proc.stdout + proc.stderr),
    }


def run_size(rows: int, workdir: Path) -> dict:
    """One size: its export (generated once per workdir) and a run in a fresh home, then deleted."""
    export, home = workdir / f"ab_{rows}.csv", workdir / f"home_{rows}"
    ensure_export(rows, 7, export, with_categories=True)
    shutil.rmtree(home, ignore_errors=True)
    try:
        return {"rows": rows, "export_gb": round(export.stat().st_size / 1e9, 2), **run_recsys(home, export)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def costs(result: dict) -> dict[str, float]:
    """Every cost of one size, by name: wall time, stages, dbt models, memory, disk."""
    return {
        "whole run (s)": result["wall_seconds"],
        **{f"stage {name} (s)": value for name, value in result["stage_seconds"].items()},
        **{f"model {name} (s)": value for name, value in result["model_seconds"].items()},
        "peak memory (GB)": result["peak_rss_gb"],
        "peak disk (GB)": result["peak_disk_gb"],
    }


def capacity_table(results: list[dict], project: int) -> str:
    """Markdown: each cost at each size, its growth exponent and its projection to ``project`` rows.
    Exponents are fitted only on costs of at least 0.1 (seconds or GB) at both sizes."""
    sizes = [costs(result) for result in results]
    rows = [result["rows"] for result in results]
    header = [*(f"{n / 1e6:g} M rows" for n in rows), "growth b", f"at {project / 1e6:g} M rows"]
    lines = ["| cost | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    names = [name for name in sizes[-1] if not name.startswith("model ") or sizes[-1][name] >= 5]
    for name in names:
        values = [size.get(name) for size in sizes]
        growth = projected = ""
        if len(rows) >= 2 and None not in values[-2:] and min(values[-2:]) >= 0.1:
            exponent = math.log(values[-1] / values[-2]) / math.log(rows[-1] / rows[-2])
            growth, projected = f"{exponent:.2f}", f"{values[-1] * (project / rows[-1]) ** exponent:,.1f}"
        shown = ["" if value is None else f"{value:,.1f}" for value in values]
        lines.append(f"| {name} | " + " | ".join([*shown, growth, projected]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--project", type=int, default=500_000_000, help="rows to project each cost to")
    parser.add_argument(
        "--table", type=Path, nargs="+", metavar="RESULTS", help="only print the table of earlier results files"
    )
    args = parser.parse_args()
    if args.table:
        earlier = [result for path in args.table for result in json.loads(path.read_text())]
        print(capacity_table(sorted(earlier, key=lambda result: result["rows"]), args.project))
        return
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
    print(capacity_table(results, args.project))
    print(f"written {out}")


if __name__ == "__main__":
    main()
