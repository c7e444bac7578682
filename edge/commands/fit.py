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
    p.add_argument("--l2", type=float, default=1.0, help="L2 penalty on the standardised weights (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing B2")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.contract.operating_point import OperatingPoint, Wording
    from hootwatch.edge.review.fit import fit_logistic, labelled_windows, write_head_bundle
    from hootwatch.edge.review.search import EmbeddingIndex
    from hootwatch.edge.store.database import open_store

    OperatingPoint(args.threshold, wording=Wording(fix_threshold="pass e.g. --threshold 0.5"))
    t0 = time.perf_counter()
    source = load_bundle(args.bundle)
    with open_store(args.out) as store:
        data = labelled_windows(store, EmbeddingIndex.load(store, source.manifest.backbone_id))
        head, facts = fit_logistic(data.x, data.y, l2=args.l2)
        trained_on = data.summary() | facts | {"store": str(store.path.resolve()),
                                               "backbone_id": source.manifest.backbone_id}
    manifest = write_head_bundle(source, args.new, head, trained_on, args.threshold, args.overwrite)
    print(f"fitted on {data.summary()['owl_windows']} owl and {data.summary()['other_windows']} other window(s) "
          f"({data.spans} label(s)) in {time.perf_counter() - t0:.1f} s; bundle {args.new} (model {manifest.model_id})")
    print(f"rescore the archive: hootwatch detections {args.out} --bundle {args.new}")
    if manifest.first_stage:
        print(f"its cascade first stage was checked for {args.bundle}'s own scores, not the head's: before scanning "
              f"new recordings with it, `hootwatch cascade-check RECORDINGS --bundle {args.new}` (or scan with "
              "--exhaustive)")
    return 0
