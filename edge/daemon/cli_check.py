"""`hootwatch check-config FILE`: say what is wrong with a daemon config, or print it with defaults filled in."""

from __future__ import annotations

import argparse
import sys

from .config import example_toml, load_config, to_toml


def register(sub) -> None:
    p = sub.add_parser("check-config", help="validate a daemon config file and print the effective configuration",
                       description=__doc__)
    p.add_argument("file", nargs="?", help="the TOML config file (hootwatch.toml)")
    p.add_argument("--example", action="store_true", help="print a commented example config and exit")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.example:
        sys.stdout.write(example_toml())
        return 0
    if not args.file:
        print("hootwatch: error: give a config FILE, or --example for a starting point", file=sys.stderr)
        return 2
    cfg = load_config(args.file)  # ConfigError -> `hootwatch: error: ...`, exit 2
    print(f"# {args.file}: OK. Effective configuration (defaults filled in):")
    print(to_toml(cfg))
    return 0
