"""Faults found by fault injection on the field runtime (issue 24, item 6): clips on a small disk, entries that
cannot be scanned, and a SIGTERM in `run`'s first milliseconds."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_run_installs_its_sigterm_handler_before_its_own_imports():
    # every import after the program starts is checked: from `argparse` on (main.py's own imports, the errors
    # module, the rest of hootwatch) a SIGTERM must find the handler in place
    code = textwrap.dedent("""
        import signal, sys
        seen = {}
        class Watch:
            def find_spec(self, name, path=None, target=None):
                seen.setdefault(name, signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None))
        sys.meta_path.insert(0, Watch())
        sys.argv = ["/opt/venv/bin/hootwatch", "run", "--config", "x.toml"]
        import hootwatch.edge.commands.main
        late = [m for m in ("argparse", "logging", "hootwatch.edge.core.errors") if not seen.get(m, True)]
        print("late:", late, "installed:", signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "late: [] installed: True"
    # another program importing the module (a test runner, `python -m`) gets no handler
    code = "import signal, hootwatch.edge.commands.main; print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60).stdout.strip() == "True"


def test_entries_that_cannot_be_scanned_are_counted_as_odd_not_already_done_and_scan_exits_1(tmp_path, capsys):
    import os

    from hootwatch.edge.commands.main import main
    from tiny_bundles import tone_bundle, write_tone

    bundle = tone_bundle(tmp_path / "b")
    rec = tmp_path / "rec"
    write_tone(rec / "20240101_220000.wav", 20, 8000, tones=[(10, 13)])
    os.rename(write_tone(rec / "tmp.wav", 20, 8000, seed=2), rec / os.fsdecode(b"20240102_\xff.wav"))
    os.symlink("gone.wav", rec / "dangling.wav")
    os.symlink("loop.wav", rec / "loop.wav")
    os.symlink("/dev/zero", rec / "device.wav")
    args = ["scan", str(rec), "--model", str(bundle), "--out", str(tmp_path / "out"), "--quiet"]
    for already in (0, 1):  # the second run: the good file is already done, the odd entries are odd again
        assert main(args) == 1  # "0: every file was scanned" would be untrue
        rows = dict(line.strip("│ ").split("│")[:2] for line in capsys.readouterr().out.splitlines()
                    if line.count("│") >= 2)
        rows = {k.strip(): v.strip() for k, v in rows.items()}
        assert rows["files already done (skipped)"] == str(already)
        assert rows["odd entries skipped (not recordings)"] == "4"
        assert rows["files scanned"] == str(1 - already)


# ---------------------------------------------------------------- clips on a small disk

SR = 8000


def _daemon_config(tmp_path, bundle, clips=False, export_every_min=15.0, min_free_mb=500.0):
    from hootwatch.edge.daemon.config import config_from_dict

    return config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1},
        "sources": {"folder": {"path": str(tmp_path / "in"), "settle_s": 0.0, "poll_interval_s": 0.5}},
        "output": {"dir": str(tmp_path / "out"), "timezone": "UTC", "clips": clips,
                   "export_every_min": export_every_min},
        "health": {"status_every_s": 0.5, "watchdog": False, "min_free_mb": min_free_mb},
    })


def _bundle(tmp_path):
    from tiny_bundles import tone_bundle
    return tone_bundle(tmp_path / "bundle", sample_rate=SR)


def test_a_clip_that_cannot_be_written_never_fails_its_file_and_is_logged_in_words(tmp_path, monkeypatch, caplog):
    import logging

    import soundfile as sf

    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan import material
    from hootwatch.edge.scan.engine import Scanner, ScanSettings
    from hootwatch.edge.store.database import DetectionStore
    from tiny_bundles import write_tone

    def no_room(path, *a, **kw):  # what libsndfile raises when the disk fills under a clip
        open(path, "wb").write(b"RIFF")  # half a clip is left behind ...
        raise sf.LibsndfileError(0x20, f"Error opening {path!r}: ")
    rec = write_tone(tmp_path / "rec" / "20240101_220000.wav", 30, SR, tones=[(5, 8), (20, 23)])
    monkeypatch.setattr(material.sf, "write", no_room)
    store = DetectionStore(tmp_path / "out" / "detections.sqlite")
    scanner = Scanner(Detector.load(_bundle(tmp_path), threads=1), store, ScanSettings(clips=True), tmp_path / "out")
    with caplog.at_level(logging.WARNING):
        outcome = scanner.scan_file(rec)
    assert (outcome.status, outcome.n_detections, store.count()) == ("done", 2, 2)
    assert not any(r.exc_info for r in caplog.records)  # words, not a traceback
    [line] = [r.getMessage() for r in caplog.records if "clip" in r.getMessage()]
    assert "20240101_220000.wav" in line and "detections are saved" in line and "2 of its 2" in line
    assert not list((tmp_path / "out" / "clips").glob("*"))  # ... and removed


def test_clips_are_written_only_with_room_to_spare_checked_per_clip(tmp_path, monkeypatch):
    from hootwatch.edge.daemon.diskguard import DiskGuard
    from hootwatch.edge.daemon.service import Daemon
    from daemon_helpers import run_daemon_until
    from tiny_bundles import write_tone

    clips = tmp_path / "out" / "clips"

    def free_space_mb(self):  # a disk with 0.4 MB above the floor, which the clips written fill
        used = sum(f.stat().st_size for f in clips.glob("*")) if clips.is_dir() else 0
        return 500.4 - used / 1e6
    monkeypatch.setattr(DiskGuard, "free_space_mb", free_space_mb)
    tones = [(t, t + 3) for t in range(5, 115, 10)]  # 11 detections, ~0.1 MB of clip and picture each
    write_tone(tmp_path / "in" / "20240101_100000.wav", 120, SR, tones=tones)
    daemon = Daemon(_daemon_config(tmp_path, _bundle(tmp_path), clips=True))
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1)
    assert (daemon.health.detections, daemon.health.files_failed) == (11, 0)  # detections first, the file done
    assert 1 <= len(list(clips.glob("*.wav"))) < 11
    assert free_space_mb(None) >= 500  # never below the floor


def test_an_export_that_hits_a_full_disk_is_retried_not_lost(tmp_path, monkeypatch):
    import csv
    import errno

    from hootwatch.edge.daemon import service
    from hootwatch.edge.daemon.service import Daemon
    from hootwatch.edge.store import exports
    from daemon_helpers import run_daemon_until
    from tiny_bundles import write_tone

    monkeypatch.setattr(service, "EXPORT_RETRY_S", 0.2, raising=False)
    real = exports.write_atomic
    disk = {"full": True}

    def write_atomic(path, text):
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)
    monkeypatch.setattr(exports, "write_atomic", write_atomic)
    csv_path = tmp_path / "out" / "detections.csv"

    def rows() -> int:
        return len(list(csv.DictReader(open(csv_path)))) if csv_path.is_file() else -1

    write_tone(tmp_path / "in" / "20240101_100000.wav", 20, SR, tones=[(10, 13)])
    bundle = _bundle(tmp_path)
    daemon = Daemon(_daemon_config(tmp_path, bundle))
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1)  # the export at stop hits the full disk too
    assert rows() == -1
    disk["full"] = False
    # space is back: a running daemon brings the exports up to date by itself, without waiting for its stop
    write_tone(tmp_path / "in" / "20240101_110000.wav", 20, SR, tones=[(10, 13)])
    seen = []
    daemon = Daemon(_daemon_config(tmp_path, bundle))
    run_daemon_until(daemon, lambda: rows() == 1 and not seen.append(1), timeout=5)
    assert seen, "the export lost at the last stop was not written again while running"
    disk["full"] = True
    daemon = Daemon(_daemon_config(tmp_path, bundle))
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 2)
    disk["full"] = False
    seen.clear()
    run_daemon_until(Daemon(_daemon_config(tmp_path, bundle)), lambda: rows() == 2 and not seen.append(1),
                     timeout=5)
    assert seen


def test_the_disk_floor_is_logged_as_given(tmp_path, caplog):
    import logging

    from hootwatch.edge.daemon.diskguard import DiskGuard

    with caplog.at_level(logging.WARNING):
        DiskGuard(tmp_path, min_free_mb=0.5).check(free_mb=0.2)
    [line] = [r.getMessage() for r in caplog.records]
    assert "floor 0.5 MB" in line and "0.2 MB free" in line


# ---------------------------------------------------------------- found by the soak (bench/soak.py)

def test_recordings_the_daemon_deleted_leave_nothing_behind_in_its_planning_cache(tmp_path):
    import gc

    from hootwatch.edge.daemon.config import config_from_dict
    from hootwatch.edge.daemon.service import Daemon
    from hootwatch.edge.scan.planning import PlannedFile
    from daemon_helpers import run_daemon_until
    from tiny_bundles import write_tone

    # a season passes through the watched folder: each file scanned plans its siblings (next_contiguous), ~2 KB a
    # file, and a cache that kept the plans of files long deleted grew by ~150 MB over a season
    names = [f"202401{d:02d}_220000.wav" for d in range(1, 7)]
    for i, name in enumerate(names):
        write_tone(tmp_path / "in" / name, 5, SR, seed=i)
    cfg = config_from_dict({
        "model": {"bundle": str(_bundle(tmp_path)), "threads": 1},
        "sources": {"folder": {"path": str(tmp_path / "in"), "settle_s": 0.0, "poll_interval_s": 0.5,
                               "after": "delete"}},
        "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
        "health": {"watchdog": False}})
    daemon = Daemon(cfg)
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 6 and not list((tmp_path / "in").glob("*.wav")))
    assert not list((tmp_path / "in").glob("*.wav"))
    gc.collect()
    kept = [o for o in gc.get_objects()  # this test's files only: other tests in this process plan files of these names
            if isinstance(o, PlannedFile) and o.path.name in names and str(o.path).startswith(str(tmp_path))]
    assert kept == []


def test_a_microphone_session_holds_no_memory_per_window_it_has_scored(tmp_path):
    import datetime as dt
    import tracemalloc

    import numpy as np

    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import LiveSession, Scanner, ScanSettings
    from hootwatch.edge.store.database import DetectionStore

    # a live session runs for days (schedule "always"): 34,560 windows a day at a 2.5 s hop; a stream that kept
    # every window's start and score for a rebuild nobody makes of live audio grew ~5 MB a day
    scanner = Scanner(Detector.load(_bundle(tmp_path), threads=1), DetectionStore(tmp_path / "out" / "d.sqlite"),
                      ScanSettings())
    live = LiveSession(scanner, "mic0", dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc))
    block = np.zeros(int(2.5 * SR), np.float32)  # one hop: one window each
    tracemalloc.start()
    try:
        for _ in range(20):  # every buffer of the loop allocated (and traced) once
            live.push(block)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            live.push(block)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / 500 < 100, f"{grown / 500:.0f} bytes kept per window"  # it kept 280-400
