"""Benchmark: what limits the cascade's speed, measured (issue #14: "if 100x cannot be reached, say why").

The cascade is fast only when its first stage passes few windows on to the full model, and it is safe only when
it keeps at least 99.5 % of the windows the full model calls positive. This bench measures both sides, window by
window, with the demo's tiny model as the judge (its first stage is the one `hootwatch train` distilled):

  * on synthetic nights with real backgrounds (`hootwatch synth dump`, seeds no model was trained on) at several
    owl densities (`--owl-shares`: the share of a night's sound events that are owl bouts; the demo's 0.35 gives
    about 20 % owl windows, a real night has far fewer), and on every real recording in ../shared/data/real;
  * per audio set: the share of windows the judge calls positive (what a perfect first stage would pass: the
    floor of the pass rate), the shipped first stage's pass rate and the judge positives it keeps at its pass
    threshold, and the pass rate any threshold of it needs to keep 99.5 % / 99 % / 95 % of them on this audio;
  * the real-time factor these pass rates allow at `--hop` 2.5 s: hop / (decode + first stage + pass x judge),
    with the decode and first-stage costs timed here and the judge's (wav2vec2-base int8 on `--threads` threads)
    timed on `--judge-bundle` or given as `--judge-ms`;
  * `--students`: other first stages trained on a separate synthetic night scored by the judge (so they learn
    from whole nights, not clips): the same MLP on the edge's features, gradient-boosted trees on them, and a
    small log-mel CNN (torch); the same columns for each. They are experiments, not shipped.

    python bench/cascade_limits.py --hours 0.5 --judge-bundle /tmp/hootwatch-bench/base_bundle --students
"""

from __future__ import annotations

import argparse
import csv
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from hootwatch.edge.contract import audio
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.contract.first_stage import FirstStage, choose_pass_threshold, features
from hootwatch.edge.contract.windows import WindowSpec, slice_windows

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
KEEPS = (0.995, 0.99, 0.95)


@dataclass
class Windows:
    """Every window of an audio set: judge scores, shipped first-stage scores and features, truth when known."""
    name: str
    judge: np.ndarray
    stage: np.ndarray
    feats: np.ndarray
    owl: np.ndarray | None
    logmel: np.ndarray | None = None


def owl_windows(starts_s: np.ndarray, window_s: float, calls: list[tuple[float, float]]) -> np.ndarray:
    """Windows holding at least 0.3 s of a true owl call."""
    return np.array([any(min(s + window_s, e) - max(s, b) >= 0.3 for b, e in calls) for s in starts_s], bool)


def collect(name: str, files: list[Path], truth: dict[str, list] | None, root: Path | None, judge: Detector,
            stage: FirstStage, spec: WindowSpec, with_logmel: bool) -> Windows:
    J, S, F, Y, M = [], [], [], [], []
    for f in files:
        starts, w = slice_windows(audio.load(f, spec.sample_rate), spec)
        if len(w) == 0:
            continue
        feats = features(w, spec.sample_rate)
        J.append(judge.score(w)), S.append(stage.score_features(feats)), F.append(feats)
        if with_logmel:
            from students import logmel
            M.append(logmel(w, spec.sample_rate))
        if truth is not None:
            rel = f.relative_to(root).as_posix()
            Y.append(owl_windows(np.asarray(starts) / spec.sample_rate, spec.window_s, truth.get(rel, [])))
    cat = np.concatenate
    return Windows(name, cat(J), cat(S), cat(F), cat(Y) if truth is not None else None, cat(M) if M else None)


def synth_night(folder: Path, hours: float, seed: int, owl_share: float) -> tuple[list[Path], dict, Path]:
    from hootwatch.trainer.synth.backgrounds import default_background_dir
    from hootwatch.trainer.synth.dump import DumpConfig, write_dump
    if not (folder / "ground_truth.csv").is_file():
        write_dump(folder, DumpConfig(hours=hours, seed=seed, backgrounds=default_background_dir(),
                                      owl_share=owl_share))
    truth: dict[str, list] = {}
    for r in csv.DictReader(open(folder / "ground_truth.csv")):
        if r["label"] == "owl":
            truth.setdefault(r["file"], []).append((float(r["start_s"]), float(r["end_s"])))
    return sorted(p for p in folder.rglob("*") if audio.is_audio_file(p)), truth, folder


def needed_pass_rate(stage: np.ndarray, judge: np.ndarray, threshold: float, keep: float) -> float:
    """Pass rate of the highest pass threshold that keeps `keep` of the judge's positive windows, chosen as
    export chooses it (NaN: no positive window)."""
    chosen = choose_pass_threshold(stage, judge, threshold, keep)
    return chosen.passed / chosen.n_windows if chosen.n_positive else float("nan")


def timed_costs(files: list[Path], spec: WindowSpec) -> tuple[float, float]:
    """(decode + resample, first-stage features) milliseconds per window, on this machine."""
    t = time.perf_counter()
    blocks = [audio.load(f, spec.sample_rate) for f in files]
    decode = time.perf_counter() - t
    ws = [slice_windows(b, spec)[1] for b in blocks]
    n = sum(len(w) for w in ws)
    t = time.perf_counter()
    for w in ws:
        for i in range(0, len(w), 16):
            features(w[i:i + 16], spec.sample_rate)
    return 1000 * decode / max(n, 1), 1000 * (time.perf_counter() - t) / max(n, 1)


def judge_ms(bundle: Path, threads: int, n: int = 12) -> float:
    det = Detector.load(bundle, threads=threads)
    x = np.random.default_rng(0).standard_normal((n, int(det.manifest.sample_rate * det.manifest.window_s)))
    t = time.perf_counter()
    for w in x:
        det.score(w[None].astype(np.float32))
    return 1000 * (time.perf_counter() - t) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=REPO / "hootwatch-demo" / "bundle",
                   help="the judge: a bundle with a first stage (default: the demo's)")
    p.add_argument("--hours", type=float, default=0.5, help="hours of each synthetic night")
    p.add_argument("--seed", type=int, default=4242, help="first night seed (one no model was trained on)")
    p.add_argument("--owl-shares", default="0.35,0.05,0.0",
                   help="owl share of each night's sound events (the demo's nights: 0.35)")
    p.add_argument("--hop", type=float, default=2.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--judge-bundle", type=Path, default=None,
                   help="a wav2vec2-base bundle to time per window (bench/scan_throughput.py builds one)")
    p.add_argument("--judge-ms", type=float, default=None, help="its cost per window, if already measured")
    p.add_argument("--students", action="store_true", help="also train and compare other first stages")
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the table as JSON records to this file")
    args = p.parse_args()
    console = Console(width=250) if not Console().is_terminal else Console()
    work = args.work or Path(tempfile.mkdtemp(prefix="hootwatch-limits-"))
    judge = Detector.load(args.bundle, threads=args.threads)
    m = judge.manifest
    if not m.first_stage:
        raise SystemExit(f"{args.bundle} has no first stage: export it from a run that built one")
    stage = FirstStage.load(args.bundle / m.first_stage["file"])
    pass_t = float(m.first_stage["pass_threshold"])
    spec = WindowSpec(m.sample_rate, m.window_s, args.hop)

    sets: list[Windows] = []
    shares = [float(s) for s in args.owl_shares.split(",") if s.strip()]
    for i, share in enumerate(shares):
        files, truth, root = synth_night(work / f"night_{share:g}", args.hours, args.seed + i, share)
        sets.append(collect(f"synthetic night, owl share {share:g}", files, truth, root, judge, stage, spec,
                            args.students))
    real_files = sorted(f for f in args.real.rglob("*") if audio.is_audio_file(f)) if args.real.is_dir() else []
    if real_files:
        sets.append(collect("real recordings (no powerful owl)", real_files, None, None, judge, stage, spec,
                            args.students))
    if not sets:
        raise SystemExit("nothing to measure: give --owl-shares, or real recordings with --real")
    decode_ms, stage_ms = timed_costs((real_files or files)[:40], spec)
    jm = args.judge_ms if args.judge_ms is not None else (judge_ms(args.judge_bundle, args.threads)
                                                         if args.judge_bundle else None)

    def rtf(pass_rate: float) -> str:
        if jm is None or np.isnan(pass_rate):
            return "-"
        return f"{1000 * args.hop / (decode_ms + stage_ms + pass_rate * jm):.0f}x"

    students = {"shipped (clip-distilled MLP)": lambda w: w.stage}
    if args.students:
        import students as st
        tr_files, tr_truth, tr_root = synth_night(work / "train_night", args.hours * 2, args.seed + 100, 0.35)
        train = collect("training night", tr_files, tr_truth, tr_root, judge, stage, spec, True)
        target = train.judge >= min(m.threshold, 0.5)
        for name, fit in (("MLP, night-distilled", st.fit_mlp), ("boosted trees, night-distilled", st.fit_trees),
                          ("log-mel CNN, night-distilled", st.fit_cnn)):
            t = time.perf_counter()
            students[name] = fit(train, target, args.seed)
            console.print(f"trained {name} on {len(target)} windows ({int(target.sum())} judge positives) in "
                          f"{time.perf_counter() - t:.0f} s")

    table = Table(title=f"cascade limits at hop {args.hop:g} s: judge {args.bundle} (threshold {m.threshold:g}), "
                        f"decode {decode_ms:.1f} ms + first stage {stage_ms:.1f} ms a window, wav2vec2-base "
                        + (f"{jm:.0f} ms a window" if jm else "not timed") + f", {platform.node()}")
    for col in ("audio", "first stage", "windows", "owl windows", "judge positives (floor)", "RTF at floor",
                "pass @ shipped threshold", "positives kept", "RTF", *(f"pass to keep {k:.1%}" for k in KEEPS),
                "RTF at 99.5 %"):
        table.add_column(col, justify="left" if col in ("audio", "first stage") else "right")
    records = []
    for w in sets:
        pos = w.judge >= m.threshold
        floor = float(pos.mean())
        for name, score in students.items():
            s = score(w)
            passed = s >= (pass_t if name.startswith("shipped") else 0.5)
            needed = [needed_pass_rate(s, w.judge, m.threshold, k) for k in KEEPS]
            table.add_row(w.name, name, str(len(pos)), "-" if w.owl is None else f"{w.owl.mean():.1%}",
                          f"{floor:.1%}", rtf(floor),
                          f"{passed.mean():.1%}" + ("" if name.startswith("shipped") else " (at 0.5)"),
                          f"{passed[pos].mean():.1%}" if pos.any() else "-", rtf(float(passed.mean())),
                          *(f"{x:.1%}" if not np.isnan(x) else "-" for x in needed), rtf(needed[0]))
            records.append({"audio": w.name, "first_stage": name, "windows": len(pos),
                            "owl_windows": None if w.owl is None else float(w.owl.mean()),
                            "judge_positive_rate": floor, "pass_rate": float(passed.mean()),
                            "positives_kept": float(passed[pos].mean()) if pos.any() else None,
                            **{f"pass_rate_to_keep_{k}": x for k, x in zip(KEEPS, needed)},
                            "hop_s": args.hop, "decode_ms": decode_ms, "first_stage_ms": stage_ms,
                            "judge_ms": jm})
    console.print(table)
    if args.json:
        import json
        args.json.write_text(json.dumps(records, indent=1, default=lambda x: None))


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
