"""Stop writing clips and raw audio when the disk runs low; resume when space comes back. Says so, once.

Detections themselves (a few bytes each in SQLite) continue: they are what the deployment is for. Optional
writes ask first (`check()` before a file's clips, `allows_optional()` before each raw block, re-measured at
least every second), not only on the daemon's 30 s timer: clips can fill a small card within seconds.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def mb(x: float) -> str:
    """Megabytes for a person: whole ones from 10 MB on, one decimal below (a 0.5 MB floor is not "0 MB")."""
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.1f}"


class DiskGuard:
    def __init__(self, path: str | Path, min_free_mb: float, hysteresis_mb: float | None = None) -> None:
        self.path = Path(path)
        self.min_free_mb = float(min_free_mb)
        # resume only a little above the floor so a file written right at the edge does not make it flap
        self.resume_mb = self.min_free_mb + (hysteresis_mb if hysteresis_mb is not None
                                             else min(100.0, 0.1 * self.min_free_mb))
        self._ok = threading.Event()
        self._ok.set()
        self.free_mb: float | None = None
        self._measured = float("-inf")  # monotonic time of the last measurement

    @property
    def writes_allowed(self) -> bool:
        """Whether clips and raw audio may be written now."""
        return self._ok.is_set()

    def existing_path(self) -> Path:
        """The guarded folder, or its nearest parent that exists (what holds it)."""
        p = self.path
        while not p.exists() and p != p.parent:
            p = p.parent
        return p

    def free_space_mb(self) -> float:
        return shutil.disk_usage(self.existing_path()).free / 1e6

    def allows_optional(self, max_age_s: float = 1.0) -> bool:
        """writes_allowed, measured again when the last measurement is older than `max_age_s`."""
        if time.monotonic() - self._measured > max_age_s:
            return self.check()
        return self.writes_allowed

    def room_for(self, nbytes: int) -> bool:
        """Whether an optional write of `nbytes` may go now (measured now): writes allowed, and the floor still
        free after it. Asked before each clip: one file's clips can take megabytes."""
        return self.check() and self.free_mb - nbytes / 1e6 >= self.min_free_mb

    def check(self, free_mb: float | None = None) -> bool:
        """Re-measure (or take `free_mb`), switch state with a log line, return writes_allowed."""
        self.free_mb = self.free_space_mb() if free_mb is None else float(free_mb)
        self._measured = time.monotonic()
        if self._ok.is_set() and self.free_mb < self.min_free_mb:
            self._ok.clear()
            log.warning("disk low: %s MB free on %s (floor %s MB): clips and raw audio paused, "
                        "detections continue", mb(self.free_mb), self.path, mb(self.min_free_mb))
        elif not self._ok.is_set() and self.free_mb >= self.resume_mb:
            self._ok.set()
            log.warning("disk space back: %s MB free on %s: clips and raw audio resumed", mb(self.free_mb), self.path)
        return self._ok.is_set()
