"""Benchmark: what one round of the review loop gains, on the demo's data (after `hootwatch demo --out DEMO`).

A reviewer is emulated from the test night's ground truth: each detection labelled owl / not_owl by overlap with
a true call, and the calls the model missed added as owl (as found in the near-miss and random queues). Then
`hootwatch dataset`, `hootwatch train --init-from DEMO/run`, `hootwatch export`, the operating point chosen on the
demo's validation night as the demo chooses it, and both bundles scored by bench/accuracy.py on a fresh night
(seed 777) that neither model saw.

    python bench/review_round.py --demo hootwatch-demo --epochs 4
"""
import argparse
import csv
import subprocess
import sys
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--demo", type=Path, default=Path("hootwatch-demo"))
ap.add_argument("--epochs", type=int, default=4)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
D = args.demo
H = str(Path(sys.executable).with_name("hootwatch"))
PY = sys.executable
ACCURACY = Path(__file__).resolve().with_name("accuracy.py")


def sh(*a):
    print("$", " ".join(map(str, a)), flush=True)
    subprocess.run(list(map(str, a)), check=True)


from hootwatch.edge.contract.bundle import load_bundle, set_operating_point  # noqa: E402
from hootwatch.edge.store.labels import LabelBook, resolve_recording  # noqa: E402
from hootwatch.edge.store.database import DetectionStore  # noqa: E402
from hootwatch.export.operating_point import choose_operating_point  # noqa: E402

night = D / "night"
truth = list(csv.DictReader(open(night / "ground_truth.csv")))
owl = [t for t in truth if t["label"] == "owl"]
with DetectionStore(D / "detections" / "detections.sqlite") as s:
    book = LabelBook(s)
    already = book.count() > 0
    calls = {}
    for t in owl:
        k, p = resolve_recording(s, night / t["file"])
        calls.setdefault(k, []).append((float(t["start_s"]), float(t["end_s"]), p))
    n = {"owl": 0, "not_owl": 0}
    for d in ([] if already else s.detections()):
        hit = any(a < d["end_s"] and d["start_s"] < b for a, b, _ in calls.get(d["file_key"], []))
        lab = "owl" if hit else "not_owl"
        book.add(d["file_key"], d["file"], d["start_s"], d["end_s"], lab, reviewer="ground-truth")
        n[lab] += 1
    missed = 0
    for k, spans in calls.items():
        for a, b, p in spans:
            if not already and not book.overlapping(k, a, b):
                book.add(k, p, a, b, "owl", reviewer="ground-truth")
                missed += 1
print("reviewed detections:", n, "missed calls added:", missed, flush=True)
sh(H, "dataset", D / "detections", "--out", D / "reviewed")
sh(H, "train", "--data", D / "reviewed", "--init-from", D / "run", "--out", D / "run2", "--tiny",
   "--epochs", args.epochs, "--threads", args.threads)
sh(H, "export", D / "run2", "--out", D / "bundle2", "--threads", args.threads)
val = D / "validation_night"
chosen = choose_operating_point(D / "bundle2", val, val / "ground_truth.csv", threads=args.threads)
set_operating_point(D / "bundle2", threshold=chosen.point.threshold, min_hits=chosen.point.min_hits,
                    note=chosen.to_dict("demo validation night"))
for b in ("bundle", "bundle2"):
    m = load_bundle(D / b).manifest
    print(b, "threshold", m.threshold, "min_hits", m.min_hits, "model", m.model_id, flush=True)
sh(H, "synth", "dump", D / "night_fresh", "--hours", "1", "--seed", "777")
for b in ("bundle", "bundle2"):
    sh(PY, ACCURACY, "--bundle", D / b, "--dump", D / "night_fresh", "--threads", args.threads)
