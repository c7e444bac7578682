"""Benchmark: event-level accuracy of a model bundle on a synthetic SD-card dump with ground truth, and its false
positives on real recordings that hold no powerful owl.

A detection counts as a true positive when it overlaps a true owl call; each call counts once however many
detections overlap it (hootwatch.edge.evaluate). False positives per hour are reported for the dump and, when
../shared/data/real is present (or --negatives DIR is given), for those real owl-free recordings: real boobook
calls, wind, night soundscapes. Every detection there is a false positive.

    python bench/accuracy.py --bundle hootwatch-demo/bundle --hours 2 --seed 7
    python bench/accuracy.py --bundle bundle --dump CARD          # an existing dump with ground_truth.csv
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hootwatch.edge.detector import Detector
from hootwatch.edge.evaluate import audio_hours, event_metrics, load_detections, load_truth
from hootwatch.edge.scan import ScanSettings, scan_into

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
# boobook/positive: real southern boobook calls (never used in synthesis); the rest are also used as
# synthetic backgrounds, so their rows measure robustness to seen noise rather than to new sites
OWL_FREE = ("boobook/positive", "boobook/negative", "soundscape_sm4", "misc", "recorder_fixtures")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--dump", type=Path, default=None, help="existing dump folder with ground_truth.csv")
    p.add_argument("--hours", type=float, default=1.0, help="hours to synthesise when --dump is not given")
    p.add_argument("--seed", type=int, default=12345, help="dump seed (use one the model was not trained on)")
    p.add_argument("--negatives", type=Path, default=None, help="folder of real recordings without powerful owls")
    p.add_argument("--tz", default="Australia/Sydney", help="recorder timezone of the dump's Song Meter files")
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--hop", type=float, default=None)
    p.add_argument("--min-hits", type=int, default=None,
                   help="positive windows a detection needs (as scan --min-hits; default: the bundle's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=None, help="folder for the dump and scan results (default: temp)")
    return p.parse_args()


def negatives(args: argparse.Namespace) -> list[Path]:
    if args.negatives:
        return [args.negatives]
    return [REAL / p for p in OWL_FREE if (REAL / p).exists()]


def main() -> None:
    args = parse()
    console = Console(width=150)
    work = args.work or Path(tempfile.mkdtemp(prefix="hootwatch-accuracy-"))
    dump = args.dump
    if dump is None:
        from hootwatch.trainer.synth.dump import DumpConfig, write_dump
        dump = work / "dump"
        t = time.perf_counter()
        from hootwatch.trainer.synth.backgrounds import default_background_dir
        backgrounds = default_background_dir()   # the demo's nights use them too; None: synthetic night noise
        write_dump(dump, DumpConfig(hours=args.hours, seed=args.seed, backgrounds=backgrounds, tz=args.tz))
        console.print(f"synthesised {args.hours} h dump (seed {args.seed}, backgrounds: "
                      f"{backgrounds or 'synthetic'}) in {time.perf_counter() - t:.0f} s: {dump}")
    detector = Detector.load(args.bundle, threads=args.threads)
    settings = ScanSettings(tz=args.tz, threshold=args.threshold, hop_s=args.hop, min_hits=args.min_hits)

    t = time.perf_counter()
    summary, paths = scan_into([dump], detector, work / "scan_dump", settings)
    scan_s = time.perf_counter() - t
    hours = audio_hours(dump)
    m = event_metrics(load_detections(paths["csv"]), load_truth(dump / "ground_truth.csv"), hours, root=dump)

    threshold = detector.manifest.threshold if args.threshold is None else args.threshold
    min_hits = detector.manifest.min_hits if args.min_hits is None else args.min_hits
    table = Table(title=f"event-level accuracy of {args.bundle} (threshold {threshold:.3f}, min hits {min_hits})")
    for col in ("audio", "hours", "owl calls", "found", "detections", "precision", "recall", "F1", "FP / hour",
                "scan RTF"):
        table.add_column(col, justify="right")
    name = f"synthetic dump, seed {args.seed}" if args.dump is None else f"dump {args.dump}"
    table.add_row(name, f"{hours:.2f}", str(m.n_true), str(m.n_found),
                  str(m.n_detections), f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}",
                  f"{m.fp_per_hour:.2f}", f"{hours * 3600 / scan_s:.0f}x")
    for folder in negatives(args):
        # real recordings: their file names carry UTC or unknown local time; times do not matter here
        real_summary, real_paths = scan_into([folder], detector, work / f"scan_{folder.parent.name}_{folder.name}",
                                             ScanSettings(tz="UTC", threshold=args.threshold, hop_s=args.hop,
                                                          min_hits=args.min_hits))
        n = len(load_detections(real_paths["csv"]))
        real_h = real_summary.audio_s / 3600
        table.add_row(f"real, owl-free: {folder.relative_to(REAL) if folder.is_relative_to(REAL) else folder}", f"{real_h:.3f}", "0", "-", str(n), "-", "-", "-",
                      f"{n / real_h:.1f}" if real_h else "-", "-")
    console.print(table)
    if m.by_confuser:
        console.print("dump false positives by what they overlapped: " +
                      ", ".join(f"{k} {v}" for k, v in m.by_confuser.items()))
    console.print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, {args.threads} threads, "
                  f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
