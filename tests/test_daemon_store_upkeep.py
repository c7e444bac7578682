"""The daemon's upkeep of its store (issue 24, items 1-3): the check at start and what it does with a damaged
store, backups into output.backup_dir, and the WAL's size in status.json, emptied at shutdown."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

import pytest

from hootwatch.edge.daemon.config import config_from_dict
from hootwatch.edge.daemon.service import Daemon
from hootwatch.edge.store.backup import backups
from hootwatch.edge.store.database import STORE_NAME, DetectionStore

from test_store_backup import _corrupt, _tables
from tiny_bundles import tone_bundle, write_tone

SR = 8000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tone_bundle(tmp_path_factory.mktemp("bundle") / "b", sample_rate=SR)


def _config(tmp_path, bundle, **output):
    return config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1},
        "sources": {"folder": {"path": str(tmp_path / "in"), "settle_s": 0.0, "poll_interval_s": 0.5}},
        "output": {"dir": str(tmp_path / "out"), "timezone": "UTC", **output},
        "health": {"status_every_s": 0.5, "watchdog": False},
    })


def _run(daemon, until, timeout=20) -> int:
    """Run the daemon in a thread until `until()` (or it stops by itself); its exit status."""
    result = []
    t = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.1)
    daemon.stop.set()
    t.join(30)
    return result[0]


def test_a_damaged_store_at_start_is_replaced_reported_and_every_recording_scanned_again(tmp_path, bundle, caplog):
    for d in (1, 2, 3):
        write_tone(tmp_path / "in" / f"2024010{d}_220000.wav", 20, SR, tones=[(10, 13)], seed=d)
    out, usb = tmp_path / "out", tmp_path / "usb"
    usb.mkdir()
    cfg = _config(tmp_path, bundle, backup_dir=str(usb), backup_every_h=24.0, backup_keep=2)
    daemon = Daemon(cfg)
    assert _run(daemon, lambda: daemon.health.files_done >= 3) == 0
    [first] = backups(usb)  # taken at start (there was none): an empty store
    status = json.loads((out / "status.json").read_text())
    assert status["store_check"].startswith("ok") and status["last_backup"] == str(first)
    assert status["wal_bytes"] == 0 and status["wal_high_bytes"] > 0  # bounded, and emptied at shutdown
    assert not (out / f"{STORE_NAME}-wal").exists() or (out / f"{STORE_NAME}-wal").stat().st_size == 0
    before = _tables(out / STORE_NAME)
    _corrupt(out / STORE_NAME)
    daemon = Daemon(cfg)
    with caplog.at_level(logging.ERROR):
        assert _run(daemon, lambda: daemon.health.files_done >= 3) == 5  # went on, but says so
    status = json.loads((out / "status.json").read_text())
    assert status["store_check"].startswith("FAILED") and "restored the backup" in status["store_recovery"]
    assert "integrity check" in caplog.text and "detection store replaced" in caplog.text
    assert [p.name for p in out.glob("detections.damaged-*.sqlite")]  # kept aside for a person
    after = _tables(out / STORE_NAME)
    assert len(after["detections"]) == len(before["detections"]) == 3  # nothing dropped: scanned again
    assert sorted(r[1] for r in after["files"]) == sorted(r[1] for r in before["files"])
    assert (daemon.health.files_done, daemon.health.files_failed) == (3, 0)


def test_backup_settings_are_checked(tmp_path, bundle):
    from hootwatch.edge.core.errors import ConfigError

    with pytest.raises(ConfigError, match="output.backup_dir: must not be the output folder"):
        _config(tmp_path, bundle, backup_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="output.backup_keep: must be between 1"):
        _config(tmp_path, bundle, backup_dir=str(tmp_path / "usb"), backup_keep=0)
    with pytest.raises(ConfigError, match="output.backup_every_h: must be a number"):
        _config(tmp_path, bundle, backup_dir=str(tmp_path / "usb"), backup_every_h="daily")


def test_a_store_that_fails_its_daily_check_stops_the_daemon_so_that_the_next_start_replaces_it(tmp_path, bundle,
                                                                                               caplog):
    from hootwatch.edge.daemon.health import Health
    from hootwatch.edge.daemon.upkeep import Upkeep

    out = tmp_path / "out"
    with DetectionStore(out / STORE_NAME) as store, store.transaction() as cur:
        cur.executemany("INSERT INTO labels (file_key, file, start_ms, end_ms, label, created_utc) VALUES "
                        "(?, 'a.wav', 0, 1000, 'owl', 'now')", [(f"k{i}",) for i in range(50)])
    stop, health = threading.Event(), Health()
    upkeep = Upkeep(_config(tmp_path, bundle), health, stop)
    upkeep.check_now()
    assert not stop.is_set() and health.store_check.startswith("ok") and not upkeep.failed
    with sqlite3.connect(out / STORE_NAME) as c:
        c.execute("CREATE INDEX labels_time ON labels (created_utc)")
    _corrupt(out / STORE_NAME, "labels_time")
    with caplog.at_level(logging.ERROR):
        upkeep.check_now()
    assert stop.is_set() and upkeep.failed and health.store_check.startswith("FAILED")
    assert "failed its integrity check (daily)" in caplog.text and "next start" in caplog.text


def test_a_backup_that_cannot_be_written_is_an_error_in_words_and_the_earlier_ones_stay(tmp_path, bundle, caplog):
    from hootwatch.edge.daemon.health import Health
    from hootwatch.edge.daemon.upkeep import Upkeep

    (tmp_path / "usb").write_text("a file where the backup folder should be (the stick not mounted)")
    DetectionStore(tmp_path / "out" / STORE_NAME).close()
    health = Health()
    with caplog.at_level(logging.ERROR):
        Upkeep(_config(tmp_path, bundle, backup_dir=str(tmp_path / "usb")), health, threading.Event()).backup()
    assert health.last_backup.startswith("FAILED: backup into") and "Traceback" not in caplog.text
    assert "backup into" in caplog.text and "fix:" in caplog.text


def test_archived_recordings_are_scanned_again_where_they_are_after_a_damaged_store(tmp_path, bundle):
    for d in (1, 2):
        write_tone(tmp_path / "in" / f"2024010{d}_220000.wav", 20, SR, tones=[(10, 13)], seed=d)
    archive = tmp_path / "archive"

    def cfg():
        return config_from_dict({
            "model": {"bundle": str(bundle), "threads": 1},
            "sources": {"folder": {"path": str(tmp_path / "in"), "settle_s": 0.0, "poll_interval_s": 0.5,
                                   "after": "archive", "archive_dir": str(archive)}},
            "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
            "health": {"watchdog": False}})
    daemon = Daemon(cfg())
    assert _run(daemon, lambda: len(list(archive.glob("*.wav"))) == 2) == 0
    _corrupt(tmp_path / "out" / STORE_NAME)
    daemon = Daemon(cfg())  # no backup: a new store, and the archive's recordings scanned again where they are
    assert _run(daemon, lambda: daemon.health.files_done >= 2) == 5
    assert len(_tables(tmp_path / "out" / STORE_NAME)["detections"]) == 2
    assert sorted(p.name for p in archive.glob("*.wav")) == ["20240101_220000.wav", "20240102_220000.wav"]
