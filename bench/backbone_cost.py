"""What a cheaper backbone saves: wav2vec2-base with 12, 8, 6 and 4 transformer layers, at 16 kHz and 8 kHz.

Prints side by side in one run, for each variant: ms per 5 s window at batch 1 (the edge's scorer, loaded the way
`hootwatch scan` loads it, scoring and embedding each window as a scan does; best of --repeats; wall time and the
process's CPU time), the peak RSS of
a process that loads the bundle and scores windows, the time that process took to load the bundle, and the
bundle's size. Each measurement is a fresh child process (resource.getrusage(RUSAGE_CHILDREN) in a wrapper, so
each peak is that child's own); the rounds go over every variant in turn, so a burst of load elsewhere on a
shared machine hits them all alike.

The models are wav2vec2-base (transformers' Wav2Vec2Config() defaults) with random weights: speed, memory and
size do not depend on the weights. A random 12-layer checkpoint stands in for the pretrained backbone; each
variant is made from it the way `hootwatch train --layers K --sample-rate R` makes its model
(hootwatch.trainer.model.build_backbone), stamped with the trainer's default band limit, and exported through
hootwatch.export.core.export_bundle (int8, with the embedding output, as a run is). Nothing here measures
accuracy: whether fewer layers or 8 kHz still find owls needs a trained model on real recordings.

    python bench/backbone_cost.py [--threads 2] [--repeats 3] [--windows 4] [--json OUT]

Bundles are kept in --work and reused by the next run (--rebuild makes them again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FULL_LAYERS = 12          # wav2vec2-base
WINDOW_S = 5.0
LABELS = {"not_owl": 0, "owl": 1}

CHILD = """
import json, sys, time
import numpy as np
from hootwatch.edge.contract.cascade import load_detector
bundle, threads, windows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
det = load_detector(bundle, threads=threads, batch_size=1)   # as `hootwatch scan` does (warmed up at load)
load_s = time.perf_counter() - t
n = det.manifest.window_spec.window_samples
x = (0.1 * np.random.default_rng(0).standard_normal((windows, n))).astype(np.float32)
t, c = time.perf_counter(), time.process_time()
for w in x:   # batch 1, a score and an embedding per window, as the scan's ScoreStream asks for them
    det.score_and_embed(w[None]) if getattr(det, "embeds", False) else det.score(w[None])
print(json.dumps({"ms": 1000 * (time.perf_counter() - t) / windows,
                  "cpu_ms": 1000 * (time.process_time() - c) / windows, "load_s": load_s}))
"""

# a fresh parent per measurement so each peak RSS is that child's own
WRAPPER = ("import json,resource,subprocess,sys;"
           "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
           "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024,"
           "r.returncode,r.stdout[-4000:],r.stderr[-3000:]]))")


@dataclass
class Record:
    sample_rate: int
    layers: int
    ms_per_window: float      # wall time, best of the rounds, batch 1
    cpu_ms_per_window: float  # CPU time of the process (all its threads) while scoring, best of the rounds
    peak_rss_mib: float       # largest of the rounds (they agree within a few MiB)
    load_s: float             # bundle load + warm-up, best of the rounds
    bundle_mb: float          # every file in the bundle (the int8 model is nearly all of it)
    model_mb: float
    export_s: float | None    # None: reused from an earlier run
    rounds: list              # every round's (ms, cpu ms, peak RSS MiB, load s)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="rounds over every variant; the best is reported")
    p.add_argument("--windows", type=int, default=4, help="5 s windows scored per measurement")
    p.add_argument("--layers", default="12,8,6,4", help="transformer layer counts (default 12,8,6,4)")
    p.add_argument("--rates", default="16000,8000", help="sample rates in Hz (default 16000,8000)")
    p.add_argument("--work", type=Path, default=Path("/tmp/hootwatch-backbone-cost"))
    p.add_argument("--rebuild", action="store_true", help="export every bundle again")
    p.add_argument("--json", type=Path, default=None, help="also write the table as JSON records to this file")
    return p.parse_args()


def base_checkpoint(work: Path) -> Path:
    """A random-init wav2vec2-base with no head, saved like a downloaded pretrained backbone."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    base = work / "wav2vec2-base-random"
    if not (base / "config.json").is_file():
        torch.manual_seed(0)
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(base)
        Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(base)
    return base


def parity_clips(folder: Path, rate: int) -> list:
    """Two noise clips of each label at `rate`: the run's validation clips, which the export's parity runs on."""
    import soundfile as sf

    from hootwatch.edge.contract.clips import ClipRef

    rng = np.random.default_rng(0)
    clips = []
    for label in LABELS:
        for i in range(2):
            p = folder / label / f"{i}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, (0.1 * rng.standard_normal(int(WINDOW_S * rate))).astype(np.float32), rate)
            clips.append(ClipRef(str(p), 0.0, WINDOW_S, label, f"{label}{i}"))
    return clips


def build_bundle(base: Path, work: Path, rate: int, layers: int, threads: int, rebuild: bool) -> tuple[Path, float | None]:
    """The model `train --layers K --sample-rate R` starts from, saved as a run folder and exported to int8."""
    import torch

    from hootwatch.edge.contract.clips import write_clip_csv
    from hootwatch.edge.contract.preprocess import FEATURE_EXTRACTOR_KEY, Normalisation
    from hootwatch.export.core import ExportOptions, export_bundle
    from hootwatch.trainer.args import TrainArgs
    from hootwatch.trainer.model import build_backbone
    from hootwatch.trainer.run_folder import META_FILE, MODEL_DIR, RunMeta

    name = f"{rate // 1000}k_{layers}l"
    bundle = work / f"bundle_{name}"
    if (bundle / "manifest.json").is_file() and not rebuild:
        return bundle, None
    t = time.perf_counter()
    torch.manual_seed(0)
    bb = build_backbone(str(base), False, LABELS, rate, layers=None if layers == FULL_LAYERS else layers)
    defaults = TrainArgs()
    norm = Normalisation.from_feature_extractor(True, defaults.highpass_hz, defaults.lowpass_hz)
    setattr(bb.feature_extractor, FEATURE_EXTRACTOR_KEY, norm.to_dict())   # as the trainer stamps its checkpoints
    run = work / f"run_{name}"
    shutil.rmtree(run, ignore_errors=True)
    bb.model.save_pretrained(run / MODEL_DIR)
    bb.feature_extractor.save_pretrained(run / MODEL_DIR)
    RunMeta(positive_label="owl", sample_rate=bb.sample_rate, window_s=WINDOW_S, hop_s=defaults.window_s / 2,
            threshold=0.5, normalisation=norm, backbone=bb.name, labels=tuple(LABELS)).write(run / MODEL_DIR / META_FILE)
    (run / "splits").mkdir()
    write_clip_csv(run / "splits" / "validation.csv", parity_clips(work / f"parity_{rate}", rate))
    # random weights score every clip alike, so parity means nothing here: force, as bench/scan_throughput.py does
    export_bundle(ExportOptions(source=run, out=bundle, force=True, overwrite=True, threads=threads, speed_repeats=0))
    shutil.rmtree(run)
    return bundle, time.perf_counter() - t


def measure(bundle: Path, threads: int, windows: int) -> tuple[float, float, float, float]:
    """(ms per window, CPU ms per window, peak RSS MiB, load s) of one child process."""
    cmd = [sys.executable, "-c", CHILD, str(bundle), str(threads), str(windows)]
    rss, rc, out, err = json.loads(subprocess.run([sys.executable, "-c", WRAPPER, *cmd], check=True,
                                                  capture_output=True, text=True).stdout)
    if rc != 0:
        sys.exit(f"measurement of {bundle} failed ({rc}):\n{out}\n{err}")
    r = json.loads(out.strip().splitlines()[-1])
    return r["ms"], r["cpu_ms"], rss, r["load_s"]


def main() -> None:
    args = parse()
    import logging
    logging.getLogger("hootwatch").setLevel(logging.ERROR)   # the 8 kHz note and the forced parity, 8 times over
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()                          # "newly initialized: classifier..." 8 times over
    from hootwatch.edge.contract.bundle import load_bundle

    layer_counts = [int(x) for x in args.layers.split(",")]
    rates = [int(x) for x in args.rates.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base = base_checkpoint(args.work)
    variants = {}
    for rate in rates:
        for k in layer_counts:
            bundle, export_s = build_bundle(base, args.work, rate, k, args.threads, args.rebuild)
            m = load_bundle(bundle).manifest
            assert m.sample_rate == rate and m.embedding.get("layers") == k, (bundle, m.sample_rate, m.embedding)
            variants[(rate, k)] = (bundle, export_s)
            print(f"bundle {bundle.name}: {m.backbone}, {rate} Hz"
                  + (f", exported in {export_s:.0f} s" if export_s else " (reused)"), flush=True)
    t_export = time.perf_counter() - t0

    load_before = os.getloadavg()
    runs: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v, (bundle, _) in variants.items():
            runs[v].append(measure(bundle, args.threads, args.windows))
    load_after = os.getloadavg()

    records = []
    for (rate, k), (bundle, export_s) in variants.items():
        rounds = runs[(rate, k)]
        ms, cpu_ms, rss, load_s = (min(r[0] for r in rounds), min(r[1] for r in rounds), max(r[2] for r in rounds),
                                   min(r[3] for r in rounds))
        files = [p for p in bundle.iterdir() if p.is_file()]
        records.append(Record(rate, k, round(ms, 1), round(cpu_ms, 1), round(rss, 1), round(load_s, 2),
                              round(sum(p.stat().st_size for p in files) / 1e6, 1),
                              round((bundle / load_bundle(bundle).manifest.model_file).stat().st_size / 1e6, 1),
                              None if export_s is None else round(export_s, 1),
                              [[round(x, 2) for x in r] for r in rounds]))

    ref = next((r for r in records if r.layers == FULL_LAYERS and r.sample_rate == 16000), records[0])
    print(f"\nwav2vec2-base (random init, int8 bundle with embedding output), batch 1, {args.threads} threads, "
          f"best of {args.repeats} rounds x {args.windows} windows")
    print(f"{'rate Hz':>7} {'layers':>6} {'ms/5 s window':>13} {'vs 12@16k':>9} {'CPU ms/window':>13} "
          f"{'vs 12@16k':>9} {'peak RSS MiB':>12} {'load s':>6} {'bundle MB':>9}")
    for r in records:
        print(f"{r.sample_rate:>7} {r.layers:>6} {r.ms_per_window:>13.0f} {r.ms_per_window / ref.ms_per_window:>8.2f}x "
              f"{r.cpu_ms_per_window:>13.0f} {r.cpu_ms_per_window / ref.cpu_ms_per_window:>8.2f}x "
              f"{r.peak_rss_mib:>12.0f} {r.load_s:>6.1f} {r.bundle_mb:>9.1f}")
    print("ms: wall time per window (what a scan waits); CPU ms: the process's CPU time per window over its threads "
          "(less sensitive to other load on the machine, though ONNX Runtime's threads also spin while waiting)")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; load average (1, 5, 15 min) before the "
          f"measurements {', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)}; "
          f"bundles {t_export:.0f} s, whole run {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"records": [asdict(r) for r in records], "threads": args.threads,
                                         "repeats": args.repeats, "windows": args.windows,
                                         "loadavg_before": load_before, "loadavg_after": load_after,
                                         "machine": platform.platform()}, indent=2) + "\n")
        print(f"records: {args.json}")


if __name__ == "__main__":
    main()
