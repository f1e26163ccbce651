"""The recommendation pipeline as a Prefect flow: the one sequence of a run's steps.

run lock and leftovers -> input -> ingest -> time scale -> features -> train, judge and choose
(the ranker, the best simple baseline, or the cold-start lists of an export too thin to train
on) -> write the chosen lists -> serving tables -> publish -> monitors -> log the run. Each task
calls one step of ``ml.pipeline.steps`` (the monitors: ``ml.monitoring.drift``), where every
decision is made; the flow only orders them and keeps the run's record.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ml.config import Config, Settings
from ml.monitoring import drift, page
from ml.pipeline import runlock, runs, steps
from ml.pipeline.gate import GateDecision
from ml.warehouse.timescale import TimeScale


def _log(message: str) -> None:
    get_run_logger().info(message)


@task(cache_policy=NO_CACHE)
def clean_leftovers(settings: Settings) -> None:
    steps.clean_leftovers(settings, _log)


@task(cache_policy=NO_CACHE)
def prepare_input(settings: Settings, config: Config) -> Path:
    return steps.resolve_input(settings, config, _log)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def ingest(settings: Settings, config: Config, input_path: Path, version: str) -> None:
    """Retried once: a transient lock on the build database (a reader finishing) clears."""
    steps.ingest(settings, config, input_path, version, _log)


@task(cache_policy=NO_CACHE)
def choose_time_scale(settings: Settings, config: Config) -> TimeScale:
    scale = steps.choose_time_scale(settings, config)
    _log(f"serving cutoff {scale.serve_at:%Y-%m-%d %H:%M}; {scale.reason}")
    return scale


@task(cache_policy=NO_CACHE)
def build_features(settings: Settings, config: Config, input_path: Path, version: str) -> dict[str, Any]:
    steps.build_features(settings, config, input_path, version, _log)
    return steps.warehouse_counts(settings)


@task(cache_policy=NO_CACHE)
def train_and_choose(settings: Settings, config: Config, version: str) -> steps.TrainOutcome:
    return steps.train_and_choose(settings, config, version, _log)


@task(cache_policy=NO_CACHE)
def write_lists(settings: Settings, config: Config, outcome: steps.TrainOutcome) -> dict[str, Any]:
    return steps.write_lists(settings, config, outcome, _log)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def build_serving_tables(
    settings: Settings, config: Config, input_path: Path, version: str, generated_at: datetime
) -> None:
    steps.build_serving_tables(settings, config, input_path, version, generated_at, _log)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def publish(
    settings: Settings, config: Config, version: str, as_of: datetime, decision: GateDecision
) -> dict[str, Any]:
    """Retried: publishing only ever swaps in a complete file, so a retry is always safe."""
    return steps.publish(settings, config, version, as_of, decision)


@task(cache_policy=NO_CACHE)
def run_monitors(
    settings: Settings, config: Config, input_path: Path, version: str, ndcg: float | None
) -> dict[str, Any]:
    """The drift and quality monitors of what was just published; their warnings are recorded,
    never raised."""
    return drift.run_monitors(settings, config, input_path, version, ndcg, _log)


@flow(name="recommendation-pipeline", log_prints=True)
def recommendation_pipeline(config: Config | None = None) -> dict[str, Any]:
    """The whole run. Its one parameter is the whole ``Config`` (Prefect checks it against the
    model); without one, the environment's (``RECSYS_*``) and the defaults."""
    config = config or Config()
    settings = config.settings
    # One run per home, also when a deployment starts the flow (re-entrant: `recsys run` holds it already).
    with runlock.hold(settings.home), config.environment():
        settings.ensure_dirs()
        clean_leftovers(settings)
        return _run(settings, config)


def _run(settings: Settings, config: Config) -> dict[str, Any]:
    """The run's steps, under the run lock; the run's record (also in runs.duckdb)."""
    started = datetime.now(UTC)
    version = steps.new_version(started)
    run: dict[str, Any] = {
        "run_id": version,
        "model_version": version,
        "status": "failed",
        "started_at": started.replace(tzinfo=None),
        "durations": {},
    }
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        run["durations"][step] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    try:
        source = prepare_input(settings, config)
        run["input_path"] = str(source)
        lap("input")
        ingest(settings, config, source, version)
        scale = choose_time_scale(settings, config)
        config = config.updated(horizon_days=scale.horizon_days)
        run.update(horizon_days=scale.horizon_days, time_scale=scale.reason)
        counts = build_features(settings, config, source, version)
        run.update(rows_exported=counts["rows_exported"], rows_rejected=counts["rows_rejected"], as_of=counts["as_of"])
        lap("warehouse")
        outcome = train_and_choose(settings, config, version)
        run.update(outcome.run_facts())
        lap("train_evaluate")
        decision = outcome.decision
        if not decision.publish:
            return _finish(settings, {**run, "status": decision.status})
        written = write_lists(settings, config, outcome)
        run.update(published_list=decision.list_source, users_scored=written["users"], recommendations=written["rows"])
        lap("score")
        build_serving_tables(settings, config, source, version, started.replace(tzinfo=None))
        lap("serving_tables")
        publish(settings, config, version, counts["as_of"], decision)
        lap("publish")
        run["monitors"] = run_monitors(settings, config, source, version, run.get("ndcg"))
        lap("monitors")
        return _finish(settings, {**run, "status": decision.status})
    except Exception as error:
        run["reason"] = f"{type(error).__name__}: {error}"[:2000]
        _finish(settings, run)
        raise


def _finish(settings: Settings, run: dict[str, Any]) -> dict[str, Any]:
    """Log the run (runs.duckdb) and attach its summary, its metrics table and the monitor
    summary (``recsys monitor``'s, with this run in it) as artifacts."""
    run["finished_at"] = datetime.now(UTC).replace(tzinfo=None)
    runs.record(settings, run)
    create_markdown_artifact(
        runs.summary(settings, run), key="recommendation-run", description="Summary of the latest pipeline run"
    )
    table = runs.metrics_table(run)
    if table:
        create_table_artifact(
            table,
            key="recommendation-run-metrics",
            description=f"Holdout metrics of every list judged by run {run['run_id']}",
        )
    create_markdown_artifact(
        page.summary(page.gather(settings)),
        key="monitor-summary",
        description="The monitors over runs: last run, warnings, outcome readout (`recsys monitor` draws the page)",
    )
    return run


def deployment(config: Config):
    """The scheduled deployment ``recsys serve`` runs: the whole pipeline on ``config.cron``
    (nightly by default), with ``config`` as its parameter."""
    return recommendation_pipeline.to_deployment(
        name="nightly-retrain",
        cron=config.cron,
        parameters={"config": config.model_dump(mode="json")},
        description="Rebuild features, retrain, evaluate, and publish recommendations.",
    )
