"""The ``recsys`` command: one subcommand per user-facing job.

Each subcommand only parses arguments and calls library code; no logic lives here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ml.config import Settings


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


def _cmd_api(args: argparse.Namespace) -> int:
    from ml.api import serve

    print(f"serving {args.settings.serving_db} on http://{args.host}:{args.port}", flush=True)
    serve(args.settings.serving_db, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="product home (default: $RECSYS_HOME or warehouse/home)")
    sub = parser.add_subparsers(dest="command", required=True)

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

    api = sub.add_parser("api", help="serve the published recommendations over HTTP (read-only)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--log-level", default="warning", help="uvicorn log level")
    api.set_defaults(func=_cmd_api)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.settings = Settings.from_env(args.home)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
