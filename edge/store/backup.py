"""Backups of the store that are always whole, and bringing one back.

    backup_store(out_dir / STORE_NAME, dest, keep=7) -> Backup   # DEST/detections-<UTC time>.sqlite
    backups(dest)                                                # newest first (by mtime)
    restore_store(backup, out_dir)                               # the store in out_dir replaced (the old one kept)

A backup is SQLite's online backup API (`Connection.backup`: a consistent copy while the daemon goes on writing,
every table: detections, the ledger, window scores, labels) into a temporary name in DEST, switched to a
rollback journal so it is one self-contained file, checked (`PRAGMA quick_check`), fsynced, renamed to its final
name and its folder fsynced; only then are the other backups beyond the newest `keep` removed, newest by mtime
(never by name: a clock once set wrong names a backup in the future) and never the one just written. A kill or a
power cut at any moment leaves the earlier backups as they were and at most a `.partial` file, which the next
backup removes. DEST must exist: it is never created, so that a backup disk that is not mounted is not filled on
the card under it (and a DEST on the store's own disk is flagged: it does not outlive the card).
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
    same_disk: bool  # DEST is on the store's own filesystem: no protection when that card fails


def backup_name(now: datetime | None = None) -> str:
    """`detections-20261207T031500.123456Z.sqlite`: UTC, sortable by name."""
    now = now or datetime.now(timezone.utc)
    return f"{PREFIX}{now.strftime('%Y%m%dT%H%M%S.%fZ')}{SUFFIX}"


def backups(dest: str | os.PathLike) -> list[Path]:
    """The backups in DEST, newest first (partial ones left by a kill are not backups)."""
    d = Path(dest)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX):
            try:
                found.append((p.stat().st_mtime, p.name, p))
            except OSError:  # removed meanwhile
                continue
    return [p for _, _, p in sorted(found, reverse=True)]


def backup_store(store_path: str | os.PathLike, dest: str | os.PathLike, keep: int = 7) -> Backup:
    """Copy the store at `store_path` into DEST (see the module's docstring); the other backups beyond the newest
    `keep` are then removed. HootwatchError naming DEST when it cannot be written (a full, missing or unmounted
    disk)."""
    t0 = time.perf_counter()
    dest = Path(dest)
    if dest.is_file():
        raise HootwatchError(f"backup into {dest} failed: DEST is a file, give a folder",
                             "give the folder on the backup disk (hootwatch backup OUTDIR /media/usb/hootwatch)")
    if not dest.is_dir():
        raise HootwatchError(f"backup into {dest} failed: no such folder (is the backup disk not mounted?)",
                             f"mount the backup disk, and make the folder once (mkdir -p {dest}); hootwatch never "
                             f"makes it, so that an unmounted disk is not filled on the card beneath it")
    final = dest / backup_name()
    tmp = dest / f".{final.name}{PARTIAL}"
    try:
        for old in dest.glob(f".{PREFIX}*{PARTIAL}"):  # a backup cut short by a kill or a power cut
            old.unlink(missing_ok=True)
        with DetectionStore(store_path) as store:
            store.backup_to(tmp)
        problems = DetectionStore.quick_check(tmp)
        if problems:
            raise HootwatchError(f"{tmp}: the copy failed its check ({'; '.join(problems)})",
                                 "check the disk holding it (dmesg); the earlier backups are kept")
        fsio.fsync_file(tmp)
        os.replace(tmp, final)
        fsio.fsync_dir(dest)
        size, same_disk = final.stat().st_size, dest.stat().st_dev == Path(store_path).parent.stat().st_dev
    except (OSError, sqlite3.Error) as exc:
        _unlink(tmp)
        raise HootwatchError(f"backup into {dest} failed: {exc}",
                             "check that the backup disk is mounted, writable and has room; the earlier backups "
                             "are kept") from exc
    except BaseException:
        _unlink(tmp)
        raise
    fsio.remove_many([p for p in backups(dest) if p != final][max(1, keep) - 1:])
    return Backup(final, size, time.perf_counter() - t0, same_disk)


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def restore_store(backup: str | os.PathLike, out_dir: str | os.PathLike, kept: Path | None = None) -> Path | None:
    """Put `backup` in place as OUTDIR's store (stop the daemon first): copied into a temporary file in OUTDIR and
    fsynced first, so that a full disk or a kill meanwhile leaves the store as it was; only then is the store it
    replaces (with its WAL) set aside, as `kept` (default `detections.replaced-<UTC time>.sqlite`), and the copy
    renamed into place. Returns where the old store is kept (None when there was none). ConfigError when `backup`
    is no backup or no sound one."""
    src, out = Path(backup), Path(out_dir)
    if not src.is_file():
        raise ConfigError(f"{src}: no such backup", "give a file from the backup folder (detections-*.sqlite)")
    with open(src, "rb") as f:
        is_sqlite = f.read(16) == b"SQLite format 3\x00"
    if not is_sqlite:
        raise ConfigError(f"{src}: this is not a hootwatch backup (detections-*.sqlite)",
                          "give a file from the backup folder, or the folder itself (its newest)")
    problems = DetectionStore.quick_check(src)
    if problems:
        raise ConfigError(f"{src}: not a sound store ({'; '.join(problems)})", "choose an older backup")
    fsio.makedirs(out)
    store, tmp = out / STORE_NAME, out / f".{STORE_NAME}{PARTIAL}"
    _unlink(tmp)
    try:
        source, copy = sqlite3.connect(f"file:{src.resolve()}?mode=ro", uri=True), sqlite3.connect(tmp)
        try:  # read-only: the backup itself is never written (opening it as a store would migrate it)
            if not source.execute("SELECT 1 FROM sqlite_master WHERE name='detections'").fetchone():
                raise ConfigError(f"{src}: this is not a hootwatch backup (detections-*.sqlite): it has no "
                                  f"detections table", "give a file from the backup folder")
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        fsio.fsync_file(tmp)
    except BaseException:
        _unlink(tmp)
        raise
    kept = set_aside(store, kept or aside_path(store, "replaced"))
    os.replace(tmp, store)
    fsio.fsync_dir(out)
    return kept


def aside_path(store_path: Path, why: str) -> Path:
    """`detections.<why>-<UTC time>.sqlite` beside the store: where `set_aside` puts it."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return store_path.with_name(f"{store_path.stem}.{why}-{stamp}{store_path.suffix}")


def set_aside(store_path: Path, kept: Path) -> Path | None:
    """Rename a store and its WAL out of the way, to `kept` (its -wal and -shm beside it under the same name, so
    SQLite opens the pair as it was); `kept`, or None when there was no store. The folder is fsynced."""
    if not store_path.exists():
        return None
    for ext in ("-wal", "-shm", ""):
        side = store_path.with_name(store_path.name + ext)
        if side.exists():
            os.replace(side, kept.with_name(kept.name + ext))
    fsio.fsync_dir(store_path.parent)
    return kept
