"""Benchmark: `hootwatch scan` (int8 ONNX bundle) vs PyTorch eager transformers on the same audio and weights.

Prints the real-time factor (audio seconds per wall second) and the peak RSS of each, measured in a child
process (resource.getrusage(RUSAGE_CHILDREN)), on `--threads` threads:
  - scan at the bundle hop (2.5 s) and at non-overlapping 5 s windows;
  - PyTorch eager (what users do today: a transformers model over non-overlapping 5 s windows) and the same at
    the 2.5 s hop;
and the ratio at each hop. The model is a full-size wav2vec2-base with random weights (speed does not depend
on the weights), exported with hootwatch.export.core.export_bundle (int8).

    python bench/scan_throughput.py --minutes 10 --threads 2 --work /tmp/hootwatch-bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000

TORCH_CHILD = """
import sys, time, numpy as np, soundfile as sf, torch
from transformers import AutoModelForAudioClassification, AutoFeatureExtractor
ckpt, audio, hop_s, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
model = AutoModelForAudioClassification.from_pretrained(ckpt).eval()
fe = AutoFeatureExtractor.from_pretrained(ckpt)
t0 = time.perf_counter()
x, sr = sf.read(audio, dtype="float32")
win, hop = 5 * sr, int(hop_s * sr)
starts = list(range(0, len(x) - win + 1, hop))
with torch.inference_mode():
    for i in range(0, len(starts), 8):
        batch = [x[s:s + win] for s in starts[i:i + 8]]
        inp = fe(batch, sampling_rate=sr, return_tensors="pt")
        model(**inp).logits.softmax(-1)
print(time.perf_counter() - t0)
"""


@dataclass(frozen=True)
class Result:
    name: str
    hop_s: float
    wall_s: float
    peak_rss_mb: float


def build_bundle(work: Path, threads: int) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    from hootwatch.export.core import ExportOptions, export_bundle

    bundle = work / "bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    torch.manual_seed(0)
    ckpt = work / "ckpt"
    cfg = Wav2Vec2Config(num_labels=2, id2label={0: "not_owl", 1: "owl"}, label2id={"not_owl": 0, "owl": 1})
    Wav2Vec2ForSequenceClassification(cfg).save_pretrained(ckpt)  # wav2vec2-base sizes, random init
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(ckpt)
    rng = np.random.default_rng(0)
    for label in ("owl", "not_owl"):
        for i in range(4):
            p = work / "parity" / label / f"{i}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, (0.1 * rng.standard_normal(5 * SR)).astype(np.float32), SR)
    export_bundle(ExportOptions(source=ckpt, out=bundle, audio_dir=work / "parity", force=True, overwrite=True,
                                threads=threads, speed_repeats=0))
    return bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="audio length")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hootwatch-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        bundle = build_bundle(args.work, args.threads)
    except ImportError as exc:
        sys.exit(f"cannot build the int8 bundle yet ({exc}); needs hootwatch.export.core.export_bundle")
    audio_s = args.minutes * 60
    audio = args.work / "audio" / "20240101_220000.wav"
    audio.parent.mkdir(parents=True, exist_ok=True)
    sf.write(audio, (0.05 * np.random.default_rng(1).standard_normal(int(audio_s * SR))).astype(np.float32), SR)

    # wall time is end to end (process start, model load, decode, inference), as a user experiences it
    results = []
    for name, hop in (("scan (onnx int8)", 2.5), ("scan (onnx int8)", 5.0),
                      ("pytorch eager", 5.0), ("pytorch eager", 2.5)):
        if name.startswith("scan"):
            out = args.work / f"out_{hop}"
            cmd = [sys.executable, "-m", "hootwatch.edge.cli", "scan", str(audio.parent), "--model", str(bundle),
                   "--out", str(out), "--threads", str(args.threads), "--hop", str(hop), "--quiet"]
            subprocess.run(["rm", "-rf", str(out)], check=True)
        else:
            ckpt = args.work / "ckpt"
            cmd = [sys.executable, "-c", TORCH_CHILD, str(ckpt), str(audio), str(hop), str(args.threads)]
        # a fresh parent per measurement so each peak RSS is that child's own
        wrapper = [sys.executable, "-c",
                   "import json,resource,subprocess,sys,time;t=time.perf_counter();"
                   "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
                   "print(json.dumps([time.perf_counter()-t,"
                   "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024]))", *cmd]
        wall, rss = json.loads(subprocess.run(wrapper, check=True, capture_output=True, text=True).stdout)
        results.append(Result(name, hop, wall, rss))

    print(f"audio: {audio_s / 60:.1f} min at {SR} Hz, threads={args.threads}, model: wav2vec2-base (random init)")
    print(f"{'runner':<18} {'hop s':>5} {'wall s':>8} {'RTF (audio s/wall s)':>21} {'peak RSS MiB':>13}")
    for r in results:
        print(f"{r.name:<18} {r.hop_s:>5.1f} {r.wall_s:>8.1f} {audio_s / r.wall_s:>21.1f} {r.peak_rss_mb:>13.0f}")
    by = {(r.name.split()[0], r.hop_s): r for r in results}
    for hop in (5.0, 2.5):
        s, t = by[("scan", hop)], by[("pytorch", hop)]
        print(f"hop {hop}: scan is {t.wall_s / s.wall_s:.2f}x faster than PyTorch eager "
              f"(RSS {s.peak_rss_mb:.0f} vs {t.peak_rss_mb:.0f} MiB)")
    s, t = by[("scan", 2.5)], by[("pytorch", 5.0)]
    print(f"scan at 2.5 s hop vs what users do today (PyTorch, non-overlapping 5 s): "
          f"{t.wall_s / s.wall_s:.2f}x the speed")


if __name__ == "__main__":
    main()
