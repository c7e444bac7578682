"""Benchmark: what the night overview's acoustic indices (edge/scan/indices.py) cost, in store bytes and scan time.

Prints, for synthetic 16 kHz audio (noise, an owl-like hoot series and insects; `--minutes` of it in 10-minute
files):
  - the indices alone: seconds of CPU per recorder-hour (MinuteIndices over the audio, median of `--repeat` runs);
  - the store: the bytes of the indices' BLOBs per recorder-hour, and the growth of the SQLite file per
    recorder-hour (two scans of the same files, with and without indices, each store checkpointed and vacuumed);
  - the scan: wall and CPU seconds of `scan` with and without indices (alternating, median of `--repeat`), and
    the overhead in % of the scan without them. The scorer is `--bundle` (default: a tiny tone model whose inference
    costs almost nothing, so that % is an upper bound); with it, the same overhead against wav2vec2-base's
    measured 177 ms a window on 2 cores (docs/field-guide.md) at the bundle's 2.5 s hop, exhaustive and at the
    cascade's best case (405x real time on the real recordings, docs/benchmarks.md).

    python bench/indices_cost.py --minutes 30 --repeat 3
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SR = 16000
WAV2VEC2_S_PER_WINDOW = 0.177   # docs/field-guide.md: wav2vec2-base, 2 cores
CASCADE_BEST_X = 405.0          # docs/field-guide.md: a perfect first stage on the real recordings


def synthetic(minutes: float, seed: int) -> np.ndarray:
    n = int(minutes * 60 * SR)
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) / SR
    x = 0.003 * rng.standard_normal(n) + 0.01 * np.sin(2 * np.pi * 3500 * t)
    phase = t % 30
    x += 0.1 * ((phase < 1.2) | ((phase >= 1.6) & (phase < 2.8))) * np.sin(2 * np.pi * 450 * t)
    return x.astype(np.float32)


def store_bytes(db: Path) -> int:
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("VACUUM")
    con.close()
    return db.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="audio to scan, in 10-minute files")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bundle", type=Path, default=None, help="a 16 kHz bundle (default: a tiny tone model)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from hootwatch.edge.contract.cascade import load_detector
    from hootwatch.edge.scan.engine import ScanSettings, scan_into
    from hootwatch.edge.scan.indices import MinuteIndices
    from tiny_bundles import tone_bundle

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = args.bundle or tone_bundle(root / "bundle", sample_rate=SR)
        files = []
        left, i = args.minutes, 0
        while left > 0:
            m = min(10.0, left)
            p = root / "rec" / f"20240101_{10 + i:02d}0000.WAV"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, synthetic(m, i), SR)
            files.append(p)
            left, i = left - m, i + 1
        hours = args.minutes / 60

        alone = []
        for _ in range(args.repeat):
            t0 = time.process_time()
            for p in files:
                acc = MinuteIndices(SR)
                for block in sf.blocks(str(p), blocksize=30 * SR, dtype="float32"):
                    acc.push(block)
                acc.finish()
            alone.append(time.process_time() - t0)
        per_hour = statistics.median(alone) / hours

        det = load_detector(bundle, threads=args.threads)
        walls: dict[bool, list[float]] = {True: [], False: []}
        cpus: dict[bool, list[float]] = {True: [], False: []}
        sizes: dict[bool, int] = {}
        for r in range(args.repeat):
            for on in (False, True):
                out = root / f"out-{on}-{r}"
                t0, c0 = time.perf_counter(), time.process_time()
                summary, _ = scan_into([root / "rec"], det, out, ScanSettings(indices=on))
                walls[on].append(time.perf_counter() - t0)
                cpus[on].append(time.process_time() - c0)
                assert len(summary.done) == len(files), summary.outcomes
                sizes[on] = store_bytes(out / "detections.sqlite")
        con = sqlite3.connect(root / f"out-True-{args.repeat - 1}" / "detections.sqlite")
        blob = con.execute("SELECT SUM(LENGTH(data)), SUM(n_minutes), MAX(n_bins) FROM minute_indices").fetchone()
        con.close()
        off, on = statistics.median(walls[False]), statistics.median(walls[True])
        coff, con_ = statistics.median(cpus[False]), statistics.median(cpus[True])
        m = det.manifest
        windows_per_hour = 3600 / m.hop_s
        w2v = windows_per_hour * WAV2VEC2_S_PER_WINDOW
        cascade = 3600 / CASCADE_BEST_X

    print(f"audio: {args.minutes:g} min at {SR} Hz in {len(files)} files; {blob[1]} minutes x {blob[2]} bins x 3 "
          f"indices; repeat {args.repeat}")
    print(f"indices alone: {per_hour:.2f} s CPU per recorder-hour ({per_hour / 36:.3f} % of real time)")
    print(f"store: {blob[0] / hours / 1024:.1f} KiB of index BLOBs per recorder-hour; the SQLite file grows "
          f"{(sizes[True] - sizes[False]) / hours / 1024:.1f} KiB per recorder-hour ({sizes[False] / 1024:.0f} KiB "
          f"without indices, {sizes[True] / 1024:.0f} KiB with)")
    print(f"scan with {'the given bundle' if args.bundle else 'the tiny tone model'}: {off:.2f} s without indices, "
          f"{on:.2f} s with: +{on - off:.2f} s = {100 * (on - off) / off:.1f} % of the scan "
          f"(runs without: {', '.join(f'{w:.2f}' for w in walls[False])}; with: "
          f"{', '.join(f'{w:.2f}' for w in walls[True])}); CPU {coff:.2f} s without, {con_:.2f} s with: "
          f"+{100 * (con_ - coff) / coff:.1f} %")
    print(f"against wav2vec2-base ({WAV2VEC2_S_PER_WINDOW * 1000:.0f} ms a window, hop {m.hop_s:g} s): exhaustive "
          f"{w2v:.0f} s per hour -> +{100 * per_hour / w2v:.1f} %; a perfect cascade ({CASCADE_BEST_X:g}x real "
          f"time, {cascade:.1f} s per hour) -> +{100 * per_hour / cascade:.0f} %")


if __name__ == "__main__":
    main()
