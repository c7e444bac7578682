"""`hootwatch cascade-check RECORDINGS --bundle B`: choose or check the bundle's cascade on recordings like those it
will scan (a night or two).

With labels in the folder (a ground_truth.csv, or Raven / Audacity / CSV annotation tables) and a student first stage,
the pass rule is chosen there: the highest pass threshold, and the neighbour count, at which every labelled owl call
the full model detects is still detected (hootwatch.edge.scan.pass_rule). Without labels, the pass threshold comes
down until, there, the cascade makes exactly the rows of an exhaustive scan (hootwatch.edge.scan.cascade_check);
`--ignore-labels` asks for that check on a labelled folder too.

Only manifest.json changes. Run it after `hootwatch calibrate` moved the threshold, or on a new site's first
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
    p.add_argument("--ignore-labels", action="store_true",
                   help="check the exhaustive scan's rows even where the folder has labels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hootwatch.edge.scan.cascade_check import check_on_recordings
    from hootwatch.edge.core.errors import ConfigError

    if not Path(args.recordings).is_dir():
        raise ConfigError(f"{args.recordings}: no such folder", "give a folder of recordings (a night or two)")
    report = check_on_recordings(args.bundle, args.recordings, args.threads, chosen_on=str(args.recordings),
                                 write=not args.dry_run, use_labels=not args.ignore_labels)
    if not report:
        print(f"{args.bundle} has no cascade first stage: every window is scored by the full model, nothing to check")
        return 0
    r = report
    if "calls_detected" in r:
        print(f"{r['windows']} windows, {r['calls']} labelled owl calls: the full model detects {r['calls_detected']} "
              f"of them scoring every window")
        print(f"pass threshold {r['pass_threshold_before']:.4g} -> {r['pass_threshold']:.4g} with {r['neighbours']} "
              f"neighbour(s) on each side: the cascade still detects {r['calls_kept']} of those, passing "
              f"{r['pass_rate']:.1%} of the windows to the full model ({r['cascade_detections']} detections against "
              f"{r['exhaustive_detections']} exhaustive: the full model's false alarms need not survive)")
    else:
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
