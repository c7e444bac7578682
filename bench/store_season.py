"""Benchmark: a season-sized store (issue 24, item 6). Fills a store with --hours recorder-hours of scanned
recordings through the store's own `commit_file` (a ledger row, every window's score and a few detections per
recording, as a scan writes them; scores random, so they compress as little as real ones), then times what the
daemon does with it: `PRAGMA quick_check` (at start and daily), a backup (edge/store/backup.py: online backup
API, checked, fsynced, renamed) and a passive WAL checkpoint, and prints the store's bytes per recorder-hour.
Then the review app's window queues on it (issue 24's scale fix): the time and peak Python memory (tracemalloc)
of /api/filters' lists, near misses, the random sample and the uncertain queue; `--before` also runs the
implementation that built one object per stored window (slow and large: use it on a few hundred hours).

    python bench/store_season.py --hours 10000 --dir /tmp/season     # ~10,000 h: a season of several recorders
    python bench/store_season.py --hours 300 --before                 # the queues before and after, side by side
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from hootwatch.edge.review.queues import Filters, Queues, _logit, _run_threshold
from hootwatch.edge.store.backup import backup_store
from hootwatch.edge.store.database import STORE_NAME, Detection, DetectionStore, RunInfo, iso
from hootwatch.edge.store.integrity import check_store
from hootwatch.edge.store.window_scores import WindowScores

SR = 16000
RUN = RunInfo("season-bench", "0" * 64, 0.5, 2.5, 2, "owl")


def fill(store: DetectionStore, hours: float, file_h: float, dets_per_h: float, window_s: float, seed: int) -> int:
    """Commit `hours` of recordings of `file_h` hours each; the number of detections written."""
    rng = np.random.default_rng(seed)
    n_files = int(round(hours / file_h))
    n_windows = int(file_h * 3600 / RUN.hop_s)
    starts = (np.arange(n_windows) * RUN.hop_s * SR).astype(np.int64)
    t0 = datetime(2026, 6, 1, 18, tzinfo=timezone.utc)
    written = 0
    for i in range(n_files):
        start = t0 + timedelta(hours=i * file_h)
        path = f"/recorders/R{i % 20:02d}/{start:%Y%m%d_%H%M%S}.wav"  # never opened: keyed on its path
        scores = rng.beta(0.3, 6.0, n_windows).astype(np.float32)
        dets = []
        for k in sorted(rng.choice(n_windows - 2, rng.poisson(dets_per_h * file_h), replace=False)):
            s = float(starts[k]) / SR
            b, e = start + timedelta(seconds=s), start + timedelta(seconds=s + 2 * window_s)
            dets.append(Detection(f"path:{path}", path, int(starts[k]), round(s, 3), round(s + 2 * window_s, 3),
                                  iso(b), iso(e), iso(b), iso(e), "owl", 0.9, 0.8, 2, "filename", f"R{i % 20:02d}"))
        store.commit_file(path, RUN, dets, audio_s=file_h * 3600, start_utc=iso(start), time_source="filename",
                          window_scores=WindowScores(starts, scores, SR, int(window_s * SR), RUN.model_id,
                                                     clamp_end=int(file_h * 3600 * SR)))
        written += len(dets)
    return written


def queue_figures(store: DetectionStore, before: bool) -> dict:
    """name -> (seconds, peak MB) of each window queue request (a fresh Queues each, as the app makes): timed
    without tracemalloc (it slows Python's allocations), then run again under it for the peak."""
    calls = {"filters": lambda q: q.filter_choices(), "near": lambda q: q.near_misses(),
             "random": lambda q: q.random(200, 1), "uncertain": lambda q: q.uncertain(200)}
    if before:
        calls |= {f"{k} (before)": v for k, v in BEFORE.items()}
    out = {}
    for name, call in calls.items():
        t = time.perf_counter()
        call(Queues(store, RUN.run_key))
        seconds = time.perf_counter() - t
        tracemalloc.start()
        call(Queues(store, RUN.run_key))
        out[name] = (round(seconds, 2), round(tracemalloc.get_traced_memory()[1] / 1e6, 1))
        tracemalloc.stop()
    return out


def _near_before(q: Queues) -> list:
    spans = q.store.detection_spans(q.run_key)
    free = [w for w in q.windows() if w.score is not None
            and not any(a < w.end_s and w.start_s < b for a, b in spans.get(w.file_key, ()))]
    return sorted(free, key=lambda w: -w.score)[:500]


def _uncertain_before(q: Queues) -> list:
    t = _logit(_run_threshold(q.run_key))
    return sorted((w for w in q.windows() if w.score is not None), key=lambda w: abs(_logit(w.score) - t))[:200]


def _random_before(q: Queues) -> list:
    pool = [w for w in q.windows() if Filters().keep(w)]
    return [pool[i] for i in np.random.default_rng(1).choice(len(pool), size=min(200, len(pool)), replace=False)]


# the queues as they were before issue 24's fix: one Item per stored window of the run on every request
BEFORE = {"filters": lambda q: (lambda items: ({w.recorder for w in items}, {w.night for w in items}))(q.windows()),
          "near": _near_before, "random": _random_before, "uncertain": _uncertain_before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=10000.0, help="recorder-hours in the store (default 10,000)")
    ap.add_argument("--file-h", type=float, default=1.0, help="hours per recording (default 1)")
    ap.add_argument("--dets-per-hour", type=float, default=2.0)
    ap.add_argument("--window-s", type=float, default=5.0)
    ap.add_argument("--dir", default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--before", action="store_true", help="also time the queues' one-object-per-window implementation")
    args = ap.parse_args()
    tmp = Path(args.dir or tempfile.mkdtemp(prefix="hootwatch-season-"))
    shutil.rmtree(tmp / "out", ignore_errors=True)
    shutil.rmtree(tmp / "usb", ignore_errors=True)
    t = time.perf_counter()
    with DetectionStore(tmp / "out" / STORE_NAME) as store:
        dets = fill(store, args.hours, args.file_h, args.dets_per_hour, args.window_s, args.seed)
        fill_s = time.perf_counter() - t
        t = time.perf_counter()
        store.checkpoint("PASSIVE")
        checkpoint_s = time.perf_counter() - t
        queues = queue_figures(store, args.before)
    size = (tmp / "out" / STORE_NAME).stat().st_size
    check = check_store(tmp / "out" / STORE_NAME)
    (tmp / "usb").mkdir(exist_ok=True)  # backup_store never makes DEST
    backup = backup_store(tmp / "out" / STORE_NAME, tmp / "usb", keep=2)
    r = {"recorder_hours": args.hours, "detections": dets, "store_mb": round(size / 1e6, 1),
         "bytes_per_recorder_hour": round(size / args.hours), "fill_s": round(fill_s, 1),
         "quick_check_s": round(check.seconds, 2), "quick_check_ok": check.ok, "backup_s": round(backup.seconds, 2),
         "backup_mb": round(backup.bytes / 1e6, 1), "checkpoint_s": round(checkpoint_s, 3), "queues": queues}
    print(f"{args.hours:,.0f} recorder-hours, {dets:,} detections: store {r['store_mb']} MB "
          f"({r['bytes_per_recorder_hour']:,} bytes per recorder-hour; filled in {r['fill_s']} s)")
    print(f"quick_check {r['quick_check_s']} s ({'ok' if check.ok else 'FAILED'}); backup {r['backup_s']} s "
          f"({r['backup_mb']} MB, checked and fsynced); passive checkpoint {r['checkpoint_s']} s "
          "(timings are noisy on a shared machine)")
    print("review queues (seconds, peak MB of Python memory): " + "; ".join(
        f"{name} {sec} s {mb} MB" for name, (sec, mb) in queues.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    if not args.dir:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
