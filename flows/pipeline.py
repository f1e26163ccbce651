"""The recommendation pipeline as a Prefect flow: thin orchestration over ``ml.pipeline``.

run lock and leftovers -> ingest -> time scale -> features -> train, judge and choose (the
ranker, the best simple baseline, or the cold-start lists of an export too thin to train on) ->
write the chosen lists -> serving tables -> publish -> log run. Every decision is made in the
steps (ml/pipeline.py).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ml import pipeline, privacy, runlock, runs, serving
from ml.config import Config, Settings
from ml.timescale import TimeScale

# The columns of the metrics table artifact, in the order a person compares them.
METRIC_COLUMNS = ("ndcg", "recall", "precision", "map", "hit_rate", "missed_offer_share", "n_users")


def _log(message: str) -> None:
    get_run_logger().info(message)


@task(cache_policy=NO_CACHE)
def clean_leftovers(settings: Settings) -> None:
    pipeline.clean_leftovers(settings, _log)


@task(cache_policy=NO_CACHE)
def prepare_input(settings: Settings, config: Config) -> Path:
    return pipeline.resolve_input(settings, config, _log)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def ingest(settings: Settings, config: Config, input_path: Path, version: str) -> None:
    """Retried once: a transient lock on the build database (a reader finishing) clears."""
    pipeline.ingest(settings, config, input_path, version, _log)


@task(cache_policy=NO_CACHE)
def choose_time_scale(settings: Settings, config: Config) -> TimeScale:
    scale = pipeline.choose_time_scale(settings, config)
    _log(f"serving cutoff {scale.serve_at:%Y-%m-%d %H:%M}; {scale.reason}")
    return scale


@task(cache_policy=NO_CACHE)
def build_features(settings: Settings, config: Config, input_path: Path, version: str) -> dict[str, Any]:
    pipeline.build_features(settings, config, input_path, version, _log)
    return pipeline.warehouse_counts(settings)


@task(cache_policy=NO_CACHE)
def train_and_choose(settings: Settings, config: Config, version: str) -> pipeline.TrainOutcome:
    return pipeline.train_and_choose(settings, config, version, _log)


@task(cache_policy=NO_CACHE)
def write_lists(settings: Settings, config: Config, outcome: pipeline.TrainOutcome) -> dict[str, Any]:
    return pipeline.write_lists(settings, config, outcome, _log)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def build_serving_tables(settings: Settings, config: Config, input_path: Path, version: str,
                         generated_at: datetime) -> None:
    pipeline.build_serving_tables(settings, config, input_path, version, generated_at, _log)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def publish(settings: Settings, config: Config, version: str, as_of: datetime, list_source: str) -> dict[str, Any]:
    """Retried: publishing only ever swaps in a complete file, so a retry is always safe.
    User ids are pseudonymised when the home's pseudonym mode is on (ml/privacy.py)."""
    return asdict(serving.publish(settings.build_db, settings.serving_db, model_version=version, as_of=as_of,
                                  list_source=list_source, require_recommendations=list_source != "cold_start",
                                  pseudonym_key=privacy.publish_key(settings.home, config.pseudonymize),
                                  file_mode=config.file_mode))


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
    started = datetime.now(timezone.utc)
    version = pipeline.new_version(started)
    run: dict[str, Any] = {"run_id": version, "model_version": version, "status": "failed",
                           "started_at": started.replace(tzinfo=None), "durations": {}}
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
        run.update(rows_exported=counts["rows_exported"], rows_rejected=counts["rows_rejected"],
                   as_of=counts["as_of"])
        lap("warehouse")
        outcome = train_and_choose(settings, config, version)
        run.update(outcome.run_facts())
        lap("train_evaluate")
        if not outcome.decision.publish:
            run.update(status="rejected")
            return _finish(settings, run)
        list_source = outcome.decision.list_source
        written = write_lists(settings, config, outcome)
        run.update(published_list=list_source, users_scored=written["users"], recommendations=written["rows"])
        lap("score")
        build_serving_tables(settings, config, source, version, started.replace(tzinfo=None))
        lap("serving_tables")
        publish(settings, config, version, counts["as_of"], list_source)
        lap("publish")
        run.update(status="published_cold_start" if list_source == "cold_start" else "published")
        return _finish(settings, run)
    except Exception as error:
        run["reason"] = f"{type(error).__name__}: {error}"[:2000]
        _finish(settings, run)
        raise


def _finish(settings: Settings, run: dict[str, Any]) -> dict[str, Any]:
    run["finished_at"] = datetime.now(timezone.utc).replace(tzinfo=None)
    runs.record(settings, run)
    published, popular = run.get("ndcg"), run.get("popular_ndcg")
    lines = [f"# Run {run['run_id']}: {run['status']}", "",
             f"- reason: {run.get('reason')}",
             f"- input: {run.get('input_path')} (rows {run.get('rows_exported')}, rejected {run.get('rows_rejected')})",
             f"- serving cutoff: {run.get('as_of')}; {run.get('time_scale')}",
             f"- published list: {run.get('published_list')}; holdout NDCG@K "
             f"{published if published is None else round(published, 4)} "
             f"(popular {popular if popular is None else round(popular, 4)})",
             f"- features left out of the fit: {run.get('dropped_features') or 'none'}",
             f"- users with lists: {run.get('users_scored')}, rows: {run.get('recommendations')}",
             f"- seconds per step: {run['durations']}",
             f"- serving database: {settings.serving_db}"]
    create_markdown_artifact("\n".join(lines), key="recommendation-run",
                             description="Summary of the latest pipeline run")
    table = metrics_table(run)
    if table:
        create_table_artifact(table, key="recommendation-run-metrics",
                              description=f"Holdout metrics of every list judged by run {run['run_id']}")
    return run


def metrics_table(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per list the gate judged (the ranker, the logistic reference, each baseline) with
    its holdout metrics and whether it is the one published; empty when nothing was judged
    (an export too thin to train on, a failed run)."""
    published = run.get("published_list")
    return [{"list": name, "published": published in (name, f"baseline:{name}"),
             **{column: _cell(metrics.get(column)) for column in METRIC_COLUMNS}}
            for name, metrics in (run.get("metrics") or {}).items()
            if isinstance(metrics, dict) and "ndcg" in metrics]


def _cell(value: Any) -> Any:
    """A metric as the table shows it: 4 decimals, and None for NaN (not valid JSON)."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def deployment(config: Config):
    """The scheduled deployment ``recsys serve`` runs: the whole pipeline on ``config.cron``
    (nightly by default), with ``config`` as its parameter."""
    return recommendation_pipeline.to_deployment(
        name="nightly-retrain", cron=config.cron,
        parameters={"config": config.model_dump(mode="json")},
        description="Rebuild features, retrain, evaluate, and publish recommendations.")
