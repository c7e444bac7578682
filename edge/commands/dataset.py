"""`hootwatch dataset OUTDIR --out DATA [--append]`: a self-contained training set from the reviewed labels.

Clips with context around every reviewed owl call and every reviewed false positive (hard negatives), plus
random unreviewed low-score windows as ordinary negatives (kind random_negative in DATA/clips.csv), in the layout
`hootwatch train --data DATA` reads, with DATA/recordings.csv (recording, site = recorder, the split group and
its side: by recorder, or by recording or time blocks when one recorder is all there is).
Copy DATA to the GPU box; no SD card is needed there.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="write a training set from the reviewed labels",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch dataset results/ --out owl-data/ --append")
    p.add_argument("out_dir", metavar="OUTDIR", help="the scan's output folder (holds detections.sqlite)")
    p.add_argument("--out", required=True, metavar="DATA", help="folder for the training set")
    p.add_argument("--append", action="store_true",
                   help="grow an earlier set (its recordings keep their side of the split)")
    p.add_argument("--context", type=float, default=1.0, metavar="S", help="seconds kept each side of a label")
    p.add_argument("--negatives", type=int, default=None, metavar="N",
                   help="random unreviewed low-score windows to add (default: as many as the reviewed clips, >= 20)")
    p.add_argument("--low-score", type=float, default=0.2, metavar="P", help="random negatives score below this")
    p.add_argument("--run", default=None, metavar="RUN_KEY", help="run whose window scores to sample (default: latest)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hootwatch.edge.review.dataset import DatasetOptions, write_dataset
    from hootwatch.edge.store.database import open_store

    with open_store(args.out_dir) as store:
        s = write_dataset(store, store.scored_run(args.run), args.out, append=args.append,
                          options=DatasetOptions(args.context, args.negatives, args.low_score, args.seed))
    n = s.clips_per_split
    print(f"{args.out}: {s.owl} owl clip(s), {s.hard_negatives} hard negative(s), {s.random_negatives} random "
          f"negative(s) from {len(s.recordings)} recording(s); clips for train {n['train']}, validation "
          f"{n['validation']}, test {n['test']}")
    for why in s.skipped:
        print(f"  left out: {why}")
    for why in s.conflicts:
        print(f"  conflict: {why}")
    for note in s.notes:
        print(f"  note: {note}")
    return 0
