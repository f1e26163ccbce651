"""Benchmark of the two warehouse engines: the same ``dbt build`` on DuckDB and on Spark.

Run: ``.venv/bin/python -m benchmarks.bench_engines [--rows 1000000] [--dir DIR] [--engines duckdb spark]``.

Both engines build what both can build from one generated export with categories
(``recsys generate --with-categories --seed 7``, reused when it exists in ``--dir``): every
model and data test but the outcome models and the monitors, without the unit tests (their
fixtures are DuckDB SQL), the selection ``recsys run --engine spark`` builds on Spark. Each
build starts from an empty home. Measured: wall time, the time of models and of tests (dbt's
per-node times), the slowest models, and the peak resident memory of everything the build
started (dbt, DuckDB inside it, Spark's JVM), polled from ``/proc`` every 0.25 s.

Spark is skipped, and says so, where there is no ``java``. docs/compute.md ("Time on both
engines") keeps the numbers; the JSON goes to ``benchmarks/results/engines-<rows>-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_warehouse import RESULTS, ensure_export
from benchmarks.probes import descendants
from ml.config import duckdb_memory

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
ENGINES = ("duckdb", "spark")


class DescendantMemory(threading.Thread):
    """The peak of the summed resident memory of this process's descendants (not itself)."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval, self.peak_kb = interval, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak_kb = max(self.peak_kb, _descendants_rss_kb(os.getpid()))
            self.stopped.wait(self.interval)


def _descendants_rss_kb(root: int) -> int:
    total = 0
    for pid in descendants(root):
        try:
            total += int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[21]) * PAGE_KB
        except (OSError, IndexError, ValueError):
            continue
    return total


def build(engine: str, export: Path, home: Path) -> dict:
    """One ``dbt build`` of both engines' selection on ``engine`` into an empty ``home``."""
    from ml.config import Settings
    from ml.warehouse.dbt import dbt_vars, run_dbt

    memory = DescendantMemory()
    memory.start()
    started = time.perf_counter()
    result = run_dbt(
        Settings(home=home),
        "build",
        dbt_vars(export),
        exclude="tag:outcomes tag:monitoring",
        exclude_resource_type="unit_test",
        target="spark" if engine == "spark" else None,
    )
    seconds = time.perf_counter() - started
    memory.stopped.set()
    memory.join()
    models = {name: s for name, s in result.node_seconds.items() if result.node_status[name] == "success"}
    return {
        "engine": engine,
        "seconds": round(seconds, 1),
        "models_seconds": round(sum(models.values()), 1),
        "tests_seconds": round(sum(result.node_seconds.values()) - sum(models.values()), 1),
        "models": len(models),
        "tests": len(result.node_seconds) - len(models),
        "peak_rss_gb": round(memory.peak_kb / 2**20, 2),
        "slowest": dict(sorted(models.items(), key=lambda item: -item[1])[:6]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_engines")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    args = parser.parse_args(argv)

    args.dir.mkdir(parents=True, exist_ok=True)
    export = args.dir / f"ab_{args.rows}_cat_s{args.seed}.csv"
    ensure_export(args.rows, args.seed, export, with_categories=True)
    report = {
        "benchmark": "engines",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "rows": args.rows,
        "export": str(export),
        "duckdb_memory": duckdb_memory(),
        "spark_memory": os.environ.get("RECSYS_SPARK_MEMORY", "2g"),
        "load_average_before": os.getloadavg(),
        "builds": [],
    }
    for engine in args.engines:
        if engine == "spark" and shutil.which("java") is None:
            print("spark: skipped, Spark needs Java 17 and there is no `java` on PATH")
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-{engine}-", dir=args.dir) as home:
            measured = build(engine, export, Path(home))
        report["builds"].append(measured)
        print(
            f"{engine}: {measured['seconds']} s (models {measured['models_seconds']} s, tests "
            f"{measured['tests_seconds']} s), peak {measured['peak_rss_gb']} GB; slowest "
            + ", ".join(f"{name} {s:.1f}" for name, s in measured["slowest"].items()),
            flush=True,
        )
    report["load_average_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"engines-{args.rows}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
