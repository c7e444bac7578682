"""`hootwatch cascade-check RECORDINGS --bundle B`: check the bundle's cascade on recordings like those it will scan
(a night or two, no labels needed) and lower its pass threshold until, there, the first stage keeps 99.5 % of the
windows the full model calls positive and the cascade makes exactly the rows of an exhaustive scan
(hootwatch.edge.scan.cascade_check).

Only manifest.json changes. Run it after `hootwatch calibrate` lowered the threshold, or on a new site's first
nights; `--dry-run` shows the figures without changing the bundle.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("cascade-check", help="check (and lower) the cascade's pass threshold on recordings",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch cascade-check card1/ --bundle bundle/")
    p.add_argument("recordings", metavar="RECORDINGS", help="folder of recordings like those the bundle will scan")
    p.add_argument("--bundle", required=True, metavar="B", help="the bundle to check (its manifest is updated)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--dry-run", action="store_true", help="show the result, do not change the bundle")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hootwatch.edge.scan.cascade_check import check_on_recordings
    from hootwatch.edge.core.errors import ConfigError

    if not Path(args.recordings).is_dir():
        raise ConfigError(f"{args.recordings}: no such folder", "give a folder of recordings (a night or two)")
    report = check_on_recordings(args.bundle, args.recordings, args.threads, chosen_on=str(args.recordings),
                                 write=not args.dry_run)
    if not report:
        print(f"{args.bundle} has no cascade first stage: every window is scored by the full model, nothing to check")
        return 0
    r = report
    print(f"{r['windows']} windows: the full model calls {r['full_model_positives']} positive and makes "
          f"{r['exhaustive_detections']} detections")
    print(f"pass threshold {r['pass_threshold_before']:.4g} -> {r['pass_threshold']:.4g}: the first stage keeps "
          f"{r['positives_kept']} of the {r['full_model_positives']} positive windows and the cascade makes "
          f"{r['cascade_detections']} detections; it passes {r['pass_rate']:.1%} of the windows to the full model")
    if args.dry_run:
        print("dry run: the bundle is unchanged")
    else:
        print(f"written to {args.bundle}/manifest.json. Files already scanned into a store keep their rows (scan "
              "into a new --out to redo them); a running `hootwatch run` uses it after a restart")
    return 0
