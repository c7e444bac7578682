"""Writes that survive a power cut: the one implementation of atomic and durable file operations.

A file's bytes reach the disk when the file is fsynced; a name (a new file, a rename, an unlink) when the
folder holding it is fsynced. Without the second, a power cut can undo a rename whose data was already on the
disk, or keep an unlink whose reason (a database commit) was lost. So:

- `write_atomic(path, data)`: write a temporary file in the same folder, fsync it, rename it over `path`,
  fsync the folder. A reader sees the old file or the new one, never half of one, before and after a cut.
- `durable_move(src, dst)`: rename (or, across disks, copy to a temporary name, fsync, rename), fsync the
  file and both folders, and only then remove the source. At every moment the recording exists complete in
  at least one of the two places.
- `remove(path)`: unlink and fsync the folder.
- `durable_move_many` / `remove_many`: the same for many files, each folder fsynced once.
- `makedirs(path)`: create missing folders and fsync the parent of each new one (and of `path`).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

# folders that cannot be fsynced (some network and FAT drivers): nothing better can be done there
_NO_DIR_FSYNC = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the names in folder `path` (created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)


def makedirs(path: str | os.PathLike) -> Path:
    """`mkdir -p` whose folders survive a power cut: the parent of each new folder is fsynced, and so is the
    parent of `path` itself even when `path` existed (whoever made it may not have fsynced its name)."""
    p = Path(path)
    missing = []
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        fsync_dir(d.parent)
    if not missing and Path(path).parent != Path(path):
        fsync_dir(Path(path).parent)
    return Path(path)


@contextmanager
def _replacing(tmp: Path, dst: Path):
    """The body fills `tmp`; then it replaces `dst` in one step, or, on any failure (a full disk included), is
    removed and `dst` is left as it was."""
    try:
        yield
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Replace `path` with `data` (text is written as `encoding`, newlines as given): all or nothing, durable."""
    p = Path(path)
    makedirs(p.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    with _replacing(Path(tmp), p), os.fdopen(fd, "wb") as f:
        f.write(data.encode(encoding) if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(p.parent)
    return p


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_move(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move `src` to `dst` (replacing it) so that a power cut at any moment leaves the file complete in `dst`,
    in `src`, or in both; never in neither, never half a file under the name `dst`."""
    failed = durable_move_many([(Path(src), Path(dst))])
    if failed:
        raise failed[0][1]
    return Path(dst)


def durable_move_many(moves: list[tuple[Path, Path]]) -> list[tuple[Path, OSError]]:
    """`durable_move` of many files, fsyncing each folder once: every file, renamed (or across disks copied to
    a temporary name, fsynced and renamed), then the destination folders, and only then are the copied sources
    removed and the source folders fsynced. Returns the moves that failed, with why (the others go on)."""
    failed, copied, dst_dirs, src_dirs = [], [], {}, {}
    for src, dst in moves:
        try:
            if str(dst.parent) not in dst_dirs:
                makedirs(dst.parent)
                dst_dirs[str(dst.parent)] = dst.parent
            fsync_file(src)  # its bytes first: whoever wrote it may never have fsynced them
            try:
                os.rename(src, dst)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                _copy_durably(src, dst)
                copied.append((src, dst))
            src_dirs[str(src.parent)] = src.parent
        except OSError as exc:
            failed.append((src, exc))
    unsynced = _fsync_dirs(dst_dirs)
    for src, dst in copied:
        if str(dst.parent) in unsynced:  # the copy's name may not be on the disk: keep the original
            failed.append((src, unsynced[str(dst.parent)]))
            continue
        try:
            os.unlink(src)
        except OSError as exc:
            failed.append((src, exc))
    failed += [(src_dirs[k], exc) for k, exc in _fsync_dirs(src_dirs).items()]
    return failed


def _copy_durably(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.partial")  # one fixed name: a copy cut short is overwritten next time
    with _replacing(tmp, dst):
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, tmp)


def remove(path: str | os.PathLike) -> None:
    """Unlink `path` and make the removal durable."""
    failed = remove_many([Path(path)])
    if failed:
        raise failed[0][1]


def remove_many(paths: list[Path]) -> list[tuple[Path, OSError]]:
    """Unlink every path, then fsync each folder once. Returns the paths that failed, with why."""
    failed, dirs = [], {}
    for p in paths:
        try:
            os.unlink(p)
            dirs[str(p.parent)] = p.parent
        except OSError as exc:
            failed.append((p, exc))
    failed += [(dirs[k], exc) for k, exc in _fsync_dirs(dirs).items()]
    return failed


def _fsync_dirs(dirs: dict[str, Path]) -> dict[str, OSError]:
    """fsync each folder once; the ones that failed, with why (the others are still synced)."""
    unsynced = {}
    for key, d in dirs.items():
        try:
            fsync_dir(d)
        except OSError as exc:
            unsynced[key] = exc
    return unsynced
