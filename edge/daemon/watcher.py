"""The watched folder: notice recordings as they arrive and hand each over once it is completely written.

watchdog's Observer (inotify on Linux) reports new and changed files; its PollingObserver is used instead for
removable media and network mounts, where inotify sees nothing (`poll = true`). Events only say "look at this
file": a file is handed over when its size and mtime have not changed for `settle_s` (or shortly after the
writer closed it, when inotify reports close-write), so a recording still being copied off an SD card is never
scanned half-written. At start-up, and again every `retry_after_s`, the whole folder is walked so the backlog
and any missed event are picked up; the ledger (`needs_scan`) decides what is new, changed or due for a retry.

The hand-over is a bounded queue: when scanning falls behind, the tracker waits instead of piling up memory.

Odd folder entries (a name that is not valid UTF-8, a symlink loop or a dangling link, a FIFO or a link to a
device named *.wav) are reported once each and skipped; they never reach the ledger or the scanner, and the
watcher goes on with the rest. A FIFO would block the scanner for ever, a non-UTF-8 name cannot be stored.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hootwatch.edge.contract.audio import is_audio_file
from hootwatch.edge.scan.planning import odd_entry, printable  # one definition of an odd entry, shared with scan
from .config import FolderConfig
from .threads import Worker

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 0.5  # after close-write, the stat must still hold this long (a writer that reopens to append)


@dataclass(frozen=True)
class FileJob:
    """A file that looked complete: scan it if it still has this size and mtime."""
    path: Path
    size: int
    mtime_ns: int


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    since: float            # monotonic time this (size, mtime) was first seen
    closed: bool = False    # inotify said the writer closed it
    old_enough: bool = False  # at a folder walk its mtime was already settle_s in the past


def stat_key(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a regular file (through symlinks); None for anything else or a vanished file."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


class FolderWatcher:
    """Producer: watches `cfg.path`, puts FileJob on `jobs` once files are stable.

    `needs_scan(path, size, mtime_ns) -> bool` is the ledger's verdict (False for a file already scanned with
    this size and mtime, or a failed one not yet due for a retry). Call `done(path)` after a job is handled.
    """

    def __init__(self, cfg: FolderConfig, jobs: queue.Queue, needs_scan: Callable[[Path, int, int], bool],
                 stop: threading.Event, exclude: tuple[Path, ...] = ()) -> None:
        self.cfg = cfg
        self.root = Path(cfg.path)
        self.jobs = jobs
        self.needs_scan = needs_scan
        self.stop = stop
        self.exclude = tuple(Path(p).resolve() for p in exclude if p)
        self._pending: dict[Path, _Pending] = {}
        self._reported: set[Path] = set()  # odd entries already reported (once each)
        self._queued: set[Path] = set()
        self._lock = threading.Lock()
        self._walk_requested = threading.Event()
        self._walk_requested.set()  # the start-up backlog
        self._observer = None
        self._tracker = Worker(self._track_loop, "hootwatch-folder", f"folder watcher on {self.root}", log)
        self.tick_s = min(cfg.poll_interval_s, max(0.05, cfg.settle_s / 4))

    # ---- what health reports
    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._queued)

    # ---- events
    def _excluded(self, path: Path) -> bool:
        try:
            rp = path.resolve()
        except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (Python < 3.13)
            return True
        return any(rp == e or e in rp.parents for e in self.exclude)

    def _skip_odd(self, path: Path) -> bool:
        """True (reported once) for an entry that is not a readable regular file with a storable name."""
        why = odd_entry(path)
        if why is None:
            return False
        with self._lock:
            first = path not in self._reported
            self._reported.add(path)
            self._pending.pop(path, None)
        if first:
            log.warning("%s: skipped: %s", printable(path), why)
        return True

    def notice(self, path: str | os.PathLike, closed: bool = False, old_enough: bool = False) -> None:
        """A file may be new or changed: track it until it is stable."""
        path = Path(path)
        if not is_audio_file(path) or self._skip_odd(path) or self._excluded(path):
            return
        if not self.cfg.recursive and path.parent.resolve() != self.root.resolve():
            return
        key = stat_key(path)
        with self._lock:
            if key is None:
                self._pending.pop(path, None)
                return
            p = self._pending.get(path)
            if p is None or (p.size, p.mtime_ns) != key:
                self._pending[path] = _Pending(*key, since=time.monotonic(), closed=closed, old_enough=old_enough)
            else:
                p.closed |= closed
                p.old_enough |= old_enough

    def forget(self, path: str | os.PathLike) -> None:
        with self._lock:
            self._pending.pop(Path(path), None)

    def done(self, path: Path) -> None:
        with self._lock:
            self._queued.discard(Path(path))

    def request_walk(self) -> None:
        self._walk_requested.set()

    # ---- the folder walk (backlog, missed events, retries)
    def walk(self) -> int:
        """Track every audio file under the folder the ledger says needs scanning; return how many."""
        n = 0
        now_ns = time.time_ns()
        it = self.root.rglob("*") if self.cfg.recursive else self.root.glob("*")
        try:
            for path in it:
                if self.stop.is_set():
                    break
                if not is_audio_file(path) or self._skip_odd(path) or self._excluded(path):
                    continue
                key = stat_key(path)
                if key is None:
                    continue
                with self._lock:
                    if path in self._queued:
                        continue
                if self._needs_scan(path, key):
                    # a file untouched for settle_s needs no second look; a fresh one is still being written
                    self.notice(path, old_enough=(now_ns - key[1]) / 1e9 >= self.cfg.settle_s)
                    n += 1
        except OSError as exc:  # the card was pulled mid-walk
            log.warning("cannot walk %s: %s", self.root, exc)
        return n

    # ---- stability
    def ready_jobs(self, now: float | None = None) -> list[FileJob]:
        """Re-stat every tracked file; return (and stop tracking) those that are complete."""
        now = time.monotonic() if now is None else now
        with self._lock:
            paths = list(self._pending)
        ready = []
        for path in paths:
            key = stat_key(path)
            with self._lock:
                p = self._pending.get(path)
                if p is None:
                    continue
                if key is None:  # deleted or moved away before it settled
                    del self._pending[path]
                    continue
                if (p.size, p.mtime_ns) != key:
                    self._pending[path] = _Pending(*key, since=now)
                    continue
                stable_for = now - p.since
                if (stable_for >= self.cfg.settle_s or p.old_enough
                        or (p.closed and stable_for >= min(CLOSE_GRACE_S, self.cfg.settle_s))):
                    del self._pending[path]
                    if path in self._queued:
                        continue
                    ready.append(FileJob(path, *key))
        # the one gate before a hand-over: events (a folder moved in, a late close-write) can re-notice a file
        # that was already handed over and scanned, and only the ledger knows
        ready = [j for j in ready if self._needs_scan(j.path, (j.size, j.mtime_ns))]
        with self._lock:
            self._queued.update(j.path for j in ready)
        return sorted(ready, key=lambda j: str(j.path))

    def _needs_scan(self, path: Path, key: tuple[int, int]) -> bool:
        """The ledger's verdict; a file it cannot judge is reported once and skipped, the rest goes on."""
        try:
            return self.needs_scan(path, *key)
        except Exception as exc:
            with self._lock:
                first = path not in self._reported
                self._reported.add(path)
            if first:
                log.warning("%s: skipped: the ledger cannot look it up (%s: %s)", printable(path),
                            type(exc).__name__, exc)
            return False

    def _put(self, job: FileJob) -> bool:
        while not self.stop.is_set():
            try:
                self.jobs.put(job, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _track_loop(self) -> None:
        next_walk = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if self._walk_requested.is_set() or now >= next_walk:
                self._walk_requested.clear()
                n = self.walk()
                if n:
                    log.info("%s: %d recording(s) to scan", self.root, n)
                next_walk = now + self.cfg.retry_after_s
            for job in self.ready_jobs():
                if not self._put(job):
                    return
            self.stop.wait(self.tick_s)

    # ---- lifecycle
    def start(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                kind = event.event_type
                path = getattr(event, "dest_path", "") or event.src_path
                if event.is_directory:
                    if kind in ("created", "moved"):
                        watcher.request_walk()  # a folder copied or moved in arrives as one event
                    return
                if kind == "deleted":
                    watcher.forget(event.src_path)
                elif kind in ("created", "modified", "moved", "closed"):
                    watcher.notice(path, closed=(kind == "closed"))

        if not self.root.is_dir():
            from hootwatch.edge.core.errors import ConfigError
            raise ConfigError(f"sources.folder.path: {self.root} is not a folder",
                              "create it, or mount the card there, then restart")
        if self.cfg.poll:
            self._observer = PollingObserver(timeout=self.cfg.poll_interval_s)
        else:
            self._observer = Observer()
        self._observer.schedule(Handler(), str(self.root), recursive=self.cfg.recursive)
        try:
            self._observer.start()
        except OSError as exc:  # inotify limits reached, or a file system without inotify
            log.warning("inotify unavailable on %s (%s): polling every %.1f s instead",
                        self.root, exc, self.cfg.poll_interval_s)
            self._observer = PollingObserver(timeout=self.cfg.poll_interval_s)
            self._observer.schedule(Handler(), str(self.root), recursive=self.cfg.recursive)
            self._observer.start()
        self._tracker.start()
        log.info("watching %s (%s%s, settle %.1f s)", self.root, "polling" if self.cfg.poll else "inotify",
                 ", recursive" if self.cfg.recursive else "", self.cfg.settle_s)

    def join(self, timeout: float = 5.0) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        self._tracker.join(timeout)

    def is_alive(self) -> bool:
        return self._tracker.is_alive()

    @property
    def error(self) -> BaseException | None:
        """What killed the tracker thread, if anything did."""
        return self._tracker.error
