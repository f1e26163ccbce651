"""Running dbt against the build database, and reading what it built.

dbt runs as a child process, with the project and its profile at the repository root (where a
plain ``dbt build`` finds them too) and the build database chosen by ``RECSYS_BUILD_DB``, so
each product home has its own warehouse.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.config import PROJECT_ROOT, Settings
from ml.data.export import export_files, read_header
from ml.warehouse import tables
from ml.warehouse.children import dies_with_us


class DbtError(RuntimeError):
    """A dbt invocation failed; the message names the failing nodes."""


@dataclass
class DbtResult:
    """Outcome of one dbt invocation: which nodes ran and how long each took."""

    command: str
    node_status: dict[str, str] = field(default_factory=dict)
    node_seconds: dict[str, float] = field(default_factory=dict)


def dbt_vars(input_path: Path, as_of: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The variables a build needs; anything in ``dbt_project.yml`` ``vars`` can be overridden.

    ``input_path`` may be a file, a directory or a glob (``export_files``): ``input_files`` are
    its files in order, ``input_path`` the first. ``export_columns`` is the export's header:
    staging reads lines without sniffing and needs to know which field is which (8 or 10 columns).
    """
    files = [path.resolve() for path in export_files(input_path)]
    values: dict[str, Any] = {
        "input_path": str(files[0]),
        "input_files": [str(path) for path in files],
        "as_of": as_of or "",
        "export_columns": read_header(files[0]),
    }
    values.update(overrides)
    return values


def staging_code(header: list[str]) -> str:
    """A digest of what decides how a line is staged: the dbt project's staging models, its
    macros and vars, DuckDB's version and the export's header. Rows staged under another digest
    are parsed again (``ml.pipeline.steps.ingest``)."""
    digest = hashlib.sha256()
    files = [PROJECT_ROOT / "dbt_project.yml", *sorted((PROJECT_ROOT / "dbt_project" / "macros").glob("*.sql"))]
    files += sorted((PROJECT_ROOT / "dbt_project" / "models" / "staging").glob("*"))
    for path in files:
        digest.update(path.read_bytes())
    digest.update(importlib.metadata.version("duckdb").encode())
    digest.update(json.dumps(header).encode())
    return digest.hexdigest()


def run_dbt(
    settings: Settings,
    command: str,
    variables: Mapping[str, Any],
    *,
    select: str | None = None,
    exclude: str | None = None,
    indirect_selection: str | None = None,
    exclude_resource_type: str | None = None,
    target: str | None = None,
    full_refresh: bool = False,
    on_node: Callable[[str, str, float, int, int], None] | None = None,
) -> DbtResult:
    """Run ``dbt <command>`` (build, run, test, ...) for one home; raise ``DbtError`` on failure.

    dbt runs in a child process: dbt-duckdb keeps its database open for the life of the
    process, and the pipeline must be able to open the build database once dbt is done.
    ``on_node(name, status, seconds, index, total)`` is called as each node finishes, for
    progress output: it is dbt's node ``index`` of ``total`` in this invocation.
    ``select`` and ``exclude`` are dbt selections (several separated by spaces);
    ``indirect_selection`` is dbt's mode for the tests of the selected models. The outcome
    models read the home's exposure log (var ``exposures_path``) unless ``variables`` say otherwise.
    ``target`` is the profile's output (``build``, DuckDB, by default; ``spark``: the same models
    on Spark, their tables under ``<home>/spark``). ``full_refresh`` rebuilds incremental models
    (staging) from scratch.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    variables = {"exposures_path": str(settings.exposures_dir), **variables}  # the outcome models' input
    env = {
        **os.environ,
        "RECSYS_BUILD_DB": str(settings.build_db),
        "RECSYS_SPARK_WAREHOUSE": str(settings.home / "spark"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    args = [
        _dbt_executable(),
        command,
        "--project-dir",
        str(PROJECT_ROOT),
        "--profiles-dir",
        str(PROJECT_ROOT),
        "--target-path",
        str(settings.home / "dbt_target"),
        "--log-path",
        str(settings.home / "dbt_logs"),
        "--log-format",
        "json",
        "--vars",
        json.dumps(dict(variables)),
    ]
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    if indirect_selection:
        args += ["--indirect-selection", indirect_selection]
    if exclude_resource_type:
        args += ["--exclude-resource-type", exclude_resource_type]
    if target:
        args += ["--target", target]
    if full_refresh:
        args.append("--full-refresh")

    result = DbtResult(command=command)
    errors: list[str] = []
    # dies_with_us: a killed run must not leave dbt writing the build database under the next one
    with subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        preexec_fn=dies_with_us(),
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            event = _parse_event(line)
            if event is None:
                continue
            name, data = event
            if name.startswith("Log") and name.endswith("Result") and "node_info" in data:
                node = data["node_info"]
                seconds = float(data.get("execution_time") or 0.0)
                result.node_status[node["node_name"]] = node["node_status"]
                result.node_seconds[node["node_name"]] = seconds
                if on_node:  # tests report their count as num_models, the other nodes as total
                    total = int(data.get("total") or data.get("num_models") or 0)
                    index = int(data.get("index") or 0)
                    on_node(node["node_name"], node["node_status"], seconds, index, total)
            elif name in ("RunResultError", "RunResultFailure", "MainEncounteredError"):
                node_name = data.get("node_info", {}).get("node_name", "")
                errors.append(f"{node_name}: {data.get('msg') or data.get('exc')}".strip(": "))
    if process.returncode != 0:
        detail = "; ".join(errors[:5]) or f"exit code {process.returncode}"
        raise DbtError(f"dbt {command} failed: {detail} (log: {settings.home / 'dbt_logs' / 'dbt.log'})")
    return result


def _dbt_executable() -> str:
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else (shutil.which("dbt") or "dbt")


def _parse_event(line: str) -> tuple[str, dict[str, Any]] | None:
    try:
        payload = json.loads(line)
        return payload["info"]["name"], payload.get("data", {})
    except (ValueError, KeyError, TypeError):
        return None


def rejected_rows_summary(input_path: Path, scratch_dir: Path) -> dict[str, Any]:
    """What a build would quarantine from ``input_path``: rows per reason and the first example
    of each as written, exactly as the warehouse decides, because dbt itself runs
    ``+rejected_rows`` in a temporary home under ``scratch_dir`` (deleted afterwards).
    ``{"error": ...}`` when dbt fails.
    """
    scratch_dir.mkdir(parents=True, exist_ok=True)
    tmp_home = Path(tempfile.mkdtemp(prefix="profile-", dir=scratch_dir))
    try:
        settings = Settings(home=tmp_home)
        try:
            run_dbt(settings, "run", dbt_vars(input_path), select="+rejected_rows")
        except DbtError as error:
            return {"error": str(error)}
        with tables.warehouse(settings.build_db) as con:
            staged = con.execute("select count(*) from stg_ab_test__events").fetchall()[0][0]
            by_reason = con.execute("""
                select reject_reason, count(*) as n from rejected_rows group by 1 order by n desc, 1
            """).fetchall()
            # The row as written: every raw_* field the quarantine keeps (whatever the model's
            # current columns are), or the unsplittable line itself.
            present = [r[0] for r in con.execute("describe rejected_rows").fetchall()]
            fields = [c for c in present if c.startswith("raw_") and c != "raw_line"]
            joined = (
                "concat_ws(',', " + ", ".join(f"coalesce({f}::varchar, '')" for f in fields) + ")" if fields else "''"
            )
            line = "raw_line" if "raw_line" in present else "null"
            order = ", ".join(c for c in ("event_row_id nulls last", "line_number") if c.split()[0] in present)
            examples = con.execute(f"""
                select reject_reason, coalesce({line}, {joined}) as example
                from rejected_rows
                qualify row_number() over (partition by reject_reason{" order by " + order if order else ""}) = 1
            """).fetchall()
        total = sum(n for _, n in by_reason)
        return {
            "staged_rows": int(staged),
            "total": int(total),
            "by_reason": [{"reason": r, "rows": int(n)} for r, n in by_reason],
            "examples": {r: e[:400] for r, e in examples},
        }
    finally:
        shutil.rmtree(tmp_home, ignore_errors=True)
