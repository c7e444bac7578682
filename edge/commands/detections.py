"""`hootwatch detections OUTDIR --threshold T --min-hits K`: detections and exports for another operating point,
rebuilt from the window scores the scan kept, without decoding any audio.

The rows go into the store as a new run (same model and hop, the new threshold and min_hits, recorded on every
row) and OUTDIR/detections.csv, the Raven table and the Audacity labels are rewritten for it. Labels already
given stay on their audio and show on the new detections.

`--bundle B2` (a bundle from `hootwatch fit`): the whole archive rescored with its head from the stored
embeddings, also without decoding audio (edge/scan/rescore.py), at B2's threshold and min_hits.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("detections", help="rebuild detections for another threshold/min_hits (no rescan)",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch detections results/ --threshold 0.7 --min-hits 2")
    p.add_argument("out", metavar="OUTDIR", help="the scan's output folder (holds detections.sqlite)")
    p.add_argument("--threshold", type=float, default=None, metavar="T", help="score for a positive window, 0..1")
    p.add_argument("--bundle", default=None, metavar="B2",
                   help="rescore every window with this bundle's fitted head (`hootwatch fit`) instead")
    p.add_argument("--min-hits", type=int, default=None, metavar="K",
                   help="minimum positive windows per detection, at the bundle's hop (default: the run's own)")
    p.add_argument("--run", default=None, metavar="RUN_KEY",
                   help="the run whose window scores to use (default: the most recent scan)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hootwatch.edge.store.exports import write_exports
    from hootwatch.edge.scan.rebuild import rebuild
    from hootwatch.edge.store.database import open_store

    from hootwatch.edge.core.errors import ConfigError

    if (args.threshold is None) == (args.bundle is None):
        raise ConfigError("give --threshold T (another operating point) or --bundle B2 (a fitted head), not both",
                          "e.g. hootwatch detections results/ --threshold 0.7, or --bundle model-r1/")
    with open_store(args.out) as store:
        src = store.scored_run(args.run)
        if args.bundle is not None:
            from hootwatch.edge.contract.bundle import load_bundle
            from hootwatch.edge.scan.rescore import rescore
            new = rescore(store, src, load_bundle(args.bundle))
        else:
            new = rebuild(store, src, args.threshold, args.min_hits)
        sr = store.window_sample_rate(new.run_key)
        paths = write_exports(store, new.run_key, args.out, sr / 2)
        print(f"{store.count(new.run_key)} detection(s) at threshold {new.threshold:g}, min_hits {new.min_hits} "
              f"(model {new.model_id}, from run {src}); written to {paths['csv']}")
    return 0
