"""`hootwatch fit OUTDIR --bundle B --out B2`: a linear owl head on the stored embeddings of every labelled
window, in seconds on a laptop, written as bundle B2 (B's graph, the head in its manifest with the labels it rests
on). Then `hootwatch detections OUTDIR --bundle B2` rescores the archive without decoding audio.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit a linear head on the labelled windows' embeddings (new bundle)",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch fit results/ --bundle model/ --out model-r1/")
    p.add_argument("out", metavar="OUTDIR", help="the output folder whose labels and embeddings to use")
    p.add_argument("--bundle", required=True, metavar="B", help="the bundle the recordings were embedded with")
    p.add_argument("--out", dest="new", required=True, metavar="B2", help="the new bundle's folder")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T",
                   help="the new bundle's threshold (default 0.5: the class-weighted head's balanced point)")
    p.add_argument("--l2", type=float, default=None,
                   help="L2 penalty on the standardised weights (default 1000: strong, for ~100 labels; see "
                        "edge/review/fit.py)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing B2")
    p.add_argument("--weak-negatives", type=int, default=None, metavar="N",
                   help="random unlabelled windows taken as weak negatives (default 1000; 0: none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.contract.operating_point import OperatingPoint, Wording
    from hootwatch.edge.review.fit import L2, WEAK_NEGATIVES, fit_head, write_head_bundle
    from hootwatch.edge.store.database import open_store

    OperatingPoint(args.threshold, wording=Wording(fix_threshold="pass e.g. --threshold 0.5"))
    t0 = time.perf_counter()
    source = load_bundle(args.bundle)
    with open_store(args.out) as store:
        weak = WEAK_NEGATIVES if args.weak_negatives is None else args.weak_negatives
        head, trained_on = fit_head(store, source, L2 if args.l2 is None else args.l2, weak)
    manifest = write_head_bundle(source, args.new, head, trained_on, args.threshold, args.overwrite)
    print(f"fitted on {trained_on['owl_windows']} owl and {trained_on['other_windows']} other labelled window(s) "
          f"({trained_on['label_spans']} label(s); {trained_on['weak_negatives']} random unlabelled windows as weak "
          f"negatives; L2 {trained_on['l2']:g}) in {time.perf_counter() - t0:.1f} s; bundle {args.new} (model "
          f"{manifest.model_id})")
    print(f"rescore the archive: hootwatch detections {args.out} --bundle {args.new}")
    if manifest.first_stage:
        print(f"its cascade first stage was checked for {args.bundle}'s own scores, not the head's: before scanning "
              f"new recordings with it, `hootwatch cascade-check RECORDINGS --bundle {args.new}` (or scan with "
              "--exhaustive)")
    return 0
