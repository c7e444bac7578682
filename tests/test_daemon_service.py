"""The daemon in-process with a folder source: recorder time zone, exports through write_exports, a failing
job that does not kill the scanning loop, and a clean shutdown (stores closed)."""

from __future__ import annotations

import csv
import sqlite3

import pytest

from hootwatch.edge.daemon.config import config_from_dict
from hootwatch.edge.daemon.intake import Intake
from hootwatch.edge.daemon.service import Daemon

from daemon_helpers import kept, run_daemon_until
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
    intake = kept(Intake)
    daemon = Daemon(_config(tmp_path, bundle, recorder_timezone="+10:00"), intake=intake)
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1)
    out = tmp_path / "out"
    [row] = list(csv.DictReader(open(out / "detections.csv")))
    # 22:00 on a UTC+10 recorder is 12:00 UTC, not 22:00 UTC (output.timezone); local times in the recorder's zone
    assert (row["begin_utc"], row["begin_local"]) == ("2024-01-01T12:00:07.500+00:00", "2024-01-01T22:00:07.500+10:00")
    assert (out / "raven" / "SM4A_20240101_220000.Table.1.selections.txt").is_file()
    assert (out / "labels" / "SM4A_20240101_220000.txt").read_text().startswith("7.500\t15.000\towl")
    [made] = intake.made
    for store in (made.ledger_store, made.scan_store):  # every connection closed at stop
        with pytest.raises(sqlite3.ProgrammingError):
            store.conn.execute("SELECT 1")


def test_an_unexpected_error_in_one_job_does_not_stop_the_scanning_loop(tmp_path, bundle):
    write_tone(tmp_path / "in" / "20240101_100000.wav", 20, SR, tones=[(10, 13)])
    write_tone(tmp_path / "in" / "20240101_110000.wav", 20, SR, tones=[(10, 13)])

    class Flaky(Intake):
        def scan(self, job, progress):
            if job.path.name.startswith("20240101_100000"):
                raise RuntimeError("disk went away")
            return super().scan(job, progress)

    daemon = Daemon(_config(tmp_path, bundle), intake=Flaky)
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1 and daemon.health.files_failed >= 1)
    assert (daemon.health.files_done, daemon.health.files_failed) == (1, 1)
    assert "RuntimeError: disk went away" in daemon.health.last_error
    rows = list(csv.DictReader(open(tmp_path / "out" / "detections.csv")))
    assert [r["file"].rsplit("/", 1)[-1] for r in rows] == ["20240101_110000.wav"]


def test_shutdown_does_not_close_the_live_session_under_a_running_microphone_thread(tmp_path, bundle):
    from hootwatch.edge.daemon.live import LiveSource
    cfg = config_from_dict({"model": {"bundle": str(bundle)}, "sources": {"microphone": {}},
                            "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
                            "health": {"watchdog": False}})
    closed = []

    class Session:
        def close(self):
            closed.append(True)
            return []

    class Mic:
        """Stands in for the microphone thread: it stops when joined, or (`stuck`) never does."""
        def __init__(self, stuck):
            self.stuck, self.alive = stuck, True

        def start(self): ...

        def join(self, timeout=10.0):
            self.alive = self.stuck

        def is_alive(self):
            return self.alive

    def live(stuck):
        class Live(LiveSource):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.mic, self.session = Mic(stuck), Session()
        return Live

    for stuck, expected in ((True, []), (False, [True])):
        daemon = Daemon(cfg, stream_factory=lambda **kw: None, live=live(stuck))
        run_daemon_until(daemon, lambda: daemon.health.state == "running")
        assert closed == expected


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
    from hootwatch.edge.daemon import microphone
    cfg = config_from_dict({"model": {"bundle": str(bundle)}, "sources": {"microphone": {}},
                            "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
                            "health": {"watchdog": False, "status_every_s": 0.5}})

    def broken(self):
        raise OSError("device vanished mid-read")
    monkeypatch.setattr(microphone.Microphone, "run", broken)
    status = _status_after_a_thread_died(Daemon(cfg, stream_factory=lambda **kw: None), tmp_path / "out")
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


def test_a_full_disk_pauses_intake_with_one_message_and_resumes_losing_and_counting_nothing(tmp_path, bundle,
                                                                                            monkeypatch, caplog):
    import logging
    import sqlite3

    from hootwatch.edge.daemon import diskpause
    from hootwatch.edge.core.errors import DiskFullError
    from hootwatch.edge.scan.engine import Scanner
    for i in range(3):
        write_tone(tmp_path / "in" / f"2024010{i + 1}_100000.wav", 20, SR, tones=[(10, 13)])
    monkeypatch.setattr(diskpause, "DISK_FULL_POLL_S", 0.05)
    monkeypatch.setattr(diskpause, "DISK_FULL_RETRY_S", 0.3)
    real_scan = Scanner.scan_file
    full = {"left": 6}  # the disk is full for the next six tries, of whichever file, then space is freed

    def scan_file(self, path, *a, **kw):
        if full["left"] > 0:
            full["left"] -= 1
            raise (DiskFullError("database or disk is full") if full["left"] % 2
                   else sqlite3.OperationalError("database or disk is full"))
        return real_scan(self, path, *a, **kw)
    monkeypatch.setattr(Scanner, "scan_file", scan_file)
    daemon = Daemon(_config(tmp_path, bundle, max_attempts=1))  # one disk error counted would give a file up
    with caplog.at_level(logging.WARNING):
        run_daemon_until(daemon, lambda: daemon.health.files_done >= 3, timeout=30)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("disk full" in m and "intake paused" in m for m in messages) == 1, messages
    assert sum("disk space back" in m and "resumed" in m for m in messages) == 1, messages
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    assert (daemon.health.files_done, daemon.health.files_failed, daemon.health.detections) == (3, 0, 3)
    assert daemon.health.disk_full is False
    with sqlite3.connect(tmp_path / "out" / "detections.sqlite") as c:
        assert c.execute("SELECT status, attempts FROM files").fetchall() == [("done", 1)] * 3
        assert c.execute("SELECT COUNT(*) FROM detections").fetchone()[0] == 3


def test_clips_check_the_free_space_before_each_file_not_only_on_the_timer(tmp_path, bundle, monkeypatch):
    from hootwatch.edge.daemon.diskguard import DiskGuard
    write_tone(tmp_path / "in" / "20240101_100000.wav", 20, SR, tones=[(10, 13)])
    measured = []

    def free_space_mb(self):  # start-up's check sees plenty; then the disk fills (another process, clips...)
        measured.append(1)
        return 10_000.0 if len(measured) == 1 else 100.0
    monkeypatch.setattr(DiskGuard, "free_space_mb", free_space_mb)
    cfg = _config(tmp_path, bundle)
    cfg = type(cfg)(**{**cfg.__dict__, "output": type(cfg.output)(**{**cfg.output.__dict__, "clips": True})})
    daemon = Daemon(cfg)
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1)
    assert daemon.health.detections == 1
    assert not list((tmp_path / "out").glob("clips/*.wav"))  # below the 500 MB floor: the detection, no clip


def test_microphone_detections_are_held_while_the_disk_is_full_and_written_when_space_returns():
    import sqlite3

    from hootwatch.edge.daemon.live import HoldWhenFull

    class Store:
        full, rows = True, []

        def add_detections(self, run, dets):
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            self.rows += dets
            return len(dets)
    store, events = Store(), []
    held = HoldWhenFull(store, lambda exc: events.append("full"), lambda: events.append("written"))
    assert held.add_detections("run", ["d1"]) == 0 and held.add_detections("run", ["d2"]) == 0
    store.full = False
    assert held.add_detections("run", ["d3"]) == 3
    assert store.rows == ["d1", "d2", "d3"] and held.held == [] and events == ["full", "full", "written"]


def test_a_full_disk_at_start_is_exit_4_with_a_message_not_a_traceback(tmp_path, bundle, monkeypatch, capsys):
    import signal
    import sqlite3

    from hootwatch.edge.store import database as store
    from hootwatch.edge.commands.main import main
    (tmp_path / "in").mkdir()
    cfg = tmp_path / "h.toml"
    cfg.write_text(f'[model]\nbundle = "{bundle}"\n[sources.folder]\npath = "{tmp_path / "in"}"\n'
                   f'[output]\ndir = "{tmp_path / "out"}"\ntimezone = "UTC"\n')

    def full(self, path):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(store.DetectionStore, "__init__", full)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert main(["run", "--config", str(cfg)]) == 4  # not 2: systemd restarts it until there is space
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    err = capsys.readouterr().err
    assert "is full" in err and "free some space" in err and "Traceback" not in err


def test_a_dead_scanning_loop_is_seen_too(tmp_path, bundle, monkeypatch):
    (tmp_path / "in").mkdir()

    def broken(self):
        raise MemoryError("the Pi ran out of memory")
    monkeypatch.setattr(Intake, "run", broken)
    status = _status_after_a_thread_died(Daemon(_config(tmp_path, bundle)), tmp_path / "out")
    assert status["state"] == "failed" and "scan loop thread died (MemoryError" in status["last_error"]


def _status_after_a_thread_died(daemon, out) -> dict:
    """Run the daemon (one of its threads is made to die): it must exit 1 by itself; its last status file."""
    import json
    import threading
    result = []
    t = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    t.start()
    t.join(20)
    daemon.stop.set()
    t.join(30)
    assert result == [1]
    return json.loads((out / "status.json").read_text())
