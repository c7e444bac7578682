"""`hootwatch embed RECORDINGS --model BUNDLE --out OUTDIR`: every window's embedding into a store, for search by
example and `hootwatch fit`, with no owl model needed (an `export --embedding-only` bundle scores nothing).

It is a scan that embeds every window (never the cascade's shortcut, which leaves rejected windows without one):
the same ledger, resumable and idempotent, one transaction per file. With a bundle that has an owl head too, its
scores and detections are kept as a scan keeps them.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("embed", help="store every window's embedding (for search and fit)",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch embed /media/card --model backbone-bundle/ --out results/")
    p.add_argument("paths", nargs="+", metavar="RECORDINGS", help="audio files or folders (recursive)")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a bundle with an embedding output")
    p.add_argument("--out", required=True, metavar="OUTDIR", help="output folder (the store goes here)")
    p.add_argument("--tz", default=None, help="recorder timezone for local-time file names (IANA or +HH:MM)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hootwatch.edge.contract.cascade import load_detector
    from hootwatch.edge.core.errors import ConfigError
    from hootwatch.edge.scan.engine import ScanSettings, scan_into

    detector = load_detector(args.model, threads=args.threads, exhaustive=True)
    if not detector.embeds:
        raise ConfigError(f"--model {args.model}: this bundle outputs no embedding",
                          "export it again with this hootwatch, or `hootwatch export --embedding-only BACKBONE`")
    summary, _ = scan_into(args.paths, detector, args.out, ScanSettings(tz=args.tz))
    print(f"{len(summary.done)} file(s) embedded ({summary.audio_s / 3600:.2f} h), {len(summary.skipped)} already "
          f"done, {len(summary.failed)} failed; search them: hootwatch search {args.out} --example CLIP")
    return 1 if summary.failed and not summary.done else 0
