"""Which files a scan processes and in what order: audio files under the paths given, their headers and start
times, and the links between contiguous files of one recorder. Used by `Scanner` (scan, daemon) and by
`scan.offline` (operating point, mining), so that all of them window a recording the same way.

Contiguous files: files of one recorder (same folder and recorder id, same sample rate) where the next starts
where the previous ends (within `tol_s`) are one continuous recording; a file's last windows then run on into
the head of the next (edge/contract/score_loop.py).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from dataclasses import dataclass, replace
from datetime import tzinfo
from pathlib import Path
from typing import Iterable

from hootwatch.edge.contract.audio import AudioInfo, is_audio_file, probe
from hootwatch.edge.core.errors import AudioReadError, ConfigError, HootwatchError
from hootwatch.edge.contract.recorder_time import FileTime, file_time
from hootwatch.edge.store.database import file_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    info: AudioInfo | None              # None when the header cannot be read (the file will fail)
    time: FileTime | None               # None also when its time metadata is impossible (the file will fail)
    next_path: Path | None = None       # the contiguous next file of the same recorder, if any
    odd: str = ""                       # why this entry cannot be scanned at all (odd_entry); never opened
    given: bool = False                 # named as an argument (an odd one fails) rather than found in a folder


def printable(path: str | os.PathLike) -> str:
    """The path for a message, with bytes that are not UTF-8 shown as \\xNN (printing them raw would fail)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def odd_entry(path: Path) -> str | None:
    """Why this entry cannot be a recording to scan, or None (a regular file, a folder, or a path that does not
    exist, which fails when it is scanned as any unreadable file does). Never opens the file: a FIFO would block
    for ever, a device never end."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return "its name is not valid UTF-8, so it cannot be recorded in the results: rename it (e.g. with convmv)"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a dangling symlink (its target does not exist): remove it" if os.path.islink(path) else None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop (the link leads back to itself): remove it"
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError as exc:  # an embedded NUL
        return str(exc)
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    if stat.S_ISFIFO(st.st_mode):
        return "a FIFO (named pipe), not a recording: remove it"
    if stat.S_ISSOCK(st.st_mode):
        return "a socket, not a recording: remove it"
    return "a device (or a link to one), not a recording: remove it"


def find_audio(paths: Iterable[str | os.PathLike], unique: bool = True) -> list[PlannedFile]:
    """Files given directly (whatever their extension) plus audio files found recursively in folders (symlinked
    folders are not followed), in order, the same recording once (unless not `unique`); odd entries (odd_entry)
    come with `odd` set, never opened. Folders that cannot be listed are reported and left out."""
    out: list[PlannedFile] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += _walk(p)
        else:
            why = odd_entry(p)
            out.append(PlannedFile(p, None, None, odd=why or "", given=True))
    if not unique:
        return out
    seen, once = set(), []
    for f in out:
        if not f.odd:
            k = file_key(f.path)
            if k in seen:
                continue
            seen.add(k)
        once.append(f)
    return once


def _walk(folder: Path) -> list[PlannedFile]:
    found: list[PlannedFile] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        log.warning("%s: folder skipped: it cannot be listed (%s)", printable(folder), exc.strerror or exc)
        return []
    for e in entries:
        path = Path(e.path)
        try:
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            found += _walk(path)
            continue
        if e.is_symlink() and os.path.isdir(path):
            continue  # a symlinked folder: not followed (nor its loops)
        if not is_audio_file(e.name):
            continue
        why = odd_entry(path)
        found.append(PlannedFile(path, None, None, odd=why or ""))
    return found


def collect_audio(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The audio files `find_audio` finds, without the odd entries."""
    return [f.path for f in find_audio(paths) if not f.odd]


def plan_file(path: Path, tz: tzinfo | None) -> PlannedFile:
    """Header and start time of one file (ConfigError if a timezone is needed and missing: that is the run's
    problem). A file whose header or time cannot be read is planned without them: it fails, alone, when scanned."""
    try:
        info = probe(path)
    except AudioReadError:  # it fails (and is recorded) when scanned; no time needed
        return PlannedFile(path, None, None)
    try:
        return PlannedFile(path, info, start_time(path, tz))
    except ConfigError:
        raise
    except HootwatchError:
        return PlannedFile(path, info, None)


def start_time(path: Path, tz: tzinfo | None) -> FileTime:
    """recorder_time.file_time, with impossible metadata (a date or offset no clock gives) as a HootwatchError
    naming the file rather than a ValueError that would stop the whole scan."""
    try:
        return file_time(path, tz)
    except (ValueError, OverflowError) as exc:
        raise HootwatchError(f"{path}: impossible start time in its metadata or name ({exc})",
                             "the recorder's clock was probably not set: rename the file to its true start time "
                             "(e.g. YYYYMMDD_HHMMSS.WAV, UTC) to scan it") from None


def link_contiguous(files: list[PlannedFile], tol_s: float) -> list[PlannedFile]:
    """`files` with `next_path` set where the next file of the same recorder starts where this one ends."""
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(files):
        if f.info is not None and f.time is not None:
            groups.setdefault((f.path.parent.resolve(), f.time.recorder_id, f.info.sample_rate), []).append(i)
    linked = list(files)
    for idx in groups.values():
        idx.sort(key=lambda i: files[i].time.start_utc)
        for a, b in zip(idx, idx[1:]):
            fa, fb = files[a], files[b]
            end_a = fa.time.at(fa.info.duration_s)
            if abs((fb.time.start_utc - end_a).total_seconds()) <= tol_s:
                linked[a] = PlannedFile(fa.path, fa.info, fa.time, fb.path)
    return linked


def plan_files(files: Iterable[Path | PlannedFile], tz: tzinfo | None, tol_s: float) -> list[PlannedFile]:
    """Probe every file (paths, or `find_audio`'s entries: odd ones stay as they are), find its start time and
    link contiguous files."""
    planned = []
    for f in files:
        if isinstance(f, PlannedFile):
            planned.append(f if f.odd else replace(plan_file(f.path, tz), given=f.given))
        else:
            planned.append(plan_file(Path(f), tz))
    return link_contiguous(planned, tol_s)


def next_contiguous(path: str | os.PathLike, tz: tzinfo | None, tol_s: float) -> Path | None:
    """The file of the same recorder in the same folder that continues `path`, if it is there already."""
    path = Path(path)
    try:
        siblings = sorted(f for f in path.parent.iterdir() if is_audio_file(f) and not odd_entry(f) and f.is_file())
    except OSError:
        return None
    if odd_entry(path):
        return None
    me = _plan_quietly(path, tz)
    if me is None or me.info is None:
        return None  # scanning it says what is wrong
    others = [_plan_quietly(f, tz) for f in siblings if f.name != path.name]
    return link_contiguous([me] + [f for f in others if f is not None], tol_s)[0].next_path


def _plan_quietly(path: Path, tz: tzinfo | None) -> PlannedFile | None:
    """plan_file, or None when the file's time cannot be read (that file fails when it is scanned itself).
    Cached per path on (size, mtime): the daemon asks once per file, and a folder may hold thousands."""
    try:
        st = os.stat(path)
        return _PLANS.get(path, (st.st_size, st.st_mtime_ns, tz))
    except (OSError, HootwatchError, ValueError, OverflowError):
        return None


class _PlanCache:
    """path -> its plan, for (size, mtime, tz) as they were: a file rewritten in place replaces its entry, at most
    `size` paths are kept (the oldest dropped first), and `forget` drops the recordings the daemon deleted or
    archived, so that a season of recordings passing through the watched folder leaves nothing behind."""

    def __init__(self, size: int = 65536) -> None:
        self.size, self._plans, self._lock = size, {}, threading.Lock()

    def get(self, path: Path, key: tuple) -> PlannedFile:
        with self._lock:
            hit = self._plans.get(str(path))
        if hit is not None and hit[0] == key:
            return hit[1]
        plan = plan_file(Path(path), key[2])
        with self._lock:
            self._plans.pop(str(path), None)
            self._plans[str(path)] = (key, plan)
            while len(self._plans) > self.size:
                del self._plans[next(iter(self._plans))]
        return plan

    def forget(self, paths: Iterable[str | os.PathLike]) -> None:
        with self._lock:
            for p in paths:
                self._plans.pop(str(p), None)


_PLANS = _PlanCache()


def forget(paths: Iterable[str | os.PathLike]) -> None:
    """Drop what planning keeps of these recordings (they were deleted or moved away)."""
    _PLANS.forget(paths)
