"""The operator's probes of issue 10, re-run against the installed ``recsys``: bad input, hostile
settings, two runs on one home, a SIGKILLed run, the serving file's privacy.

    .venv/bin/python benchmarks/probes.py [--rows 60000] [--kill-after 25] [--out table.md]

Each probe runs the real command in a subprocess on a small generated export (corrupted on
purpose where the probe says so) and records what it observed: the exit code, the line that
explains it, and what the warehouse or the serving file holds afterwards. Prints a markdown table
(probe, expected, observed, verdict), the one in docs/reliability.md. Not a test: takes minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.config import Settings  # noqa: E402

RECSYS = [sys.executable, "-m", "flows.cli"]


@dataclass
class Probe:
    name: str
    expected: str
    observed: str
    passed: bool


def recsys(home: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RECSYS, "--home", str(home), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def first_line(result: subprocess.CompletedProcess, containing: str = "") -> str:
    """The first output line holding ``containing`` (else the last line of stderr), shortened."""
    lines = (result.stdout + "\n" + result.stderr).splitlines()
    found = [line for line in lines if containing and containing in line]
    line = found[0] if found else next((x for x in reversed(result.stderr.splitlines()) if x.strip()), "")
    return " ".join(line.split())[:160].replace("|", "\\|")


def rejected_reasons(home: Path) -> dict[str, int]:
    with duckdb.connect(str(Settings.from_env(home).build_db), read_only=True) as con:
        return dict(con.execute("select reject_reason, count(*) from rejected_rows group by 1 order by 1").fetchall())


def serving_rows(home: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(Settings.from_env(home).serving_db), read_only=True) as con:
        return con.execute(sql).fetchall()


def corrupt(clean: Path, out: Path) -> dict[str, int]:
    """The clean export plus one line of each kind that once voided or bent a run."""
    lines = clean.read_text().splitlines()
    header, body = lines[0], lines[1:]
    first = body[0].split(",", 4)
    future = "Site,2026-11-29 10:00:00+00:00,2026-11-29,{u},purchase,[1000],[1],[123]"
    injected = [
        '"' + body[1],  # stray quote: one bad line
        "Site,2023-08-01 10:00:00+00:00,2023-08-01,1,view,[1],[1],[" + "9" * 2_100_000 + "]",  # 2.1 MB line
        f"Site,{first[1]},{first[2]},777,purchase,[{'9' * 26}],[1],[42]",  # 26-digit price
        *[future.format(u=900 + i) for i in range(6)],  # six rows dated "today"
    ]
    out.write_text("\n".join([header, *body[: len(body) // 2], *injected, *body[len(body) // 2 :]]) + "\n")
    return {"malformed_row": 1, "line_too_long": 1, "unrepresentable_value": 1, "outlier_date": 6}


def probe_bad_lines(work: Path, clean: Path) -> list[Probe]:
    home = work / "bad-lines"
    path = work / 'it\'s "quoted".csv'
    corrupt(clean, path)
    result = recsys(home, "run", "--input", str(path))
    reasons = rejected_reasons(home) if Settings.from_env(home).build_db.exists() else {}
    cutoff = first_line(result, "serving cutoff")
    return [
        Probe(
            'file named `it\'s "quoted".csv`, one stray `"`, one 2.1 MB line, one 26-digit price, '
            "six rows dated 2026-11-29 in a 2023 export",
            "publishes (exit 0); each bad line quarantined with its reason; the cutoff is the day after "
            "the export's body",
            f"exit {result.returncode}; quarantined {reasons}; {cutoff}",
            result.returncode == 0
            and reasons.get("outlier_date", 0) >= 6
            and "2026" not in cutoff
            and sum(reasons.values()) >= 9,
        ),
    ]


def probe_refusals(work: Path, clean: Path) -> list[Probe]:
    home = work / "refusals"
    header_only = work / "header_only.csv"
    header_only.write_text(clean.read_text().splitlines()[0] + "\n")
    binary = work / "binary.csv"
    binary.write_bytes(os.urandom(4096))
    cases = [
        (
            "`--as-of \"2023-08-10'); select read_text('/etc/hostname\"`",
            ["run", "--input", str(clean), "--as-of", "2023-08-10'); select read_text('/etc/hostname"],
        ),
        ("`--as-of 2023-13-45`", ["run", "--input", str(clean), "--as-of", "2023-13-45"]),
        ("`--top-n 0`", ["run", "--input", str(clean), "--top-n", "0"]),
        ("a header-only file", ["run", "--input", str(header_only)]),
        ("a directory as input", ["run", "--input", str(work)]),
        ("4 KB of random bytes", ["run", "--input", str(binary)]),
    ]
    probes = []
    for name, args in cases:
        started = time.monotonic()
        result = recsys(home, *args)
        seconds = time.monotonic() - started
        line = first_line(result, "error:")
        echoed = any(ord(ch) > 127 or (ord(ch) < 32 and ch not in "\n\t") for ch in result.stderr)
        probes.append(
            Probe(
                name,
                "refused at once with one line, exit 2, no binary bytes echoed",
                f"exit {result.returncode} in {seconds:.1f} s: {line}",
                result.returncode == 2
                and line.startswith("error:")
                and not echoed
                and "Traceback" not in result.stderr,
            )
        )
    return probes


def probe_two_runs(work: Path, clean: Path) -> list[Probe]:
    home = work / "two-runs"
    first = subprocess.Popen(
        [*RECSYS, "--home", str(home), "run", "--input", str(clean)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    lock = home / ".run.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.stat().st_size):
        time.sleep(0.2)
    second = recsys(home, "run", "--input", str(clean))
    first.wait(timeout=1800)
    return [
        Probe(
            "a second `recsys run` on the same home while the first runs",
            "the second refuses at once (exit 2) naming the holder's pid and start; the first publishes",
            f"second: exit {second.returncode}: {first_line(second, 'error:')}; first: exit {first.returncode}",
            second.returncode == 2 and str(first.pid) in second.stderr and first.returncode == 0,
        )
    ]


def descendants(pid: int) -> list[int]:
    """Processes whose parent chain leads to ``pid`` (read from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def probe_sigkill(work: Path, clean: Path, after: float) -> list[Probe]:
    home = work / "killed"
    run = subprocess.Popen(
        [*RECSYS, "--home", str(home), "run", "--input", str(clean)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        start_new_session=True,
    )
    time.sleep(after)
    children = descendants(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    time.sleep(3)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    for pid in alive:  # leave the machine clean whatever the verdict
        os.kill(pid, signal.SIGKILL)
    again = recsys(home, "run", "--input", str(clean))
    cleaned = first_line(again, "removed")
    return [
        Probe(
            f"`recsys run` SIGKILLed after {after:.0f} s (Prefect server and dbt running)",
            "nothing it started outlives it; the next run removes its leftovers, says so, and publishes",
            f"{len(children)} child processes, {len(alive)} alive 3 s later; next run: exit "
            f"{again.returncode}; {cleaned or 'no leftovers reported'}",
            not alive and again.returncode == 0,
        )
    ]


def probe_serving_file(work: Path) -> list[Probe]:
    home = work / "bad-lines"
    serving = Settings.from_env(home).serving_db
    mode = stat.S_IMODE(serving.stat().st_mode)
    reasons = [r for (r,) in serving_rows(home, "select distinct reason from recommendations order by 1")]
    thin_pairs = serving_rows(home, "select count(*) from similar_items where support_users < 3")[0][0]
    item_reason = [r for r in reasons if ":" in r and not r.startswith("baseline:")]
    return [
        Probe(
            "the published serving file",
            "owner-only (0600); reasons never name an item; no pair bought by fewer than 3 users",
            f"mode {mode:o}; reasons {reasons}; pairs under 3 buyers: {thin_pairs}",
            mode == 0o600 and not item_reason and thin_pairs == 0,
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--kill-after", type=float, default=25.0, help="seconds before the SIGKILL")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recsys-probes-"))
    try:
        clean = work / "clean.csv"
        subprocess.run(
            [*RECSYS, "generate", "--rows", str(args.rows), "--seed", "7", "--out", str(clean)],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        steps: list[Callable[[], list[Probe]]] = [
            lambda: probe_refusals(work, clean),
            lambda: probe_bad_lines(work, clean),
            lambda: probe_serving_file(work),
            lambda: probe_two_runs(work, clean),
            lambda: probe_sigkill(work, clean, args.kill_after),
        ]
        probes = [probe for step in steps for probe in step()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = ["| probe | expected | observed | verdict |", "|---|---|---|---|"]
    table += [
        f"| {p.name} | {p.expected} | {p.observed} | {'as expected' if p.passed else '**NOT as expected**'} |"
        for p in probes
    ]
    text = "\n".join(table) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if all(p.passed for p in probes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
