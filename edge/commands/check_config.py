"""`hootwatch check-config FILE`: say what is wrong with a daemon config, or print it with defaults filled in.

It checks what `hootwatch run` checks at start-up on this machine (the bundle loads, the watched folder exists,
the output folders are writable, the microphone can work) and reports every problem at once; exit status 0 when
`run` would start, 2 otherwise."""

from __future__ import annotations

import argparse
import sys

from hootwatch.edge.daemon.config import all_problems, example_toml, load_config, to_toml


def register(sub) -> None:
    p = sub.add_parser("check-config", help="validate a daemon config file and print the effective configuration",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="exit status:\n  0   `hootwatch run` would start with this config on this machine\n"
                              "  2   it would not: every problem is listed, each with its key and its fix")
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
    from hootwatch.edge.daemon.preflight import preflight

    problems = preflight(cfg)  # what `run` checks on this machine: bundle, folders, microphone
    if problems:
        raise all_problems(problems, args.file)
    print(f"# {args.file}: OK (bundle, folders and sources checked on this machine). "
          "Effective configuration (defaults filled in):")
    print(to_toml(cfg))
    return 0
