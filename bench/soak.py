"""Benchmark: a season in the bush, compressed (issue 24, item 4). Pushes --hours of recorder audio through a
running daemon and watches what the long run does to its memory, files, threads, WAL and store.

The daemon runs as its own process (`hootwatch run` as systemd starts it, with a stand-in microphone: this script
with --serve), with the tests' tone detector (tests/tiny_bundles.py, thousands of times faster than real time),
over a watched folder (after = "delete"), a microphone stream fed from a synthetic signal at --mic-speed times
real time, the review app, exports every minute and backups every --backup-min minutes. Recordings arrive in
bursts of 3..12 files, as SD cards are copied in; each burst waits until the daemon has scanned it. Meanwhile a
thread makes review-app requests (queues, detections, windows, filters, labels posted, spectrograms).

Every --sample-s seconds it samples the daemon process: RSS, open files, threads, the WAL's and the store's size.
At the end it prints the figures at warm-up (once --warmup of the audio has gone through) and at the end, and the
growth between them; the WAL's high-water mark; the store's bytes per recorder-hour; and it compares the
detections of the folder with a one-shot scan of the same audio (each recording scanned by a Scanner of its own
before it is handed to the daemon): lost and duplicated detections must both be 0 (exit status 1 otherwise).

    python bench/soak.py --hours 72                 # the season's check, by hand (~15-30 min on a laptop)
    python bench/soak.py --hours 0.5 --file-min 5   # the short one the tests run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_bundles import tone_bundle, tone_signal  # noqa: E402

SR = 8000


# ---------------------------------------------------------------- the daemon's side (--serve)

class ToneStream:
    """Stands in for sounddevice.InputStream: a thread hands blocks of a synthetic signal (noise with a tone
    burst every minute) to the callback at `speed` times real time, for ever."""

    speed = 10.0

    def __init__(self, *, device, samplerate, channels, dtype, blocksize, callback, finished_callback) -> None:
        self.sr, self.channels, self.blocksize, self.callback = samplerate, channels, blocksize, callback
        self.signal = tone_signal(60.0, samplerate, tones=[(20.0, 24.0)], seed=7)
        self.active, self._stop = False, threading.Event()

    def start(self) -> None:
        self.active = True
        threading.Thread(target=self._run, daemon=True, name="tone-stream").start()

    def _run(self) -> None:
        t0, sent = time.monotonic(), 0
        while not self._stop.is_set():
            start = sent % len(self.signal)
            block = np.resize(self.signal[start:start + self.blocksize], self.blocksize)
            self.callback(np.repeat(block[:, None], self.channels, axis=1), self.blocksize, None, None)
            sent += self.blocksize
            delay = t0 + sent / self.sr / self.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stop(self) -> None:
        self._stop.set()
        self.active = False

    def close(self) -> None:
        self.stop()


def serve(config: str, mic_speed: float) -> int:
    """`hootwatch run --config CONFIG` with the stand-in microphone."""
    import logging

    from hootwatch.edge.daemon import signals
    from hootwatch.edge.daemon.config import load_config
    from hootwatch.edge.daemon.service import Daemon

    signals.install()
    if os.environ.get("SOAK_TRACEMALLOC"):  # where Python memory grows: top allocations against the first snapshot
        import tracemalloc

        tracemalloc.start(10)

        def trace(first=None):
            while not signals.STOP.wait(float(os.environ["SOAK_TRACEMALLOC"])):
                snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
                first = first or snap
                with open(Path(config).parent / "tracemalloc.txt", "a") as f:
                    names = sorted(t.name.rstrip("0123456789_-") for t in threading.enumerate())
                    f.write(f"--- {time.ctime()} traced {tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB; threads: "
                            f"{', '.join(f'{n} x{names.count(n)}' for n in dict.fromkeys(names))}\n")
                    for stat in snap.compare_to(first, "traceback")[:8]:
                        f.write(f"{stat}\n" + "\n".join(stat.traceback.format()[-6:]) + "\n")
        threading.Thread(target=trace, daemon=True).start()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ToneStream.speed = mic_speed
    return Daemon(load_config(config), stop=signals.STOP, stream_factory=ToneStream).run()


# ---------------------------------------------------------------- the soak

@dataclass
class Sample:
    t_s: float            # since the daemon was ready
    audio_h: float        # recorder hours handed over so far
    rss_mb: float
    open_files: int
    threads: int
    wal_bytes: int
    store_bytes: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp: Path, bundle: Path, port: int, backup_min: float) -> Path:
    cfg = tmp / "hootwatch.toml"
    cfg.write_text(f"""
[model]
bundle = "{bundle}"
threads = 1
[sources.folder]
path = "{tmp / 'in'}"
settle_s = 0.2
poll_interval_s = 0.5
after = "delete"
[sources.microphone]
sample_rate = {SR}
block_s = 0.25
[output]
dir = "{tmp / 'out'}"
timezone = "UTC"
export_every_min = 1.0
backup_dir = "{tmp / 'usb'}"
backup_every_h = {backup_min / 60}
backup_keep = 3
[health]
status_every_s = 1.0
watchdog = false
[review]
enabled = true
port = {port}
""")
    return cfg


def _status(out: Path) -> dict:
    try:
        return json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait(cond, timeout: float, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode}) during the soak")
        if time.monotonic() > end:
            raise SystemExit("the daemon did not keep up (timed out waiting)")
        time.sleep(0.1)


class Reviewer(threading.Thread):
    """Review-app requests while the soak runs: what a person at the review page asks for."""

    def __init__(self, port: int, stop: threading.Event, whole_store: bool = True) -> None:
        super().__init__(daemon=True, name="reviewer")
        self.base, self.stop, self.whole_store = f"http://127.0.0.1:{port}", stop, whole_store
        self.ok = self.failed = self.refused = self.gone = 0
        self.errors: list[str] = []
        self.csrf = ""  # the token the review page is served with (a label is taken only with it)

    def _get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return r.read()

    def _post(self, path: str, body: dict):
        if not self.csrf:
            m = re.search(r'<meta name="hootwatch-csrf" content="([^"]+)"', self._get("/").decode())
            self.csrf = m.group(1) if m else ""
        req = urllib.request.Request(self.base + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "X-Hootwatch-Csrf": self.csrf})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()

    def run(self) -> None:
        rng = random.Random(1)
        while not self.stop.wait(0.2):
            try:
                dets = json.loads(self._get("/api/queue?n=50"))
                for path in ("/api/health", "/api/runs", "/api/detections?n=50", "/api/labels") + (
                        ("/api/windows?n=50", "/api/filters") if self.whole_store else ()):
                    self._get(path)
                rows = dets.get("items") or dets.get("detections") or (dets if isinstance(dets, list) else [])
                if rows:
                    d = rng.choice(rows)
                    self._post("/api/labels", {"file_key": d["file_key"], "start_s": d["start_s"],
                                               "end_s": d["end_s"], "label": rng.choice(["owl", "not_owl"]),
                                               "reviewer": "soak"})
                self.ok += 1
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    self.failed += 1
                elif exc.code == 404:  # a detection whose recording the daemon has deleted since (after = delete)
                    self.gone += 1
                    continue
                else:  # a request the page would make, refused: the soak is not measuring what it says
                    self.refused += 1
                self.errors.append(f"{exc.code} {exc.url}")
            except (OSError, ValueError) as exc:  # the app not up yet, or gone at stop
                if not self.stop.is_set():
                    self.errors.append(str(exc))


def _sample(proc, out: Path, t0: float, audio_h: float) -> Sample:
    import psutil

    p = psutil.Process(proc.pid)
    store = out / "detections.sqlite"
    wal = Path(f"{store}-wal")
    return Sample(round(time.monotonic() - t0, 1), round(audio_h, 2), round(p.memory_info().rss / 1e6, 1),
                  p.num_fds(), p.num_threads(), wal.stat().st_size if wal.exists() else 0,
                  store.stat().st_size if store.exists() else 0)


def _detections(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return [(Path(f).name, s) for f, s in c.execute(
            "SELECT file, start_sample FROM detections WHERE file_key NOT LIKE 'live:%'")]


def soak(args) -> dict:
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import Scanner, ScanSettings
    from hootwatch.edge.store.database import DetectionStore

    tmp = Path(args.dir or tempfile.mkdtemp(prefix="hootwatch-soak-"))
    for d in ("in", "out", "usb", "stage"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    bundle = tone_bundle(tmp / "bundle", sample_rate=SR)
    port = _free_port()
    cfg = _config(tmp, bundle, port, args.backup_min)
    log = open(tmp / "daemon.log", "w")
    # the daemon's environment as the systemd unit gives it (two malloc arenas: see systemd/hootwatch.service)
    env = dict(os.environ, MALLOC_ARENA_MAX=os.environ.get("MALLOC_ARENA_MAX", "2"))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(cfg), "--mic-speed", str(args.mic_speed)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    out = tmp / "out"
    samples: list[Sample] = []
    stop = threading.Event()
    reviewer = Reviewer(port, stop, whole_store=not args.no_window_requests)
    reference = Scanner(Detector.load(bundle, threads=1), DetectionStore(tmp / "reference.sqlite"),
                        ScanSettings(tz="UTC"))
    rng = random.Random(args.seed)
    file_s, audio_s, n_files = args.file_min * 60.0, 0.0, 0
    when = dt.datetime(2026, 6, 1, 18, 0)
    try:
        _wait(lambda: _status(out).get("state") == "running", 120, proc)
        t0 = time.monotonic()
        reviewer.start()
        sampler_audio = [0.0]

        def sampler():
            while not stop.wait(args.sample_s):
                try:
                    samples.append(_sample(proc, out, t0, sampler_audio[0] / 3600))
                except Exception:  # the process ending at stop
                    return
        threading.Thread(target=sampler, daemon=True).start()
        while audio_s < args.hours * 3600:
            burst = rng.randint(3, 12)  # a card copied in
            for _ in range(burst):
                name = when.strftime("%Y%m%d_%H%M%S") + ".wav"
                when += dt.timedelta(seconds=file_s + 60)  # a minute apart: no contiguous files
                calls = sorted(rng.uniform(5, file_s - 10) for _ in range(rng.randint(0, 6)))
                x = tone_signal(file_s, SR, tones=[(a, a + rng.uniform(3, 6)) for a in calls], seed=n_files)
                import soundfile as sf
                sf.write(str(tmp / "stage" / name), x, SR)
                assert reference.scan_file(tmp / "stage" / name).status == "done"
                os.replace(tmp / "stage" / name, tmp / "in" / name)
                n_files += 1
                audio_s += file_s
            sampler_audio[0] = audio_s
            _wait(lambda: _status(out).get("files_done", 0) >= n_files and not any((tmp / "in").iterdir()),
                  600, proc)
            print(f"  {audio_s / 3600:6.1f} h of audio, {n_files} recordings scanned", file=sys.stderr)
        samples.append(_sample(proc, out, t0, audio_s / 3600))
        status = _status(out)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
        reference.store.close()
    daemon_rows, ref_rows = _detections(out / "detections.sqlite"), _detections(tmp / "reference.sqlite")
    lost = len(set(ref_rows) - set(daemon_rows))
    duplicated = len(daemon_rows) - len(set(daemon_rows)) + len(set(daemon_rows) - set(ref_rows))
    with sqlite3.connect(f"file:{out / 'detections.sqlite'}?mode=ro", uri=True) as c:
        live = c.execute("SELECT COUNT(*) FROM detections WHERE file_key LIKE 'live:%'").fetchone()[0]
        labels = c.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    warm = next((s for s in samples if s.audio_h >= args.warmup * audio_s / 3600), samples[0])
    end = samples[-1]
    return {
        "hours": audio_s / 3600, "recordings": n_files, "wall_s": end.t_s, "exit_status": rc,
        "detections": len(daemon_rows), "reference_detections": len(ref_rows), "lost": lost,
        "duplicated": duplicated, "live_detections": live, "labels_posted": labels,
        "overruns": status.get("overruns"), "review_ok": reviewer.ok, "review_5xx": reviewer.failed,
        "review_refused": reviewer.refused, "review_gone": reviewer.gone,
        "review_errors": reviewer.errors[:5], "backups": len(list((tmp / "usb").glob("detections-*.sqlite"))),
        "warmup": asdict(warm), "end": asdict(end),
        "growth_pct": {k: round(100 * (getattr(end, k) - getattr(warm, k)) / max(getattr(warm, k), 1e-9), 1)
                       for k in ("rss_mb", "open_files", "threads")},
        "wal_high_bytes": max(s.wal_bytes for s in samples), "wal_high_status": status.get("wal_high_bytes"),
        "store_bytes": (out / "detections.sqlite").stat().st_size,
        "store_bytes_per_recorder_hour": round((out / "detections.sqlite").stat().st_size / (audio_s / 3600)),
        "samples": len(samples), "dir": str(tmp), "series": [asdict(x) for x in samples],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=72.0, help="recorder hours to push through (default 72)")
    ap.add_argument("--file-min", type=float, default=10.0, help="minutes per recording (default 10)")
    ap.add_argument("--mic-speed", type=float, default=10.0, help="the microphone stream's speed-up")
    ap.add_argument("--backup-min", type=float, default=2.0, help="minutes between backups")
    ap.add_argument("--sample-s", type=float, default=2.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=0.1, help="share of the audio before the warm-up sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-window-requests", action="store_true",
                    help="leave out /api/windows and /api/filters (until the review queues streamed each file's scores "
                         "they built every window of the store per request, and their memory grew with the store)")
    ap.add_argument("--dir", default=None, help="working folder (default: a new temporary one, kept)")
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        sys.exit(serve(args.serve, args.mic_speed))
    r = soak(args)
    w, e = r["warmup"], r["end"]
    print(f"{r['hours']:.1f} recorder-hours in {r['recordings']} recordings, {e['t_s']:.0f} s wall "
          f"(timings are noisy on a shared machine)")
    print(f"{'':14}{'warm-up':>10}{'end':>10}{'growth':>9}")
    for k, label in (("rss_mb", "RSS MB"), ("open_files", "open files"), ("threads", "threads")):
        print(f"{label:14}{w[k]:>10}{e[k]:>10}{r['growth_pct'][k]:>8}%")
    print(f"WAL high-water: {r['wal_high_bytes'] / 1e6:.2f} MB sampled ({(r['wal_high_status'] or 0) / 1e6:.2f} MB "
          f"in status.json); store {r['store_bytes'] / 1e6:.2f} MB = {r['store_bytes_per_recorder_hour']} bytes per "
          f"recorder-hour")
    print(f"detections: {r['detections']} (one-shot scan: {r['reference_detections']}), lost {r['lost']}, "
          f"duplicated {r['duplicated']}; microphone: {r['live_detections']} detections, {r['overruns']} overruns; "
          f"review: {r['review_ok']} rounds, {r['review_5xx']} 5xx, {r['review_refused']} refused, "
          f"{r['review_gone']} labels of recordings deleted since, "
          f"{r['labels_posted']} labels; "
          f"{r['backups']} backups kept; daemon exit {r['exit_status']}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    sys.exit(0 if r["lost"] == r["duplicated"] == 0 and r["exit_status"] == 0 and not r["review_5xx"]
             and not r["review_refused"] else 1)


if __name__ == "__main__":
    main()
