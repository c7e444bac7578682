"""The store under failure: a failed COMMIT is rolled back (the store is not wedged), a full disk raises
DiskFullError (at open and on writes), the schema is versioned and migrated, and where a recording went is
recorded by a durable (synchronous=FULL) commit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid

import pytest

from hootwatch.edge.core.errors import DiskFullError, HootwatchError
from hootwatch.edge.store.database import SCHEMA_VERSION, DetectionStore, RunInfo

from test_store import RUN, det


class FailingCommit:
    """Stands in for the store's connection; its first COMMIT fails as SQLite reports a full disk (the
    transaction stays open, as SQLite leaves it after a failed COMMIT)."""

    def __init__(self, conn: sqlite3.Connection, error: str = "database or disk is full") -> None:
        self._conn, self._error, self.failed = conn, error, False

    def execute(self, sql, *args):
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError(self._error)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _recordings(tmp_path, n):
    out = []
    for i in range(n):
        p = tmp_path / f"r{i}.wav"
        p.write_bytes(f"recording {i}".encode())
        out.append(p)
    return out


def test_a_failed_commit_is_rolled_back_and_the_store_goes_on(tmp_path):
    a, b = _recordings(tmp_path, 2)
    with DetectionStore(tmp_path / "d.sqlite") as st:
        st.conn = FailingCommit(st.conn)
        with pytest.raises(DiskFullError) as err:
            st.commit_file(a, RUN, [det(a, 0)], audio_s=10.0)
        assert "d.sqlite" in str(err.value) and err.value.hint
        assert not st.conn.in_transaction  # rolled back, not left open
        st.commit_file(b, RUN, [det(b, 0)], audio_s=10.0)  # not wedged
        assert [r["file"] for r in st.detections()] == [str(b)]
        assert st.ledger(a, RUN.run_key) is None and st.ledger(b, RUN.run_key).status == "done"


def test_another_failed_commit_is_rolled_back_and_raised_as_it_is(tmp_path):
    a, b = _recordings(tmp_path, 2)
    with DetectionStore(tmp_path / "d.sqlite") as st:
        st.conn = FailingCommit(st.conn, "disk I/O error")
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            st.record_failure(a, RUN, "bad header")
        st.commit_file(b, RUN, [], audio_s=10.0)
        assert [r.path for r in st.ledger_rows()] == [str(b)]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only; skipped elsewhere) and a function that fills it up."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", f"hootwatch-{uuid.uuid4().hex[:8]}", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")

    def fill() -> None:
        with open(mnt / "filler", "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass

    try:
        yield mnt, fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_opening_a_store_on_a_full_disk_raises_disk_full_with_what_to_do(small_disk):
    mnt, fill = small_disk
    fill()
    with pytest.raises(DiskFullError) as err:
        DetectionStore(mnt / "out" / "detections.sqlite")
    assert str(mnt) in str(err.value) and "free" in err.value.hint


def test_writes_on_a_full_disk_raise_disk_full_and_resume_when_space_returns(small_disk, tmp_path):
    mnt, fill = small_disk
    recs = _recordings(tmp_path, 2)
    with DetectionStore(mnt / "detections.sqlite") as st:
        st.commit_file(recs[0], RUN, [det(recs[0], 0)], audio_s=10.0)
        fill()
        many = [det(recs[1], 8000 * i) for i in range(500)]
        with pytest.raises(DiskFullError):
            st.commit_file(recs[1], RUN, many, audio_s=500.0)
        with pytest.raises(DiskFullError):
            st.record_failure(recs[1], RUN, "x" * 500_000)
        os.unlink(mnt / "filler")
        assert st.count() == 1 and st.ledger(recs[1], RUN.run_key) is None  # nothing half-written
        st.commit_file(recs[1], RUN, many, audio_s=500.0)
        assert st.count() == 501


OLD_SCHEMA = """
CREATE TABLE detections (id INTEGER PRIMARY KEY, file_key TEXT NOT NULL, file TEXT NOT NULL,
    start_sample INTEGER NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL, begin_utc TEXT NOT NULL,
    end_utc TEXT NOT NULL, begin_local TEXT NOT NULL, end_local TEXT NOT NULL, label TEXT NOT NULL,
    max_score REAL NOT NULL, mean_score REAL NOT NULL, n_windows INTEGER NOT NULL, time_source TEXT NOT NULL,
    recorder_id TEXT NOT NULL DEFAULT '', model_id TEXT NOT NULL, model_sha256 TEXT NOT NULL,
    threshold REAL NOT NULL, hop_s REAL NOT NULL, min_hits INTEGER NOT NULL, run_key TEXT NOT NULL,
    created_utc TEXT NOT NULL, UNIQUE (file_key, run_key, start_sample));
CREATE INDEX detections_time ON detections (begin_utc);
CREATE TABLE files (file_key TEXT NOT NULL, run_key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER,
    mtime_ns INTEGER, status TEXT NOT NULL CHECK (status IN ('done', 'failed')), reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, processed_at TEXT NOT NULL, audio_s REAL NOT NULL DEFAULT 0,
    n_detections INTEGER NOT NULL DEFAULT 0, start_utc TEXT NOT NULL DEFAULT '',
    time_source TEXT NOT NULL DEFAULT '', recorder_id TEXT NOT NULL DEFAULT '', PRIMARY KEY (file_key, run_key));
"""


def test_a_store_of_an_older_hootwatch_is_migrated_and_keeps_its_rows(tmp_path):
    a, b = _recordings(tmp_path, 2)
    db = tmp_path / "d.sqlite"
    c = sqlite3.connect(db)  # the store as hootwatch 0.1 wrote it: no user_version
    c.executescript(OLD_SCHEMA)
    c.execute("INSERT INTO files (file_key, run_key, path, size, mtime_ns, status, processed_at) VALUES"
              " ('k', ?, ?, 12, 1, 'done', '2024-01-01')", (RUN.run_key, str(a)))
    c.commit()
    c.close()
    with DetectionStore(db) as st:
        assert st.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        [row] = st.ledger_rows()
        assert (row.path, row.status, row.moved_to) == (str(a), "done", "")
        st.commit_file(b, RUN, [det(b, 0)], audio_s=10.0)
    with DetectionStore(db) as st:  # opening it again changes nothing
        assert len(st.ledger_rows()) == 2 and st.count() == 1


def test_a_store_of_a_newer_hootwatch_is_refused_with_a_message_to_upgrade(tmp_path):
    db = tmp_path / "d.sqlite"
    DetectionStore(db).close()
    c = sqlite3.connect(db)
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    c.commit()
    c.close()
    with pytest.raises(HootwatchError) as err:
        DetectionStore(db)
    assert "newer" in str(err.value) and "upgrade" in err.value.hint


def test_where_a_recording_went_is_recorded_by_a_durable_commit(tmp_path):
    a, = _recordings(tmp_path, 1)
    with DetectionStore(tmp_path / "d.sqlite") as st:
        st.commit_file(a, RUN, [det(a, 0)], audio_s=10.0)
        sql: list[str] = []
        st.conn.set_trace_callback(sql.append)
        assert st.record_moved(a, RUN.run_key, str(tmp_path / "archive" / "r0.wav"))
        st.conn.set_trace_callback(None)
        assert st.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # back to NORMAL
        assert st.ledger(a, RUN.run_key).moved_to == str(tmp_path / "archive" / "r0.wav")
        other = RunInfo("other", "0" * 64, 0.5, 2.5, 1, "owl")
        assert not st.record_moved(a, other.run_key, "deleted")  # not recorded under that run: nothing to note
    full = sql.index("PRAGMA synchronous=FULL")
    update = next(i for i, s in enumerate(sql) if s.startswith("UPDATE files SET moved_to"))
    commit = next(i for i, s in enumerate(sql) if s == "COMMIT" and i > update)
    assert full < update < commit < sql.index("PRAGMA synchronous=NORMAL")


def test_live_detections_are_committed_durably(tmp_path):
    with DetectionStore(tmp_path / "d.sqlite") as st:
        sql: list[str] = []
        st.conn.set_trace_callback(sql.append)
        st.add_detections(RUN, [det(tmp_path / "live", 0)])
        st.conn.set_trace_callback(None)
        assert st.count() == 1
    assert sql.index("PRAGMA synchronous=FULL") < sql.index("COMMIT") < sql.index("PRAGMA synchronous=NORMAL")
