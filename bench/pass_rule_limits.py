"""Benchmark: what limits the student cascade's pass rate on labelled recordings.

For a bundle with a student and folders of labelled recordings (ground_truth.csv or annotation tables), prints per
folder: the share of windows the full model calls positive (the judge's floor, its false alarms included), the
student's score quantiles, the pass rule each folder would choose for itself (0 and 1 neighbours), and, at a ladder
of pass thresholds with the bundle's neighbours, the calls kept and the share of windows passed.

    python bench/pass_rule_limits.py --bundle hootwatch-demo/bundle hootwatch-demo/validation_night /tmp/acc_0.03/dump
"""

from __future__ import annotations

import argparse

import numpy as np

from hootwatch.edge.contract.cascade import CascadeDetector, load_detector
from hootwatch.edge.scan.cascade_check import _BothStages
from hootwatch.edge.scan.offline import score_windows
from hootwatch.edge.scan.pass_rule import cascade_rows, event_pass_rule, passed_mask, read_labels
from hootwatch.edge.tables.evaluate import calls_found

LADDER = (0.001, 0.003, 0.01, 0.016, 0.03, 0.066, 0.106, 0.2, 0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("folders", nargs="+")
    args = ap.parse_args()
    cascade = load_detector(args.bundle, threads=args.threads)
    if not isinstance(cascade, CascadeDetector):
        raise SystemExit(f"{args.bundle} has no first stage")
    m = cascade.manifest
    k = int(m.first_stage.get("neighbours", 0))
    print(f"{args.bundle}: pass threshold {m.first_stage['pass_threshold']:.4g}, {k} neighbour(s); threshold "
          f"{m.threshold:g}, min_hits {m.min_hits}")
    for folder in args.folders:
        both = _BothStages(cascade)
        full = score_windows(both, folder)
        first = np.concatenate(both.first)
        n = np.cumsum([0] + [len(f.scores) for f in full])
        firsts = [first[a:b] for a, b in zip(n, n[1:])]
        truth = read_labels(folder)
        judge = np.concatenate([f.scores for f in full])
        print(f"\n{folder}: {len(first)} windows; the full model calls {np.mean(judge >= m.threshold):.1%} positive")
        print("  student score quantiles: " + ", ".join(f"{q:g}: {np.quantile(first, q):.3g}"
                                                      for q in (0.5, 0.75, 0.9, 0.95, 0.99)))
        for nb in (0, 1):
            r = event_pass_rule(full, firsts, truth, m, nb, root=folder)
            if r is not None:
                print(f"  its own rule, {nb} neighbour(s): threshold {r.pass_threshold:.4g}, passes {r.pass_rate:.1%}, "
                      f"keeps {r.calls_kept} of {r.calls_detected} detected calls")
        want = calls_found(cascade_rows(full, None, 0.0, m), truth, folder)
        for t in LADDER:
            got = calls_found(cascade_rows(full, firsts, t, m, k), truth, folder) & want
            passed = np.mean(np.concatenate([passed_mask(c, t, k) for c in firsts]))
            print(f"  threshold {t:<6g}: keeps {len(got)} of {len(want)} detected calls, passes {passed:.1%}")


if __name__ == "__main__":
    main()
