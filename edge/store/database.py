"""Detections and the file ledger in one SQLite database (WAL mode), safe against crashes and re-runs.

Tables
  detections  one row per detection: file, offset in the file (start_s/end_s and the integer start_sample),
              begin/end in UTC and in local time (ISO 8601 with offset), label, max/mean score, number of
              windows, time_source, recorder_id, and on EVERY row the model id, model sha256, threshold, hop and
              min_hits that produced it.
              UNIQUE(file_key, run_key, start_sample): INSERT OR IGNORE makes re-processing idempotent.
  files       the ledger: one row per (file_key, run_key): path (where it was last scanned from, resolved),
              size, mtime_ns, status done|failed, reason, attempts, processed_at, audio_s, n_detections,
              start_utc, time_source, recorder_id, moved_to (where the daemon archived it, or "deleted").
  window_scores  every window's score of each (file, run), see window_scores.py.
  labels      the labels people give to audio spans, see labels.py.
  minute_indices  acoustic indices per minute and frequency bin of each (file, run), see indices.py.

`file_key` is the recording's content identity (file name, size, sha256 of its first and last MiB), not its
path: the same card scanned from another mount point, or a copied folder, adds no detections.

`run_key` names the settings that determine the detections (model id, threshold, hop, min_hits): scanning
the same files with the same settings again adds nothing; a new model or threshold is a new run.

Crash safety: `commit_file` writes a file's detections AND its ledger row in ONE transaction, so after
`kill -9` a file is either fully recorded or not at all, and a restart redoes exactly the unfinished files.
A file rewritten in place (its size or mtime changed at the path it was recorded from) is processed again (its
old rows are replaced in the same transaction). Failed files are recorded with the reason and retried on the next run
(`attempts` counts them; the daemon may give up after a few).

Every table of the store (these two, `window_scores`, `labels`, `minute_indices`) is created and upgraded here, by
SCHEMA and MIGRATIONS: PRAGMA user_version holds the schema version; opening an older store migrates it (in one
transaction), opening a store of a newer hootwatch is refused with a message to upgrade.

Durability: commits run with synchronous=NORMAL (a crash loses nothing; a power cut may roll back the last
commits). Before a recording is deleted or archived, `record_moved` notes where it went in a synchronous=FULL
commit, which makes that note and every commit before it (the file's detections) durable first.

Live detections (`add_detections`) are committed the same way at once: live audio cannot be scanned again.

A full disk raises DiskFullError (at open and on any write), and a failed COMMIT is rolled back so the
connection is never left inside a transaction.

Usage (the daemon does the same):
    store = DetectionStore(out_dir / "detections.sqlite")
    if store.needs_processing(path, run.run_key): ... store.commit_file(path, run, detections, ...)
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from hootwatch.edge.core import fsio
from hootwatch.edge.core.content_key import content_key
from hootwatch.edge.core.errors import ConfigError, DiskFullError, HootwatchError, is_disk_full
from .indices import MinuteIndexRows
from .embeddings import TABLE as WINDOW_EMBEDDINGS_TABLE, WindowEmbeddings
from .window_scores import WindowScores, read_window_scores

# version 1: the tables below as first released (stores of then have user_version 0)
SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    id INTEGER PRIMARY KEY,
    file_key TEXT NOT NULL,
    file TEXT NOT NULL,
    start_sample INTEGER NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    begin_utc TEXT NOT NULL,
    end_utc TEXT NOT NULL,
    begin_local TEXT NOT NULL,
    end_local TEXT NOT NULL,
    label TEXT NOT NULL,
    max_score REAL NOT NULL,
    mean_score REAL NOT NULL,
    n_windows INTEGER NOT NULL,
    time_source TEXT NOT NULL,
    recorder_id TEXT NOT NULL DEFAULT '',
    model_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    threshold REAL NOT NULL,
    hop_s REAL NOT NULL,
    min_hits INTEGER NOT NULL,
    run_key TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    UNIQUE (file_key, run_key, start_sample)
);
CREATE INDEX IF NOT EXISTS detections_time ON detections (begin_utc);
CREATE TABLE IF NOT EXISTS files (
    file_key TEXT NOT NULL,
    run_key TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    processed_at TEXT NOT NULL,
    audio_s REAL NOT NULL DEFAULT 0,
    n_detections INTEGER NOT NULL DEFAULT 0,
    start_utc TEXT NOT NULL DEFAULT '',
    time_source TEXT NOT NULL DEFAULT '',
    recorder_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (file_key, run_key)
);
"""

# every window's score of every scanned file (hootwatch.edge.store.window_scores)
WINDOW_SCORES_TABLE = """
CREATE TABLE IF NOT EXISTS window_scores (
    file_key TEXT NOT NULL,
    run_key TEXT NOT NULL,
    model_id TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    window_samples INTEGER NOT NULL,
    n_windows INTEGER NOT NULL,
    starts BLOB NOT NULL,
    scores BLOB NOT NULL,
    local_tz TEXT NOT NULL DEFAULT '',
    clamp_end INTEGER NOT NULL DEFAULT 0,
    run TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (file_key, run_key)
)"""

# the labels people give to audio spans, rows only ever added (hootwatch.edge.store.labels)
LABELS_TABLE = """
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    file_key TEXT NOT NULL,
    file TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    label TEXT NOT NULL,
    reviewer TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'review',
    created_utc TEXT NOT NULL,
    replaces INTEGER
)"""
LABELS_INDEX = "CREATE INDEX IF NOT EXISTS labels_span ON labels (file_key, start_ms, end_ms)"

# acoustic indices per minute and frequency bin of each scanned file, for the night overview (store/indices.py)
MINUTE_INDICES_TABLE = """
CREATE TABLE minute_indices (
    file_key TEXT NOT NULL,
    run_key TEXT NOT NULL,
    names TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    bin_hz REAL NOT NULL,
    n_minutes INTEGER NOT NULL,
    n_bins INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (file_key, run_key)
)"""

# version -> the statements that bring a store of the version before up to it
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE files ADD COLUMN moved_to TEXT NOT NULL DEFAULT ''",),
    # the tables hootwatch created on first use until then: IF NOT EXISTS, a store of version 1 or 2 may hold them
    3: (WINDOW_SCORES_TABLE, LABELS_TABLE, LABELS_INDEX),
    4: (MINUTE_INDICES_TABLE,),
    5: (WINDOW_EMBEDDINGS_TABLE,),   # every window's embedding (embeddings.py)
}
SCHEMA_VERSION = max(MIGRATIONS)
DELETED = "deleted"  # moved_to of a recording the daemon deleted


class StoreVersionError(HootwatchError):
    """A store written by a newer hootwatch, whose schema this version does not know."""


DETECTION_COLUMNS = ("file_key", "file", "start_sample", "start_s", "end_s", "begin_utc", "end_utc", "begin_local",
                     "end_local", "label", "max_score", "mean_score", "n_windows", "time_source", "recorder_id")
RUN_COLUMNS = ("model_id", "model_sha256", "threshold", "hop_s", "min_hits", "run_key")

STORE_NAME = "detections.sqlite"  # the store inside an output folder
CHECK_RETRY_S = (0.2, 0.5, 1.0)  # waits before quick_check tries a store it could not read again (a lock passes)


def iso(t: datetime) -> str:
    """ISO 8601 with milliseconds and offset; UTC times end in +00:00."""
    return t.isoformat(timespec="milliseconds")


def utc_now() -> str:
    return iso(datetime.now(timezone.utc))


def file_key(path: str | os.PathLike) -> str:
    """The ledger key of a file: its content identity, `name|size|sha256 of its first and last MiB`.

    Not its path: the same card scanned from another mount point (or a copy of a folder) is the same
    recording and must not double its detections. A file that cannot be read is keyed on its resolved path."""
    p = Path(path).resolve()
    size, mtime_ns = _stat(p)
    if size is None:
        return f"path:{p}"
    return _content_key(str(p), size, mtime_ns)


@functools.lru_cache(maxsize=65536)  # (path, size, mtime) -> key: a folder walk re-reads nothing unchanged
def _content_key(path: str, size: int, mtime_ns: int) -> str:
    try:
        return f"{Path(path).name}|{content_key(path, size)}"
    except OSError:
        return f"path:{path}"


@dataclass(frozen=True)
class RunInfo:
    """The settings every detection row carries; `run_key` identifies them."""
    model_id: str
    model_sha256: str
    threshold: float
    hop_s: float
    min_hits: int
    label: str
    # a bundle with a cascade scanned with every window scored (--exhaustive): its own run, so that a check into
    # the same store is not "already scanned" (False for single-stage bundles: their keys are unchanged)
    exhaustive: bool = False

    @property
    def run_key(self) -> str:
        key = f"{self.model_id}|t={self.threshold:.6g}|hop={self.hop_s:.6g}|k={self.min_hits}"
        return key + "|exhaustive" if self.exhaustive else key


@dataclass(frozen=True)
class Detection:
    """One detection, ready for the store and the exports (times are ISO strings)."""
    file_key: str
    file: str
    start_sample: int
    start_s: float
    end_s: float
    begin_utc: str
    end_utc: str
    begin_local: str
    end_local: str
    label: str
    max_score: float
    mean_score: float
    n_windows: int
    time_source: str
    recorder_id: str = ""


@dataclass(frozen=True)
class LedgerRow:
    file_key: str
    run_key: str
    path: str
    size: int | None
    mtime_ns: int | None
    status: str
    reason: str
    attempts: int
    processed_at: str
    audio_s: float
    n_detections: int
    start_utc: str
    time_source: str
    recorder_id: str
    moved_to: str = ""  # '' (still at path), the archive path, or DELETED


def _stat(path: str | os.PathLike) -> tuple[int | None, int | None]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return None, None


class DetectionStore:
    """SQLite store; one connection per instance (open one per thread/process)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.conn = None
        try:
            fsio.makedirs(self.path.parent)  # durably: SQLite fsyncs the store's folder, not the ones above it
            self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=30000")
            self._migrate()
        except BaseException as exc:
            if self.conn is not None:
                self.conn.close()
            if is_disk_full(exc) and not isinstance(exc, DiskFullError):
                raise _disk_full(self.path, "cannot be opened") from exc
            raise

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION (one transaction; another process may be doing the same)."""
        if self._version() == SCHEMA_VERSION:
            return
        with self.transaction() as cur:
            version = self._version()
            if version > SCHEMA_VERSION:
                raise StoreVersionError(
                    f"{self.path}: written by a newer hootwatch (store schema {version}; this hootwatch knows up "
                    f"to {SCHEMA_VERSION})",
                    "upgrade hootwatch (pip install -U hootwatch) on this machine, or use another output folder")
            if version == 0:  # new, or of the first release: CREATE ... IF NOT EXISTS makes both version 1
                for statement in filter(str.strip, SCHEMA.split(";")):
                    cur.execute(statement)
                version = 1
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[v]:
                    cur.execute(statement)
            cur.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "DetectionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ledger
    def ledger(self, path: str | os.PathLike, run_key: str) -> LedgerRow | None:
        """The ledger row of this recording: the row last recorded at this path with the same size and mtime
        (no hashing), else the row of the same content wherever it was scanned from."""
        where, (size, mtime_ns) = str(Path(path).resolve()), _stat(path)
        row = self.conn.execute("SELECT * FROM files WHERE run_key=? AND path=? AND size=? AND mtime_ns=?",
                                (run_key, where, size, mtime_ns)).fetchone()
        if row is None:
            row = self.conn.execute("SELECT * FROM files WHERE file_key=? AND run_key=?",
                                    (file_key(path), run_key)).fetchone()
        return LedgerRow(**dict(row)) if row else None

    def _changed(self, row: LedgerRow, path: str | os.PathLike) -> bool:
        """Rewritten in place since it was recorded (a copy elsewhere has another mtime: that is no change)."""
        return row.path == str(Path(path).resolve()) and (row.size, row.mtime_ns) != _stat(path)

    def needs_processing(self, path: str | os.PathLike, run_key: str) -> bool:
        """True unless this recording (same content, from any path) is recorded as done and was not rewritten."""
        row = self.ledger(path, run_key)
        if row is None or row.status != "done":
            return True
        return self._changed(row, path)

    def due(self, path: str | os.PathLike, run_key: str, max_attempts: int) -> bool:
        """Whether to scan it now: new, rewritten since it was recorded, or failed fewer than max_attempts times."""
        row = self.ledger(path, run_key)
        if row is None or self._changed(row, path):
            return True
        return row.status == "failed" and row.attempts < max_attempts

    def ledger_rows(self, run_key: str | None = None, status: str | None = None) -> list[LedgerRow]:
        sql, args = "SELECT * FROM files WHERE 1=1", []
        if run_key is not None:
            sql, args = sql + " AND run_key=?", args + [run_key]
        if status is not None:
            sql, args = sql + " AND status=?", args + [status]
        return [LedgerRow(**dict(r)) for r in self.conn.execute(sql + " ORDER BY path", args)]

    # writing
    def commit_file(self, path: str | os.PathLike, run: RunInfo, detections: Iterable[Detection], *,
                    audio_s: float, start_utc: str = "", time_source: str = "", recorder_id: str = "",
                    reason: str = "", window_scores: WindowScores | None = None,
                    indices: MinuteIndexRows | None = None, embeddings: WindowEmbeddings | None = None) -> int:
        """Detections of one file + its ledger row 'done' (`reason`: a note, e.g. truncated), in one transaction.
        Returns rows inserted. `window_scores` (a WindowScores), `indices` (its acoustic indices per minute) and
        `embeddings` (WindowEmbeddings), when given, are written in the same transaction."""
        key, (size, mtime_ns), where = file_key(path), _stat(path), str(Path(path).resolve())
        dets = list(detections)
        now = utc_now()
        with self.transaction() as cur:
            prev = cur.execute("SELECT path, size, mtime_ns, status, attempts FROM files WHERE file_key=? AND run_key=?",
                               (key, run.run_key)).fetchone()
            if (prev is not None and prev["status"] == "done" and prev["path"] == where
                    and (prev["size"], prev["mtime_ns"]) != (size, mtime_ns)):
                cur.execute("DELETE FROM detections WHERE file_key=? AND run_key=?", (key, run.run_key))
            self._forget_replaced(cur, where, key, run.run_key)
            inserted = self._insert(cur, run, dets, now)
            attempts = (prev["attempts"] if prev else 0) + 1
            cur.execute(
                "INSERT OR REPLACE INTO files (file_key, run_key, path, size, mtime_ns, status, reason, attempts,"
                " processed_at, audio_s, n_detections, start_utc, time_source, recorder_id)"
                " VALUES (?,?,?,?,?,'done',?,?,?,?,?,?,?,?)",
                (key, run.run_key, where, size, mtime_ns, reason, attempts, now, float(audio_s), len(dets),
                 start_utc, time_source, recorder_id))
            if window_scores is not None:
                window_scores.write(cur, key, run.run_key)
            if indices is not None:
                indices.write(cur, key, run.run_key)
            if embeddings is not None:
                embeddings.write(cur, key)
        return inserted

    def commit_rebuilt(self, run: RunInfo, row: LedgerRow, detections: Iterable[Detection],
                       window_scores: WindowScores) -> None:
        """A file's rows in a run rebuilt from another run's window scores (`row`: its ledger row there): its
        detections, ledger row 'done' and window scores, in one transaction (a rebuild run twice adds nothing)."""
        dets = list(detections)
        with self.transaction() as cur:
            cur.execute("DELETE FROM detections WHERE file_key=? AND run_key=?", (row.file_key, run.run_key))
            self._insert(cur, run, dets, utc_now())
            cur.execute(
                "INSERT OR REPLACE INTO files (file_key, run_key, path, size, mtime_ns, status, reason, attempts,"
                " processed_at, audio_s, n_detections, start_utc, time_source, recorder_id)"
                " VALUES (?,?,?,?,?,'done','',1,?,?,?,?,?,?)",
                (row.file_key, run.run_key, row.path, row.size, row.mtime_ns, utc_now(), row.audio_s, len(dets),
                 row.start_utc, row.time_source, row.recorder_id))
            window_scores.write(cur, row.file_key, run.run_key)

    @staticmethod
    def _forget_replaced(cur, where: str, key: str, run_key: str) -> None:
        """A file rewritten in place has a new content key: drop the rows of what this path held before."""
        old = [r[0] for r in cur.execute("SELECT file_key FROM files WHERE path=? AND run_key=? AND file_key!=?",
                                         (where, run_key, key))]
        if not old:
            return
        for k in old:  # the only place a file's rows are dropped, its window scores included
            cur.execute("DELETE FROM detections WHERE file_key=? AND run_key=?", (k, run_key))
            cur.execute("DELETE FROM files WHERE file_key=? AND run_key=?", (k, run_key))
            cur.execute("DELETE FROM window_scores WHERE file_key=? AND run_key=?", (k, run_key))
            cur.execute("DELETE FROM minute_indices WHERE file_key=? AND run_key=?", (k, run_key))
            cur.execute("DELETE FROM window_embeddings WHERE file_key=?", (k,))

    def record_failure(self, path: str | os.PathLike, run: RunInfo, reason: str) -> None:
        """Ledger row 'failed' with the reason (the file is retried on the next run); no detections."""
        key, (size, mtime_ns), where = file_key(path), _stat(path), str(Path(path).resolve())
        with self.transaction() as cur:
            prev = cur.execute("SELECT attempts FROM files WHERE file_key=? AND run_key=?",
                               (key, run.run_key)).fetchone()
            cur.execute(
                "INSERT OR REPLACE INTO files (file_key, run_key, path, size, mtime_ns, status, reason, attempts,"
                " processed_at) VALUES (?,?,?,?,?,'failed',?,?,?)",
                (key, run.run_key, where, size, mtime_ns, reason, (prev["attempts"] if prev else 0) + 1,
                 utc_now()))

    def record_moved(self, path: str | os.PathLike, run_key: str, moved_to: str) -> bool:
        """Note durably where a recorded file is going (an archive path, or DELETED), BEFORE it is moved or
        deleted: one synchronous=FULL commit, which makes this note and every earlier commit (the file's
        detections) survive a power cut. False (nothing noted) when the file is not recorded as done."""
        return bool(self.record_moved_many(run_key, [(path, moved_to)]))

    def record_moved_many(self, run_key: str, moves: list[tuple[str | os.PathLike, str]]) -> list[int]:
        """`record_moved` of many files in ONE durable commit; returns the indices in `moves` that were noted
        (files recorded as done)."""
        rows = [(i, self.ledger(path, run_key), str(to)) for i, (path, to) in enumerate(moves)]
        rows = [(i, row, to) for i, row, to in rows if row is not None and row.status == "done"]
        if not rows:
            return []
        with self.transaction(durable=True) as cur:
            cur.executemany("UPDATE files SET moved_to=? WHERE file_key=? AND run_key=?",
                            [(to, row.file_key, run_key) for _, row, to in rows])
        return [i for i, _, _ in rows]

    def add_detections(self, run: RunInfo, detections: Iterable[Detection]) -> int:
        """Insert detections without a ledger row (live audio); idempotent like commit_file. Durable at once
        (synchronous=FULL): live audio cannot be scanned again, and detections are few."""
        with self.transaction(durable=True) as cur:
            return self._insert(cur, run, list(detections), utc_now())

    def _insert(self, cur, run: RunInfo, dets: list[Detection], now: str) -> int:
        cols = DETECTION_COLUMNS + RUN_COLUMNS + ("created_utc",)
        sql = f"INSERT OR IGNORE INTO detections ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        before = self.conn.total_changes
        cur.executemany(sql, [tuple(asdict(d)[c] for c in DETECTION_COLUMNS)
                              + (run.model_id, run.model_sha256, run.threshold, run.hop_s, run.min_hits,
                                 run.run_key, now) for d in dets])
        return self.conn.total_changes - before

    def transaction(self, durable: bool = False) -> _Transaction:
        """`with store.transaction() as cur:` BEGIN IMMEDIATE ... COMMIT, rolled back on any exception; `durable`:
        this commit, and every one before it, survives a power cut (synchronous=FULL)."""
        return _Transaction(self.conn, self.path, durable)

    # upkeep: the file's health, its copies and its WAL (integrity.py, backup.py, the daemon's upkeep)
    @staticmethod
    def quick_check(path: str | os.PathLike) -> list[str]:
        """SQLite's PRAGMA quick_check of a store file, read-only (a damaged file is never migrated or written):
        [] when sound, else what is wrong. Only corruption counts (quick_check's rows, SQLITE_CORRUPT,
        SQLITE_NOTADB); a file that cannot be checked (locked by another connection, unreadable) is tried again
        after each of CHECK_RETRY_S, then a HootwatchError saying so: it is never taken for a damaged one."""
        for attempt in range(len(CHECK_RETRY_S) + 1):
            try:
                conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=0.1)
                try:
                    rows = [r[0] for r in conn.execute("PRAGMA quick_check(10)")]
                finally:
                    conn.close()
                break
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                    return [str(exc)]
                if attempt == len(CHECK_RETRY_S):
                    raise HootwatchError(f"{path}: could not check the store ({exc})",
                                         "another process holds it, or the disk cannot be read: the next check "
                                         "tries again") from exc
                time.sleep(CHECK_RETRY_S[attempt])
        if rows == ["ok"]:
            return []
        lines = [line.strip() for r in rows for line in str(r).splitlines() if line.strip() and "***" not in line]
        return lines[:5] or ["quick_check failed"]

    def backup_to(self, target: str | os.PathLike) -> None:
        """A consistent copy of the whole store into `target` (SQLite's online backup API; writers go on), as one
        self-contained file (rollback journal, not WAL). Not fsynced: the caller decides where it goes."""
        dst = sqlite3.connect(str(target))
        try:
            self.conn.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()

    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """PRAGMA wal_checkpoint(mode): (busy, WAL pages, pages checkpointed). PASSIVE never waits for readers or
        writers; TRUNCATE (at shutdown) also empties the WAL file."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"unknown checkpoint mode {mode!r}")
        return tuple(self.conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone())

    @staticmethod
    def wal_bytes(path: str | os.PathLike) -> int:
        """The size of the WAL of the store at `path` now (0 when there is none); opens nothing."""
        try:
            return os.stat(f"{path}-wal").st_size
        except OSError:
            return 0

    # reading
    def detections(self, run_key: str | None = None) -> list[dict]:
        """Rows as dicts, ordered by file path then offset."""
        sql, args = "SELECT * FROM detections", []
        if run_key is not None:
            sql, args = sql + " WHERE run_key=?", [run_key]
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY file, start_sample", args)]

    def detection_spans(self, run_key: str) -> dict[str, list[tuple[float, float]]]:
        """file_key -> (start_s, end_s) of each of the run's detections (the review queues' near misses)."""
        out: dict[str, list[tuple[float, float]]] = {}
        for key, a, b in self.conn.execute("SELECT file_key, start_s, end_s FROM detections WHERE run_key=?",
                                           (run_key,)):
            out.setdefault(key, []).append((a, b))
        return out

    def count(self, run_key: str | None = None) -> int:
        if run_key is None:
            return self.conn.execute("SELECT COUNT(*) FROM detections").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM detections WHERE run_key=?", (run_key,)).fetchone()[0]

    def newest_detection_utc(self, run_key: str, file_key: str | None = None) -> str | None:
        """begin_utc of the run's newest detection (of one recording, given `file_key`); None when it has none."""
        if file_key is None:
            return self.conn.execute("SELECT MAX(begin_utc) FROM detections WHERE run_key=?", (run_key,)).fetchone()[0]
        return self.conn.execute("SELECT MAX(begin_utc) FROM detections WHERE file_key=? AND run_key=?",
                                 (file_key, run_key)).fetchone()[0]

    def detection_files(self, run_key: str) -> dict[str, str]:
        """file_key -> the file name the run's detections of that recording carry."""
        return {r["file_key"]: r["file"] for r in self.conn.execute(
            "SELECT file_key, file FROM detections WHERE run_key=? GROUP BY file_key", (run_key,))}

    def recording_path(self, file_key: str) -> str | None:
        """Where a recording was last scanned from (by any run); None when the ledger has it done in none."""
        row = self.conn.execute("SELECT path FROM files WHERE file_key=? AND status='done' ORDER BY processed_at"
                                " DESC LIMIT 1", (file_key,)).fetchone()
        return None if row is None else row["path"]

    def recording_audio_s(self, file_key: str) -> float | None:
        """A recording's length in seconds as last scanned; None when the ledger does not know it."""
        row = self.conn.execute("SELECT audio_s FROM files WHERE file_key=? AND status='done' ORDER BY processed_at"
                                " DESC LIMIT 1", (file_key,)).fetchone()
        return row["audio_s"] if row is not None and row["audio_s"] > 0 else None

    def window_scores(self, run_key: str) -> list[WindowScores]:
        """The kept window scores of every file of a run (window_scores.py)."""
        return read_window_scores(self.conn, run_key)

    def window_sample_rate(self, run_key: str) -> int | None:
        """The sample rate of a run's window scores; None when the run kept none."""
        row = self.conn.execute("SELECT sample_rate FROM window_scores WHERE run_key=? LIMIT 1", (run_key,)).fetchone()
        return None if row is None else row[0]

    # runs
    def runs(self) -> list[dict]:
        """Runs with scanned files, most recently scanned first: run_key, files, detections, audio_s, last."""
        rows = self.conn.execute("SELECT run_key, COUNT(*) AS files, SUM(n_detections) AS detections,"
                                 " SUM(audio_s) AS audio_s, MAX(processed_at) AS last FROM files WHERE status='done'"
                                 " GROUP BY run_key ORDER BY last DESC").fetchall()
        return [dict(r) for r in rows]

    def latest_run(self) -> str | None:
        """The run every command means when given no --run: the most recently scanned run that kept window scores
        (a store of an older hootwatch kept none: then its most recently scanned run); None when none was."""
        row = self.conn.execute(
            "SELECT run_key, MAX(processed_at) AS last,"
            " EXISTS (SELECT 1 FROM window_scores w WHERE w.run_key = f.run_key) AS scored"
            " FROM files f WHERE status='done' GROUP BY run_key ORDER BY scored DESC, last DESC LIMIT 1").fetchone()
        return None if row is None else row["run_key"]

    def resolve_run(self, run_key: str | None) -> str:
        """The run a command works on: `run_key` (its --run) when this store has it, else `latest_run`.
        ConfigError naming the store and the runs it has otherwise."""
        if not run_key:
            latest = self.latest_run()
            if latest is None:
                raise ConfigError(f"{self.path}: no recordings have been scanned into this store",
                                  "scan them first (`hootwatch scan RECORDINGS --out` this folder)")
            return latest
        known = [r["run_key"] for r in self.runs()]
        if run_key not in known:
            raise ConfigError(f"{self.path}: no run {run_key!r} in this store (its runs: {', '.join(known) or 'none'})",
                              "pass --run with one of its runs, or leave --run out for the latest")
        return run_key

    def scored_run(self, run_key: str | None) -> str:
        """`resolve_run`'s run, which must have kept window scores (to rebuild detections or sample windows)."""
        run_key = self.resolve_run(run_key) if run_key else (self.latest_run() or "")
        if not run_key or self.window_sample_rate(run_key) is None:
            of_run = f" for run {run_key!r}" if run_key else ""
            raise ConfigError(
                f"{self.path}: no window scores are stored{of_run} (it was scanned by an older hootwatch)",
                "scan the recordings again with this version (`hootwatch scan ... --out` the same folder)")
        return run_key


def open_store(out: str | os.PathLike) -> DetectionStore:
    """The store of an output folder; ConfigError when the folder holds none."""
    path = Path(out) / STORE_NAME
    if not path.is_file():
        raise ConfigError(f"{out}: no {STORE_NAME} here", "pass the folder given to `hootwatch scan --out`")
    return DetectionStore(path)


def _disk_full(path: Path, what: str) -> DiskFullError:
    return DiskFullError(
        f"{path}: the disk is full; the store {what}",
        f"free space on the disk holding {path.parent} (old clips, raw recordings or archives); nothing was "
        "half-written, and the recording is scanned again once there is room")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt included) and when the COMMIT
    itself fails (SQLite leaves the transaction open then: the connection would be wedged). A full disk is
    raised as DiskFullError."""

    def __init__(self, conn: sqlite3.Connection, path: Path, durable: bool = False) -> None:
        self.conn, self.path, self.durable = conn, path, durable

    def __enter__(self) -> sqlite3.Cursor:
        if self.durable:  # this commit fsyncs the WAL: it and every commit before it survive a power cut
            self.conn.execute("PRAGMA synchronous=FULL")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._normal()
            if is_disk_full(exc):
                raise _disk_full(self.path, "cannot be written") from exc
            raise
        return self.conn.cursor()

    def _normal(self) -> None:
        if self.durable:
            self.conn.execute("PRAGMA synchronous=NORMAL")

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._end(exc_type, exc)
        finally:
            self._normal()

    def _end(self, exc_type, exc) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as failed:
                self._rollback()
                if is_disk_full(failed):
                    raise _disk_full(self.path, "cannot be written") from failed
                raise
        self._rollback()
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise _disk_full(self.path, "cannot be written") from exc

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:  # SQLite may have rolled back already (e.g. on SQLITE_FULL)
                pass
