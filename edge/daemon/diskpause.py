"""The disk-full pause: what cannot write because the disk is full (intake, the microphone's detections, exports,
the status file) waits and says so once, for all; when the last of them has written again, one line says
everything resumed. A full disk loses nothing and is never a recording's fault (see diskguard.py for the floor
below which only clips and raw audio stop)."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Callable

from .diskguard import DiskGuard
from .health import Health

log = logging.getLogger("hootwatch.daemon")

DISK_FULL_POLL_S = 2.0    # while intake is paused on a full disk: how often to look at the free space
DISK_FULL_RETRY_S = 60.0  # ... and retry the file at the latest after this long (space may come back unseen)
DISK_FULL_FREED = 1e6     # bytes freed since it filled that make it worth trying again at once


class DiskPause:
    def __init__(self, out_dir: Path, health: Health, guard: DiskGuard, stop: threading.Event) -> None:
        self.out_dir, self.health, self.guard, self.stop = out_dir, health, guard, stop
        self._full: set[str] = set()  # what waits for disk space now (one message for all until it returns)
        self._lock = threading.Lock()

    def full(self, what: str, exc: BaseException, detail: str = "") -> None:
        """`what` waits for disk space. The first one says so for all (one message until space returns)."""
        with self._lock:
            first = not self._full
            self._full.add(what)
        if first:
            log.error("disk full on %s (%s): %s paused%s; detections, exports and the status file wait, nothing is "
                      "lost, and it all resumes by itself when space is freed (delete old clips or raw audio, or "
                      "move files off that disk)", self.out_dir, getattr(exc, "message", exc), what, detail)
            self.health.update(state="paused: disk full", disk_full=True, last_error=f"disk full: {what} paused")

    def space_back(self, what: str) -> None:
        """`what` has written again; when it was the last one waiting, say that everything resumed."""
        with self._lock:
            if what not in self._full:
                return
            self._full.discard(what)
            last = not self._full
        if last:
            log.warning("disk space back on %s: everything resumed", self.out_dir)
            self.health.update(state="running", disk_full=False)

    def wait_for_space(self, what: str, exc: BaseException, path: Path | None = None,
                       beat: Callable[[], None] = lambda: None) -> bool:
        """Say once that `what` is paused on a full disk; return when space may be back (False: stopping).
        `beat()` is called while waiting: waiting for space is not a stall (a restart would not help)."""
        self.full(what, exc, f" ({path.name} will be scanned again)" if path else "")
        free0 = shutil.disk_usage(self.guard.existing_path()).free
        waited = 0.0
        while not self.stop.is_set():
            beat()
            self.stop.wait(DISK_FULL_POLL_S)
            waited += DISK_FULL_POLL_S
            freed = shutil.disk_usage(self.guard.existing_path()).free - free0
            if freed > DISK_FULL_FREED or waited >= DISK_FULL_RETRY_S:
                return True
        return False
