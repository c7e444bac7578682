"""`hootwatch embed RECORDINGS --model BUNDLE --out OUTDIR`: every window's embedding into a store, for search by
example and `hootwatch fit`, with no owl model needed (an `export --embedding-only` bundle scores nothing).

It is a scan that embeds every window (never the cascade's shortcut, which leaves rejected windows without one):
the same ledger, resumable and idempotent, one transaction per file. With a bundle that has an owl head too, its
scores and detections are kept as a scan keeps them.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from .scan import EXIT_CODES
    p = subparsers.add_parser("embed", help="store every window's embedding (for search and fit)",
                              description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example: hootwatch embed /media/card --model backbone-bundle/ --out results/\n\n"
                                     + EXIT_CODES)
    p.add_argument("paths", nargs="+", metavar="RECORDINGS", help="audio files or folders (recursive)")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a bundle with an embedding output")
    p.add_argument("--out", required=True, metavar="OUTDIR", help="output folder (the store goes here)")
    p.add_argument("--tz", default=None, help="recorder timezone for local-time file names (IANA or +HH:MM)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`scan`'s run with every window embedded: the same summary, odd-entry report, exit status and disk-full
    message (commands/scan.py scan_and_report)."""
    from rich.console import Console

    from hootwatch.edge.contract.cascade import load_detector
    from hootwatch.edge.core.errors import ConfigError
    from hootwatch.edge.scan.engine import ScanSettings, scan_into

    from .scan import EXIT_OK, EXIT_FAILED, _log_through, check_paths, scan_and_report

    console = Console(stderr=True)
    _log_through(console)
    out = check_paths(args.paths, args.out)
    detector = load_detector(args.model, threads=args.threads, exhaustive=True)
    if not detector.embeds:
        raise ConfigError(f"--model {args.model}: this bundle outputs no embedding",
                          "export it again with this hootwatch, or `hootwatch export --embedding-only BACKBONE`")
    settings = ScanSettings(tz=args.tz)
    status = scan_and_report(args.paths, out, lambda progress: (*scan_into(args.paths, detector, out, settings,
                                                                           progress), detector.manifest),
                             console, settings, quiet=args.quiet, command="embed", done="files embedded")
    if status in (EXIT_OK, EXIT_FAILED):
        print(f"search them: hootwatch search {args.out} --example CLIP")
    return status
