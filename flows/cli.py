"""The ``recsys`` command: one subcommand per user-facing job.

Each subcommand only parses arguments and calls library code; no logic lives here. Its
settings are ``ml.config.Config`` fields: each is a flag (``--top-n``), else
``RECSYS_<FIELD>`` (``RECSYS_TOP_N``), else the field's default, and is checked before any
work (``error: ...``, exit 2). ``--home`` and ``--log-level`` go before or after the
subcommand; ``run`` and ``serve`` take every run setting (``recsys run --help``).
argparse, not typer: the flags are made from the config's fields, one loop, so no option,
type or default is written a second time here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

from flows.prefect_server import PrefectServerError
from ml.config import (
    DBT_VARS,
    Config,
    ConfigError,
    Settings,
    default,
    env_name,
    flag_name,
)
from ml.data.export import ExportError
from ml.data.importers import DEFAULT_PLATFORM
from ml.experiments.published import PublishedError
from ml.pipeline.runlock import HomeBusy
from ml.serving import ServingUnavailable

# Settings every subcommand takes, before or after its name.
GLOBAL_SETTINGS = ("home", "log_level")
# Settings of one command only; every other setting is a flag of `run` and `serve`.
COMMAND_SETTINGS = {
    "cron": "serve",
    "api_host": "api",
    "api_port": "api",
    "exposure_log": "api",
    "control_share": "api",
    "control_salt": "api",
    "outcome_days": "outcomes",
}
RUN_SETTINGS = tuple(
    name for name in Config.model_fields if name not in GLOBAL_SETTINGS and name not in COMMAND_SETTINGS
)
SETTING = "setting:"  # argparse dest prefix of the flags that are Config fields
SPLIT_HORIZON_HELP = f"truth window in days; unset: dbt_project.yml's horizon_days, {DBT_VARS['horizon_days']}"


def _cmd_generate(args: argparse.Namespace) -> int:
    from ml.data.synthetic import GeneratorConfig, generate_export

    config = GeneratorConfig(rows=args.rows, seed=args.seed, with_categories=args.with_categories)
    stats = generate_export(config, Path(args.out))
    print(f"wrote {stats.rows:,} rows ({stats.users:,} users) to {args.out} in {stats.seconds:.1f} s")
    return 0


def _cmd_import_ta_feng(args: argparse.Namespace) -> int:
    from ml.data.importers import import_ta_feng

    stats = import_ta_feng(Path(args.input), Path(args.out), platform=args.platform)
    print(stats.summary())
    return 0


def _cmd_import_transactions(args: argparse.Namespace) -> int:
    from ml.data.importers import import_transactions

    stats = import_transactions(
        Path(args.input),
        Path(args.out),
        user=args.user,
        item=args.item,
        time_col=args.time,
        price=args.price,
        qty=args.qty,
        category=args.category,
        basket=args.basket,
        time_format=args.time_format,
        price_is_total=args.price_is_total,
        platform=args.platform,
    )
    print(stats.summary())
    return 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    import time

    from ml.baselines.tuning import format_table, run_baselines
    from ml.data.export import read_line_items

    config = _with_split_horizon(args.config)
    started = time.perf_counter()
    interactions = read_line_items(config.input_path)
    table = run_baselines(interactions, args.cutoff, config.horizon_days, config.k, verbose=True)
    print(format_table(table))
    if args.out:
        table.to_csv(args.out, index=False)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from ml.reports import render_profile_report
    from ml.warehouse.profile import profile_export

    settings = args.config.settings
    out = Path(args.out) if args.out else settings.reports_dir / "profile.html"
    profile = profile_export(args.config.input_path, settings.home)
    render_profile_report(profile, out)
    for warning in profile["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    rejected = profile.get("rejected", {})
    verdict = (
        f"rejected rows: {rejected['error']}" if "error" in rejected else f"{rejected.get('total', 0):,} rows rejected"
    )
    print(f"profiled {profile['rows']:,} rows ({verdict}) in {profile['seconds']:.1f} s -> {out}")
    return 1 if "error" in rejected else 0  # the report is written either way; the failure is the news


def _cmd_api(args: argparse.Namespace) -> int:
    from ml.serving.api import serve

    config = args.config
    print(f"serving {config.settings.serving_db} on http://{config.api_host}:{config.api_port}", flush=True)
    serve(
        config.settings.serving_db,
        host=config.api_host,
        port=config.api_port,
        log_level=config.log_level,
        home=config.home,
        docs=args.docs,
        default_n=config.top_n,
        exposure_dir=config.settings.exposures_dir if config.exposure_log else None,
        control_share=config.control_share,
        control_salt=config.control_salt,
    )
    return 0


def _progress(message: str) -> None:
    print(message, flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from flows.pipeline import recommendation_pipeline
    from flows.prefect_server import prefect_api
    from ml.data.export import check_export_files
    from ml.pipeline import runlock
    from ml.serving import privacy

    config = args.config  # checked already: bad settings are refused before anything starts
    privacy.publish_key(config.home, config.pseudonymize)
    if config.input_path:
        check_export_files(config.input_path)
    # The lock before the server: a busy home is refused at once, and nothing is started.
    with runlock.hold(config.home, wait=args.wait, on_wait=_progress), prefect_api(config, _progress):
        run = recommendation_pipeline(config)
    print(summary(config.settings, run))
    return RUN_EXIT_CODES.get(run["status"], 1)


# What cron and Prefect see: 0 published, 2 refused input or a busy home (see main), 3 rejected
# by the gate (the old lists stay), 1 anything else.
RUN_EXIT_CODES = {"published": 0, "published_cold_start": 0, "rejected": 3}


def summary(settings: Settings, run: dict) -> str:
    """The few lines a person wants after a run, and the query to try."""
    lines = [
        "",
        f"run {run['run_id']}: {run['status']} ({run.get('reason')})",
        f"  rows: {run.get('rows_exported')} exported, {run.get('rows_rejected')} quarantined (table rejected_rows)",
        f"  serving cutoff {run.get('as_of')}; {run.get('time_scale')}",
    ]
    if run.get("dropped_features"):
        lines.append(
            "  left out of the fit: " + ", ".join(f"{name} ({why})" for name, why in run["dropped_features"].items())
        )
    if run.get("diagnostics"):
        from ml.pipeline.runs import describe_diagnostics

        lines.append(f"  diagnostics: {describe_diagnostics(run['diagnostics'])}")
    metrics = run.get("metrics") or {}
    judged = [name for name in ("ranker", "popular_tuned", "repurchase", "item_knn", "popular") if name in metrics]
    if judged:
        lines.append("  holdout NDCG@K: " + ", ".join(f"{name} {metrics[name]['ndcg']:.4f}" for name in judged))
    if run["status"] == "published":
        lines += [
            f"  published {run.get('recommendations')} recommendations for {run.get('users_scored')} users "
            f"from the {run.get('published_list')} list",
            f"  serving database: {settings.serving_db}",
            "  try:",
            '    recsys query "select * from recommendations where user_id = '
            '(select min(user_id) from recommendations)"',
        ]
    elif run["status"] == "published_cold_start":
        lines += [
            "  published the cold-start lists only (no ranker could be trained on this export)",
            f"  serving database: {settings.serving_db}",
            "  try:",
            "    recsys query \"select * from recommend('any-user-id')\"",
        ]
    lines.append(f"  seconds per step: {run.get('durations')}")
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    from ml.pipeline import runs

    settings = args.config.settings
    latest = runs.history(settings, limit=1)
    info = {
        "home": str(settings.home),
        "paths": {
            "input": str(settings.default_input),
            "build_db": str(settings.build_db),
            "serving_db": str(settings.serving_db),
            "models": str(settings.models_dir),
            "reports": str(settings.reports_dir),
            "runs_db": str(runs.runs_db(settings)),
            "exposures": str(settings.exposures_dir),
        },
        "config": args.config.model_dump(mode="json"),
        "last_run": latest[0] if latest else None,
    }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info["paths"].items():
            print(f"{key:12s} {value}")
        print(f"last run     {info['last_run'] and summary(settings, info['last_run'])}")
    return 0


def _metrics_table(metrics: dict[str, dict]) -> str:
    """One row per list (model or population), the columns a person compares."""
    import pandas as pd

    shown = ["ndcg", "recall", "precision", "map", "hit_rate", "missed_offer_share", "n_users"]
    return pd.DataFrame(metrics).T.reindex(columns=shown).to_string(float_format=lambda v: f"{v:.4f}")


def _repeat_explore_table(metrics: dict[str, dict]) -> str:
    """Where each list's hits come from: items the buyer bought before the cutoff, or new ones."""
    import pandas as pd

    from ml.evaluation.metrics import REPEAT_EXPLORE

    table = pd.DataFrame(metrics).T.reindex(columns=REPEAT_EXPLORE).dropna(how="all")
    return table.to_string(float_format=lambda v: f"{v:.4f}") if len(table) else ""


def _with_split_horizon(config: Config) -> Config:
    """The truth window of an evaluation: ``--horizon-days``, else dbt_project.yml's
    ``horizon_days`` (an evaluation does not choose it from the export as a run does)."""
    return config if config.horizon_days is not None else config.updated(horizon_days=DBT_VARS["horizon_days"])


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ml.pipeline import runlock

    args.config = _with_split_horizon(args.config)
    with runlock.hold(args.config.home, wait=args.wait, on_wait=_progress):  # it builds in the home too
        return _evaluate_published(args) if args.published else _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from ml.experiments.offline import evaluate_export

    settings = args.config.settings
    out = Path(args.out) if args.out else settings.reports_dir / "evaluation"
    result = evaluate_export(settings, args.config, args.cutoff, out, include_baselines=not args.no_baselines)
    models = {
        **result["metrics"],
        **{f"{name} (cold buyers)": metrics for name, metrics in result.get("cold_users_baselines", {}).items()},
    }
    print(_metrics_table(models))
    print(_repeat_explore_table(result["metrics"]))
    for note in result.get("notes", []):
        print(note)
    for name, check in result.get("pilot", {}).items():
        print(
            f"pilot {name}: {check['value']:.4f} (target {check['direction']} {check['target']}) "
            f"{'PASS' if check['passed'] else 'FAIL'}"
        )
    print(f"report: {out / 'evaluation.html'}")
    return 0


def _evaluate_published(args: argparse.Namespace) -> int:
    from ml.experiments.published import evaluate_published

    config = args.config
    out = Path(args.out) if args.out else config.settings.reports_dir / "published"
    result = evaluate_published(
        config.settings, config.input_path, Path(args.published), args.cutoff, config.horizon_days, config.k, out
    )
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(_metrics_table(result["metrics"]))
    for note in result["notes"]:
        print(note)
    print(f"report: {out / 'evaluation.json'}")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    """Exit 2 with one ``error:`` line when DuckDB refuses the SQL (like any refused input), 1
    when nothing is published yet (``main``)."""
    import duckdb

    from ml.serving import open_serving

    con = open_serving(args.config.settings.serving_db)
    try:
        result = con.sql(args.sql)
        if result is not None:  # a statement without rows (SET, ...) has no table to print
            print(result.df().to_string(index=False, max_colwidth=60))
    except duckdb.Error as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    finally:
        con.close()
    return 0


def one_line(error: Exception) -> str:
    """DuckDB's message without the lines that point into the SQL (``LINE 1: ...`` and a caret)."""
    lines = []
    for line in str(error).splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)


def _cmd_outcomes(args: argparse.Namespace) -> int:
    """Build the outcome models over the home's exposure log and the export of its last run, then
    print the readout; exit 1 with one line when there is no warehouse or nothing to read."""
    from ml.monitoring.outcomes import OutcomesUnavailable, build_outcomes, readout
    from ml.pipeline import runlock
    from ml.warehouse import tables

    config = args.config
    try:
        with runlock.hold(config.home, wait=args.wait, on_wait=_progress):
            build_outcomes(config.settings, config)
    except OutcomesUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    with tables.warehouse(config.settings.build_db) as con:
        result = readout(con)
    if result is None:
        print(f"no exposed user with a complete {config.outcome_days}-day window in {config.settings.exposures_dir}")
        return 1
    print(result.format())
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    """Write the monitor page and print where, with its summary; a home without runs gets a
    page that says so (exit 0: nothing is wrong, there is only nothing yet)."""
    from ml.monitoring import page

    settings = args.config.settings
    data = page.gather(settings)
    out = page.write_page(data, Path(args.out) if args.out else settings.reports_dir / "monitor.html")
    print(page.summary(data))
    print(f"-> {out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from prefect import serve

    from flows.pipeline import deployment
    from flows.prefect_server import prefect_api

    with prefect_api(args.config, _progress):  # each scheduled run takes the home's run lock itself
        serve(deployment(args.config))
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """Shows the default of every option that has one (settings write theirs in their help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _add_setting(
    parser: argparse.ArgumentParser, field: str, *, required: bool = False, help: str | None = None
) -> None:
    """A flag for a ``Config`` field: its help (unless ``help`` says what it means for this
    command), default and variable come from the field. The value stays text for ``Config`` to
    parse and check, as it does the variable's."""
    info = Config.model_fields[field]
    shown = "" if info.default is None else f"default: {info.default}; "
    parser.add_argument(
        flag_name(field),
        dest=SETTING + field,
        metavar=_metavar(field),
        required=required,
        default=argparse.SUPPRESS,
        help=f"{help or info.description} ({shown}env {env_name(field)})".replace("%", "%%"),
    )


def _metavar(field: str) -> str:
    """``{a,b}`` for a choice or a switch (``{0,1}``), else the flag's name."""
    annotation = Config.model_fields[field].annotation
    kinds = [
        kind
        for kind in (get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,))
        if kind is not NoneType
    ]
    if kinds == [bool]:
        return "{0,1}"
    if len(kinds) == 1 and get_origin(kinds[0]) is Literal:
        return "{" + ",".join(get_args(kinds[0])) + "}"
    return flag_name(field).lstrip("-").upper().replace("-", "_")


def _subcommand(
    sub: Any, name: str, help: str, common: argparse.ArgumentParser, settings: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help, parents=[common], formatter_class=_HelpFormatter)
    for field in settings:
        _add_setting(parser, field)
    return parser


def build_parser() -> argparse.ArgumentParser:
    # The global settings on the main parser and on every subcommand, so they go before or
    # after it; SUPPRESS: a subcommand that was not given one keeps the one given before it.
    common = argparse.ArgumentParser(add_help=False)
    for field in GLOBAL_SETTINGS:
        _add_setting(common, field)
    parser = argparse.ArgumentParser(
        prog="recsys", description=__doc__.splitlines()[0], parents=[common], formatter_class=_HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = _subcommand(
        sub, "run", "the whole pipeline: warehouse, training, evaluation, publishing", common, RUN_SETTINGS
    )
    run.add_argument(
        "--wait",
        action="store_true",
        help="when another run holds the home, wait for it instead of refusing (exit code 2)",
    )
    run.set_defaults(func=_cmd_run)

    info = _subcommand(sub, "info", "where everything lives, the settings, and the last run", common)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_cmd_info)

    ev = _subcommand(sub, "evaluate", "ranker vs tuned baselines (or --published lists) on a time split", common)
    _add_setting(ev, "input_path", required=True)
    ev.add_argument("--cutoff", required=True, help="history before it, truth from it on")
    _add_setting(ev, "horizon_days", help=SPLIT_HORIZON_HELP)
    _add_setting(ev, "k")
    ev.add_argument(
        "--out", help="report directory (default <home>/reports/evaluation, <home>/reports/published with --published)"
    )
    ev.add_argument("--no-baselines", action="store_true", help="judge the ranker against popularity only")
    ev.add_argument(
        "--published",
        help="judge these lists instead of training: a serving database "
        "(.duckdb) or a parquet of user_id, item_id, rank",
    )
    ev.add_argument("--wait", action="store_true", help="when a run holds the home, wait for it")
    ev.set_defaults(func=_cmd_evaluate)

    query = _subcommand(sub, "query", "run SQL against the published serving database (read-only)", common)
    query.add_argument("sql")
    query.set_defaults(func=_cmd_query)

    srv = _subcommand(
        sub,
        "serve",
        "run the pipeline on a schedule (Prefect deployment nightly-retrain)",
        common,
        ("cron", *RUN_SETTINGS),
    )
    srv.set_defaults(func=_cmd_serve)

    gen = _subcommand(sub, "generate", "write a synthetic export in the ab_test.csv layout", common)
    gen.add_argument("--rows", type=int, default=default("demo_rows"), help="data rows to write")
    gen.add_argument("--seed", type=int, default=default("seed"))
    gen.add_argument("--out", required=True, help="CSV path to write")
    gen.add_argument(
        "--with-categories", action="store_true", help="add main_category and sub_category columns (10-column layout)"
    )
    gen.set_defaults(func=_cmd_generate)

    imp = _subcommand(sub, "import", "convert a public transaction log to the export layout", common)
    imp_sub = imp.add_subparsers(dest="source", required=True)
    tf = _subcommand(imp_sub, "ta-feng", "Ta-Feng grocery CSV, or the zip holding it", common)
    tf.add_argument("--input", required=True, help="ta_feng.csv.zip or ta_feng_all_months_merged.csv")
    tf.add_argument("--out", required=True, help="CSV to write (rejects go to <out>.rejected.csv)")
    tf.add_argument("--platform", default=DEFAULT_PLATFORM)
    tf.set_defaults(func=_cmd_import_ta_feng)
    tr = _subcommand(imp_sub, "transactions", "any CSV with one row per purchased line", common)
    tr.add_argument("--input", required=True, help="CSV (or a zip holding one CSV)")
    tr.add_argument("--out", required=True, help="CSV to write (rejects go to <out>.rejected.csv)")
    tr.add_argument("--user", required=True, help="user id column")
    tr.add_argument("--item", required=True, help="item id column")
    tr.add_argument("--time", required=True, help="timestamp column")
    tr.add_argument("--price", help="unit price column (currency units; written x 100)")
    tr.add_argument("--price-is-total", action="store_true", help="--price is the line total")
    tr.add_argument("--qty", help="quantity column (default 1)")
    tr.add_argument("--category", help="category column (adds the two category columns)")
    tr.add_argument("--basket", help="basket/order id column (default: user + timestamp)")
    tr.add_argument("--time-format", help="strptime format of --time, e.g. '%%d.%%m.%%Y %%H:%%M'")
    tr.add_argument("--platform", default=DEFAULT_PLATFORM)
    tr.set_defaults(func=_cmd_import_transactions)

    base = _subcommand(sub, "baselines", "tune and evaluate the baselines on a time split", common)
    _add_setting(base, "input_path", required=True)
    base.add_argument("--cutoff", required=True, help="test window start, e.g. 2001-02-01")
    _add_setting(base, "horizon_days", help=SPLIT_HORIZON_HELP)
    _add_setting(base, "k")
    base.add_argument("--out", help="CSV to write the metrics table to")
    base.set_defaults(func=_cmd_baselines)

    prof = _subcommand(sub, "profile", "HTML report about an export before any training", common)
    _add_setting(prof, "input_path", required=True)
    prof.add_argument("--out", help="HTML to write (default: <home>/reports/profile.html)")
    prof.set_defaults(func=_cmd_profile)

    api = _subcommand(
        sub,
        "api",
        "serve the published recommendations over HTTP (read-only)",
        common,
        ("api_host", "api_port", "exposure_log", "control_share", "control_salt"),
    )
    api.add_argument(
        "--docs", action="store_true", help="serve the interactive /docs page (Swagger UI, served locally)"
    )
    api.set_defaults(func=_cmd_api)

    out = _subcommand(
        sub,
        "outcomes",
        "the pilot's readout: did the exposed users follow the lists, against the control group",
        common,
        ("outcome_days",),
    )
    out.add_argument("--wait", action="store_true", help="when a run holds the home, wait for it")
    out.set_defaults(func=_cmd_outcomes)

    mon = _subcommand(
        sub, "monitor", "HTML page of the runs: quality and drift over runs, warnings, last readout", common
    )
    mon.add_argument("--out", help="HTML to write (default: <home>/reports/monitor.html)")
    mon.set_defaults(func=_cmd_monitor)

    return parser


def config_of(args: argparse.Namespace) -> Config:
    """The flags that were given, over the environment and the defaults."""
    return Config(
        **{name.removeprefix(SETTING): value for name, value in vars(args).items() if name.startswith(SETTING)}
    )


def apply_log_level(level: str | None) -> None:
    """``--log-level``: Python's root logger (a stderr handler if there is none), Prefect's
    loggers, and ``PREFECT_LOGGING_LEVEL`` for Prefect imported later and for child processes.
    Unset: every library keeps its own level."""
    if level is None:
        return
    number = logging.getLevelName(level.upper())
    logging.basicConfig(level=number)
    for name in ("", "prefect"):
        logging.getLogger(name).setLevel(number)
    os.environ["PREFECT_LOGGING_LEVEL"] = level.upper()


def main(argv: list[str] | None = None) -> int:
    # No network here: keep Prefect's local server from trying to send usage telemetry.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    try:
        args.config = config_of(args)
        apply_log_level(args.config.log_level)
        return args.func(args)
    except (ExportError, PublishedError, ConfigError, HomeBusy) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (PrefectServerError, ServingUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
