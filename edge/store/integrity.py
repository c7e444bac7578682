"""The store checks itself: `PRAGMA quick_check` (the daemon runs it at start and once a day), and a store that
fails it is set aside and replaced, knowing what it must scan again.

    check = check_store(out_dir / STORE_NAME)            # Check(problems, seconds); .ok
    recovery = recover(out_dir / STORE_NAME, backup_dir)  # after a failed check (or recovery_pending): Recovery
    recovery = restore(backup, out_dir)                   # `hootwatch restore`: the same read-back

`recover` first writes an fsynced marker naming where the damaged store goes and which backup replaces it (a
recovery cut short by a kill or a power cut is finished at the next start), copies the newest backup that passes
its own check into a temporary file beside the store, then renames the damaged file (with its WAL) to
`detections.damaged-<UTC time>.sqlite`, kept for a person or a data-recovery tool, and the copy into its place
(backup.py), or starts a new empty store when there is no backup. Then it reads, row by row and as far as the
damaged file lets it, what that file knew beyond the backup (labels and microphone detections first):
- recordings it had scanned that are still on disk (in the watched folder or the archive): `rescan`, scanned
  again (the watcher rescans those in the watched folder by itself: the new ledger does not have them);
- recordings it had scanned and deleted since: their detections, ledger row, window scores, acoustic indices and
  embeddings are copied over (`salvaged`), or, when they cannot be read, named in `lost`;
- labels people gave since the backup, and microphone detections (live audio cannot be scanned again): copied.
Nothing is dropped without a line in the log saying so: a read cut short by the damage is named in `lost`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.core import fsio
from hootwatch.edge.core.errors import ConfigError, HootwatchError
from .backup import aside_path, backups, restore_store, set_aside
from .database import DELETED, STORE_NAME, DetectionStore

log = logging.getLogger("hootwatch.store")


@dataclass(frozen=True)
class Check:
    problems: tuple[str, ...]   # empty: sound (or not checked)
    seconds: float
    unchecked: str = ""         # why the file could not be checked (locked, unreadable): not damage

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(path: str | os.PathLike) -> Check:
    """quick_check of the store file (a missing store is sound: there is nothing yet). A store that could not be
    checked (locked, unreadable) is `unchecked`, never damaged."""
    t0 = time.perf_counter()
    try:
        problems = DetectionStore.quick_check(path) if Path(path).exists() else []
    except HootwatchError as exc:
        return Check((), time.perf_counter() - t0, exc.message)
    return Check(tuple(problems), time.perf_counter() - t0)


@dataclass(frozen=True)
class Recovery:
    damaged: Path | None             # where the damaged (or replaced) store is kept
    backup: Path | None              # the backup put in its place; None: a new, empty store
    rescan: tuple[Path, ...]         # recordings on disk the new store must scan again
    salvaged: int                    # rows copied from the damaged store (deleted recordings, labels, live audio)
    lost: tuple[str, ...]            # what could not be read back (deleted recordings, reads cut short)
    why: str = "damaged"             # "replaced": by `hootwatch restore`

    def summary(self) -> str:
        start = f"restored the backup {self.backup.name}" if self.backup else "started a new, empty store (no backup)"
        text = (f"{start}; the {self.why} store is kept as {self.damaged}; {len(self.rescan)} recording(s) still on "
                f"disk are scanned again; {self.salvaged} row(s) read back from the {self.why} store")
        if self.lost:
            text += (f"; {len(self.lost)} thing(s) could not be read back and are lost: "
                     f"{', '.join(self.lost[:10])}{' ...' if len(self.lost) > 10 else ''}")
        return text


def marker_path(store_path: str | os.PathLike) -> Path:
    """`.detections.sqlite.recovering`: names the damaged store and the backup while a recovery runs."""
    p = Path(store_path)
    return p.with_name(f".{p.name}.recovering")


def recovery_pending(store_path: str | os.PathLike) -> bool:
    """A recovery was cut short (a kill, a power cut): the next start finishes it."""
    return marker_path(store_path).exists()


def recover(store_path: str | os.PathLike, backup_dir: str | os.PathLike | None = None) -> Recovery:
    """Replace a damaged store (see the module's docstring). Before anything moves, an fsynced marker names where
    the damaged store goes and which backup replaces it; each step can be done again, so a recovery cut short is
    finished by calling this again (the daemon does at start, `recovery_pending`)."""
    store_path = Path(store_path)
    marker = marker_path(store_path)
    if marker.exists():
        damaged_text, _, backup_text = marker.read_text(encoding="utf-8").partition("\n")
        damaged, restored = Path(damaged_text), Path(backup_text) if backup_text else None
        log.warning("finishing a recovery of %s cut short (the damaged store: %s)", store_path, damaged)
        if restored is not None and not restored.is_file():  # removed since: the newest sound one now
            restored = _newest_sound(backup_dir)
    else:
        restored = _newest_sound(backup_dir)
        if not store_path.exists():
            if restored is not None:
                restore_store(restored, store_path.parent)
            return Recovery(None, restored, (), 0, ())
        damaged = aside_path(store_path, "damaged")
        fsio.write_atomic(marker, f"{damaged}\n{restored or ''}")
    if not damaged.exists():  # not yet set aside: the backup is copied in beside it first, then they swap
        if restored is not None:
            restore_store(restored, store_path.parent, kept=damaged)
        else:
            set_aside(store_path, damaged)
    elif not store_path.exists() and restored is not None:  # cut short between setting aside and renaming
        restore_store(restored, store_path.parent)
    with DetectionStore(store_path) as store:
        recovery = _read_back(store, damaged, restored)
    fsio.remove(marker)
    return recovery


def restore(backup: str | os.PathLike, out_dir: str | os.PathLike) -> Recovery:
    """`hootwatch restore`: put `backup` in place (backup.restore_store) and read back from the store it replaces
    what it knew beyond the backup, as a recovery does (labels, rows of recordings deleted since). ConfigError
    while another process (the daemon) holds the store."""
    store_path = Path(out_dir) / STORE_NAME
    if store_path.exists():  # an exclusive lock fails while any other connection has the store open, even idle
        conn = sqlite3.connect(store_path, timeout=0.5, isolation_level=None)
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"{store_path}: in use by another process ({exc})",
                              "stop the daemon first (systemctl stop hootwatch), then restore") from exc
        finally:
            conn.close()
    kept = restore_store(backup, out_dir)
    with DetectionStore(store_path) as store:
        if kept is None:
            return Recovery(None, Path(backup), (), 0, (), "replaced")
        return dataclasses.replace(_read_back(store, kept, Path(backup)), why="replaced")


def _newest_sound(backup_dir: str | os.PathLike | None) -> Path | None:
    """The newest backup that passes its own check (one that cannot be checked now is passed over)."""
    for b in backups(backup_dir) if backup_dir else []:
        try:
            if not DetectionStore.quick_check(b):
                return b
        except HootwatchError as exc:
            log.warning("%s", exc.message)
    return None


def _rows(conn: sqlite3.Connection, sql: str, args: tuple = ()) -> tuple[list[dict], bool]:
    """As many rows as the damaged file gives before an error, and whether an error cut them short (logged)."""
    out = []
    try:
        for r in conn.execute(sql, args):
            out.append(dict(r))
    except sqlite3.DatabaseError as exc:
        log.error("reading the damaged store stopped after %d row(s) of `%s` %s: %s", len(out), sql, args, exc)
        return out, True
    return out, False


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
    rescan, lost, salvaged = [], [], 0
    try:
        # first what nothing can make again: people's labels and microphone detections (ids kept: a recovery
        # done again copies nothing twice)
        top = store.conn.execute("SELECT COALESCE(MAX(id), 0) FROM labels").fetchone()[0]
        labels, cut = _rows(old, "SELECT * FROM labels WHERE id > ?", (top,))
        if cut:
            lost.append(f"labels given since the backup after the first {len(labels)}")
        live, cut = _rows(old, "SELECT * FROM detections WHERE file_key LIKE 'live:%'")
        if cut:
            lost.append(f"microphone detections after the first {len(live)}")
        with store.transaction() as cur:
            salvaged += _copy(cur, "labels", labels, cols["labels"])
            salvaged += _copy(cur, "detections", [{k: v for k, v in d.items() if k != "id"} for d in live],
                              cols["detections"])
        have = {(r.file_key, r.run_key) for r in store.ledger_rows()}
        ledger, cut = _rows(old, "SELECT * FROM files WHERE status='done'")
        if cut:
            lost.append(f"the ledger after its first {len(ledger)} recording(s) (recordings still on disk are "
                        f"scanned again all the same)")
        for row in ledger:
            if (row["file_key"], row["run_key"]) in have:
                continue
            moved = row.get("moved_to") or ""
            where = Path(moved if moved and moved != DELETED else row["path"])
            if moved != DELETED and where.is_file():
                rescan.append(where)
                continue
            key = (row["file_key"], row["run_key"])
            dets, c1 = _rows(old, "SELECT * FROM detections WHERE file_key=? AND run_key=?", key)
            scores, c2 = _rows(old, "SELECT * FROM window_scores WHERE file_key=? AND run_key=?", key)
            # its night overview and its embeddings (search, fit) cannot be computed again either
            indices, c3 = _rows(old, "SELECT * FROM minute_indices WHERE file_key=? AND run_key=?", key)
            embeddings, c4 = _rows(old, "SELECT * FROM window_embeddings WHERE file_key=?", key[:1])
            if c1 or len(dets) != row["n_detections"]:
                lost.append(row["path"])
                continue
            if c2 or c3 or c4:
                lost.append(f"{row['path']}: part of its window scores, night overview or embeddings")
            with store.transaction() as cur:
                salvaged += _copy(cur, "detections", [{k: v for k, v in d.items() if k != "id"} for d in dets],
                                  cols["detections"])
                salvaged += _copy(cur, "window_scores", scores, cols["window_scores"])
                salvaged += _copy(cur, "minute_indices", indices, cols["minute_indices"])
                salvaged += _copy(cur, "window_embeddings", embeddings, cols["window_embeddings"])
                _copy(cur, "files", [row], cols["files"])
    finally:
        old.close()
    return Recovery(damaged, restored, tuple(dict.fromkeys(rescan)), salvaged, tuple(lost))
