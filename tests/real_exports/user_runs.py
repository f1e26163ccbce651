"""`recsys run` as a user types it, what it published, and the matrix the README shows.

The real-export cases live in several modules so that `make test`'s two workers (whole modules
each) share them. Set RECSYS_MATRIX_REPORT to a path to get the README's table: on one worker
all of it at that path, on several each worker's rows at PATH.gw0, PATH.gw1, ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from flows.cli import main
from ml.config import Settings
from ml.pipeline import runs

PUBLISHED = {"published", "published_cold_start"}


@dataclass
class Outcome:
    code: int
    output: str
    run: dict | None


def recsys(capsys, *argv: str) -> Outcome:
    """`recsys ARGV` as a user types it (in this process, on the session's Prefect server)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    home = Path(argv[argv.index("--home") + 1])
    history = runs.history(Settings(home), limit=1)
    return Outcome(code, captured.out + captured.err, history[0] if history else None)


def publication(home: Path) -> tuple | None:
    serving_db = Settings(home).serving_db
    if not serving_db.exists():
        return None
    with duckdb.connect(str(serving_db), read_only=True) as con:
        return con.execute("select model_version, list_source, n_rows from publication").fetchone()


def assert_published(outcome: Outcome, home: Path) -> None:
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    assert outcome.code == 0, outcome.output[-3000:]
    assert outcome.run["status"] in PUBLISHED
    assert publication(home)[0] == outcome.run["model_version"]


REPORT: list[dict] = []


def report(case: str, export: Path, outcome: Outcome, **extra) -> None:
    """A row of the matrix: data, rows, span, status, what was published, holdout NDCG."""
    with duckdb.connect() as con:
        rows, first, last = con.execute(
            "select count(*), min(utc_event_date), max(utc_event_date) from read_csv(?, all_varchar = true)",
            [str(export)],
        ).fetchone()
    run = outcome.run or {}
    REPORT.append(
        {
            "case": case,
            "rows": rows,
            "span": f"{first} .. {last}",
            "status": run.get("status", "refused"),
            "published": run.get("published_list"),
            "horizon_days": run.get("horizon_days"),
            "ndcg": run.get("ndcg"),
            **extra,
        }
    )
    target = os.environ.get("RECSYS_MATRIX_REPORT")
    if target:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        target = f"{target}.{worker}" if worker else target
        lines = [
            "| data | rows | span | status | published | horizon | holdout NDCG@10 | notes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in REPORT:
            ndcg = "" if row["ndcg"] is None else f"{row['ndcg']:.4f}"
            lines.append(
                f"| {row['case']} | {row['rows']:,} | {row['span']} | {row['status']} | "
                f"{row['published'] or ''} | {row['horizon_days'] or ''} | {ndcg} | {row.get('notes', '')} |"
            )
        Path(target).write_text("\n".join(lines) + "\n")


def rewrite(source: Path, target: Path, select: str, where: str = "true") -> Path:
    """``source`` re-written with DuckDB: ``select`` over its text columns, rows where ``where``."""
    with duckdb.connect() as con:
        con.execute(
            f"copy (select {select} from read_csv('{source}', all_varchar = true) where {where}) "
            f"to '{target}' (header, delimiter ',', quote '\"')"
        )
    return target


def check_generated(capsys, case: str, export: Path, home: Path, dropped: set[str] = frozenset()) -> Outcome:
    """A generated shape publishes a learned list (ranker or baseline) and leaves out ``dropped``."""
    outcome = recsys(capsys, "--home", str(home), "run", "--input", str(export))
    assert_published(outcome, home)
    assert outcome.run["status"] == "published", outcome.run["reason"]
    assert dropped <= set(outcome.run["dropped_features"] or {})
    report(
        case,
        export,
        outcome,
        notes=", ".join(sorted(outcome.run["dropped_features"] or {}))
        and "left out of the fit: " + ", ".join(sorted(outcome.run["dropped_features"])),
    )
    return outcome
