"""The store checks itself: `PRAGMA quick_check` (the daemon runs it at start and once a day), and a store that
fails it is set aside and replaced, knowing what it must scan again.

    check = check_store(out_dir / STORE_NAME)            # Check(problems, seconds); .ok
    recovery = recover(out_dir / STORE_NAME, backup_dir)  # after a failed check: Recovery

`recover` renames the damaged file (with its WAL) to `detections.damaged-<UTC time>.sqlite`, kept for a person
or a data-recovery tool, and puts the newest backup that passes its own check in its place (backup.py), or a new
empty store when there is none. Then it reads, row by row and as far as the damaged file lets it, what that file
knew beyond the backup:
- recordings it had scanned that are still on disk (in the watched folder or the archive): `rescan`, scanned
  again (the watcher rescans those in the watched folder by itself: the new ledger does not have them);
- recordings it had scanned and deleted since: their detections, ledger row, window scores, acoustic indices and
  embeddings are copied over (`salvaged`), or, when they cannot be read, named in `lost`;
- labels people gave since the backup, and microphone detections (live audio cannot be scanned again): copied.
Nothing is dropped without a line in the log saying so.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .backup import backups, quick_check_file, restore_store, set_aside
from .database import DELETED, DetectionStore


@dataclass(frozen=True)
class Check:
    problems: tuple[str, ...]   # empty: sound
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(path: str | os.PathLike) -> Check:
    """quick_check of the store file (a missing store is sound: there is nothing yet)."""
    t0 = time.perf_counter()
    problems = quick_check_file(path) if Path(path).exists() else []
    return Check(tuple(problems), time.perf_counter() - t0)


@dataclass(frozen=True)
class Recovery:
    damaged: Path | None             # where the damaged store is kept
    backup: Path | None              # the backup put in its place; None: a new, empty store
    rescan: tuple[Path, ...]         # recordings on disk the new store must scan again
    salvaged: int                    # rows copied from the damaged store (deleted recordings, labels, live audio)
    lost: tuple[str, ...]            # deleted recordings whose detections could not be read back

    def summary(self) -> str:
        start = f"restored the backup {self.backup.name}" if self.backup else "started a new, empty store (no backup)"
        text = (f"{start}; the damaged store is kept as {self.damaged}; {len(self.rescan)} recording(s) still on "
                f"disk are scanned again; {self.salvaged} row(s) read back from the damaged store")
        if self.lost:
            text += (f"; {len(self.lost)} recording(s) deleted since the backup could not be read back, their "
                     f"detections are lost: {', '.join(self.lost[:10])}{' ...' if len(self.lost) > 10 else ''}")
        return text


def recover(store_path: str | os.PathLike, backup_dir: str | os.PathLike | None = None) -> Recovery:
    """Replace a damaged store (see the module's docstring)."""
    store_path = Path(store_path)
    damaged = set_aside(store_path, "damaged")
    restored = next((b for b in (backups(backup_dir) if backup_dir else []) if not quick_check_file(b)), None)
    if restored is not None:
        restore_store(restored, store_path.parent)
    with DetectionStore(store_path) as store:
        if damaged is None:
            return Recovery(None, restored, (), 0, ())
        return _read_back(store, damaged, restored)


def _rows(conn: sqlite3.Connection, sql: str, args: tuple = ()) -> list[dict]:
    """As many rows as the damaged file gives before an error."""
    out = []
    try:
        for r in conn.execute(sql, args):
            out.append(dict(r))
    except sqlite3.DatabaseError:
        pass
    return out


def _copy(cur: sqlite3.Cursor, table: str, rows: list[dict], columns: set[str]) -> int:
    n = 0
    for r in rows:
        r = {k: v for k, v in r.items() if k in columns}
        cur.execute(f"INSERT OR IGNORE INTO {table} ({', '.join(r)}) VALUES ({', '.join('?' * len(r))})",
                    tuple(r.values()))
        n += cur.rowcount
    return n


def _read_back(store: DetectionStore, damaged: Path, restored: Path | None) -> Recovery:
    try:
        old = sqlite3.connect(f"file:{damaged.resolve()}?mode=ro", uri=True)
    except sqlite3.Error:
        return Recovery(damaged, restored, (), 0, ("(the damaged store cannot be opened at all)",))
    old.row_factory = sqlite3.Row
    cols = {t: {r[1] for r in store.conn.execute(f"PRAGMA table_info({t})")}
            for t in ("detections", "files", "window_scores", "labels", "minute_indices", "window_embeddings")}
    have = {(r.file_key, r.run_key) for r in store.ledger_rows()}
    rescan, lost, salvaged = [], [], 0
    try:
        for row in _rows(old, "SELECT * FROM files WHERE status='done'"):
            if (row["file_key"], row["run_key"]) in have:
                continue
            moved = row.get("moved_to") or ""
            where = Path(moved if moved and moved != DELETED else row["path"])
            if moved != DELETED and where.is_file():
                rescan.append(where)
                continue
            key = (row["file_key"], row["run_key"])
            dets = _rows(old, "SELECT * FROM detections WHERE file_key=? AND run_key=?", key)
            scores = _rows(old, "SELECT * FROM window_scores WHERE file_key=? AND run_key=?", key)
            # its night overview and its embeddings (search, fit) cannot be computed again either
            indices = _rows(old, "SELECT * FROM minute_indices WHERE file_key=? AND run_key=?", key)
            embeddings = _rows(old, "SELECT * FROM window_embeddings WHERE file_key=?", key[:1])
            if len(dets) != row["n_detections"]:
                lost.append(row["path"])
                continue
            with store.transaction() as cur:
                salvaged += _copy(cur, "detections", [{k: v for k, v in d.items() if k != "id"} for d in dets],
                                  cols["detections"])
                salvaged += _copy(cur, "window_scores", scores, cols["window_scores"])
                salvaged += _copy(cur, "minute_indices", indices, cols["minute_indices"])
                salvaged += _copy(cur, "window_embeddings", embeddings, cols["window_embeddings"])
                _copy(cur, "files", [row], cols["files"])
        top = store.conn.execute("SELECT COALESCE(MAX(id), 0) FROM labels").fetchone()[0]
        with store.transaction() as cur:
            salvaged += _copy(cur, "labels", _rows(old, "SELECT * FROM labels WHERE id > ?", (top,)), cols["labels"])
            live = _rows(old, "SELECT * FROM detections WHERE file_key LIKE 'live:%'")
            salvaged += _copy(cur, "detections", [{k: v for k, v in d.items() if k != "id"} for d in live],
                              cols["detections"])
    finally:
        old.close()
    return Recovery(damaged, restored, tuple(dict.fromkeys(rescan)), salvaged, tuple(lost))
