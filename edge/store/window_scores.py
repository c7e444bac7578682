"""Every window's score of every scanned file, kept in the store so detections can be rebuilt for another
operating point (`hootwatch detections`) and the review app can show near misses and a random sample.

Table `window_scores` (in the store's SQLite file; created by its migrations, database.py): one row per (file, run),
written by `DetectionStore.commit_file` inside the SAME transaction as the file's detections and ledger row, so
a file's scores exist exactly when its detections do. Compact: window starts as zlib-compressed int32 deltas
(a regular grid compresses to a few bytes), scores as zlib-compressed float32 (exact: a rebuild at the scan's
own operating point gives the scan's detections bit for bit), plus the window length, rate and the recorder's
time zone (to give rebuilt detections their local times).
"""

from __future__ import annotations

import sqlite3
import zlib
from dataclasses import dataclass

import numpy as np

@dataclass(frozen=True)
class WindowScores:
    """The windows of one file in one run: start sample (at `sample_rate`) and score of each."""
    starts: np.ndarray
    scores: np.ndarray
    sample_rate: int
    window_samples: int
    model_id: str
    local_tz: str = ""          # the zone local times were shown in ('' = UTC)
    clamp_end: int = 0          # detections end at most here (the file's length)
    run: str = "{}"             # the run's settings (store.RunInfo as JSON, and the bundle's hop)
    file_key: str = ""          # filled in when read back

    @property
    def ends(self) -> np.ndarray:
        return self.starts + self.window_samples

    def write(self, cur: sqlite3.Cursor, file_key: str, run_key: str) -> None:
        """Called by DetectionStore.commit_file inside its transaction."""
        starts = np.asarray(self.starts, np.int64)
        deltas = np.diff(starts, prepend=0).astype(np.int32)
        cur.execute("INSERT OR REPLACE INTO window_scores (file_key, run_key, model_id, sample_rate, window_samples,"
                    " n_windows, starts, scores, local_tz, clamp_end, run) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (file_key, run_key, self.model_id, int(self.sample_rate), int(self.window_samples), len(starts),
                     zlib.compress(deltas.tobytes(), 6),
                     zlib.compress(np.asarray(self.scores, np.float32).tobytes(), 6), self.local_tz,
                     int(self.clamp_end), self.run))


def _decode(row) -> WindowScores:
    scores = np.frombuffer(zlib.decompress(row["scores"]), np.float32)
    return WindowScores(_starts(row["starts"]), scores, row["sample_rate"], row["window_samples"], row["model_id"],
                        row["local_tz"], row["clamp_end"], row["run"], row["file_key"])


def read_window_scores(conn: sqlite3.Connection, run_key: str) -> list[WindowScores]:
    """The scores of every file of a run."""
    rows = conn.execute("SELECT * FROM window_scores WHERE run_key=? ORDER BY file_key", (run_key,)).fetchall()
    return [_decode(r) for r in rows]



@dataclass(frozen=True)
class FileWindowsMeta:
    """One file's windows in a run without their scores: what the review queues count and filter on."""
    file_key: str
    sample_rate: int
    window_samples: int
    n_windows: int
    local_tz: str
    clamp_end: int
    first_start: int            # start sample of its first and last window (0 when it has none)
    last_start: int


def read_window_meta(conn: sqlite3.Connection, run_key: str) -> list[FileWindowsMeta]:
    """Every file of a run, in file_key order (the order of `read_window_scores`), without its scores (its starts,
    a regular grid, compress to a few bytes)."""
    out = []
    for r in conn.execute("SELECT file_key, sample_rate, window_samples, n_windows, local_tz, clamp_end, starts"
                          " FROM window_scores WHERE run_key=? ORDER BY file_key", (run_key,)):
        starts = _starts(r["starts"])
        first, last = (int(starts[0]), int(starts[-1])) if len(starts) else (0, 0)
        out.append(FileWindowsMeta(r["file_key"], r["sample_rate"], r["window_samples"], len(starts), r["local_tz"],
                                   r["clamp_end"], first, last))
    return out


def iter_window_scores(conn: sqlite3.Connection, run_key: str, file_keys: list[str] | None = None):
    """The scores of a run's files one at a time (only `file_keys`' when given), in file_key order: a season's
    scores are never all in memory at once."""
    if file_keys is None:
        yield from map(_decode, conn.execute("SELECT * FROM window_scores WHERE run_key=? ORDER BY file_key",
                                             (run_key,)))
        return
    keys = sorted(set(file_keys))
    for i in range(0, len(keys), 500):   # under SQLite's limit on bound parameters
        chunk = keys[i:i + 500]
        sql = (f"SELECT * FROM window_scores WHERE run_key=? AND file_key IN ({','.join('?' * len(chunk))})"
               " ORDER BY file_key")
        yield from map(_decode, conn.execute(sql, (run_key, *chunk)))


def _starts(blob: bytes) -> np.ndarray:
    return np.cumsum(np.frombuffer(zlib.decompress(blob), np.int32).astype(np.int64))


def file_window_s(conn: sqlite3.Connection, file_key: str) -> float | None:
    """The longest window any run scored a file with, in seconds; None when no run kept the file's scores."""
    row = conn.execute("SELECT MAX(CAST(window_samples AS REAL) / sample_rate) FROM window_scores WHERE file_key=?",
                       (file_key,)).fetchone()
    return row[0]
