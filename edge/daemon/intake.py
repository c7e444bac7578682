"""The folder intake: recordings arriving in the watched folder, scanned one at a time, then kept, archived or
deleted.

    FolderWatcher (its thread, its store connection) -> bounded queue of FileJob -> the scanning loop (its thread,
    its store connection, its Scanner) -> `after`: archive or delete once the detections are durable

A full disk pauses intake (one message, see diskpause.py) and the file is scanned again when space is back: a
full disk is never the recording's fault, it counts no attempt. Stopping abandons the file in progress (nothing
of it is recorded; it is scanned again at the next start).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import sqlite3
import threading
from pathlib import Path

from hootwatch.edge.contract.cascade import CascadeDetector
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.core import fsio
from hootwatch.edge.core.errors import DiskFullError, is_disk_full
from hootwatch.edge.scan import planning
from hootwatch.edge.scan.engine import Progress, ScanInterrupted, Scanner, ScanSettings
from hootwatch.edge.store.database import DELETED, STORE_NAME, DetectionStore
from .config import DaemonConfig
from .diskguard import DiskGuard
from .diskpause import DiskPause
from .health import Health
from .notify import Heartbeats
from .threads import Worker
from .watcher import FileJob, FolderWatcher, stat_key

log = logging.getLogger("hootwatch.daemon")

AFTER_BATCH = 8  # recordings deleted/archived per durable commit in a backlog (more stay longer in the folder)


def audio_end(row) -> str | None:
    """The recording's clock time at the end of its scanned audio (ISO, UTC), from its ledger row."""
    if not row.start_utc:
        return None
    start = dt.datetime.fromisoformat(row.start_utc)
    return (start + dt.timedelta(seconds=row.audio_s or 0.0)).isoformat(timespec="milliseconds")


class _Beat(Progress):
    """Scan progress hook: a heartbeat per decoded block, so a long file is not taken for a stall."""

    def __init__(self, beats: Heartbeats) -> None:
        self.beats = beats

    def advance(self, audio_s: float) -> None:
        self.beats.beat("folder")


class Intake:
    """The watched folder of `cfg.sources.folder`, scanned with `detector` into run `run_key` of the store in
    `cfg.output.dir`. Opens its two store connections when made; `start()` starts its threads. A subclass may
    wrap `scan` or `after` (tests and benchmarks pass one to the Daemon)."""

    def __init__(self, cfg: DaemonConfig, detector: Detector | CascadeDetector, settings: ScanSettings, run_key: str,
                 *, stop: threading.Event, health: Health, beats: Heartbeats, guard: DiskGuard,
                 pause: DiskPause) -> None:
        self.fcfg = fcfg = cfg.sources.folder
        self.settings, self.run_key = settings, run_key
        self.stop_event, self.health, self.beats, self.guard, self.pause = stop, health, beats, guard, pause
        out_dir = Path(cfg.output.dir)
        self.jobs: queue.Queue = queue.Queue(maxsize=fcfg.queue_size)
        self.ledger_store = DetectionStore(out_dir / STORE_NAME)  # the watcher thread's connection
        exclude = (out_dir, fcfg.archive_dir, cfg.raw_dir)
        self.watcher = FolderWatcher(fcfg, self.jobs, self._needs_scan, stop, exclude=exclude)
        self.scan_store = DetectionStore(out_dir / STORE_NAME)  # the scanning loop's connection
        self.scanner = Scanner(detector, self.scan_store, settings, out_dir)
        self.scanner.clip_room = guard.room_for  # each clip asks: detections and the store come first
        self.worker = Worker(self.run, "hootwatch-scan", "hootwatch-scan", log)
        self._given_up: set[str] = set()
        self._moving: dict[str, Path] = {}  # done recordings waiting for `after`'s durable commit

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.beats.register("folder")
        self.watcher.start()
        self.worker.start()

    @property
    def workers(self) -> tuple[tuple[str, FolderWatcher | Worker], ...]:
        """Its threads, as the daemon names them when one has died."""
        return ("folder watcher", self.watcher), ("scan loop", self.worker)

    def stop(self) -> None:
        """Abandon the file in progress and stop the watcher (the scanning loop then ends: `join`)."""
        self.scanner.stop()
        self.watcher.join()

    def join(self) -> None:
        self.worker.join(30)

    def close(self) -> None:
        """Close the watcher's connection once its thread has stopped (the scanning loop closes its own)."""
        if not self.watcher.is_alive():
            self.ledger_store.close()

    def rescan(self, paths: tuple[Path, ...]) -> None:
        """Recordings outside the watched folder (the archive) that a store replaced after a failed check must
        scan again; those in the watched folder its walk finds by itself (the new ledger does not have them)."""
        root = Path(self.fcfg.path).resolve()
        jobs = [FileJob(Path(p), *key) for p in paths
                if (key := stat_key(p)) is not None and root not in Path(p).resolve().parents]

        def feed() -> None:  # in a thread: thousands of them must not hold up start-up (systemd's start timeout)
            for job in jobs:
                while not self.stop_event.is_set():
                    try:
                        self.jobs.put(job, timeout=0.5)
                        break
                    except queue.Full:
                        continue
        if jobs:
            threading.Thread(target=feed, name="hootwatch-rescan", daemon=True).start()

    # ------------------------------------------------------------ the scanning loop
    def _needs_scan(self, path: Path, size: int, mtime_ns: int) -> bool:
        fcfg = self.fcfg
        if self.ledger_store.due(path, self.run_key, fcfg.max_attempts):
            return True
        if fcfg.after == "keep":
            return False
        row = self.ledger_store.ledger(path, self.run_key)
        return row is not None and row.status == "done"  # committed but not yet archived/deleted

    def run(self) -> None:
        """The scanning loop (the worker thread's): one job at a time until stopped."""
        progress = _Beat(self.beats)
        try:
            while not self.stop_event.is_set():
                self.beats.beat("folder")
                try:
                    job = self.jobs.get(timeout=0.5)
                except queue.Empty:
                    continue
                try:
                    self._scan_until_space(job, progress)
                except ScanInterrupted:
                    log.info("%s: interrupted by stop; it will be scanned again at the next start", job.path)
                    break
                except Exception as exc:  # the loop must never die silently: log, count, go on with the next
                    log.exception("%s: scanning failed", job.path)
                    self.health.add(files_failed=1)
                    self.health.update(last_error=f"{job.path.name}: {type(exc).__name__}: {exc}")
                finally:
                    self.watcher.done(job.path)
        finally:
            self.scan_store.close()

    def _scan_until_space(self, job: FileJob, progress: Progress) -> None:
        """Scan the job; on a full disk pause intake (one message), wait for space, scan it again. A full disk
        is never the recording's fault: nothing of it is recorded, it counts no attempt."""
        while True:
            try:
                self.scan(job, progress)
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                if not self.pause.wait_for_space("intake", exc, job.path, beat=lambda: self.beats.beat("folder")):
                    raise ScanInterrupted() from None
                continue
            self.pause.space_back("intake")
            return

    def scan(self, job: FileJob, progress: Progress) -> None:
        """Scan one recording handed over by the watcher, count it, then `after` it."""
        fcfg = self.fcfg
        store = self.scan_store
        if stat_key(job.path) != (job.size, job.mtime_ns):  # changed since it looked complete: settle again
            self.watcher.notice(job.path)
            return
        row = store.ledger(job.path, self.run_key)
        if row is not None and row.status == "failed" and not store.due(job.path, self.run_key, fcfg.max_attempts):
            if str(job.path) not in self._given_up:
                self._given_up.add(str(job.path))
                log.warning("%s: gave up after %d attempts (%s); replace the file to try again",
                            job.path, row.attempts, row.reason)
            return
        # clips obey the disk guard, measured now: detections come first (ScanSettings is read per file)
        clips = self.settings.clips and self.guard.check()
        self.scanner.settings = dataclasses.replace(self.settings, clips=clips)
        outcome = self.scanner.scan_file(job.path, next_path=self.scanner.next_contiguous(job.path), progress=progress)
        was_failed = row is not None and row.status == "failed"  # a retry: already counted as failed
        if outcome.status == "failed":
            if not was_failed:
                self.health.add(files_failed=1)
            self.health.update(last_error=f"{job.path.name}: {outcome.reason}")
            return
        if outcome.status == "done":
            self.health.add(files_done=1, detections=outcome.n_detections, files_failed=-int(was_failed))
            self._times_of(job.path)
            if outcome.wall_s > 0:
                self.health.update(real_time_factor=round(outcome.audio_s / outcome.wall_s, 1))
            log.info("%s: %d detection(s) in %.0f s of audio (%.0fx real time)", job.path.name,
                     outcome.n_detections, outcome.audio_s, outcome.audio_s / max(outcome.wall_s, 1e-9))
        self.after(job.path)

    def _times_of(self, path: Path) -> None:
        """last_audio_utc: the recording's own time at the end of what was scanned; last_detection_utc: the
        newest detection of the run (a backlog of older cards does not move it back)."""
        store = self.scan_store
        row = store.ledger(path, self.run_key)
        if row is None:
            return
        end = audio_end(row)
        # this file's newest, against the newest so far
        mine = store.newest_detection_utc(self.run_key, row.file_key)
        newest = max((t for t in (mine, self.health.last_detection_utc) if t), default=None)
        self.health.update(**({"last_audio_utc": end} if end else {}), last_detection_utc=newest)

    # ------------------------------------------------------------ after the scan
    def after(self, path: Path) -> None:
        """Archive or delete a recording whose detections are committed (done or already done), in batches of
        up to AFTER_BATCH (a batch goes when the queue is empty): first the ledger notes where each one goes,
        in one commit that makes their detections durable too (store.record_moved_many); only then are they
        moved (files and folders fsynced) or unlinked. A power cut never leaves a recording gone whose
        detections may roll back; one that is still waiting is scanned again (found done) at the next start."""
        fcfg = self.fcfg
        if fcfg.after == "keep" or Path(fcfg.path).resolve() not in path.resolve().parents:
            return  # kept, or scanned again where it is (in the archive: `rescan`)
        self._moving[str(path)] = path
        if len(self._moving) < AFTER_BATCH and not self.jobs.empty() and not self.stop_event.is_set():
            return
        paths, self._moving = list(self._moving.values()), {}
        dest = {}
        for p in paths:
            try:
                rel = p.relative_to(fcfg.path)
            except ValueError:
                rel = Path(p.name)
            dest[p] = DELETED if fcfg.after == "delete" else Path(fcfg.archive_dir) / rel
        try:
            noted = [paths[i] for i in self.scan_store.record_moved_many(self.run_key, [(p, dest[p]) for p in paths])]
        except (sqlite3.Error, DiskFullError) as exc:
            log.warning("cannot note where %d recording(s) go, so they are kept for now: %s", len(paths), exc)
            return
        for p in set(paths) - set(noted):
            log.warning("%s: not recorded as done; it is kept", p)
        if fcfg.after == "delete":
            failed = fsio.remove_many(noted)
        else:
            failed = fsio.durable_move_many([(p, dest[p]) for p in noted])
        planning.forget(noted)  # a season of recordings passing through leaves nothing behind
        for p, exc in failed:
            log.warning("%s: cannot %s it: %s", p, fcfg.after, exc)
