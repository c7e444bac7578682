"""Benchmark: event-level accuracy of a model bundle on annotated recordings (a synthetic SD-card dump, or your
own), and its false positives on real recordings that hold no powerful owl.

A detection counts as a true positive when it overlaps a true owl call; each call counts once however many
detections overlap it (hootwatch.edge.tables.evaluate). `--dump DIR` takes every annotation format the trainer reads,
through the same reader (hootwatch.edge.tables.label_tables): a `ground_truth.csv` / any CSV `file,start_s,end_s,label`,
Raven selection tables (one per recording, or multi-file) and Audacity label tracks. With CSV tables the whole
folder is scanned (files without a row hold no owl); with per-recording tables only the recordings they annotate.
False positives per hour are reported for DIR and, when ../shared/data/real is present (or --negatives DIR is
given), for its evaluation-only owl-free recordings (real boobook calls, a site and hours never used as training
backgrounds: see hootwatch.trainer.synth.backgrounds). Every detection there is a false positive.

    python bench/accuracy.py --bundle hootwatch-demo/bundle --hours 2 --seed 7
    python bench/accuracy.py --bundle bundle --dump CARD          # a dump with ground_truth.csv
    python bench/accuracy.py --bundle bundle --dump SURVEY --default-label owl   # recordings + Raven tables
    python bench/accuracy.py --bundle bundle --exhaustive         # the cascade against every window scored

A bundle with a cascade first stage is scanned with it (as `hootwatch scan` does); `--exhaustive` scans the dump a
second time with the full model on every window and prints both rows, the pass rate and the differences.
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

from hootwatch.edge.contract import audio
from hootwatch.edge.contract.cascade import load_detector, pass_rate_of
from hootwatch.edge.core.errors import HootwatchError
from hootwatch.edge.tables.evaluate import TruthEvent, event_metrics, load_detections
from hootwatch.edge.tables.label_tables import audio_for_table, find_tables, is_multi_file_raven, read_table
from hootwatch.edge.scan.engine import ScanSettings, scan_into

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--dump", type=Path, default=None,
                   help="annotated recordings: ground_truth.csv, any CSV file,start_s,end_s,label, Raven or Audacity "
                        "tables (as `hootwatch train` reads them)")
    p.add_argument("--positive-label", default="owl", help="the label of the calls to detect (default owl)")
    p.add_argument("--label-column", default=None, help="label column of Raven tables")
    p.add_argument("--default-label", default=None, help="label of Raven selections with no label")
    p.add_argument("--hours", type=float, default=1.0, help="hours to synthesise when --dump is not given")
    p.add_argument("--seed", type=int, default=12345, help="dump seed (use one the model was not trained on)")
    p.add_argument("--owl-share", type=float, default=0.35,
                   help="share of the synthetic night's sound events that are owl bouts (0.35: the demo's dense "
                        "nights, ~20 %% of windows; 0.03: a realistic night, under 5 %%)")
    p.add_argument("--negatives", type=Path, default=None, help="folder of real recordings without powerful owls")
    p.add_argument("--tz", default="Australia/Sydney", help="recorder timezone of the dump's Song Meter files")
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--hop", type=float, default=None)
    p.add_argument("--min-hits", type=int, default=None,
                   help="positive windows a detection needs (as scan --min-hits; default: the bundle's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--exhaustive", action="store_true",
                   help="also scan the dump with every window scored by the full model, and compare")
    p.add_argument("--work", type=Path, default=None, help="folder for the dump and scan results (default: temp)")
    return p.parse_args()


def negatives(args: argparse.Namespace) -> list[tuple[str, list[Path]]]:
    """(name, files) of the owl-free recordings: --negatives, else the evaluation-only part of ../shared/data/real
    (never the training backgrounds)."""
    if args.negatives:
        return [(str(args.negatives), [args.negatives])]
    if not REAL.is_dir():
        return []
    from hootwatch.trainer.synth.backgrounds import evaluation_files
    return list(evaluation_files(REAL).items())


def ground_truth(folder: Path, label_column: str | None = None, default_label: str | None = None
                 ) -> tuple[list[TruthEvent], list[Path]]:
    """The truth of an annotated folder, read as the trainer reads it, and the recordings to scan."""
    tables = find_tables(folder)
    if not tables:
        raise HootwatchError(f"{folder}: no annotation table found",
                             "put ground_truth.csv (file,start_s,end_s,label), Raven selection tables or Audacity "
                             "label tracks beside the recordings")
    root = folder.resolve()
    truth, annotated = [], set()
    for table in tables:
        if table.suffix.lower() == ".txt" and not is_multi_file_raven(table):
            beside = audio_for_table(table)
            if beside is not None:
                annotated.add(beside.resolve())   # an empty table: a recording without calls
        for a in read_table(table, label_column, default_label):
            path = Path(a.audio).resolve()
            annotated.add(path)
            truth.append(TruthEvent(path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path),
                                    a.start_s, a.end_s, a.label))
    if any(t.suffix.lower() == ".csv" for t in tables):
        files = sorted(p for p in folder.rglob("*") if audio.is_audio_file(p))
    else:
        files = sorted(p for p in annotated if p.is_file())
    return truth, files


def hours_of(files: list[Path]) -> float:
    return sum(audio.probe(p).duration_s for p in files) / 3600


def score(detector, dump: Path, settings: ScanSettings, work: Path, positive_label: str = "owl",
          label_column: str | None = None, default_label: str | None = None):
    """(event metrics, audio hours, scan seconds) of `detector` over the annotated folder `dump`."""
    truth, files = ground_truth(dump, label_column, default_label)
    t = time.perf_counter()
    _, paths = scan_into(files, detector, work, settings)
    scan_s = time.perf_counter() - t
    hours = hours_of(files)
    return (event_metrics(load_detections(paths["csv"], positive_label), truth, hours, root=dump,
                          positive_label=positive_label), hours, scan_s)


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
        write_dump(dump, DumpConfig(hours=args.hours, seed=args.seed, backgrounds=backgrounds, tz=args.tz,
                                    owl_share=args.owl_share))
        console.print(f"synthesised {args.hours} h dump (seed {args.seed}, owl share {args.owl_share:g}, backgrounds: "
                      f"{backgrounds or 'synthetic'}) in {time.perf_counter() - t:.0f} s: {dump}")
    detector = load_detector(args.bundle, threads=args.threads)
    settings = ScanSettings(tz=args.tz, threshold=args.threshold, hop_s=args.hop, min_hits=args.min_hits)

    m, hours, scan_s = score(detector, dump, settings, work / "scan_dump", args.positive_label, args.label_column,
                             args.default_label)

    threshold = detector.manifest.threshold if args.threshold is None else args.threshold
    min_hits = detector.manifest.min_hits if args.min_hits is None else args.min_hits
    table = Table(title=f"event-level accuracy of {args.bundle} (threshold {threshold:.3f}, min hits {min_hits})")
    for col in ("audio", "hours", "owl calls", "found", "detections", "precision", "recall", "F1", "FP / hour",
                "scan RTF"):
        table.add_column(col, justify="right")
    name = f"synthetic dump, seed {args.seed}" if args.dump is None else f"dump {args.dump}"
    rate = pass_rate_of(detector)
    table.add_row(name + (f" (cascade: {rate:.1%} of windows scored)" if rate != 1.0 else ""), f"{hours:.2f}",
                  str(m.n_true), str(m.n_found),
                  str(m.n_detections), f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}",
                  f"{m.fp_per_hour:.2f}", f"{hours * 3600 / scan_s:.0f}x")
    if args.exhaustive:
        full = load_detector(args.bundle, threads=args.threads, exhaustive=True)
        e, _, full_s = score(full, dump, settings, work / "scan_dump_exhaustive", args.positive_label,
                             args.label_column, args.default_label)
        table.add_row(name + " (exhaustive: every window scored)", f"{hours:.2f}", str(e.n_true), str(e.n_found),
                      str(e.n_detections), f"{e.precision:.3f}", f"{e.recall:.3f}", f"{e.f1:.3f}",
                      f"{e.fp_per_hour:.2f}", f"{hours * 3600 / full_s:.0f}x")
        ok = m.recall >= e.recall - 0.01 and m.precision >= e.precision
        comparison = (f"cascade vs exhaustive: recall {m.recall - e.recall:+.3f}, precision {m.precision - e.precision:+.3f}, "
                      f"FP/hour {m.fp_per_hour - e.fp_per_hour:+.2f}, speed {full_s / scan_s:.1f}x -> "
                      f"{'OK' if ok else 'FAILS'} (recall within 0.01, precision no worse)")
    else:
        comparison = ""
    for name, real_files in negatives(args):
        # real recordings: their file names carry UTC or unknown local time; times do not matter here
        real_summary, real_paths = scan_into(real_files, detector, work / f"scan_{name.replace('/', '_')}",
                                             ScanSettings(tz="UTC", threshold=args.threshold, hop_s=args.hop,
                                                          min_hits=args.min_hits))
        n = len(load_detections(real_paths["csv"], args.positive_label))
        real_h = real_summary.audio_s / 3600
        table.add_row(f"real, owl-free, evaluation-only: {name} ({len(real_files)} files)", f"{real_h:.3f}", "0",
                      "-", str(n), "-", "-", "-", f"{n / real_h:.1f}" if real_h else "-", "-")
    console.print(table)
    if comparison:
        console.print(comparison)
    if m.by_confuser:
        console.print("dump false positives by what they overlapped: " +
                      ", ".join(f"{k} {v}" for k, v in m.by_confuser.items()))
    console.print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, {args.threads} threads, "
                  f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
