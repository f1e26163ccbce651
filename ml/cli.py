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

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.settings = Settings.from_env(args.home)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
