"""`hootwatch detections OUTDIR --threshold T --min-hits K`: detections and exports for another operating point,
rebuilt from the window scores the scan kept, without decoding any audio.

The rows go into the store as a new run (same model and hop, the new threshold and min_hits, recorded on every
row) and OUTDIR/detections.csv, the Raven table and the Audacity labels are rewritten for it. Labels already
given stay on their audio and show on the new detections.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("detections", help="rebuild detections for another threshold/min_hits (no rescan)",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch detections results/ --threshold 0.7 --min-hits 2")
    p.add_argument("out", metavar="OUTDIR", help="the scan's output folder (holds detections.sqlite)")
    p.add_argument("--threshold", type=float, required=True, metavar="T", help="score for a positive window, 0..1")
    p.add_argument("--min-hits", type=int, default=None, metavar="K",
                   help="minimum positive windows per detection, at the bundle's hop (default: the run's own)")
    p.add_argument("--run", default=None, metavar="RUN_KEY",
                   help="the run whose window scores to use (default: the most recent scan)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hootwatch.edge.store.exports import write_exports
    from hootwatch.edge.scan.rebuild import rebuild
    from hootwatch.edge.store.database import open_store

    with open_store(args.out) as store:
        src = store.scored_run(args.run)
        new = rebuild(store, src, args.threshold, args.min_hits)
        sr = store.window_sample_rate(new.run_key)
        paths = write_exports(store, new.run_key, args.out, sr / 2)
        print(f"{store.count(new.run_key)} detection(s) at threshold {new.threshold:g}, min_hits {new.min_hits} "
              f"(model {new.model_id}, from run {src}); written to {paths['csv']}")
    return 0
