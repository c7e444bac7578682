"""Benchmark: what power-cut safety costs (issue 16), side by side in one run, on the disk given by --dir.

1. Store commits per second: `commit_file` alone (synchronous=NORMAL: safe against a crash, not a power cut)
   and `commit_file` + `record_moved` (the synchronous=FULL commit the daemon makes before it deletes or
   archives a recording).
2. The daemon's folder throughput (recordings per second, audio seconds per wall second) over a backlog of
   recordings, after = "delete" and "archive", with the durable `Intake.after` (record_moved, fsio.remove /
   fsio.durable_move) and with the `after` of before issue 16 (plain unlink / shutil.move, no fsync), plus
   after = "keep" (no move at all). The model is the tests' tone detector (tests/tiny_bundles.py), ~2000x
   real time, so the per-file cost of durability weighs far more here than under a real wav2vec2 bundle. The
   backlog is on the disk before the run (os.sync), as recordings that arrived earlier are; the time spent in
   delete/archive itself (`Intake.after`) is printed too, a figure the machine's load disturbs less.

    python bench/durability.py --dir /tmp/hootwatch-durability --files 60 --repeat 3
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hootwatch.edge.daemon.config import config_from_dict  # noqa: E402
from hootwatch.edge.daemon.intake import Intake  # noqa: E402
from hootwatch.edge.daemon.service import Daemon  # noqa: E402
from hootwatch.edge.store.database import DELETED, Detection, DetectionStore, RunInfo, file_key  # noqa: E402
from daemon_helpers import kept  # noqa: E402
from tiny_bundles import tone_bundle, write_tone  # noqa: E402

SR = 8000
RUN = RunInfo("bench", "0" * 64, 0.5, 2.5, 1, "owl")


def commits_per_s(work: Path, n: int, durable: bool) -> float:
    folder = work / ("commits_full" if durable else "commits_normal")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    recs = []
    for i in range(n):
        p = folder / f"r{i:05d}.wav"
        p.write_bytes(f"recording {i}".encode())
        recs.append(p)
    with DetectionStore(folder / "detections.sqlite") as st:
        t0 = time.perf_counter()
        for p in recs:
            k = file_key(p)
            dets = [Detection(k, str(p), s, s / SR, s / SR + 5, "2024-01-01T00:00:00.000+00:00",
                              "2024-01-01T00:00:05.000+00:00", "2024-01-01T10:00:00.000+10:00",
                              "2024-01-01T10:00:05.000+10:00", "owl", 0.9, 0.8, 1, "bench") for s in (0, 80000)]
            st.commit_file(p, RUN, dets, audio_s=60.0)
            if durable:
                st.record_moved(p, RUN.run_key, DELETED)
        return n / (time.perf_counter() - t0)


class Timed(Intake):
    """The daemon's intake, timing what its `after` (delete/archive, and the durable commit before it) costs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.after_s = 0.0

    def after(self, path: Path) -> None:
        t0 = time.perf_counter()
        try:
            super().after(path)
        finally:
            self.after_s += time.perf_counter() - t0


class LegacyAfter(Timed):
    """The daemon with the `after` of before issue 16, as the baseline."""

    def after(self, path: Path) -> None:
        t0 = time.perf_counter()
        try:
            self._legacy_after(path)
        finally:
            self.after_s += time.perf_counter() - t0

    def _legacy_after(self, path: Path) -> None:
        fcfg = self.fcfg
        try:
            if fcfg.after == "delete":
                path.unlink()
            elif fcfg.after == "archive":
                try:
                    rel = path.relative_to(fcfg.path)
                except ValueError:
                    rel = Path(path.name)
                dest = Path(fcfg.archive_dir) / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(dest))
        except OSError as exc:
            logging.warning("%s: cannot %s it: %s", path, fcfg.after, exc)


def daemon_run(work: Path, bundle: Path, recordings: list[Path], after: str, cls: type) -> tuple[float, float, float]:
    """(recordings per second, audio seconds per wall second) from ready to the last recording done, and the
    milliseconds per recording spent in `Intake.after`."""
    run = work / "daemon"
    shutil.rmtree(run, ignore_errors=True)
    incoming = run / "in"
    incoming.mkdir(parents=True)
    for p in recordings:
        shutil.copy(p, incoming / p.name)
    os.sync()  # the backlog is of recordings already on the disk, as recordings that arrived earlier are
    folder = {"path": str(incoming), "settle_s": 0.0, "poll_interval_s": 0.5, "after": after,
              "queue_size": len(recordings) + 1}
    if after == "archive":
        folder["archive_dir"] = str(run / "archive")
    intake = kept(cls)
    daemon = Daemon(config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1}, "sources": {"folder": folder},
        "output": {"dir": str(run / "out"), "timezone": "UTC"},
        "health": {"watchdog": False, "status_every_s": 60}}), intake=intake)
    t = threading.Thread(target=daemon.run, daemon=True)
    t.start()
    while daemon.health.state != "running":
        time.sleep(0.001)
    t0 = time.perf_counter()

    def finished() -> bool:
        return daemon.health.files_done >= len(recordings) and (after == "keep" or not any(incoming.iterdir()))

    while not finished():
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    daemon.stop.set()
    t.join(60)
    audio_s = sum(60.0 for _ in recordings)
    [made] = intake.made
    return len(recordings) / wall, audio_s / wall, 1000 * made.after_s / len(recordings)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None, help="work folder on the disk to measure (default: a temp dir)")
    ap.add_argument("--files", type=int, default=60, help="recordings in the daemon's backlog (60 s each)")
    ap.add_argument("--commits", type=int, default=300, help="files committed in the store benchmark")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each daemon setting (median reported)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = args.dir or Path(tempfile.mkdtemp(prefix="hootwatch-durability-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"disk: {work}")

    normal = [commits_per_s(work, args.commits, durable=False) for _ in range(args.repeat)]
    full = [commits_per_s(work, args.commits, durable=True) for _ in range(args.repeat)]
    n, f = statistics.median(normal), statistics.median(full)
    print(f"store, {args.commits} files x 2 detections (median of {args.repeat}):")
    print(f"  commit_file (synchronous=NORMAL)                  {n:8.0f} files/s  {1000 / n:6.2f} ms/file")
    print(f"  commit_file + record_moved (synchronous=FULL)     {f:8.0f} files/s  {1000 / f:6.2f} ms/file"
          f"  (+{1000 / f - 1000 / n:.2f} ms/file)")

    bundle = tone_bundle(work / "bundle", sample_rate=SR)
    src = work / "recordings"
    src.mkdir(exist_ok=True)
    recordings = [write_tone(src / f"S4A00001_202506{1 + i // 24:02d}_{i % 24:02d}0000.wav", 60, SR,
                             tones=[(10, 14)], seed=i) for i in range(args.files)]
    print(f"daemon, backlog of {args.files} x 60 s recordings (tone model; {args.repeat} interleaved runs each):")
    settings = [("keep", Timed, "keep (no move)"),
                ("delete", LegacyAfter, "delete, before issue 16 (no fsync)"),
                ("delete", Timed, "delete, durable"),
                ("archive", LegacyAfter, "archive, before issue 16 (no fsync)"),
                ("archive", Timed, "archive, durable")]
    results = {label: [] for *_, label in settings}
    for _ in range(args.repeat):
        for after, cls, label in settings:
            results[label].append(daemon_run(work, bundle, recordings, after, cls))
    base = {}
    print(f"  {'':38s} {'best of ' + str(args.repeat):>22s}   {'median':>16s}   (time in delete/archive: median)")
    for after, cls, label in settings:
        best = max(r[0] for r in results[label])
        median = statistics.median(r[0] for r in results[label])
        rtf = max(r[1] for r in results[label])
        after_ms = statistics.median(r[2] for r in results[label])
        wall_ms = 1000 / median
        base.setdefault(after, (best, median))
        rel = ""
        if cls is Timed and after != "keep":
            rel = (f"  {100 * (best / base[after][0] - 1):+5.1f} % (best), "
                   f"{100 * (median / base[after][1] - 1):+5.1f} % (median) vs before")
        print(f"  {label:38s} {best:7.1f} recordings/s ({rtf:5.0f}x rt) {median:7.1f} recordings/s"
              f"  after {after_ms:5.2f} ms/recording ({100 * after_ms / wall_ms:4.1f} % of the time){rel}")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
