"""Benchmark: `hootwatch scan --cluster local:N` against the local scan, same audio, same total threads.

Prints, for a local scan on T threads, a LocalCluster of 1 worker x T threads and of 2 workers x T/2 threads:
the cluster start (workers up, model loaded on each), the scan's wall time (planning to last commit) and its
real-time factor (audio seconds per wall second), the ratio to the local scan, and whether the three stores hold
identical rows. Then a cost model on paper from the measured per-core throughput: core-hours, and nodes or wall
hours, for 10,000 h (fifty recorders for a season) and 263,000 h of audio (a national archive). Only the first
part is measured; the cost model is a linear extrapolation (no I/O or scheduler limit is modelled).

The model is a full-size wav2vec2-base with random weights, exported int8 (bench/scan_throughput.py builds it;
needs hootwatch[export]), or any bundle given with --bundle.

    python bench/cluster_throughput.py --minutes 8 --threads 2 --work /tmp/hootwatch-cluster-bench
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
ARCHIVES_H = (("fifty recorders, one season", 10_000), ("a national archive", 263_000))


def store_rows(path: Path):
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    skip = ("id", "created_utc", "processed_at")
    try:
        return {t: sorted(tuple((k, r[k]) for k in r.keys() if k not in skip) for r in con.execute(f"SELECT * FROM {t}"))
                for t in ("detections", "files")}
    finally:
        con.close()


def write_audio(folder: Path, minutes: float, files: int) -> float:
    """`files` contiguous AudioMoth-named files of noise with a few tones, `minutes` in all; returns seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    each = minutes * 60 / files
    for i in range(files):
        n = int(each * SR)
        x = 0.05 * rng.standard_normal(n).astype(np.float32)
        t = np.arange(n) / SR
        x += (0.3 * np.sin(2 * np.pi * 450 * t) * ((t % 40) < 3)).astype(np.float32)
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(1704146400 + i * each))
        sf.write(folder / f"{stamp}.WAV", x, SR)
    return minutes * 60


def run_local(bundle: Path, audio: Path, out: Path, threads: int) -> tuple[float, float]:
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import ScanSettings, scan_into

    t0 = time.perf_counter()
    detector = Detector.load(bundle, threads=threads)
    start = time.perf_counter() - t0
    summary, _ = scan_into([audio], detector, out, ScanSettings())
    return start, summary.wall_s


def run_cluster(bundle: Path, audio: Path, out: Path, workers: int, threads: int) -> tuple[float, float]:
    from hootwatch.edge.cluster import ClusterSettings, scan_on_cluster
    from hootwatch.edge.scan.engine import ScanSettings

    t0 = time.perf_counter()
    ready = []
    summary, _, _ = scan_on_cluster([audio], bundle, out, ScanSettings(),
                                    ClusterSettings(f"local:{workers}", threads=threads, dashboard_address=":0"),
                                    on_connect=lambda conn: ready.append(time.perf_counter() - t0))
    return ready[0], summary.wall_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="audio length in all")
    ap.add_argument("--files", type=int, default=8, help="files it is cut into (contiguous)")
    ap.add_argument("--threads", type=int, default=2, help="total model threads, the same for every runner")
    ap.add_argument("--bundle", type=Path, default=None, help="a bundle to use (default: build wav2vec2-base int8)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hootwatch-cluster-bench"))
    ap.add_argument("--node-cores", type=int, default=32, help="cores per node in the cost model")
    ap.add_argument("--per-core-rtf", type=float, default=None,
                    help="also print the cost model for this per-core throughput (audio s per s per core, e.g. "
                         "from a run on a quiet machine)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.bundle is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from scan_throughput import build_bundle
        bundle = build_bundle(args.work, args.threads)
    else:
        bundle = args.bundle
    audio = args.work / "audio"
    shutil.rmtree(audio, ignore_errors=True)
    audio_s = write_audio(audio, args.minutes, args.files)

    T = args.threads
    runners = [("local scan", 1, T, lambda out: run_local(bundle, audio, out, T))]
    runners += [(f"cluster local:{w}", w, T // w, lambda out, w=w: run_cluster(bundle, audio, out, w, T // w))
                for w in (1, 2) if T // w >= 1]
    load0 = os.getloadavg()
    rows, results = {}, []
    for name, workers, threads, fn in runners:
        out = args.work / f"out_{name.replace(' ', '_').replace(':', '')}"
        shutil.rmtree(out, ignore_errors=True)
        start_s, wall_s = fn(out)
        rows[name] = store_rows(out / "detections.sqlite")
        results.append((name, workers, threads, start_s, wall_s))
    load1 = os.getloadavg()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
          f"{load0[0]:.1f} before, {load1[0]:.1f} after (other work shares these cores: compare ratios)")
    print(f"audio: {audio_s / 60:.1f} min at {SR} Hz in {args.files} contiguous files; model: {bundle}")
    print(f"{'runner':<18} {'workers x threads':>17} {'start s':>8} {'scan wall s':>12} {'RTF':>7} {'vs local':>9}")
    local_wall = results[0][4]
    for name, w, t, start_s, wall_s in results:
        print(f"{name:<18} {f'{w} x {t}':>17} {start_s:>8.1f} {wall_s:>12.1f} {audio_s / wall_s:>7.1f} "
              f"{local_wall / wall_s:>8.2f}x")
    same = all(r == rows["local scan"] for r in rows.values())
    print(f"rows identical to the local scan's: {'yes' if same else 'NO'} "
          f"({len(rows['local scan']['detections'])} detections, {len(rows['local scan']['files'])} files)")

    best = min(results[1:], key=lambda r: r[4]) if len(results) > 1 else results[0]
    cost_model(audio_s / best[4] / T, f"measured here with {best[0]}", args.node_cores)
    if args.per_core_rtf:
        cost_model(args.per_core_rtf, "given with --per-core-rtf", args.node_cores)


def cost_model(per_core: float, source: str, node_cores: int) -> None:
    print(f"\ncost model (extrapolated, linear in cores; {per_core:.1f} s of audio per second per core, {source}; "
          "start-up, I/O and scheduler limits not modelled)")
    print(f"{'archive':<30} {'audio h':>9} {'core-hours':>11} {f'{node_cores}-core nodes for 24 h':>24} "
          f"{'wall h on 10 nodes':>19} {'wall h on 100 nodes':>20}")
    for label, hours in ARCHIVES_H:
        core_h = hours / per_core
        nodes_day = int(np.ceil(core_h / 24 / node_cores))
        print(f"{label:<30} {hours:>9,} {core_h:>11,.0f} {nodes_day:>24,} {core_h / (10 * node_cores):>19,.1f} "
              f"{core_h / (100 * node_cores):>20,.1f}")

if __name__ == "__main__":
    main()
