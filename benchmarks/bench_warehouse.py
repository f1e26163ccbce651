"""Benchmark of the dbt warehouse: staging vs. a bare CSV scan, full ``dbt build``, peak memory.

Run: ``.venv/bin/python -m benchmarks.bench_warehouse [--rows 10000000] [--dir DIR] [--full]``.

One run measures, on one generated export (``recsys generate --rows N --seed 7``; reused
when the file already exists in ``--dir``):

scan
    ``select count(*) from read_csv(...)`` with exactly the read options of the dbt source
    (the ``external_location`` dbt compiled into ``manifest.json``), in a fresh DuckDB
    process with the profile's settings (threads 2, memory_limit, preserve_insertion_order).
scan_all
    The same scan but touching every column (``count(*)`` may skip converting fields), to
    show how much of the scan is spent on the values themselves.
staging (direct)
    The compiled SQL of ``stg_ab_test__events`` run as ``create table ... as`` in the same
    fresh process, right after the scan: the staging step without dbt's start-up. The goal
    of the issue is ``staging / scan <= 4``.
dbt build
    Full ``dbt build`` (models, tests, unit tests) via ``ml.warehouse.dbt.run_dbt``: wall time,
    per-node times, peak RSS of the dbt process (``RUSAGE_CHILDREN`` of a wrapper process
    that ran only dbt), the RSS time line per node (``/proc`` polling) and DuckDB spill
    (size of ``build.duckdb.tmp``).

Each measured step runs in its own child process so its peak memory is its own. The
table is printed and the JSON written to ``benchmarks/results/warehouse-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ml.config import duckdb_memory

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FULL_ROWS = 49_701_624
STAGING_NODES = ["stg_ab_test__events", "int_events__validated", "int_line_items"]
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------- helpers


def _python_child(code: str, *args: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line prefixed RESULT."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-3000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path``; a file that vanishes while it is counted counts 0."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dirpath, name))
    return total


class _Sampler(threading.Thread):
    """Polls RSS of this process's children and the DuckDB spill directory."""

    def __init__(self, spill_dir: Path, interval: float = 0.25):
        super().__init__(daemon=True)
        self.spill_dir, self.interval = spill_dir, interval
        self.samples: list[tuple[float, int, int]] = []  # (t, rss_kb of children, spill bytes)
        self.stop_event = threading.Event()
        self.t0 = time.perf_counter()

    def _children_rss_kb(self) -> int:
        me, total = str(os.getpid()), 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[1] == me:  # ppid
                    total += int(fields[21]) * PAGE_KB  # rss in pages
            except (OSError, IndexError, ValueError):
                continue
        return total

    def run(self) -> None:
        while not self.stop_event.is_set():
            spill = dir_bytes(self.spill_dir) if self.spill_dir.exists() else 0
            self.samples.append((time.perf_counter() - self.t0, self._children_rss_kb(), spill))
            self.stop_event.wait(self.interval)


# --------------------------------------------------------------------------- phases


def phase_build(home: Path, input_path: Path, command: str, select: str | None, exclude: str | None) -> dict:
    """Child-process phase: run one dbt command, report wall time, node times, memory."""
    sys.path.insert(0, str(ROOT))
    from datetime import datetime

    from ml.config import Settings
    from ml.warehouse.dbt import dbt_vars, run_dbt

    settings = Settings(home=home)
    sampler = _Sampler(Path(str(settings.build_db) + ".tmp"))
    sampler.start()
    t0 = time.perf_counter()
    wall_t0 = time.time()
    error = None
    try:
        run_dbt(settings, command, dbt_vars(input_path), select=select, **({"exclude": exclude} if exclude else {}))
    except Exception as exc:  # report what was measured up to the failure
        error = str(exc)
    wall = time.perf_counter() - t0
    sampler.stop_event.set()
    sampler.join()

    # Per-node times from run_results.json (the execute step); RSS/spill sampled meanwhile.
    nodes = []
    run_results = settings.home / "dbt_target" / "run_results.json"
    for res in json.loads(run_results.read_text())["results"] if run_results.exists() else []:
        steps = {t["name"]: t for t in res.get("timing", [])}
        step = steps.get("execute") or steps.get("compile")
        if step and step.get("started_at") and step.get("completed_at"):
            start = datetime.fromisoformat(step["started_at"].replace("Z", "+00:00")).timestamp() - wall_t0
            end = datetime.fromisoformat(step["completed_at"].replace("Z", "+00:00")).timestamp() - wall_t0
        else:
            start = end = 0.0
        off = sampler.t0 - t0  # sampler clock vs run start (tiny)
        inside = [smp for smp in sampler.samples if start - 0.3 <= smp[0] + off <= end + 0.3]
        nodes.append(
            {
                "node": res["unique_id"].split(".", 2)[-1],
                "status": res["status"],
                "seconds": round(res.get("execution_time", 0.0), 2),
                "start_s": round(start, 1),
                "end_s": round(end, 1),
                "max_rss_mb_while_running": round(max((x[1] for x in inside), default=0) / 1024),
                "max_spill_mb_while_running": round(max((x[2] for x in inside), default=0) / 2**20),
            }
        )
    peak_at = max(sampler.samples, key=lambda x: x[1], default=(0, 0, 0))
    return {
        "command": command,
        "select": select,
        "exclude": exclude,
        "wall_seconds": round(wall, 2),
        "error": error,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "cpu_seconds": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime,
            1,
        ),
        "sampled_peak_rss_mb": round(peak_at[1] / 1024),
        "sampled_peak_at_s": round(peak_at[0], 1),
        "max_spill_mb": round(max((x[2] for x in sampler.samples), default=0) / 2**20),
        "db_mb": round(settings.build_db.stat().st_size / 2**20) if settings.build_db.exists() else None,
        "nodes": nodes,
        "rss_timeline": [(round(t, 1), round(r / 1024), round(sp / 2**20)) for t, r, sp in sampler.samples[::4]],
    }


_SCAN_AND_STAGE = r"""
import json, resource, sys, time, duckdb
source, staging_sql, db_path, memory, repeats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
con = duckdb.connect(db_path)
con.execute(f"set threads = 2; set memory_limit = '{memory}'; set preserve_insertion_order = true")
cpu = {"scan": [], "scan_all": [], "staging": []}
def timed(sql, key=None):
    t0, c0 = time.perf_counter(), time.process_time()
    rows = con.execute(sql).fetchall()
    if key: cpu[key].append(time.process_time() - c0)
    return time.perf_counter() - t0, rows
out = {"scan": [], "scan_all": [], "staging": []}
timed(f"select count(*) from {source}")  # warm the page cache and the sniffer
for _ in range(repeats):
    seconds, rows = timed(f"select count(*) from {source}", "scan")
    out["scan"].append(seconds); out["rows"] = rows[0][0]
    # every field converted and looked at: what a full scan of the values costs
    seconds, _ = timed(f"select count(*), max(length(columns(*))) from {source}", "scan_all")
    out["scan_all"].append(seconds)
    con.execute("drop table if exists bench_stg")
    seconds, _ = timed(f"create table bench_stg as {staging_sql}", "staging")
    out["staging"].append(seconds)
out["cpu_seconds"] = cpu
out["staged_rows"] = con.execute("select count(*) from bench_stg").fetchone()[0]
out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("RESULT " + json.dumps(out))
"""


def scan_and_stage(home: Path, repeats: int, memory: str) -> dict:
    """Bare scan, all-column scan and the staging SQL in one fresh DuckDB process."""
    target = home / "dbt_target"
    manifest = json.loads((target / "manifest.json").read_text())
    source = manifest["sources"]["source.recsys.ab_test.events"]["relation_name"]
    compiled = next(target.glob("compiled/*/dbt_project/models/staging/stg_ab_test__events.sql")).read_text()
    with tempfile.TemporaryDirectory(prefix="bench-stage-", dir=home) as tmp:
        result = _python_child(_SCAN_AND_STAGE, source, compiled, str(Path(tmp) / "stage.duckdb"), memory, str(repeats))
    result["source_sql"] = source
    return result


def ensure_export(rows: int, seed: int, out: Path, with_categories: bool) -> float | None:
    if out.exists():
        return None
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "generate",
        "--rows",
        str(rows),
        "--seed",
        str(seed),
        "--out",
        str(out),
    ] + (["--with-categories"] if with_categories else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return round(time.perf_counter() - t0, 1)


def run_phase(
    home: Path, input_path: Path, command: str, select: str | None = None, exclude: str | None = None
) -> dict:
    args = [
        sys.executable,
        "-m",
        "benchmarks.bench_warehouse",
        "--phase",
        command,
        "--home",
        str(home),
        "--input",
        str(input_path),
    ]
    args += (["--select", select] if select else []) + (["--phase-exclude", exclude] if exclude else [])
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"phase {command} failed: {proc.stderr[-3000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


# --------------------------------------------------------------------------- report


def _fmt_nodes(build: dict, limit: int = 40) -> list[str]:
    nodes = sorted(build["nodes"], key=lambda n: -n["seconds"])
    lines = [f"  {'node':<58} {'status':<8} {'s':>8} {'RSS MB':>8} {'spill MB':>9}"]
    for n in nodes[:limit]:
        lines.append(
            f"  {n['node'][:58]:<58} {n['status']:<8} {n['seconds']:>8.2f} "
            f"{n['max_rss_mb_while_running']:>8} {n['max_spill_mb_while_running']:>9}"
        )
    return lines


def report_text(r: dict) -> str:
    s = r["scan_and_stage"]
    med = {k: statistics.median(s[k]) for k in ("scan", "scan_all", "staging")}
    stage_nodes = {n["node"]: n["seconds"] for n in r["build"]["nodes"]}
    staging_dbt = sum(stage_nodes.get(n, 0.0) for n in STAGING_NODES)
    lines = [
        f"warehouse benchmark: {r['rows']:,} rows ({r['file_mb']:,} MB), {r['cpus']} cpus, "
        f"memory_limit {r['memory_limit']}",
        f"  scan      count(*) from read_csv(<dbt source options>)   {med['scan']:8.2f} s",
        f"  scan_all  same, every field read                        {med['scan_all']:8.2f} s",
        f"  staging   stg_ab_test__events compiled SQL, direct      {med['staging']:8.2f} s"
        f"   ratio {med['staging'] / med['scan']:.2f}x scan ({med['staging'] / med['scan_all']:.2f}x scan_all)",
        f"  cpu time  scan {statistics.median(s['cpu_seconds']['scan']):.2f} s, scan_all "
        f"{statistics.median(s['cpu_seconds']['scan_all']):.2f} s, staging {statistics.median(s['cpu_seconds']['staging']):.2f} s"
        f"   ratio {statistics.median(s['cpu_seconds']['staging']) / statistics.median(s['cpu_seconds']['scan']):.2f}x scan",
        f"  staging   stg node in dbt build                          {stage_nodes.get(STAGING_NODES[0], 0):8.2f} s"
        f"   ratio {stage_nodes.get(STAGING_NODES[0], 0) / med['scan']:.2f}x",
        f"  staging+  stg + int_events__validated + int_line_items  {staging_dbt:8.2f} s"
        f"   ratio {staging_dbt / med['scan']:.2f}x",
        f"  dbt build wall {r['build']['wall_seconds']:.1f} s (cpu {r['build']['cpu_seconds']} s), peak RSS {r['build']['peak_rss_mb']:,} MB, "
        f"max spill {r['build']['max_spill_mb']:,} MB, db {r['build']['db_mb']} MB"
        + (f", ERROR: {r['build']['error']}" if r["build"]["error"] else ""),
        f"  (repeats: scan {[round(x, 2) for x in s['scan']]}, staging {[round(x, 2) for x in s['staging']]}; "
        f"scan process peak RSS {s['peak_rss_mb']} MB)",
        "per node (dbt build, slowest first):",
        *_fmt_nodes(r["build"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--full", action="store_true", help=f"use the full {FULL_ROWS:,} rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--with-categories", action="store_true")
    parser.add_argument(
        "--dir",
        default=str(Path(tempfile.gettempdir()) / "bench_warehouse"),
        help="where the export is generated / reused",
    )
    parser.add_argument("--export", help="use this export file (generated there if missing)")
    parser.add_argument("--repeats", type=int, default=2, help="scan/staging repetitions (median)")
    parser.add_argument(
        "--exclude",
        dest="build_exclude",
        default="tag:serving tag:monitoring",
        help="dbt --exclude for the build (serving models need the ranker's scores, monitors the serving models)",
    )
    parser.add_argument("--skip-scan", action="store_true", help="only the dbt build")
    parser.add_argument("--delete-export", action="store_true", help="delete the export afterwards")
    # internal: one measured phase in its own process
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--select", help=argparse.SUPPRESS)
    parser.add_argument("--phase-exclude", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        result = phase_build(Path(args.home), Path(args.input), args.phase, args.select, args.phase_exclude)
        print("RESULT " + json.dumps(result))
        return 0

    rows = FULL_ROWS if args.full else args.rows
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"ab_{rows}{'_cat' if args.with_categories else ''}_s{args.seed}.csv"
    export = Path(args.export) if args.export else workdir / name
    generate_seconds = ensure_export(rows, args.seed, export, args.with_categories)
    memory = duckdb_memory()

    report: dict = {
        "benchmark": "warehouse",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "rows": rows,
        "seed": args.seed,
        "with_categories": args.with_categories,
        "export": str(export),
        "file_mb": round(export.stat().st_size / 2**20),
        "generate_seconds": generate_seconds,
        "memory_limit": memory,
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-warehouse-", dir=workdir) as tmp:
        home = Path(tmp) / "home"
        print(f"dbt build on {export} ...", flush=True)
        # The warehouse build the pipeline runs: serving models need the ranker's scores.
        report["build"] = run_phase(home, export, "build", exclude=args.build_exclude or None)
        if not args.skip_scan:
            print("scan and direct staging ...", flush=True)
            report["scan_and_stage"] = scan_and_stage(home, args.repeats, memory)
    report["load_average_after"] = os.getloadavg()
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']}")
    if args.delete_export:
        export.unlink()

    if "scan_and_stage" in report:
        print(report_text(report))
    else:
        print(json.dumps(report["build"], indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"warehouse-{rows}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
