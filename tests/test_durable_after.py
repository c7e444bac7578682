"""The order of a delete or archive, on any machine (the power-cut test itself needs FUSE): when the daemon
unlinks or moves a recording, its detections are committed, the ledger says where it went, and a
synchronous=FULL commit (which makes every earlier commit durable) came after the file's commit."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from hootwatch.edge.daemon.config import config_from_dict
from hootwatch.edge.daemon.service import Daemon
from hootwatch.edge.store.database import DetectionStore

from daemon_helpers import run_daemon_until
from tiny_bundles import tone_bundle, write_tone

SR = 8000
NAMES = ("20240101_100000.wav", "20240101_110000.wav")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tone_bundle(tmp_path_factory.mktemp("bundle") / "b", sample_rate=SR)


@pytest.fixture
def events(monkeypatch, tmp_path):
    """SQL of every store connection, and the unlinks/renames of recordings in the watched folder, in order;
    at each of those, what another connection then reads from the store about that recording."""
    log: list[tuple] = []
    lock = threading.Lock()
    incoming = str(tmp_path / "in")
    real_init, real_unlink, real_rename = DetectionStore.__init__, os.unlink, os.rename

    def init(self, path):
        real_init(self, path)
        self.conn.set_trace_callback(lambda sql: log.append(("sql", sql.strip())))

    def seen(path) -> tuple:
        c = sqlite3.connect(tmp_path / "out" / "detections.sqlite")
        try:
            row = c.execute("SELECT status, n_detections, moved_to FROM files WHERE path=?",
                            (os.path.realpath(path),)).fetchone()
            n = c.execute("SELECT COUNT(*) FROM detections WHERE file=?", (os.path.realpath(path),)).fetchone()[0]
            return row, n
        except sqlite3.OperationalError as exc:
            return str(exc), 0
        finally:
            c.close()

    def spy(kind, real):
        def f(p, *a, **kw):
            if os.path.dirname(os.path.realpath(p)) == os.path.realpath(incoming) and str(p).endswith(".wav"):
                with lock:
                    log.append((kind, Path(p).name, seen(p)))
            return real(p, *a, **kw)
        return f

    monkeypatch.setattr(DetectionStore, "__init__", init)
    monkeypatch.setattr(os, "unlink", spy("unlink", real_unlink))
    monkeypatch.setattr(os, "rename", spy("rename", real_rename))
    return log


@pytest.mark.parametrize("after", ["delete", "archive"])
def test_a_recording_is_deleted_or_archived_only_after_its_detections_are_durable(tmp_path, bundle, events, after):
    for name in NAMES:
        write_tone(tmp_path / "in" / name, 20, SR, tones=[(10, 13)])
    folder = {"path": str(tmp_path / "in"), "settle_s": 0.0, "poll_interval_s": 0.5, "after": after}
    if after == "archive":
        folder["archive_dir"] = str(tmp_path / "archive")
    daemon = Daemon(config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1}, "sources": {"folder": folder},
        "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"}, "health": {"watchdog": False}}))
    run_daemon_until(daemon, lambda: not list((tmp_path / "in").glob("*.wav")))
    moves = [(i, e) for i, e in enumerate(events) if e[0] in ("unlink", "rename")]
    assert sorted(e[1] for _, e in moves) == sorted(NAMES), moves
    for i, (kind, name, (row, n)) in moves:
        expected_to = "deleted" if after == "delete" else str(tmp_path / "archive" / name)
        assert row == ("done", 1, expected_to) and n == 1, (name, row, n)  # committed, and where it went
        sql = [e[1] for e in events[:i] if e[0] == "sql"]
        full = max(k for k, s in enumerate(sql) if s == "PRAGMA synchronous=FULL")
        assert any(s.startswith("UPDATE files SET moved_to") for s in sql[full:]) and "COMMIT" in sql[full:], sql[full:]
        assert "PRAGMA synchronous=NORMAL" not in sql[full:sql.index("COMMIT", full)]
    if after == "archive":
        assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == sorted(NAMES)
