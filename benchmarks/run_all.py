"""Every benchmark with its defaults, one after the other: ``make bench``.

Run: ``.venv/bin/python -m benchmarks.run_all [metrics generate ...]`` (default: all, quickest
first). Each runs in its own process, so one's memory never counts in the next one's peak;
the first failure stops the rest. Results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("metrics", "generate", "warehouse", "engines", "serving", "pipeline", "nightly")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run, of {', '.join(BENCHMARKS)}")
    names = parser.parse_args(argv).names or BENCHMARKS
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    for name in names:
        print(f"== benchmarks.bench_{name}", flush=True)
        code = subprocess.run([sys.executable, "-m", f"benchmarks.bench_{name}"], cwd=ROOT).returncode
        if code != 0:
            print(f"benchmarks.bench_{name} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
