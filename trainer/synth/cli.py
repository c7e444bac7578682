"""`hootwatch synth dump|train`: synthetic recorder cards with ground truth, and synthetic training sets."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _backgrounds(arg: str | None, synthetic: bool) -> Path | None:
    if synthetic:
        return None
    if arg:
        return Path(arg)
    from .backgrounds import default_background_dir
    return default_background_dir()


def run_dump(args: argparse.Namespace) -> int:
    from .dump import DumpConfig, write_dump

    bg = _backgrounds(args.backgrounds, args.synthetic_backgrounds)
    cfg = DumpConfig(hours=args.hours, seed=args.seed, backgrounds=bg, tz=args.tz)
    t0 = time.perf_counter()
    summary = write_dump(args.out, cfg)
    took = time.perf_counter() - t0
    print(f"wrote {len(summary.files)} files, {summary.audio_s / 3600:.2f} h of audio to {args.out} "
          f"in {took:.1f} s ({summary.background} backgrounds{': ' + str(bg) if bg else ''})")
    snrs = [r.snr_db for r in summary.rows if r.label == "owl"]
    for label, n in sorted(summary.counts.items()):
        print(f"  {label:10s} {n:5d} calls")
    if snrs:
        print(f"  owl SNR {min(snrs):.1f} .. {max(snrs):.1f} dB (median {sorted(snrs)[len(snrs) // 2]:.1f})")
    print(f"ground truth: {Path(args.out) / 'ground_truth.csv'}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from .trainset import TrainSetConfig, write_trainset

    bg = _backgrounds(args.backgrounds, args.synthetic_backgrounds)
    summary = write_trainset(args.out, TrainSetConfig(clips=args.clips, seed=args.seed, backgrounds=bg))
    print(f"wrote {summary.n_clips} clips in {summary.n_recordings} recordings to {args.out} "
          f"({summary.background} backgrounds)")
    for label, n in sorted(summary.counts.items()):
        print(f"  {label:8s} {n:5d} clips ({100 * n / max(1, summary.n_clips):.0f} %)")
    for kind, n in sorted(summary.kinds.items()):
        print(f"    {kind:10s} {n:5d}")
    print(f"recording groups: {Path(args.out) / 'recordings.csv'}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("--backgrounds", metavar="DIR",
                   help="folder of night recordings without owls to mix into "
                        "(default: ../shared/data/real when present, else synthetic noise)")
    p.add_argument("--synthetic-backgrounds", action="store_true", help="use synthetic night noise only")


def register(subparsers) -> None:
    synth = subparsers.add_parser("synth", help="make synthetic owl data (recorder dumps, training sets)",
                                  description=__doc__)
    sub = synth.add_subparsers(dest="synth_command", required=True)
    d = sub.add_parser("dump", help="write an SD-card-like dump of recordings with ground_truth.csv")
    _common(d)
    d.add_argument("--hours", type=float, default=1.0, help="hours of audio in total (default 1)")
    d.add_argument("--tz", default="Australia/Sydney",
                   help="site time zone: Song Meter names carry it, AudioMoth names UTC (default Australia/Sydney)")
    d.set_defaults(func=run_dump)
    t = sub.add_parser("train", help="write a labelled training set: OUT/owl/*.wav, OUT/not_owl/*.wav")
    _common(t)
    t.add_argument("--clips", type=int, default=400, help="number of clips (default 400)")
    t.set_defaults(func=run_train)
