"""Backups of the store that are always whole, and bringing one back.

    backup_store(out_dir / STORE_NAME, dest, keep=7) -> Backup   # DEST/detections-<UTC time>.sqlite
    backups(dest)                                                # newest first
    restore_store(backup, out_dir)                               # the store in out_dir replaced (the old one kept)

A backup is SQLite's online backup API (`Connection.backup`: a consistent copy while the daemon goes on writing,
every table: detections, the ledger, window scores, labels) into a temporary name in DEST, switched to a
rollback journal so it is one self-contained file, checked (`PRAGMA quick_check`), fsynced, renamed to its final
name and its folder fsynced; only then are the backups beyond the newest `keep` removed. A kill or a power cut at
any moment leaves the earlier backups as they were and at most a `.partial` file, which the next backup removes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hootwatch.edge.core import fsio
from hootwatch.edge.core.errors import ConfigError, HootwatchError
from .database import STORE_NAME, DetectionStore

PREFIX, SUFFIX, PARTIAL = "detections-", ".sqlite", ".partial"


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    seconds: float


def backup_name(now: datetime | None = None) -> str:
    """`detections-20261207T031500.123456Z.sqlite`: UTC, sortable by name."""
    now = now or datetime.now(timezone.utc)
    return f"{PREFIX}{now.strftime('%Y%m%dT%H%M%S.%fZ')}{SUFFIX}"


def backups(dest: str | os.PathLike) -> list[Path]:
    """The backups in DEST, newest first (partial ones left by a kill are not backups)."""
    d = Path(dest)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX)), reverse=True)


def backup_time(path: Path) -> datetime | None:
    """When a backup was taken (from its name); None for a name not made by `backup_name`."""
    try:
        return datetime.strptime(path.name[len(PREFIX):-len(SUFFIX)], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def backup_store(store_path: str | os.PathLike, dest: str | os.PathLike, keep: int = 7) -> Backup:
    """Copy the store at `store_path` into DEST (see the module's docstring); the backups beyond the newest `keep`
    are then removed. HootwatchError naming DEST when it cannot be written (a full or missing disk)."""
    t0 = time.perf_counter()
    dest = Path(dest)
    final = dest / backup_name()
    tmp = dest / f".{final.name}{PARTIAL}"
    try:
        fsio.makedirs(dest)
        for old in dest.glob(f".{PREFIX}*{PARTIAL}"):  # a backup cut short by a kill or a power cut
            old.unlink(missing_ok=True)
        with DetectionStore(store_path) as store:
            store.backup_to(tmp)
        with sqlite3.connect(tmp) as check:
            problems = [r[0] for r in check.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise HootwatchError(f"{tmp}: the copy failed its check ({'; '.join(problems)})",
                                 "check the disk holding it (dmesg); the earlier backups are kept")
        fsio.fsync_file(tmp)
        os.replace(tmp, final)
        fsio.fsync_dir(dest)
    except (OSError, sqlite3.Error) as exc:
        _unlink(tmp)
        raise HootwatchError(f"backup into {dest} failed: {exc}",
                             "check that the backup disk is mounted, writable and has room; the earlier backups "
                             "are kept") from exc
    except BaseException:
        _unlink(tmp)
        raise
    fsio.remove_many(backups(dest)[max(1, keep):])
    return Backup(final, final.stat().st_size, time.perf_counter() - t0)


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def restore_store(backup: str | os.PathLike, out_dir: str | os.PathLike) -> Path | None:
    """Put `backup` in place as OUTDIR's store (stop the daemon first). The store it replaces (with its WAL) is
    kept aside as `detections.replaced-<UTC time>.sqlite`, whose path is returned (None when there was none).
    ConfigError when `backup` is no sound store."""
    src, out = Path(backup), Path(out_dir)
    if not src.is_file():
        raise ConfigError(f"{src}: no such backup", "give a file from the backup folder (detections-*.sqlite)")
    problems = quick_check_file(src)
    if problems:
        raise ConfigError(f"{src}: not a sound store ({'; '.join(problems)})", "choose an older backup")
    fsio.makedirs(out)
    kept = set_aside(out / STORE_NAME, "replaced")
    tmp = out / f".{STORE_NAME}{PARTIAL}"
    _unlink(tmp)
    source, copy = sqlite3.connect(f"file:{src.resolve()}?mode=ro", uri=True), sqlite3.connect(tmp)
    try:  # read-only: the backup itself is never written (opening it as a store would migrate it)
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    fsio.fsync_file(tmp)
    os.replace(tmp, out / STORE_NAME)
    fsio.fsync_dir(out)
    return kept


def quick_check_file(path: str | os.PathLike) -> list[str]:
    """SQLite's `PRAGMA quick_check` of a store file: [] when sound, else what is wrong (also when it is no
    database at all). Opens no DetectionStore: a damaged file is not migrated or written."""
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check(10)")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [str(exc)]
    if rows == ["ok"]:
        return []
    lines = [line.strip() for r in rows for line in str(r).splitlines() if line.strip() and "***" not in line]
    return lines[:5] or ["quick_check failed"]


def set_aside(store_path: Path, why: str) -> Path | None:
    """Rename a store and its WAL out of the way, as `detections.<why>-<UTC time>.sqlite` (its -wal and -shm
    beside it under the same name, so SQLite opens the pair as it was); the new path, or None when there was no
    store. The folder is fsynced."""
    if not store_path.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = store_path.with_name(f"{store_path.stem}.{why}-{stamp}{store_path.suffix}")
    for ext in ("-wal", "-shm", ""):
        side = store_path.with_name(store_path.name + ext)
        if side.exists():
            os.replace(side, kept.with_name(kept.name + ext))
    fsio.fsync_dir(store_path.parent)
    return kept
