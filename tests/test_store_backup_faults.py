"""Faults a review found in the store's backups and recovery (issue 24, review 2): a wrong clock, an unmounted
backup disk, the order of restore and recovery, restore's read-back, a locked store, a cut-short read."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import threading

import pytest

from hootwatch.edge.core.errors import ConfigError, HootwatchError
from hootwatch.edge.store import backup as backup_mod, database
from hootwatch.edge.store.backup import backup_store, backups, restore_store
from hootwatch.edge.store.database import STORE_NAME, DetectionStore
from hootwatch.edge.store.integrity import check_store, recover

from test_store_backup import _corrupt, _tables


def _store(out, n_labels=3):
    with DetectionStore(out / STORE_NAME) as store, store.transaction() as cur:
        cur.executemany("INSERT INTO labels (file_key, file, start_ms, end_ms, label, created_utc) VALUES "
                        "(?, 'a.wav', 0, 1000, 'owl', 'now')", [(f"k{i}",) for i in range(n_labels)])
    return out / STORE_NAME


def _add_label(path, key):
    with DetectionStore(path) as store, store.transaction() as cur:
        cur.execute("INSERT INTO labels (file_key, file, start_ms, end_ms, label, created_utc) VALUES "
                    "(?, 'b.wav', 0, 1000, 'owl', 'later')", (key,))


def _upkeep(tmp_path, **output):
    from hootwatch.edge.daemon.config import config_from_dict
    from hootwatch.edge.daemon.health import Health
    from hootwatch.edge.daemon.upkeep import Upkeep

    cfg = config_from_dict({"model": {"bundle": str(tmp_path / "b")}, "sources": {"folder": {"path": str(tmp_path)}},
                            "output": {"dir": str(tmp_path / "out"), "timezone": "UTC", **output},
                            "health": {"watchdog": False}})
    health = Health()
    return Upkeep(cfg, health, threading.Event()), health


# 1. a wrong clock
def test_a_future_dated_backup_never_deletes_the_one_just_written_and_the_next_is_scheduled_from_now(tmp_path,
                                                                                                        caplog):
    src, dest = _store(tmp_path / "out"), tmp_path / "usb"
    dest.mkdir()
    future = dest / "detections-20300101T000000.000000Z.sqlite"  # written while the clock was wrong
    future.write_bytes(src.read_bytes())
    os.utime(future, (1e9, 1e9))
    b = backup_store(src, dest, keep=1)
    assert b.path.is_file() and backups(dest) == [b.path]  # the future-dated one is the older by mtime
    upkeep, health = _upkeep(tmp_path, backup_dir=str(dest), backup_keep=1, backup_every_h=24.0)
    future.write_bytes(src.read_bytes())
    upkeep.backup()
    assert health.last_backup and not health.last_backup.startswith("FAILED")
    assert os.path.isfile(health.last_backup)
    now = dt.datetime.now(dt.timezone.utc)
    assert upkeep.first_backup(now) <= now + dt.timedelta(hours=24)


def test_any_error_of_a_backup_reaches_status_json_in_words(tmp_path, monkeypatch):
    src = _store(tmp_path / "out")
    (tmp_path / "usb").mkdir()
    upkeep, health = _upkeep(tmp_path, backup_dir=str(tmp_path / "usb"))

    def boom(*a, **k):
        raise FileNotFoundError(2, "No such file or directory", str(src))
    monkeypatch.setattr("hootwatch.edge.daemon.upkeep.backup_store", boom)
    upkeep.backup()
    assert health.last_backup.startswith("FAILED") and "No such file" in health.last_backup


# 2. an unmounted backup disk
def test_a_missing_backup_folder_is_never_created_and_a_file_is_named(tmp_path):
    src = _store(tmp_path / "out")
    with pytest.raises(HootwatchError, match="not mounted"):
        backup_store(src, tmp_path / "usb" / "hootwatch")
    assert not (tmp_path / "usb").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(HootwatchError, match="is a file, give a folder"):
        backup_store(src, tmp_path / "file")


def test_a_backup_on_the_stores_own_disk_is_warned_about(tmp_path, caplog):
    src = _store(tmp_path / "out")
    (tmp_path / "usb").mkdir()
    assert backup_store(src, tmp_path / "usb").same_disk  # tmp_path: one filesystem
    upkeep, health = _upkeep(tmp_path, backup_dir=str(tmp_path / "usb"))
    with caplog.at_level(logging.WARNING):
        upkeep.backup()
    assert "same disk" in caplog.text and "same disk" in (health.last_error or "")


# 3. restore and recovery order
def test_a_restore_cut_short_leaves_the_store_in_place(tmp_path, monkeypatch):
    out, dest = tmp_path / "out", tmp_path / "usb"
    dest.mkdir()
    src = _store(out)
    b = backup_store(src, dest).path
    before = _tables(src)

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(backup_mod.fsio, "fsync_file", full)
    with pytest.raises(OSError):
        restore_store(b, out)
    assert _tables(out / STORE_NAME) == before and not list(out.glob("detections.replaced-*"))


def test_a_recovery_killed_half_way_finishes_at_the_next_start(tmp_path, monkeypatch):
    out, dest = tmp_path / "out", tmp_path / "usb"
    dest.mkdir()
    src = _store(out)
    backup_store(src, dest)
    _add_label(src, "given-after-the-backup")
    _corrupt(src, "labels_span")

    real = os.replace

    def killed(a, b):  # killed as the backup's copy is renamed into place (the damaged store already aside)
        if os.path.basename(b) == STORE_NAME and "damaged" not in os.path.basename(a):
            raise KeyboardInterrupt
        real(a, b)
    monkeypatch.setattr(backup_mod.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        recover(src, dest)
    monkeypatch.setattr(backup_mod.os, "replace", real)
    upkeep, health = _upkeep(tmp_path, backup_dir=str(dest))
    assert upkeep.check_at_start() is not None  # the store now checks ok, but the recovery was not finished
    labels = {r[1] for r in _tables(src)["labels"]}
    assert "given-after-the-backup" in labels and len(labels) == 4
    assert upkeep.check_at_start() is None  # finished: nothing pending


# 4. restore reads back what the replaced store knew, and refuses while the store is in use
def test_restore_brings_back_labels_given_since_the_backup_and_refuses_a_store_in_use(tmp_path, capsys):
    from hootwatch.edge.commands.main import main

    out, dest = tmp_path / "out", tmp_path / "usb"
    dest.mkdir()
    src = _store(out)
    backup_store(src, dest)
    _add_label(src, "given-after-the-backup")
    held = sqlite3.connect(src, timeout=0)
    held.execute("BEGIN IMMEDIATE")
    assert main(["restore", str(dest), str(out)]) == 2
    assert "stop the daemon first (systemctl stop hootwatch)" in capsys.readouterr().err
    held.rollback()
    held.close()
    with DetectionStore(src) as idle:  # a daemon between two writes holds no lock, but has the store open
        idle.conn.execute("SELECT COUNT(*) FROM labels").fetchone()
        assert main(["restore", str(dest), str(out)]) == 2
    assert "stop the daemon first" in capsys.readouterr().err
    assert main(["restore", str(dest), str(out)]) == 0
    assert "given-after-the-backup" in {r[1] for r in _tables(src)["labels"]}
    assert "read back" in capsys.readouterr().out


# 5. a locked store is not a damaged one
def test_a_locked_store_is_could_not_check_never_damaged(tmp_path, monkeypatch):
    src = _store(tmp_path / "out")
    monkeypatch.setattr(database, "CHECK_RETRY_S", (0.01, 0.01), raising=False)
    lock = sqlite3.connect(src, timeout=0)
    lock.execute("PRAGMA locking_mode=EXCLUSIVE")
    lock.execute("BEGIN EXCLUSIVE")
    try:
        check = check_store(src)
        assert check.ok and check.unchecked and "locked" in check.unchecked
        upkeep, health = _upkeep(tmp_path)
        assert upkeep.check_at_start() is None and src.is_file()
        assert health.store_check.startswith("could not check")
    finally:
        lock.close()
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 200)
    assert check_store(tmp_path / "junk.sqlite").problems  # corruption still is damage


# 6. a read cut short is named
def test_rows_cut_short_by_damage_are_flagged(tmp_path):
    from hootwatch.edge.store.integrity import _rows

    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE t (x TEXT)")
        c.executemany("INSERT INTO t VALUES (?)", [("y" * 500,) for _ in range(400)])
        size = c.execute("PRAGMA page_size").fetchone()[0]
        pages = c.execute("PRAGMA page_count").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((pages // 2) * size)
        f.write(os.urandom(size))
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows, truncated = _rows(conn, "SELECT * FROM t")
    conn.close()
    assert truncated and len(rows) < 400


# 8. a file that is no database at all
def test_restoring_a_file_that_is_no_database_says_it_is_no_backup(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF" + os.urandom(4000))
    with pytest.raises(ConfigError, match=r"this is not a hootwatch backup \(detections-\*\.sqlite\)"):
        restore_store(tmp_path / "x.wav", tmp_path / "out")
