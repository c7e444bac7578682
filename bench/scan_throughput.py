"""Benchmark: `hootwatch scan` with the student cascade against `--exhaustive`, on a full-size wav2vec2-base bundle.

Prints, side by side in one run, the real-time factor (audio seconds per wall second), the peak RSS and the pass
rate (share of windows the full model scored) of each runner, each measured end to end in a child process
(`hootwatch scan`, resource.getrusage(RUSAGE_CHILDREN)) on `--threads` threads at `--hop` (2.5 s), over
  (a) synthetic nights with real backgrounds and ground truth (`hootwatch synth dump`, `--hours` each), one per
      `--owl-shares` (share of sound events that are owl bouts: 0.03 is a realistic night, under 5 % of windows
      holding a call; 0.35 is the demo's dense nights, ~20 %), and
  (b) every real recording in ../shared/data/real (when present; no powerful owl in them).

The model is wav2vec2-base with random weights (speed does not depend on the weights), exported with
hootwatch.export.core.export_bundle (int8). A random model's scores mean nothing, so its first stage is the student
a real training run distilled: `--first-stage-from BUNDLE` (default: the demo's, hootwatch-demo/bundle) copies that
bundle's student, pass rule and audio contract (band limit, normalisation) into the wav2vec2-base bundle; the pass
rate, and so the speed, is then what that student passes on this audio. `--keep-bundle DIR` keeps that bundle so
others can rerun it. `--options` adds exhaustive rows for the cheaper backbones of `train --layers K` and
`--sample-rate 8000` (random weights, same export path). `--pytorch` adds the PyTorch eager baseline.
`--providers CUDAExecutionProvider --batch-size 8` runs the same on a GPU.

    python bench/scan_throughput.py --hours 0.5 --threads 2 --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
DEMO_BUNDLE = REPO / "hootwatch-demo" / "bundle"

TORCH_CHILD = """
import sys, time, numpy as np, soundfile as sf, torch
from pathlib import Path
from transformers import AutoModelForAudioClassification, AutoFeatureExtractor
from hootwatch.edge.contract.audio import load
from hootwatch.edge.contract.windows import WindowSpec, slice_windows
ckpt, folder, hop_s, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
model = AutoModelForAudioClassification.from_pretrained(ckpt).eval()
fe = AutoFeatureExtractor.from_pretrained(ckpt)
n = 0
for f in sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg")):
    _, w = slice_windows(load(f, 16000), WindowSpec(16000, 5.0, hop_s))
    with torch.inference_mode():
        for i in range(0, len(w), 8):
            model(**fe(list(w[i:i + 8]), sampling_rate=16000, return_tensors="pt")).logits.softmax(-1)
    n += len(w)
print("windows", n)
"""

# a fresh parent per measurement so each peak RSS is that child's own
WRAPPER = ("import json,resource,subprocess,sys,time;t=time.perf_counter();"
           "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
           "print(json.dumps([time.perf_counter()-t,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024,"
           "r.returncode,r.stdout[-4000:],r.stderr[-2000:]]))")


@dataclass(frozen=True)
class Record:
    audio: str           # "synthetic night" or "real recordings"
    runner: str          # "cascade", "exhaustive", "pytorch eager"
    hop_s: float
    audio_s: float
    wall_s: float
    rtf: float           # end to end: process start, model load, decoding, both stages
    pass_rate: float | None
    peak_rss_mib: float
    scan_rtf: float | None = None   # the scan's own figure (after start-up and model load), from its summary


def build_bundle(work: Path, threads: int, layers: int | None = None, sample_rate: int = SR,
                 normalisation: dict | None = None, static_conv: bool = False) -> Path:
    """A wav2vec2-base int8 bundle with random weights (`layers` transformer layers, at `sample_rate`), reading its
    windows with `normalisation` (the donor's band limit: its cost is part of every window's)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    from hootwatch.export.core import ExportOptions, export_bundle

    tag = ("" if layers is None else f"_{layers}layers") + ("" if sample_rate == SR else f"_{sample_rate}hz") + \
        ("_band" if normalisation and normalisation.get("highpass_hz") else "") + ("_static" if static_conv else "")
    bundle = work / f"bundle{tag}"
    if (bundle / "manifest.json").is_file():
        return bundle
    torch.manual_seed(0)
    ckpt = work / f"ckpt{tag}"
    cfg = Wav2Vec2Config(num_labels=2, id2label={0: "not_owl", 1: "owl"}, label2id={"not_owl": 0, "owl": 1},
                         **({"num_hidden_layers": layers} if layers else {}))
    Wav2Vec2ForSequenceClassification(cfg).save_pretrained(ckpt)  # wav2vec2-base sizes, random init
    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False, sampling_rate=sample_rate)
    if normalisation:
        from hootwatch.edge.contract.preprocess import FEATURE_EXTRACTOR_KEY
        setattr(fe, FEATURE_EXTRACTOR_KEY, normalisation)
    fe.save_pretrained(ckpt)
    rng = np.random.default_rng(0)
    for label in ("owl", "not_owl"):
        for i in range(4):
            p = work / "parity" / label / f"{i}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, (0.1 * rng.standard_normal(5 * SR)).astype(np.float32), SR)
    export_bundle(ExportOptions(source=ckpt, out=bundle, audio_dir=work / "parity", force=True, overwrite=True,
                                threads=threads, speed_repeats=0, first_stage=False, static_conv=static_conv))
    return bundle


def with_first_stage(bundle: Path, donor: Path, out: Path) -> Path:
    """A copy of `bundle` carrying `donor`'s first stage and audio contract (same sample rate), re-hashed."""
    from hootwatch.edge.contract.bundle import Manifest, load_bundle, write_manifest

    d = load_bundle(donor).manifest
    if not d.first_stage:
        sys.exit(f"{donor} has no first stage: run `hootwatch demo` first, or pass --first-stage-from BUNDLE")
    m = load_bundle(bundle).manifest
    if d.sample_rate != m.sample_rate:
        sys.exit(f"{donor} runs at {d.sample_rate} Hz, the benchmark model at {m.sample_rate} Hz")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle, out)
    shutil.copyfile(donor / d.first_stage["file"], out / d.first_stage["file"])
    fs = dict(d.first_stage, copied_from=str(donor))
    if m.normalisation != d.normalisation:
        sys.exit(f"{bundle} reads windows as {m.normalisation}, the student of {donor} as {d.normalisation}")
    write_manifest(out, Manifest.from_dict(m.to_dict() | {"first_stage": fs, "threshold": d.threshold,
                                                           "min_hits": d.min_hits}))
    return out


def audio_seconds(folder: Path) -> float:
    from hootwatch.edge.contract.audio import is_audio_file
    return sum(sf.info(str(p)).duration for p in folder.rglob("*") if p.is_file() and is_audio_file(p))


def measure(cmd: list[str]) -> tuple[float, float, str]:
    wall, rss, rc, out, err = json.loads(subprocess.run([sys.executable, "-c", WRAPPER, *cmd], check=True,
                                                        capture_output=True, text=True).stdout)
    if rc != 0:
        sys.exit(f"failed ({rc}): {' '.join(cmd)}\n{out}\n{err}")
    return wall, rss, out


def scan_cmd(bundle: Path, folder: Path, out: Path, args, exhaustive: bool) -> list[str]:
    cmd = [sys.executable, "-m", "hootwatch.edge.commands.main", "scan", str(folder), "--model", str(bundle),
           "--out", str(out), "--threads", str(args.threads), "--hop", str(args.hop), "--quiet", "--tz", "UTC"]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    return cmd + (["--exhaustive"] if exhaustive else [])


def run_one(name: str, folder: Path, runner: str, bundle: Path, args) -> Record:
    audio_s = audio_seconds(folder)
    if runner == "pytorch eager":
        wall, rss, _ = measure([sys.executable, "-c", TORCH_CHILD, str(args.work / "ckpt"), str(folder), str(args.hop),
                                str(args.threads)])
        rate = 1.0
    else:
        out = args.work / f"out_{runner}_{name.split()[0]}"
        shutil.rmtree(out, ignore_errors=True)
        env_cmd = scan_cmd(bundle, folder, out, args, runner == "exhaustive")
        wall, rss, stdout = measure(env_cmd)
        found = re.search(r"windows scored by the full model\s*│?\s*([0-9.]+)%", stdout)
        rate = float(found.group(1)) / 100 if found else None
        speed = re.search(r"speed\s*│?\s*([0-9.]+)x real time", stdout)
        scan_rtf = float(speed.group(1)) if speed else None
        return Record(name, runner, args.hop, round(audio_s, 1), round(wall, 2), round(audio_s / wall, 1), rate,
                      round(rss, 1), scan_rtf)
    return Record(name, runner, args.hop, round(audio_s, 1), round(wall, 2), round(audio_s / wall, 1), rate,
                  round(rss, 1))


def owl_window_share(night: Path, hop: float) -> float:
    """Share of the night's 5 s windows at `hop` that overlap an owl call (what a perfect first stage passes)."""
    from hootwatch.edge.tables.label_tables import read_truth_csv
    calls, total = {}, 0
    for t in read_truth_csv(night / "ground_truth.csv"):
        if t.label == "owl":
            calls.setdefault(t.file, []).append((t.start_s, t.end_s))
    from hootwatch.edge.contract.audio import is_audio_file
    hit = 0
    for p in night.rglob("*"):
        if not (p.is_file() and is_audio_file(p)):
            continue
        starts = np.arange(0.0, max(sf.info(str(p)).duration - 5.0, 0.0) + 1e-9, hop)
        total += len(starts)
        spans = calls.get(p.relative_to(night).as_posix(), [])
        hit += sum(any(a < s + 5.0 and s < b for a, b in spans) for s in starts)
    return hit / total if total else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=0.5, help="length of each synthetic night (default 0.5; 0: none)")
    ap.add_argument("--owl-shares", default="0.03,0.35",
                    help="owl share of each night's sound events: 0.03 realistic, 0.35 the demo's (default both)")
    ap.add_argument("--seed", type=int, default=4242, help="synthetic night seed (one no model was trained on)")
    ap.add_argument("--hop", type=float, default=2.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="full-model batch (8 on a GPU by default)")
    ap.add_argument("--first-stage-from", type=Path, default=DEMO_BUNDLE,
                    help="bundle whose student the wav2vec2-base bundle gets (default: the demo's)")
    ap.add_argument("--keep-bundle", type=Path, default=None, help="copy the benchmark's cascade bundle here")
    ap.add_argument("--options", action="store_true",
                    help="also exhaustive rows for 6 and 4 transformer layers and for 8 kHz (train --layers K, "
                         "--sample-rate 8000)")
    ap.add_argument("--static-conv", action="store_true",
                    help="export the full model with `export --static-conv` (the encoder convs in static int8)")
    ap.add_argument("--real", type=Path, default=REAL, help="folder of real recordings (default ../shared/data/real)")
    ap.add_argument("--pytorch", action="store_true", help="also time PyTorch eager over the same windows")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hootwatch-bench"))
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON records to this file")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    norm = load_manifest(args.first_stage_from).normalisation.to_dict()
    bundle = with_first_stage(build_bundle(args.work, args.threads, normalisation=norm, static_conv=args.static_conv),
                              args.first_stage_from, args.work / "bundle_cascade")
    if args.keep_bundle:
        shutil.rmtree(args.keep_bundle, ignore_errors=True)
        shutil.copytree(bundle, args.keep_bundle)
    options = {}
    if args.options:
        options = {"exhaustive, 6 layers": build_bundle(args.work, args.threads, layers=6, normalisation=norm),
                   "exhaustive, 4 layers": build_bundle(args.work, args.threads, layers=4, normalisation=norm),
                   "exhaustive, 8 kHz": build_bundle(args.work, args.threads, sample_rate=8000, normalisation=norm)}

    sets, shares = [], {}
    if args.hours > 0:
        from hootwatch.trainer.synth.backgrounds import default_background_dir
        from hootwatch.trainer.synth.dump import DumpConfig, write_dump
        for share in [float(x) for x in args.owl_shares.split(",") if x.strip()]:
            night = args.work / f"night_{args.hours:g}h_seed{args.seed}_owl{share:g}"
            if not (night / "ground_truth.csv").is_file():
                write_dump(night, DumpConfig(hours=args.hours, seed=args.seed, backgrounds=default_background_dir(),
                                             tz="UTC", owl_share=share))
            name = f"night, owl {share:g}"
            shares[name] = owl_window_share(night, args.hop)
            sets.append((name, night))
    if args.real.is_dir():
        sets.append(("real recordings", args.real))
    runners = ["cascade", "exhaustive"] + (["pytorch eager"] if args.pytorch else [])
    records = [run_one(name, folder, runner, bundle, args) for name, folder in sets for runner in runners]
    for name, folder in sets:
        for runner, b in options.items():
            r = run_one(name, folder, "exhaustive", b, args)
            records.append(Record(**(asdict(r) | {"runner": runner})))

    fs = load_manifest(bundle).first_stage
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"threads={args.threads}; model: wav2vec2-base (random init, int8) with the first stage of "
          f"{args.first_stage_from} ({fs.get('kind', 'feature MLP')}, pass threshold {fs['pass_threshold']:.3g}, "
          f"{fs.get('neighbours', 0)} neighbour(s))")
    for name, share in shares.items():
        print(f"{name}: {share:.1%} of windows overlap an owl call")
    print(f"{'audio':<16} {'runner':<22} {'hop s':>5} {'audio s':>8} {'wall s':>8} {'RTF':>7} {'scan RTF':>8} "
          f"{'pass rate':>9} {'peak RSS MiB':>12}")
    for r in records:
        rate = f"{r.pass_rate:.1%}" if r.pass_rate is not None else "-"
        scan = f"{r.scan_rtf:.0f}" if r.scan_rtf is not None else "-"
        print(f"{r.audio:<16} {r.runner:<22} {r.hop_s:>5.1f} {r.audio_s:>8.0f} {r.wall_s:>8.1f} {r.rtf:>7.1f} "
              f"{scan:>8} {rate:>9} {r.peak_rss_mib:>12.0f}")
    print("RTF: audio seconds per wall second, end to end (process start and model load included); scan RTF: "
          "the scan's own summary, after the model is loaded")
    by = {(r.audio, r.runner): r for r in records}
    for name, _ in sets:
        c, e = by[(name, "cascade")], by[(name, "exhaustive")]
        target = 70 if shares.get(name, 0) > 0.10 else 140
        print(f"{name}: cascade {e.wall_s / c.wall_s:.1f}x the speed of exhaustive, {c.rtf:.0f}x real time end to "
              f"end, {c.scan_rtf or 0:.0f}x in the scan ({'meets' if (c.scan_rtf or c.rtf) >= target else 'below'} "
              f"the {target}x target)")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in records], indent=2) + "\n")
        print(f"records: {args.json}")


def load_manifest(bundle: Path):
    from hootwatch.edge.contract.bundle import load_bundle
    return load_bundle(bundle).manifest


if __name__ == "__main__":
    main()
