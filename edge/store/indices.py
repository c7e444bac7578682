"""Acoustic indices per minute and frequency bin of each scanned file (computed by edge/scan/indices.py), kept for
the night overview of the review app.

Table `minute_indices` (created by the store's migrations, database.py): one row per (file, run), written by
`DetectionStore.commit_file` inside the SAME transaction as the file's detections, window scores and ledger row, so
a file has its indices exactly when it has its scores. Compact: the values as zlib-compressed float16, shape
(minutes, indices, bins), minute i covering seconds [60 i, 60 i + 60) of the file; with the index names, the
sample rate the audio was analysed at and the width of a bin.
"""

from __future__ import annotations

import sqlite3
import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MinuteIndexRows:
    """The indices of one file: `values` (minutes, len(names), bins), bin f spanning [f, f + 1) * bin_hz."""
    values: np.ndarray
    names: tuple[str, ...]
    sample_rate: int
    bin_hz: float
    file_key: str = ""          # filled in when read back

    @property
    def n_minutes(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.values.shape[2])

    def write(self, cur: sqlite3.Cursor, file_key: str, run_key: str) -> None:
        """Called by DetectionStore.commit_file inside its transaction."""
        data = np.asarray(self.values, np.float16)
        cur.execute("INSERT OR REPLACE INTO minute_indices (file_key, run_key, names, sample_rate, bin_hz, n_minutes,"
                    " n_bins, data) VALUES (?,?,?,?,?,?,?,?)",
                    (file_key, run_key, ",".join(self.names), int(self.sample_rate), float(self.bin_hz),
                     self.n_minutes, self.n_bins, zlib.compress(data.tobytes(), 6)))


def read_indices(conn: sqlite3.Connection, file_keys: list[str], run_key: str) -> dict[str, MinuteIndexRows]:
    """file_key -> its indices, of `run_key` where that run kept them, else of any run that did (they depend on the
    audio and the model's sample rate only, so a run rebuilt from another run's scores shows the same)."""
    out: dict[str, MinuteIndexRows] = {}
    for key in file_keys:
        row = conn.execute("SELECT * FROM minute_indices WHERE file_key=? ORDER BY run_key=? DESC LIMIT 1",
                           (key, run_key)).fetchone()
        if row is None:
            continue
        names = tuple(row["names"].split(","))
        values = np.frombuffer(zlib.decompress(row["data"]), np.float16).astype(np.float32)
        out[key] = MinuteIndexRows(values.reshape(row["n_minutes"], len(names), row["n_bins"]), names,
                                   row["sample_rate"], row["bin_hz"], key)
    return out


def indexed_files(conn: sqlite3.Connection) -> set[str]:
    """The recordings any run kept indices of."""
    return {r[0] for r in conn.execute("SELECT DISTINCT file_key FROM minute_indices")}


def file_zones(conn: sqlite3.Connection, run_key: str) -> dict[str, str]:
    """file_key -> the zone its local times are shown in (kept with its window scores; '' = UTC)."""
    return {r[0]: r[1] for r in conn.execute("SELECT file_key, local_tz FROM window_scores WHERE run_key=?",
                                             (run_key,))}
