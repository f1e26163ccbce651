"""The ``recsys`` command: one subcommand per user-facing job.

Each subcommand only parses arguments and calls library code; no logic lives here.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ml.config import ConfigError, RunConfig, Settings
from ml.export import ExportError
from ml.prefect_server import PrefectServerError
from ml.published import PublishedError
from ml.runlock import HomeBusy


def _cmd_generate(args: argparse.Namespace) -> int:
    from ml.generate import GeneratorConfig, generate_export

    config = GeneratorConfig(rows=args.rows, seed=args.seed, with_categories=args.with_categories)
    stats = generate_export(config, Path(args.out))
    print(f"wrote {stats.rows:,} rows ({stats.users:,} users) to {args.out} in {stats.seconds:.1f} s")
    return 0


def _cmd_import_ta_feng(args: argparse.Namespace) -> int:
    from ml.importers import import_ta_feng

    stats = import_ta_feng(Path(args.input), Path(args.out), platform=args.platform)
    print(stats.summary())
    return 0


def _cmd_import_transactions(args: argparse.Namespace) -> int:
    from ml.importers import import_transactions

    stats = import_transactions(
        Path(args.input), Path(args.out), user=args.user, item=args.item, time_col=args.time,
        price=args.price, qty=args.qty, category=args.category, basket=args.basket,
        time_format=args.time_format, price_is_total=args.price_is_total, platform=args.platform,
    )
    print(stats.summary())
    return 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    import time

    from ml.evaluate_baselines import format_table, run_baselines
    from ml.export import read_line_items

    started = time.perf_counter()
    interactions = read_line_items(Path(args.input))
    table = run_baselines(interactions, args.cutoff, args.horizon_days, args.k, verbose=True)
    print(format_table(table))
    if args.out:
        table.to_csv(args.out, index=False)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from ml.reports import profile_export, render_profile_report

    settings = args.settings
    out = Path(args.out) if args.out else settings.reports_dir / "profile.html"
    profile = profile_export(Path(args.input), settings.home)
    render_profile_report(profile, out)
    for warning in profile["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    rejected = profile.get("rejected", {})
    verdict = (f"rejected rows: {rejected['error']}" if "error" in rejected
               else f"{rejected.get('total', 0):,} rows rejected")
    print(f"profiled {profile['rows']:,} rows ({verdict}) in {profile['seconds']:.1f} s -> {out}")
    return 1 if "error" in rejected else 0  # the report is written either way; the failure is the news


def _cmd_api(args: argparse.Namespace) -> int:
    from ml.api import serve

    print(f"serving {args.settings.serving_db} on http://{args.host}:{args.port}", flush=True)
    serve(args.settings.serving_db, host=args.host, port=args.port, log_level=args.log_level,
          home=args.settings.home, docs=args.docs)
    return 0


def _progress(message: str) -> None:
    print(message, flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from flows.pipeline import recommendation_pipeline
    from ml import privacy, runlock
    from ml.export import check_export
    from ml.prefect_server import prefect_api

    RunConfig(top_n=args.top_n, as_of=args.as_of, horizon_days=args.horizon_days)  # refuse bad settings now
    privacy.serving_file_mode()
    privacy.publish_key(args.settings.home)
    if args.input:
        check_export(args.input)
    # The lock before the server: a busy home is refused at once, and nothing is started.
    with runlock.hold(args.settings.home, wait=args.wait, on_wait=_progress), prefect_api(args.settings, _progress):
        run = recommendation_pipeline(home=str(args.settings.home), input_path=args.input,
                                      as_of=args.as_of, top_n=args.top_n, horizon_days=args.horizon_days)
    print(summary(args.settings, run))
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
        lines.append("  left out of the fit: " + ", ".join(f"{name} ({why})" for name, why in
                                                          run["dropped_features"].items()))
    metrics = run.get("metrics") or {}
    judged = [name for name in ("ranker", "popular_tuned", "repurchase", "item_knn", "popular") if name in metrics]
    if judged:
        lines.append("  holdout NDCG@K: " + ", ".join(f"{name} {metrics[name]['ndcg']:.4f}" for name in judged))
    if run["status"] == "published":
        lines += [f"  published {run.get('recommendations')} recommendations for {run.get('users_scored')} users "
                  f"from the {run.get('published_list')} list",
                  f"  serving database: {settings.serving_db}", "  try:",
                  '    recsys query "select * from recommendations where user_id = '
                  '(select min(user_id) from recommendations)"']
    elif run["status"] == "published_cold_start":
        lines += ["  published the cold-start lists only (no ranker could be trained on this export)",
                  f"  serving database: {settings.serving_db}", "  try:",
                  "    recsys query \"select * from recommend('any-user-id')\""]
    lines.append(f"  seconds per step: {run.get('durations')}")
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    from ml import runs

    settings = args.settings
    latest = runs.history(settings, limit=1)
    info = {
        "home": str(settings.home),
        "paths": {"input": str(settings.default_input), "build_db": str(settings.build_db),
                  "serving_db": str(settings.serving_db), "models": str(settings.models_dir),
                  "reports": str(settings.reports_dir), "runs_db": str(runs.runs_db(settings))},
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ml import runlock

    with runlock.hold(args.settings.home, wait=args.wait, on_wait=_progress):  # it builds in the home too
        return _evaluate_published(args) if args.published else _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from ml.evaluate import evaluate_export

    out = Path(args.out) if args.out else args.settings.reports_dir / "evaluation"
    result = evaluate_export(args.settings, Path(args.input), args.cutoff, args.horizon_days, args.k, out,
                             include_baselines=not args.no_baselines)
    models = {**result["metrics"], **{f"{name} (cold buyers)": metrics
                                      for name, metrics in result.get("cold_users_baselines", {}).items()}}
    print(_metrics_table(models))
    for note in result.get("notes", []):
        print(note)
    for name, check in result.get("pilot", {}).items():
        print(f"pilot {name}: {check['value']:.4f} (target {check['direction']} {check['target']}) "
              f"{'PASS' if check['passed'] else 'FAIL'}")
    print(f"report: {out / 'evaluation.html'}")
    return 0


def _evaluate_published(args: argparse.Namespace) -> int:
    from ml.published import evaluate_published

    out = Path(args.out) if args.out else args.settings.reports_dir / "published"
    result = evaluate_published(args.settings, Path(args.input), Path(args.published), args.cutoff,
                                args.horizon_days, args.k, out)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(_metrics_table(result["metrics"]))
    for note in result["notes"]:
        print(note)
    print(f"report: {out / 'evaluation.json'}")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from ml.serving import open_serving

    con = open_serving(args.settings.serving_db)
    try:
        print(con.sql(args.sql).df().to_string(index=False, max_colwidth=60))
    finally:
        con.close()
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from prefect import serve

    from flows.pipeline import deployment
    from ml.prefect_server import prefect_api

    with prefect_api(args.settings, _progress):  # each scheduled run takes the home's run lock itself
        serve(deployment(cron=args.cron, home=str(args.settings.home), input_path=args.input))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="product home (default: $RECSYS_HOME or warehouse/home)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the whole pipeline: warehouse, training, evaluation, publishing")
    run.add_argument("--input", help="export to use (default: a generated demo export)")
    run.add_argument("--as-of", help="use only events strictly before this time (YYYY-MM-DD[ HH:MM:SS])")
    run.add_argument("--top-n", type=int, default=20, help="recommendations per user")
    run.add_argument("--horizon-days", type=int,
                     help="label window in days (default: chosen from the export's span and purchase rhythm)")
    run.add_argument("--wait", action="store_true",
                     help="when another run holds the home, wait for it instead of refusing (exit code 2)")
    run.set_defaults(func=_cmd_run)

    info = sub.add_parser("info", help="where everything lives, and the last run")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_cmd_info)

    ev = sub.add_parser("evaluate", help="ranker vs tuned baselines (or --published lists) on a time split")
    ev.add_argument("--input", required=True, help="export to evaluate on")
    ev.add_argument("--cutoff", required=True, help="history before it, truth from it on")
    ev.add_argument("--horizon-days", type=int, default=3, help="length of the truth window")
    ev.add_argument("--k", type=int, default=10, help="list length judged")
    ev.add_argument("--out", help="report directory (default <home>/reports/evaluation, "
                                  "<home>/reports/published with --published)")
    ev.add_argument("--no-baselines", action="store_true", help="judge the ranker against popularity only")
    ev.add_argument("--published", help="judge these lists instead of training: a serving database "
                                        "(.duckdb) or a parquet of user_id, item_id, rank")
    ev.add_argument("--wait", action="store_true", help="when a run holds the home, wait for it")
    ev.set_defaults(func=_cmd_evaluate)

    query = sub.add_parser("query", help="run SQL against the published serving database (read-only)")
    query.add_argument("sql")
    query.set_defaults(func=_cmd_query)

    srv = sub.add_parser("serve", help="run the pipeline on a schedule (Prefect deployment)")
    srv.add_argument("--cron", default="0 3 * * *", help="schedule, UTC (default nightly at 03:00)")
    srv.add_argument("--input", help="export to use on each run")
    srv.set_defaults(func=_cmd_serve)

    gen = sub.add_parser("generate", help="write a synthetic export in the ab_test.csv layout")
    gen.add_argument("--rows", type=int, default=1_000_000, help="data rows to write")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--out", required=True, help="CSV path to write")
    gen.add_argument("--with-categories", action="store_true",
                     help="add main_category and sub_category columns (10-column layout)")
    gen.set_defaults(func=_cmd_generate)

    imp = sub.add_parser("import", help="convert a public transaction log to the export layout")
    imp_sub = imp.add_subparsers(dest="source", required=True)
    tf = imp_sub.add_parser("ta-feng", help="Ta-Feng grocery CSV, or the zip holding it")
    tf.add_argument("--input", required=True, help="ta_feng.csv.zip or ta_feng_all_months_merged.csv")
    tf.add_argument("--out", required=True, help="CSV to write (rejects go to <out>.rejected.csv)")
    tf.add_argument("--platform", default="Site")
    tf.set_defaults(func=_cmd_import_ta_feng)
    tr = imp_sub.add_parser("transactions", help="any CSV with one row per purchased line")
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
    tr.add_argument("--platform", default="Site")
    tr.set_defaults(func=_cmd_import_transactions)

    base = sub.add_parser("baselines", help="tune and evaluate the baselines on a time split")
    base.add_argument("--input", required=True, help="export CSV (ab_test.csv layout)")
    base.add_argument("--cutoff", required=True, help="test window start, e.g. 2001-02-01")
    base.add_argument("--horizon-days", type=float, default=28)
    base.add_argument("--k", type=int, default=10)
    base.add_argument("--out", help="CSV to write the metrics table to")
    base.set_defaults(func=_cmd_baselines)

    prof = sub.add_parser("profile", help="HTML report about an export before any training")
    prof.add_argument("--input", required=True, help="export CSV (ab_test.csv layout)")
    prof.add_argument("--out", help="HTML to write (default: <home>/reports/profile.html)")
    prof.set_defaults(func=_cmd_profile)

    api = sub.add_parser("api", help="serve the published recommendations over HTTP (read-only)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--log-level", default="warning", help="uvicorn log level")
    api.add_argument("--docs", action="store_true",
                     help="serve the interactive /docs page (loads Swagger UI from a CDN: development only)")
    api.set_defaults(func=_cmd_api)

    return parser


def main(argv: list[str] | None = None) -> int:
    # No network here: keep Prefect's local server from trying to send usage telemetry.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    args.settings = Settings.from_env(args.home)
    try:
        return args.func(args)
    except (ExportError, PublishedError, ConfigError, HomeBusy) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PrefectServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
