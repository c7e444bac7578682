"""The status file: one small JSON document a person (or a monitoring script) can read over SSH.

Written atomically (temporary file in the same folder, fsync, rename, fsync of the folder: edge/core/fsio.py) so a
reader never sees half a file, even if the box loses power mid-write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import threading
from dataclasses import dataclass, field

from hootwatch.edge.core import fsio


def utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Health:
    """Counters the pipeline updates; `snapshot()` is what goes into the status file."""
    state: str = "starting"               # starting, running, stopping, stopped, failed (a worker thread died)
    started_utc: str = field(default_factory=utc_now_iso)
    last_audio_utc: str | None = None     # the recording's clock time at the end of the audio last scanned
    #                                       (a file: its start + its duration; the microphone: capture time)
    last_detection_utc: str | None = None  # begin of the newest detection (file or microphone) of this run
    queue_depth: int = 0                  # files waiting in the watcher queue
    files_pending: int = 0                # files seen but not yet complete or not yet scanned
    # counters of this run (model + settings), read from the store at start-up, so a restart keeps them
    files_done: int = 0                   # recordings scanned and recorded
    files_failed: int = 0                 # recordings whose last try failed (retried, then left alone)
    detections: int = 0                   # detections in the store (files and microphone)
    real_time_factor: float | None = None  # audio seconds per processing second (> 1 keeps up)
    pass_rate: float | None = None        # share of windows the full model scored (1.0: no cascade first stage)
    overruns: int = 0                     # microphone blocks lost (ring buffer full or PortAudio overflow)
    mic_state: str | None = None
    disk_free_mb: float | None = None
    disk_low: bool = False                # below health.min_free_mb: clips and raw audio paused
    disk_full: bool = False               # writes failed for want of space: intake paused until space returns
    schedule_active: bool = True
    next_schedule_change_utc: str | None = None
    last_error: str | None = None
    model: str | None = None
    # the store's upkeep (edge/store/integrity.py, backup.py): its last check, its last backup, its WAL
    store_check: str | None = None        # "ok", or "FAILED: ..." (then store_recovery says what was done)
    store_checked_utc: str | None = None
    store_recovery: str | None = None
    last_backup: str | None = None        # the newest backup's path, or "FAILED: ..."
    last_backup_utc: str | None = None
    wal_bytes: int = 0                    # the store's WAL now (bounded by the checkpoints)
    wal_high_bytes: int = 0               # the largest it was since start

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def update(self, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self, k, v)

    def add(self, **deltas) -> None:
        with self._lock:
            for k, v in deltas.items():
                setattr(self, k, getattr(self, k) + v)

    def snapshot(self) -> dict:
        with self._lock:
            d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["updated_utc"] = utc_now_iso()
        d["pid"] = os.getpid()
        return d


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    fsio.write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
