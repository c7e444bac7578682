"""`hootwatch calibrate OUTDIR --bundle B --target-precision P`: precision per score bin from the reviewed
detections, a fitted score -> P(true owl call), and the threshold that reaches P written into the bundle.

Says how many labels it rests on and refuses, changing nothing, when they are too few. Only manifest.json
changes: the model (and its id) stays the same, and the next scan with the bundle uses the new threshold.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="choose the threshold for a target precision from your labels",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch calibrate results/ --bundle bundle/ --target-precision 0.9")
    p.add_argument("out", metavar="OUTDIR", help="the scan's output folder (holds detections.sqlite and labels)")
    p.add_argument("--bundle", required=True, metavar="B", help="the bundle the scan used (its threshold is set)")
    p.add_argument("--target-precision", type=float, required=True, metavar="P", help="e.g. 0.9")
    p.add_argument("--run", default=None, metavar="RUN_KEY", help="run whose detections were reviewed (default: latest)")
    p.add_argument("--min-labels", type=int, default=None, metavar="N", help="refuse below N reviewed detections (30)")
    p.add_argument("--dry-run", action="store_true", help="show the result, do not change the bundle")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from hootwatch.edge.contract.bundle import load_bundle, set_operating_point
    from hootwatch.edge.review.calibrate import (MIN_LABELS, CalibrationError, calibrate, reviewed_detections,
                                                 score_bins)
    from hootwatch.edge.store.database import open_store

    bundle = load_bundle(args.bundle)
    with open_store(args.out) as store:
        run_key = store.resolve_run(args.run)
        scores, truth = reviewed_detections(store, run_key)
    if not run_key.startswith(bundle.manifest.model_id):
        print(f"warning: run {run_key} was not made by this bundle's model ({bundle.manifest.model_id})")
    console = Console()
    t = Table(title=f"precision by score ({len(scores)} reviewed detections of run {run_key})")
    for col in ("score", "reviewed", "owl", "precision"):
        t.add_column(col, justify="right")
    for b in score_bins(scores, truth):
        t.add_row(b["range"], str(b["n"]), str(b["owl"]), f"{b['precision']:.2f}")
    console.print(t)
    cal = calibrate(scores, truth, args.target_precision, args.min_labels or MIN_LABELS)
    console.print(f"fit: P(owl) = sigmoid({cal.a:.3f} * logit(score) + {cal.b:.3f}), on {cal.n_labels} reviewed "
                  f"detections ({cal.n_owl} owl)")
    if cal.threshold is None:
        raise CalibrationError(f"no threshold reaches precision {args.target_precision:g} on these labels "
                               f"(the best, at the top score, is {cal.expected_precision:.2f})",
                               "lower --target-precision, or review more high-scoring detections")
    console.print(f"threshold {cal.threshold:.4f}: expected precision {cal.expected_precision:.3f} over the "
                  f"{cal.kept} reviewed detections at or above it (was {bundle.manifest.threshold:g})")
    fs = bundle.manifest.first_stage or {}
    checked = [float(v) for v in ((fs.get(k) or {}).get("full_threshold")
                                  for k in ("validation", "recordings_check", "clip_rule", "rule")) if v is not None]
    validated = min(checked) if checked else None
    if validated is not None and cal.threshold < float(validated):
        console.print(f"warning: the bundle's first stage (cascade) was validated to keep the windows scoring "
                      f">= {float(validated):g}; below that it may drop some the model would now count. Run "
                      f"`hootwatch cascade-check RECORDINGS --bundle {args.bundle}` on a night or two, or scan with "
                      "--exhaustive")
    if args.dry_run:
        return 0
    set_operating_point(args.bundle, threshold=round(cal.threshold, 6), note={
        "chosen_on": f"{cal.n_labels} reviewed detections ({cal.n_owl} owl) of run {run_key}",
        "rule": f"lowest threshold with fitted precision >= {args.target_precision:g}",
        "fit": {"a": cal.a, "b": cal.b}, "target_precision": args.target_precision,
        "threshold": round(cal.threshold, 6), "min_hits": bundle.manifest.min_hits})
    console.print(f"written to {args.bundle}/manifest.json (model id unchanged: {bundle.manifest.model_id})")
    return 0
