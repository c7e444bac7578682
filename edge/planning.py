"""Which files a scan processes and in what order: audio files under the paths given, their headers and start
times, and the links between contiguous files of one recorder. Used by `Scanner` (scan, daemon) and by
`window_scores` (operating point, mining), so that all of them window a recording the same way.

Contiguous files: files of one recorder (same folder and recorder id, same sample rate) where the next starts
where the previous ends (within `tol_s`) are one continuous recording; a file's last windows then run on into
the head of the next (edge/score_stream.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Iterable

from .audio import AudioInfo, is_audio_file, probe
from .errors import AudioReadError, HootwatchError
from .recorder_time import FileTime, file_time
from .store import file_key


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    info: AudioInfo | None              # None when the header cannot be read (the file will fail)
    time: FileTime | None
    next_path: Path | None = None       # the contiguous next file of the same recorder, if any


def collect_audio(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files given directly (whatever their extension) plus audio files found recursively in folders, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and is_audio_file(f))
        else:
            out.append(p)
    seen, unique = set(), []
    for p in out:
        k = file_key(p)
        if k not in seen:
            seen.add(k)
            unique.append(p)
    return unique


def plan_file(path: Path, tz: tzinfo | None) -> PlannedFile:
    """Header and start time of one file (ConfigError if a timezone is needed and missing)."""
    try:
        info = probe(path)
    except AudioReadError:  # it fails (and is recorded) when scanned; no time needed
        return PlannedFile(path, None, None)
    return PlannedFile(path, info, file_time(path, tz))


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


def plan_files(files: Iterable[Path], tz: tzinfo | None, tol_s: float) -> list[PlannedFile]:
    """Probe every file (`collect_audio`), find its start time and link contiguous files."""
    return link_contiguous([plan_file(Path(p), tz) for p in files], tol_s)


def next_contiguous(path: str | os.PathLike, tz: tzinfo | None, tol_s: float) -> Path | None:
    """The file of the same recorder in the same folder that continues `path`, if it is there already."""
    path = Path(path)
    try:
        siblings = sorted(f for f in path.parent.iterdir() if f.is_file() and is_audio_file(f))
    except OSError:
        return None
    me = _plan_quietly(path, tz)
    if me is None or me.info is None:
        return None  # scanning it says what is wrong
    others = [_plan_quietly(f, tz) for f in siblings if f != path]
    return link_contiguous([me] + [f for f in others if f is not None], tol_s)[0].next_path


def _plan_quietly(path: Path, tz: tzinfo | None) -> PlannedFile | None:
    """plan_file, or None when the file's time cannot be read (that file fails when it is scanned itself)."""
    try:
        return plan_file(path, tz)
    except (HootwatchError, ValueError, OverflowError):
        return None
