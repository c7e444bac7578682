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
    starts = np.cumsum(np.frombuffer(zlib.decompress(row["starts"]), np.int32).astype(np.int64))
    scores = np.frombuffer(zlib.decompress(row["scores"]), np.float32)
    return WindowScores(starts, scores, row["sample_rate"], row["window_samples"], row["model_id"], row["local_tz"],
                        row["clamp_end"], row["run"], row["file_key"])


def read_window_scores(conn: sqlite3.Connection, run_key: str) -> list[WindowScores]:
    """The scores of every file of a run."""
    rows = conn.execute("SELECT * FROM window_scores WHERE run_key=? ORDER BY file_key", (run_key,)).fetchall()
    return [_decode(r) for r in rows]



def file_window_s(conn: sqlite3.Connection, file_key: str) -> float | None:
    """The longest window any run scored a file with, in seconds; None when no run kept the file's scores."""
    row = conn.execute("SELECT MAX(CAST(window_samples AS REAL) / sample_rate) FROM window_scores WHERE file_key=?",
                       (file_key,)).fetchone()
    return row[0]
