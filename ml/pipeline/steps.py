"""The steps of one pipeline run, as plain functions the Prefect flow orchestrates.

ingest the export -> choose the time scale -> build the features -> train (time-respecting CV),
judge the ranker and the simple baselines on the newest window and choose the list to publish
-> write that list -> build the contract-checked serving tables -> publish.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml import serving
from ml.baselines.scoring import serve_baseline
from ml.baselines.tuning import gate_specs, judge_baselines, spec_named
from ml.config import Config, Settings
from ml.data.export import ExportError, check_export_files
from ml.evaluation import bootstrap
from ml.evaluation.metrics import HistorySummary
from ml.evaluation.splitting import user_sample
from ml.pipeline import gate, runs
from ml.progress import Progress, duration
from ml.ranker import dataset, holdout, training
from ml.ranker.features import uninformative
from ml.ranker.models import MODEL_KINDS, PARAM_GRID, SavedModel, scores
from ml.ranker.scoring import score_serving
from ml.ranker.training import NotEnoughHistory
from ml.serving import privacy
from ml.warehouse import lists, spark, tables, timescale
from ml.warehouse.dbt import DbtResult, dbt_vars, run_dbt, staging_code
from ml.warehouse.timescale import TimeScale

Log = Callable[[str], None]


@dataclass
class TrainOutcome:
    """What training and evaluation produced and which list to publish; ``evaluation`` is the
    report's content. ``model`` is None when the export was too thin to train a ranker.
    ``per_user``: each judged list's per-user metric values on the holdout (the intervals'
    input), kept so that ``recsys evaluate`` can add its baselines without recomputing lists."""

    model: SavedModel | None
    evaluation: dict[str, Any]
    decision: gate.GateDecision
    seconds: dict[str, float] = field(default_factory=dict)
    per_user: dict[str, pd.DataFrame] = field(default_factory=dict)

    def run_facts(self) -> dict[str, Any]:
        """What the run log records about training and the choice."""
        facts: dict[str, Any] = {"reason": self.decision.reason}
        if self.model is None:
            return facts
        metrics = self.evaluation["metrics"]
        name = self.decision.list_name
        return {
            **facts,
            "ndcg": metrics[name]["ndcg"] if name in metrics else None,
            "popular_ndcg": metrics["popular"]["ndcg"],
            "train_cutoff": self.evaluation["split"]["holdout_cutoff"],
            "dropped_features": self.model.metadata["dropped_features"],
            "diagnostics": self.evaluation["diagnostics"],
            "metrics": {
                **metrics,
                "classifier": self.evaluation["classifier"],
                "candidate_recall": self.evaluation["candidate_recall"],
            },
        }


def new_version(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def clean_leftovers(settings: Settings, log: Log = print) -> None:
    """Remove, and say so, what killed runs left in the home. Called under the run lock, so no
    other run is using any of it:

    - temp files of a publication killed half-way (``serving.remove_abandoned_temp_files``);
    - a build database with a WAL, or DuckDB's spill directory beside it: a build was killed.
      Every run rebuilds every table of the build database, so it goes rather than being replayed.
    """
    for path in serving.remove_abandoned_temp_files(settings.serving_db):
        log(f"removed {path}, left by a publication that was killed half-way")
    wal, spill = Path(f"{settings.build_db}.wal"), Path(f"{settings.build_db}.tmp")
    if wal.exists():
        settings.build_db.unlink(missing_ok=True)
        wal.unlink()
        log(f"removed {settings.build_db} and its WAL, left by a killed build; this run builds it anew")
    if spill.is_dir():
        shutil.rmtree(spill)
        log(f"removed {spill}, DuckDB's spill files of a killed build")


def resolve_input(settings: Settings, config: Config, log: Log = print) -> Path:
    """The export to use: the given one (a file, or a directory or glob of one file a day), or
    the generated demo export (made once per home). Spark's staging reads one file."""
    if config.input_path is not None:
        files = check_export_files(config.input_path)
        if config.engine == "spark" and len(files) > 1:
            raise ExportError(f"{config.input_path} holds {len(files)} files; the spark engine reads one export file")
        if len(files) > 1:
            log(f"input: {len(files)} files, {files[0].name} .. {files[-1].name}")
        return config.input_path
    path = settings.default_input
    if not path.exists():
        from ml.data.synthetic import GeneratorConfig, generate_export

        log(f"no input given: generating a demo export of {config.demo_rows:,} rows at {path}")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        generate_export(GeneratorConfig(rows=config.demo_rows, seed=config.seed, with_categories=True), path)
    return path


def _dbt_progress(log: Log) -> Callable[[str, str, float, int, int], None]:
    """Each finished dbt node as ``dbt nodes n/N, elapsed, ETA: name status``; the clock starts
    with the build (dbt's parsing counts as elapsed: it is part of the wait)."""
    progress = Progress("dbt nodes", 0, log)

    def on_node(name: str, status: str, seconds: float, index: int, total: int) -> None:
        progress.total = total
        progress.update(index, f"{name} {status} ({seconds:.1f} s)")

    return on_node


def _run_vars(config: Config, input_path: Path, version: str, **extra: Any) -> dict[str, Any]:
    """The dbt variables of a run's builds: the config's (``Config.dbt_overrides``), stamped with
    the run's version, which every ``pub_*`` table carries on (``build_version()``): publish
    refuses a build another run mixed into."""
    return dbt_vars(input_path, config.as_of, **config.dbt_overrides(), model_version=version, **extra)


def ingest(settings: Settings, config: Config, input_path: Path, version: str, log: Log = print) -> DbtResult:
    """dbt build of the models tagged ``ingest``: read, type and validate the export. No run
    setting but the input changes them, and the time scale is chosen from what they hold.

    Staging keeps the files it parsed and reads only new or changed ones; rows parsed by other
    staging code, or for another header, must not stay: when ``staging_code`` differs from the
    one the build database was staged with, every file is staged again (``--full-refresh``)."""
    variables = _run_vars(config, input_path, version)
    code = staging_code(variables["export_columns"])
    marker = settings.build_db.with_name(f"{settings.build_db.name}.staging")
    restage = not marker.exists() or marker.read_text() != code
    if restage and settings.build_db.exists():
        log("staging every file again: the staging code or the header changed since the last build")
    built = _dbt_build(settings, config, variables, log, select="tag:ingest", full_refresh=restage)
    marker.write_text(code)
    return built


def choose_time_scale(settings: Settings, config: Config) -> TimeScale:
    """The serving cutoff and label horizon: ``config.horizon_days`` when given, else chosen
    from the export's span and purchase rhythm (``ml.warehouse.timescale``)."""
    with tables.warehouse(settings.build_db) as con:
        if config.horizon_days is not None:
            return timescale.given_horizon(con, config.horizon_days)
        return timescale.choose_horizon(con, config.labelled_cutoffs, config.cutoffs_per_horizon)


def build_features(settings: Settings, config: Config, input_path: Path, version: str, log: Log = print) -> DbtResult:
    """dbt build of the feature marts and candidates as of the cutoffs (not the serving tables,
    nor the monitors, which compare what was published)."""
    variables = _run_vars(config, input_path, version)
    exclude = "tag:ingest tag:serving tag:monitoring"
    if config.engine == "duckdb":
        return _dbt_build(settings, config, variables, log, exclude=exclude)
    built = _dbt_build(settings, config, variables, log, exclude=f"{exclude} tag:outcomes")
    # The outcome models read the exposure log, a directory of this machine: on DuckDB.
    _dbt_build(settings, config.updated(engine="duckdb"), variables, log, select="tag:outcomes")
    return built


def _dbt_build(
    settings: Settings,
    config: Config,
    variables: dict[str, Any],
    log: Log,
    *,
    select: str | None = None,
    exclude: str | None = None,
    full_refresh: bool = False,
) -> DbtResult:
    """``dbt build`` on the config's engine. On Spark without the unit tests (their fixtures are
    DuckDB SQL), and the models built there become views of the build database
    (``ml.warehouse.spark``), which every later step reads."""
    on_spark = config.engine == "spark"
    result = run_dbt(
        settings,
        "build",
        variables,
        select=select,
        exclude=exclude,
        indirect_selection="buildable",
        exclude_resource_type="unit_test" if on_spark else None,
        target="spark" if on_spark else None,
        full_refresh=full_refresh,
        on_node=_dbt_progress(log),
    )
    if on_spark:
        attached = spark.attach(settings, result.node_status)
        log(f"{len(attached)} tables built on Spark, read through views of {settings.build_db.name}")
    return result


def build_warehouse(settings: Settings, config: Config, input_path: Path, log: Log = print) -> DbtResult:
    """Ingest and features in one go, for a horizon that is already known (``recsys evaluate``)."""
    version = new_version()
    ingest(settings, config, input_path, version, log)
    return build_features(settings, config, input_path, version, log)


def warehouse_counts(settings: Settings) -> dict[str, Any]:
    with tables.warehouse(settings.build_db) as con:
        exported, rejected = con.execute(
            "select (select count(*) from stg_ab_test__events) + (select count(*) from stg_ab_test__unreadable_lines),"
            " (select count(*) from rejected_rows)"
        ).fetchone()
        by_reason = dict(
            con.execute("select reject_reason, count(*) from rejected_rows group by 1 order by 2 desc").fetchall()
        )
        serve_at = tables.cutoffs(con)[0].at
    return {"rows_exported": exported, "rows_rejected": rejected, "rejected_by_reason": by_reason, "as_of": serve_at}


def train_and_evaluate(settings: Settings, config: Config, version: str, log: Log = print) -> TrainOutcome:
    """Choose hyper-parameters, judge the recipe on the newest window, fit the model to publish.

    Labelled cutoffs are numbered 1 (newest) to L. A model is always trained on all the labelled
    cutoffs whose label windows end by the one it is validated or judged on (forward chaining;
    ``Cutoff.labelled_before``). The judged model learns from those before cutoff 1 (2..L when
    the windows lie end to end, fewer when they overlap) and is evaluated on cutoff 1, with
    hyper-parameters from folds that never validate on cutoff 1; the published model learns from
    cutoffs 1..L with hyper-parameters from all folds.

    The model family (trees or logistic regression) is chosen like the knobs, and only on the
    folds that never validate on cutoff 1 (``choose_on_folds``): under ``model_kind`` ``auto``
    both families are searched on the same folds and the best mean wins. The holdout judges the
    recipe that made the choice, so its NDCG is not flattered by it.

    Memory and time are bounded by design, not by the export (``_user_samples``): models learn
    from every positive and a sample of negatives (``max_training_rows`` per cutoff); the judged
    model, the baselines and the gate are judged on at most ``holdout_users`` whole users; the
    search's folds, the validation curves, permutation importance and the logistic reference use
    at most ``diagnostics_users``. ``model.json`` records the sizes (``diagnostics``).

    The search, curves, importance and reference run once per ``diagnostics_every_days`` of
    data (``reusable_search``): a nightly run between them reuses the parameters the last search
    chose, loads no older cutoff but for training, and records where they came from.
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    with tables.warehouse(settings.build_db) as con:
        cutoffs = tables.cutoffs(con)
        labelled = sorted(cutoffs)[1:]
        counts = {index: dataset.label_counts(con, cutoffs[index]) for index in labelled}
        usable = [index for index in labelled if 0 < counts[index][1] < counts[index][0]]

        def learns_for(index: int) -> list[int]:
            return windows_before(cutoffs, usable, index)

        if 1 not in usable or not learns_for(1):
            raise NotEnoughHistory(
                "not enough labelled history to train and judge a ranker: the newest label window and one "
                f"that ends before it need buyers with history (usable cutoffs: {usable}); use a longer "
                "export or a shorter horizon"
            )
        users = {index: dataset.labelled_users(con, cutoffs[index]) for index in usable}
        if len(users[1]) < config.min_holdout_buyers:
            raise NotEnoughHistory(
                f"only {len(users[1])} buyers with history in the newest label window: too few to judge a list "
                f"(at least {config.min_holdout_buyers})"
            )
        sample = _user_samples(users, config)
        recipe = search_recipe(config, cutoffs)
        reused = reusable_search(settings, config, cutoffs[0].at, recipe)
        sets, train_sets = {}, {}
        for index in usable:
            cutoff = cutoffs[index]
            # Models learn from a negative sample of every user; validations and the holdout see
            # every candidate of the sampled users (the judged ones only in the newest window).
            loaded = sample.judged if index == 1 else pd.Index([])
            if reused is None:
                loaded = loaded.union(sample.diagnostic)
            truth = tables.window_purchases(con, cutoff, loaded)
            train_sets[index] = training.LabelledSet(
                index, dataset.training_candidates(con, cutoff, config.max_training_rows, config.seed), truth
            )
            line = (
                f"  cutoff {index} ({cutoff.at:%Y-%m-%d}): {counts[index][0]:,} candidate rows of "
                f"{len(users[index]):,} users, {counts[index][1]:,} positives; learning from "
                f"{len(train_sets[index].frame):,} rows"
            )
            if len(loaded):
                sets[index] = training.LabelledSet(index, dataset.candidates(con, cutoff, loaded), truth)
                line += (
                    f", validating on {len(sets[index].frame):,} rows "
                    f"of {sets[index].frame['user_id'].nunique():,} sampled users"
                )
            log(line)
        holdout_cutoff = cutoffs[1]
        history = HistorySummary.of(tables.history_pairs(con, holdout_cutoff, sample.judged))
        catalogue = tables.catalogue_size(con, holdout_cutoff)
        popular = tables.popular_items(con, holdout_cutoff, config.k)
        purchases = tables.purchases_before(con, holdout_cutoff.label_end)
    seconds["load"] = time.perf_counter() - clock
    log(
        f"  loaded in {duration(seconds['load'])}: the history of {history.users:,} judged users, "
        f"{len(purchases):,} purchases for the baselines"
    )

    def pool(indexes: list[int], data: dict[int, training.LabelledSet]) -> training.LabelledSet:
        return training.LabelledSet.pooled([data[i] for i in indexes])

    if reused is None:
        diagnostic_sets, diagnostic_train, diagnostics = _diagnostic_sample(
            sets, train_sets, usable, learns_for(1)[0], sample
        )
        log(
            f"  diagnostics ({', '.join(diagnostics['steps'])}) on {diagnostics['users']:,} of "
            f"{diagnostics['of']:,} labelled users; the holdout, the baselines and the gate on "
            f"{diagnostics['holdout_users']:,} of {diagnostics['holdout_of']:,}; the final fit on all"
        )
        clock = time.perf_counter()
        folds = [
            (pool(learns_for(index), diagnostic_train), diagnostic_sets[index]) for index in usable if learns_for(index)
        ]
        folds = [(train, valid) for train, valid in folds if train.usable and valid.usable]
        searches, choice = search_families(config, folds, log)
        kind = choice["chosen"]
        search = [result for results in searches.values() for result in results]
        judged_params = training.best_params(kind, searches[kind], _folds_before_holdout(searches[kind]))
        final_params = training.best_params(kind, searches[kind])
        seconds["cross_validation"] = time.perf_counter() - clock
        diagnostics.update(
            model_setting=config.model_kind,
            search_recipe=recipe,
            model_kind=kind,
            family_choice=choice,
            judged_params=judged_params,
            final_params=final_params,
        )
        log(f"  model family: {choice['reason']}")
    else:
        kind, search = reused["model_kind"], []
        judged_params, final_params = reused["judged_params"], reused["final_params"]
        diagnostics = _reused_record(reused, config, sample)
        log(
            f"  diagnostics not run: parameters of run {reused['run_id']} (data as of {reused['as_of']:%Y-%m-%d}), "
            f"whose search ran less than {config.diagnostics_every_days} days of data ago (the baselines' knobs "
            f"too, when it recorded them); the holdout, the baselines and the gate on "
            f"{diagnostics['holdout_users']:,} of {diagnostics['holdout_of']:,}"
        )
    log(f"  chosen parameters: judged model {judged_params}, published model {final_params}")

    # Nothing below changes the model to publish, so it is fitted on the second core meanwhile:
    # fits use one core each (``training.fit``) and the judging is mostly one-core pandas. The
    # executor takes no other work, so its thread ends with the fit, whatever happens here.
    final_data = pool(usable, train_sets)
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="final-fit")
    final_fit = background.submit(training.fit, kind, final_params, final_data)
    background.shutdown(wait=False)

    clock = time.perf_counter()
    judged = training.fit(kind, judged_params, pool(learns_for(1), train_sets))
    judged_set = sets[1].for_users(sample.judged)
    window = judged_set.frame
    result, per_user = holdout.evaluate_holdout(
        window, scores(judged, window), judged_set.truth, history, popular, config.k, catalogue
    )
    if reused is None:  # the reference learns from the diagnostic sample, judged on the holdout like every list
        reference = training.fit("logreg", {}, pool(learns_for(1), diagnostic_train))
        scored = holdout.ranking_scores(
            window, scores(reference, window), judged_set.truth, history, config.k, catalogue
        )
        result["metrics"]["logistic_regression"], per_user["logistic_regression"] = scored.metrics, scored.per_user
    seconds["evaluation"] = time.perf_counter() - clock
    log(
        f"  judged on the holdout in {duration(seconds['evaluation'])}: ranker NDCG@{config.k} "
        f"{result['metrics']['ranker']['ndcg']:.4f}"
        + (f", logistic regression {result['metrics']['logistic_regression']['ndcg']:.4f}" if reused is None else "")
    )

    clock = time.perf_counter()
    baselines = judge_baselines(
        gate_specs(),
        purchases,
        holdout_cutoff.at,
        config.horizon_days,
        config.k,
        pd.Index(window["user_id"].unique()),
        judged_set.truth,
        history,
        catalogue,
        tuning_users=config.holdout_users,
        seed=config.seed,
        known_params=reused.get("baseline_params") if reused else None,
        log=log,
    )
    result["metrics"].update({name: judged_baseline["metrics"] for name, judged_baseline in baselines.items()})
    result["baseline_params"] = {name: judged_baseline["params"] for name, judged_baseline in baselines.items()}
    if reused is None:
        diagnostics["baseline_params"] = result["baseline_params"]
    per_user.update({name: judged_baseline["per_user"] for name, judged_baseline in baselines.items()})
    seconds["baselines"] = time.perf_counter() - clock
    log(
        f"  holdout NDCG@{config.k}: "
        + ", ".join(f"{name} {result['metrics'][name]['ndcg']:.4f}" for name in ("ranker", *baselines))
    )

    clock = time.perf_counter()
    if reused is None:
        result["validation_curves"] = training.validation_curves(
            kind, judged_params, pool(learns_for(1), diagnostic_train), diagnostic_sets[1], config.k, log=log
        )
        result["feature_importance"] = training.feature_importance(judged, diagnostic_sets[1], log=log)
    else:
        result.setdefault("notes", []).append(
            f"Hyper-parameters reused from run {reused['run_id']} (data as of {reused['as_of']:%Y-%m-%d}, model "
            f"{reused.get('model_version')}): the search, the baselines' tuning, validation curves, permutation "
            f"importance and the logistic-regression reference ran there and run again once the data is "
            f"{config.diagnostics_every_days} days newer (diagnostics_every_days)."
        )
    result["diagnostics"] = diagnostics
    seconds["diagnostics"] = time.perf_counter() - clock

    clock = time.perf_counter()
    final = final_fit.result()
    seconds["final_fit"] = time.perf_counter() - clock  # what is left of it once the judging is done

    candidates = ["ranker", *baselines]
    decision = gate.gate(result["metrics"], runs.published_ndcg(settings), config.gate_margin, candidates)
    result["gate"] = {
        "decision": "published" if decision.publish else "rejected",
        "reason": decision.reason,
        "list": decision.list_name,
        "candidates": candidates,
    }
    clock = time.perf_counter()  # every list against the gate's choice: is its lead more than noise?
    result["intervals"] = bootstrap.intervals(per_user, reference=decision.list_name)
    seconds["intervals"] = time.perf_counter() - clock
    log("  training steps: " + ", ".join(f"{step} {took:.1f} s" for step, took in seconds.items()))
    result["cross_validation"] = [
        {"kind": r.kind, "params": r.params, "fold_scores": {f"{a}->{b}": v for (a, b), v in r.fold_scores.items()}}
        for r in search
    ]
    result["judged_params"], result["final_params"] = judged_params, final_params
    result["dataset"] = {"input": str(config.input_path or settings.default_input)}
    result["split"].update(
        {
            "holdout_cutoff": str(holdout_cutoff.at),
            "holdout_end": str(holdout_cutoff.label_end),
            "horizon_days": config.horizon_days,
            "cutoffs": {index: str(cutoffs[index].at) for index in usable},
        }
    )
    model = SavedModel(
        version=version,
        kind=kind,
        params=final_params,
        pipeline=final,
        metadata={
            "trained_on": {
                "cutoff": str(holdout_cutoff.at),
                "label_window_end": str(holdout_cutoff.label_end),
                "cutoffs": [str(cutoffs[i].at) for i in usable],
                "rows": len(final_data.frame),
                "positives": int(final_data.frame["purchased"].sum()),
            },
            "judged_on": result["split"],
            "metrics": dict(result["metrics"]),
            "pilot": result["pilot"],
            "gate": result["gate"],
            "diagnostics": diagnostics,
            "dropped_features": uninformative(final_data.frame),
            "seconds": {step: round(took, 1) for step, took in seconds.items()},
        },
    )
    return TrainOutcome(model=model, evaluation=result, decision=decision, seconds=seconds, per_user=per_user)


@dataclass(frozen=True)
class UserSamples:
    """The labelled users the bounded steps run on, and how many there were to choose from."""

    judged: pd.Index
    judged_of: int
    diagnostic: pd.Index
    diagnostic_of: int


def _user_samples(users: dict[int, pd.Index], config: Config) -> UserSamples:
    """At most ``config.holdout_users`` users of the newest window to judge on, and at most
    ``config.diagnostics_users`` labelled users of any window for the diagnostics: whole users,
    chosen by a seeded hash (``splitting.user_sample``), the same in every run and at every
    cutoff, so what a run holds in memory stops growing with the export."""
    labelled = pd.Index(pd.unique(np.concatenate([index_users.to_numpy() for index_users in users.values()])))
    return UserSamples(
        judged=user_sample(users[1], config.holdout_users, config.seed),
        judged_of=len(users[1]),
        diagnostic=user_sample(labelled, config.diagnostics_users, config.seed),
        diagnostic_of=len(labelled),
    )


def _every_run(sample: UserSamples) -> dict[str, Any]:
    """The part of the ``diagnostics`` record that runs whether or not the search ran."""
    return {
        "holdout_users": len(sample.judged),
        "holdout_of": sample.judged_of,
        "on_holdout_users": ["judged model's holdout evaluation", "baselines", "gate"],
        "all_users": ["final fit (negatives sampled to max_training_rows per cutoff)"],
    }


def families(config: Config) -> tuple[str, ...]:
    """The model families the search tries: both under ``auto``, else the one asked for."""
    return MODEL_KINDS if config.model_kind == "auto" else (config.model_kind,)


def windows_before(cutoffs: dict[int, tables.Cutoff], usable: list[int], index: int) -> list[int]:
    """The usable labelled cutoffs, newest first, a model validated or judged at cutoff ``index``
    learns from: those whose label windows end by it. End to end that is every older one; with
    overlapping windows the nearer ones are left out, whose labels fall in the window judged."""
    return [i for i in sorted(usable) if cutoffs[i].labelled_before(cutoffs[index])]


def _folds_before_holdout(results: list[training.SearchResult]) -> list[tuple[int, int]]:
    """The searched folds that never validate on cutoff 1, the holdout the judged model is judged on."""
    return [fold for fold in results[0].fold_scores if fold[1] != 1] if results else []


def choose_on_folds(searches: dict[str, list[training.SearchResult]]) -> dict[str, Any]:
    """The model family, chosen on the folds before the holdout only (``training.choose_family``):
    each family's best grid point on those folds, compared there. The fold that validates on the
    holdout only tunes the published model's knobs within the chosen family."""
    return training.choose_family(
        {kind: training.best_fold_scores(results, _folds_before_holdout(results)) for kind, results in searches.items()}
    )


def search_families(
    config: Config, folds: list[tuple[training.LabelledSet, training.LabelledSet]], log: Log
) -> tuple[dict[str, list[training.SearchResult]], dict[str, Any]]:
    """Each family's grid on the folds before the holdout, the family chosen there
    (``choose_on_folds``), then the chosen family's grid on the fold that validates on cutoff 1
    too, for the published model's knobs.

    The other families never meet that fold: its scores do not exist when the family is chosen,
    and their fits there would cost as much as the trees' (logistic regression's target
    encoding and solver on a pooled sample are not cheap) for nothing.
    """
    before = [(train, valid) for train, valid in folds if valid.cutoff_index != 1]
    on_holdout = [(train, valid) for train, valid in folds if valid.cutoff_index == 1]
    searches = {
        kind: training.search_params(kind, PARAM_GRID[kind], before, config.k, log) for kind in families(config)
    }
    choice = choose_on_folds(searches)
    kind = choice["chosen"]
    if on_holdout:
        later = training.search_params(kind, PARAM_GRID[kind], on_holdout, config.k, log)
        searches[kind] = [
            training.SearchResult(kind, early.params, {**early.fold_scores, **late.fold_scores})
            for early, late in zip(searches[kind], later, strict=True)
        ]
    return searches, choice


def search_recipe(config: Config, cutoffs: dict[int, tables.Cutoff]) -> dict[str, int]:
    """What the search's folds and metric are made of besides the data: the label windows
    (horizon, how many, how far apart) and K. Parameters chosen under another recipe answered
    another question, so a run reuses a search only under the same one (``reusable_search``)."""
    newest = cutoffs[1]
    return {
        "horizon_days": (newest.label_end - newest.at).days,
        "labelled_cutoffs": config.labelled_cutoffs,
        "cutoffs_per_horizon": config.cutoffs_per_horizon,
        "k": config.k,
    }


def reusable_search(
    settings: Settings, config: Config, serve_at: datetime, recipe: dict[str, int]
) -> dict[str, Any] | None:
    """The newest hyper-parameter search of this ``model_kind`` setting and ``recipe`` in the run
    log (with the family it chose under ``auto``), when it ran on data less than
    ``config.diagnostics_every_days`` older than ``serve_at``; None when it must run.

    A nightly run moves the data one day: the parameters chosen a few days ago still fit it, and
    the search, curves, importance and reference are most of training's cost (docs/compute.md).
    Data older than the last search (a rebuilt past export) runs them anew.
    """
    if config.diagnostics_every_days == 0:
        return None
    last = runs.latest_search(settings, config.model_kind, recipe)
    if last is None:
        return None
    age = pd.Timestamp(serve_at) - pd.Timestamp(last["as_of"])
    return last if pd.Timedelta(0) <= age < pd.Timedelta(days=config.diagnostics_every_days) else None


def _reused_record(reused: dict[str, Any], config: Config, sample: UserSamples) -> dict[str, Any]:
    """``model.json``'s record of a run that reused the search of an earlier one."""
    return {
        "steps": [],
        "reused_from": {
            "run_id": reused["run_id"],
            "model_version": reused.get("model_version"),
            "as_of": reused["as_of"],
        },
        "model_setting": config.model_kind,
        "search_recipe": reused["search_recipe"],
        "model_kind": reused["model_kind"],
        "judged_params": reused["judged_params"],
        "final_params": reused["final_params"],
        "baseline_params": reused.get("baseline_params"),
        **_every_run(sample),
    }


def _diagnostic_sample(
    sets: dict[int, training.LabelledSet],
    train_sets: dict[int, training.LabelledSet],
    usable: list[int],
    newest_before_holdout: int,
    sample: UserSamples,
) -> tuple[dict[int, training.LabelledSet], dict[int, training.LabelledSet], dict[str, Any]]:
    """The labelled sets (every candidate, and negative-sampled for training) restricted to the
    diagnostic users, and the record of what ran on how many users (``model.json``).

    A sample without buyers in the newest window or the newest one the judged model learns from
    (``newest_before_holdout``) could train nothing: then the diagnostics use every loaded user
    (the diagnostic and the judged sample together).
    """
    restricted = {index: sets[index].for_users(sample.diagnostic) for index in usable}
    restricted_train = {index: train_sets[index].for_users(sample.diagnostic) for index in usable}
    users = sample.diagnostic
    if not (restricted[1].usable and restricted_train[newest_before_holdout].usable):
        users = sample.diagnostic.union(sample.judged)
        restricted = {index: sets[index] for index in usable}
        restricted_train = {index: train_sets[index].for_users(users) for index in usable}
    record = {
        "users": len(users),
        "of": sample.diagnostic_of,
        "steps": ["cross_validation", "validation_curves", "feature_importance", "logistic_regression"],
        **_every_run(sample),
    }
    return restricted, restricted_train, record


def train_and_choose(settings: Settings, config: Config, version: str, log: Log = print) -> TrainOutcome:
    """Train and judge the ranker, choose the list to publish, save the model and its report.

    An export too thin to train on is an answer, not an error: its cold-start lists are chosen
    while no better list is published (``gate.gate_without_ranker``).
    """
    try:
        outcome = train_and_evaluate(settings, config, version, log)
    except NotEnoughHistory as thin:
        log(f"no ranker: {thin}")
        decision = gate.gate_without_ranker(runs.published_ndcg(settings), str(thin))
        return TrainOutcome(model=None, evaluation={"notes": [str(thin)]}, decision=decision)
    directory = save_model(settings, outcome)
    log(f"model {version} saved to {directory}; gate: {outcome.decision.reason}")
    return outcome


def write_lists(settings: Settings, config: Config, outcome: TrainOutcome, log: Log = print) -> dict[str, Any]:
    """The personal lists of whichever list won the gate, into the build database's
    ``ml_recommendations``: the ranker's top N, the winning baseline's, or none (cold start)."""
    name = outcome.decision.list_name
    if name == "ranker":
        return score_serving(settings.build_db, outcome.model.pipeline, config.top_n, log)
    if name == "cold_start":
        lists.no_personal_lists(settings.build_db)
        return {"users": 0, "rows": 0, "candidates": 0}
    return serve_baseline(settings.build_db, spec_named(name), config, log)


def save_model(settings: Settings, outcome: TrainOutcome) -> Path:
    """Version directory with the model, its card, and the evaluation (JSON + HTML report)."""
    directory = outcome.model.save(settings.models_dir)
    (directory / "evaluation.json").write_text(json.dumps(outcome.evaluation, indent=2, default=str))
    try:
        from ml.reports import render_evaluation_report
    except ImportError:
        return directory
    render_evaluation_report(
        {"title": f"Model {outcome.model.version}", **outcome.evaluation}, directory / "evaluation.html"
    )
    return directory


def build_serving_tables(
    settings: Settings, config: Config, input_path: Path, version: str, generated_at: datetime, log: Log = print
) -> DbtResult:
    """dbt build of the pub_* tables (contracts and tests) from the scores just written."""
    variables = _run_vars(config, input_path, version, generated_at=generated_at.strftime("%Y-%m-%d %H:%M:%S"))
    return run_dbt(settings, "build", variables, select="tag:serving", on_node=_dbt_progress(log))


def publish(
    settings: Settings, config: Config, version: str, as_of: datetime, decision: gate.GateDecision
) -> dict[str, Any]:
    """Swap the new serving file in (``ml.serving.publish``: all or nothing, so a retry is safe).
    User ids are pseudonymised when the home's pseudonym mode is on (``ml.serving.privacy``)."""
    published = serving.publish(
        settings.build_db,
        settings.serving_db,
        model_version=version,
        as_of=as_of,
        list_source=decision.list_source,
        require_recommendations=decision.list_source != "cold_start",
        pseudonym_key=privacy.publish_key(settings.home, config.pseudonymize),
        file_mode=config.file_mode,
    )
    return asdict(published)
