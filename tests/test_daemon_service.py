"""The daemon in-process with a folder source: recorder time zone, exports through write_exports, a failing
job that does not kill the scanning loop, and a clean shutdown (stores closed)."""

from __future__ import annotations

import csv
import sqlite3

import pytest

from hootwatch.edge.daemon.config import config_from_dict
from hootwatch.edge.daemon.service import Daemon

from daemon_helpers import run_daemon_until
from tiny_bundles import tone_bundle, write_tone

SR = 8000


def _config(tmp_path, bundle, **folder):
    return config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1},
        "sources": {"folder": {"path": str(tmp_path / "in"), "settle_s": 0.0, "poll_interval_s": 0.5, **folder}},
        "output": {"dir": str(tmp_path / "out"), "timezone": "UTC", "raven": True, "audacity": True},
        "health": {"status_every_s": 0.5, "watchdog": False},
    })


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tone_bundle(tmp_path_factory.mktemp("bundle") / "b", sample_rate=SR)


def test_song_meter_names_are_read_in_the_recorder_timezone_and_all_exports_written(tmp_path, bundle):
    write_tone(tmp_path / "in" / "SM4A_20240101_220000.wav", 20, SR, tones=[(10, 13)])
    daemon = Daemon(_config(tmp_path, bundle, recorder_timezone="+10:00"))
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1)
    out = tmp_path / "out"
    [row] = list(csv.DictReader(open(out / "detections.csv")))
    # 22:00 on a UTC+10 recorder is 12:00 UTC, not 22:00 UTC (output.timezone); local times in the recorder's zone
    assert (row["begin_utc"], row["begin_local"]) == ("2024-01-01T12:00:07.500+00:00", "2024-01-01T22:00:07.500+10:00")
    assert (out / "detections.selections.txt").is_file()
    assert (out / "labels" / "SM4A_20240101_220000.txt").read_text().startswith("7.500\t15.000\towl")
    for store in (daemon._ledger_store, daemon._scan_store):  # every connection closed at stop
        with pytest.raises(sqlite3.ProgrammingError):
            store.conn.execute("SELECT 1")


def test_an_unexpected_error_in_one_job_does_not_stop_the_scanning_loop(tmp_path, bundle):
    write_tone(tmp_path / "in" / "20240101_100000.wav", 20, SR, tones=[(10, 13)])
    write_tone(tmp_path / "in" / "20240101_110000.wav", 20, SR, tones=[(10, 13)])

    class Flaky(Daemon):
        def _scan_job(self, job, store, progress):
            if job.path.name.startswith("20240101_100000"):
                raise RuntimeError("disk went away")
            return super()._scan_job(job, store, progress)

    daemon = Flaky(_config(tmp_path, bundle))
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1 and daemon.health.files_failed >= 1)
    assert (daemon.health.files_done, daemon.health.files_failed) == (1, 1)
    assert "RuntimeError: disk went away" in daemon.health.last_error
    rows = list(csv.DictReader(open(tmp_path / "out" / "detections.csv")))
    assert [r["file"].rsplit("/", 1)[-1] for r in rows] == ["20240101_110000.wav"]


def test_shutdown_does_not_close_the_live_session_under_a_running_microphone_thread(tmp_path, bundle):
    cfg = config_from_dict({"model": {"bundle": str(bundle)}, "sources": {"microphone": {}},
                            "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
                            "health": {"watchdog": False}})
    daemon = Daemon(cfg)
    closed = []

    class StuckMic:
        def join(self, timeout=10.0): ...
        def is_alive(self): return True

    class Live:
        def close(self):
            closed.append(True)
            return []

    class Scheduler:
        def shutdown(self, wait=True): ...

    daemon.mic, daemon._live, daemon._export = StuckMic(), Live(), lambda: None
    daemon._shutdown(Scheduler())
    assert closed == []
    daemon.mic.is_alive = lambda: False
    daemon._shutdown(Scheduler())
    assert closed == [True]


def test_odd_folder_entries_are_reported_once_and_skipped_while_the_rest_is_scanned(tmp_path, bundle, caplog):
    import json
    import logging
    import os
    incoming = tmp_path / "in"
    write_tone(incoming / "20240101_100000.wav", 20, SR, tones=[(10, 13)])
    with open(os.fsencode(incoming) + b"/owl\xff\xfe.wav", "wb") as f:  # a FAT card's latin-1 name
        f.write((incoming / "20240101_100000.wav").read_bytes())
    (incoming / "loop.wav").symlink_to(incoming / "loop.wav")
    (incoming / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (incoming / "null.wav").symlink_to("/dev/null")
    os.mkfifo(incoming / "pipe.wav")
    write_tone(incoming / "late" / "20240101_110000.wav", 20, SR, tones=[(10, 13)])
    daemon = Daemon(_config(tmp_path, bundle, retry_after_s=1.0))  # walks every second: reported once anyway
    with caplog.at_level(logging.WARNING):
        run_daemon_until(daemon, lambda: daemon.health.files_done >= 2, timeout=20)
        skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert daemon.health.files_done == 2 and daemon.health.files_failed == 0
    for name in ("owl\\xff\\xfe.wav", "loop.wav", "gone.wav", "null.wav", "pipe.wav"):
        assert sum(name in m for m in skipped) == 1, (name, skipped)
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["state"] == "stopped" and status["detections"] == 2


def test_a_dead_worker_thread_marks_the_status_failed_stops_the_watchdog_and_exits_non_zero(tmp_path, bundle):
    import json

    from hootwatch.edge.daemon.notify import Notifier
    (tmp_path / "in").mkdir()

    class Recording(Notifier):
        def __init__(self):
            super().__init__(address="@test", watchdog_usec="400000", watchdog_pid="")
            self.sent = []

        def send(self, *fields):
            self.sent.extend(fields)
            return True

    cfg = _config(tmp_path, bundle)
    cfg = type(cfg)(**{**cfg.__dict__, "health": type(cfg.health)(**{**cfg.health.__dict__, "watchdog": True})})
    notifier = Recording()
    daemon = Daemon(cfg, notifier=notifier)
    import hootwatch.edge.daemon.watcher as watcher_mod

    def broken_walk(self):
        raise RuntimeError("an unforeseen bug")
    original = watcher_mod.FolderWatcher.walk
    watcher_mod.FolderWatcher.walk = broken_walk
    import threading
    result = []
    t = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    try:
        t.start()
        t.join(20)  # returns by itself: nobody sets the stop event
    finally:
        watcher_mod.FolderWatcher.walk = original
        daemon.stop.set()
        t.join(30)
    assert result == [1]
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["state"] == "failed" and "folder watcher" in status["last_error"]
    assert "RuntimeError: an unforeseen bug" in status["last_error"]
    n = notifier.sent.count("WATCHDOG=1")
    assert not daemon.beats.beat("folder") and notifier.sent.count("WATCHDOG=1") == n  # fed no more


def test_a_dead_microphone_thread_is_seen_too(tmp_path, bundle, monkeypatch):
    import json
    import threading

    from hootwatch.edge.daemon import microphone
    cfg = config_from_dict({"model": {"bundle": str(bundle)}, "sources": {"microphone": {}},
                            "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
                            "health": {"watchdog": False, "status_every_s": 0.5}})

    def broken(self):
        raise OSError("device vanished mid-read")
    monkeypatch.setattr(microphone.Microphone, "run", broken)
    daemon = Daemon(cfg, stream_factory=lambda **kw: None)
    result = []
    t = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    t.start()
    t.join(20)
    daemon.stop.set()
    t.join(30)
    assert result == [1]
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["state"] == "failed" and "microphone thread died (OSError" in status["last_error"]


def test_status_fields_mean_what_they_say_and_survive_a_restart(tmp_path, bundle):
    import json
    write_tone(tmp_path / "in" / "20240101_100000.wav", 20, SR, tones=[(10, 13)])
    (tmp_path / "in" / "bad.wav").write_bytes(b"RIFF nonsense")
    daemon = Daemon(_config(tmp_path, bundle))
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1 and daemon.health.files_failed >= 1)
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["last_detection_utc"] == "2024-01-01T10:00:07.500+00:00"  # the call's time, not the scan's
    assert status["last_audio_utc"] == "2024-01-01T10:00:20.000+00:00"  # the recording's end
    assert (status["files_done"], status["files_failed"], status["detections"]) == (1, 1, 1)
    again = Daemon(_config(tmp_path, bundle))  # nothing new to scan: the counters come from the store
    run_daemon_until(again, lambda: again.health.state == "running")
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert (status["files_done"], status["files_failed"], status["detections"]) == (1, 1, 1)
    assert status["last_detection_utc"] == "2024-01-01T10:00:07.500+00:00"
    assert status["last_audio_utc"] == "2024-01-01T10:00:20.000+00:00"
