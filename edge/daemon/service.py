"""The daemon: one model, the configured sources, the schedule, health and exports, until SIGTERM.

    load config -> load + warm up the model -> open the store -> start the scheduler jobs (status file,
    exports, disk guard, schedule) -> start the sources (folder watcher + scanning loop, microphone) ->
    READY=1 -> wait for SIGTERM/SIGINT -> STOPPING=1 -> drain -> flush exports -> exit 0

Threads: the watchdog observer and the folder tracker (producers) hand complete files over a bounded queue to
the scanning loop (consumer); PortAudio's callback fills the microphone ring that the microphone loop drains.
Each processing loop has its own SQLite connection (same WAL database) and its own Scanner (sharing the one
ONNX Runtime session, which is thread-safe). The processing loops feed systemd's watchdog (notify.Heartbeats).

Stopping: the scanning loop abandons the file in progress (nothing of it is recorded; it is scanned again at
the next start, so the result is the same as if it had finished), the microphone loop drains its ring buffer
and closes its session (the tail window and any open detection are written), then the exports are written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from hootwatch.edge.contract.cascade import CascadeDetector, load_detector, pass_rate_of
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.core import fsio
from hootwatch.edge.core.errors import DiskFullError, is_disk_full
from hootwatch.edge.scan.engine import LiveSession, Progress, ScanInterrupted, Scanner, ScanSettings, detection_rule
from hootwatch.edge.store.database import DELETED, STORE_NAME, DetectionStore
from .config import DaemonConfig, all_problems
from .diskguard import DiskGuard
from .health import Health, write_json_atomic
from .notify import Heartbeats, Notifier
from .preflight import preflight
from . import signals
from .schedule import is_active, next_change
from .watcher import FileJob, FolderWatcher, stat_key

log = logging.getLogger("hootwatch.daemon")
logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run would drown the journal

DB_NAME = STORE_NAME
SCHEDULE_CHECK_S = 5.0
DISK_CHECK_S = 30.0
AFTER_BATCH = 8  # recordings deleted/archived per durable commit in a backlog (more stay longer in the folder)
DISK_FULL_POLL_S = 2.0    # while intake is paused on a full disk: how often to look at the free space
DISK_FULL_RETRY_S = 60.0  # ... and retry the file at the latest after this long (space may come back unseen)
DISK_FULL_FREED = 1e6     # bytes freed since it filled that make it worth trying again at once


def _audio_end(row) -> str | None:
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


class Daemon:
    def __init__(self, cfg: DaemonConfig, stop: threading.Event | None = None, notifier: Notifier | None = None,
                 stream_factory=None) -> None:
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self.notifier = notifier or Notifier()
        self.stream_factory = stream_factory
        self.health = Health()
        self.out_dir = Path(cfg.output.dir)
        self.guard = DiskGuard(self.out_dir, cfg.health.min_free_mb)
        self.listening = threading.Event()
        self.beats = Heartbeats(self.notifier, enabled=cfg.health.watchdog)
        self.jobs: queue.Queue = queue.Queue(maxsize=cfg.sources.folder.queue_size if cfg.sources.folder else 1)
        self.watcher: FolderWatcher | None = None
        self.mic = None
        self._live: LiveSession | None = None
        self._threads: list[threading.Thread] = []
        self._errors: dict[str, BaseException] = {}  # what killed a worker thread, by thread name
        self.failure: str | None = None  # set when a worker thread died: the daemon stops with exit status 1
        self._full: set[str] = set()  # what waits for disk space now (one message for all until it returns)
        self._full_lock = threading.Lock()
        self._given_up: set[str] = set()
        self._moving: dict[str, Path] = {}  # done recordings waiting for _after's durable commit

    # ------------------------------------------------------------ main
    def run(self) -> int:
        cfg = self.cfg
        self._install_signals()
        if self.stop.is_set():
            return 0
        problems = preflight(cfg, check_microphone=self.stream_factory is None)
        if problems:  # what check-config reports: refuse to start (exit 2), every problem at once
            raise all_problems(problems, str(cfg.source_file or "config"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.notifier.status("loading model")
        self.detector = self._load_model()
        if self.stop.is_set():  # stopped while the model loaded: nothing started, nothing to drain
            log.info("stopped before start-up finished")
            return 0
        # recorder local-time file names are read in the recorders' zone; live audio is shown in the site's
        self.settings = ScanSettings(hop_s=cfg.model.hop_s, threshold=cfg.model.threshold,
                                     min_hits=cfg.model.min_hits, tz=cfg.recorder_timezone, clips=cfg.output.clips)
        try:
            with DetectionStore(self.out_dir / DB_NAME) as store:
                self.run_key = Scanner(self.detector, store, self.settings).run.run_key
                self._counters_from(store)
        except Exception as exc:
            if is_disk_full(exc):  # exit status 4: systemd starts it again (RestartSec) until there is space
                raise DiskFullError(f"the disk holding {self.out_dir} is full: the detection store cannot be opened",
                                    "free some space there; hootwatch starts again by itself under systemd") from None
            raise
        log.info("detection rule: %s", detection_rule(self.detector.manifest, self.settings))
        self.guard.check()
        self._check_schedule()
        scheduler = self._start_jobs()
        if cfg.sources.folder is not None:
            self._start_folder()
        if cfg.sources.microphone is not None:
            self._start_microphone()
        if cfg.review.enabled:
            self._start_review()
        self.health.update(state="running")
        self._write_status()
        self.notifier.ready(self._status_line())
        log.info("ready: %s", self._status_line())
        while not self.stop.wait(1.0):
            dead = self._dead_worker()
            if dead:
                self._fail(dead)
                break
        self._shutdown(scheduler)
        return 1 if self.failure else 0

    def _dead_worker(self) -> str | None:
        """'<what> died (<error>)' for a worker thread that ended while the daemon was not stopping."""
        if self.stop.is_set():
            return None
        workers = [("folder watcher", self.watcher, lambda: self.watcher.error)] if self.watcher else []
        workers += [(t.name.removeprefix("hootwatch-") + " loop", t, lambda t=t: self._errors.get(t.name))
                    for t in self._threads]
        if self.mic is not None:
            workers.append(("microphone", self.mic, lambda: self.mic.error))
        for what, w, error in workers:
            if not w.is_alive():
                exc = error()
                return f"{what} thread died ({type(exc).__name__}: {exc})" if exc else f"{what} thread ended"
        return None

    def _fail(self, why: str) -> None:
        """A worker died: say so everywhere, stop feeding the watchdog, stop (exit 1: systemd restarts us)."""
        self.failure = why
        self.beats.fail()
        log.error("%s: stopping; restart hootwatch (systemd does so by itself) and report this as a bug", why)
        self.health.update(state="failed", last_error=why)
        self._write_status()

    def _load_model(self) -> Detector | CascadeDetector:
        m = self.cfg.model
        det = load_detector(m.bundle, threads=m.threads, providers=m.providers or None, warmup=True,
                            exhaustive=m.exhaustive)
        man = det.manifest  # hop_s against its window: checked by preflight
        self.health.update(model=f"{man.backbone or 'model'} {man.model_id} on {det.providers[0]}")
        log.info("model %s loaded (%s, %d Hz, %.1f s windows, %s)", m.bundle, det.providers[0], man.sample_rate,
                 man.window_s, "cascade first stage on" if isinstance(det, CascadeDetector) else "every window scored")
        return det

    def _counters_from(self, store: DetectionStore) -> None:
        """Status counters and times of this run (model and settings) as the store has them, so a restart does
        not read as a fresh start."""
        rows = store.ledger_rows(self.run_key)
        done = [r for r in rows if r.status == "done"]
        ends = [_audio_end(r) for r in done]
        newest = store.conn.execute("SELECT MAX(begin_utc) FROM detections WHERE run_key=?",
                                    (self.run_key,)).fetchone()[0]
        self.health.update(files_done=len(done), files_failed=sum(r.status == "failed" for r in rows),
                           detections=store.count(self.run_key), last_detection_utc=newest,
                           last_audio_utc=max((e for e in ends if e), default=None))

    def _install_signals(self) -> None:
        signals.install(self.stop)  # `hootwatch run` installed it already, before its imports; this is for tests

    # ------------------------------------------------------------ periodic jobs
    def _start_jobs(self):
        from apscheduler.schedulers.background import BackgroundScheduler

        sched = BackgroundScheduler(timezone=dt.timezone.utc, job_defaults={"coalesce": True, "max_instances": 1})
        sched.add_job(self._write_status, "interval", seconds=self.cfg.health.status_every_s, id="status")
        sched.add_job(self._check_schedule, "interval", seconds=SCHEDULE_CHECK_S, id="schedule")
        sched.add_job(self.guard.check, "interval", seconds=DISK_CHECK_S, id="disk")
        if self.cfg.output.export_every_min > 0:
            sched.add_job(self._export_now, "interval", minutes=self.cfg.output.export_every_min, id="export")
        sched.start()
        return sched

    def _check_schedule(self) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        active = is_active(now, self.cfg.schedule, self.cfg.tz)
        if active != self.listening.is_set():
            log.info("schedule: %s", "listening" if active else "outside the listening windows")
        (self.listening.set if active else self.listening.clear)()
        nxt = next_change(now, self.cfg.schedule, self.cfg.tz)
        self.health.update(schedule_active=active, next_schedule_change_utc=nxt.isoformat() if nxt else None)

    def _write_status(self) -> None:
        self.health.update(queue_depth=self.jobs.qsize(), files_pending=self.watcher.pending if self.watcher else 0,
                           disk_free_mb=round(self.guard.free_mb, 1) if self.guard.free_mb is not None else None,
                           disk_low=not self.guard.writes_allowed,
                           pass_rate=pass_rate_of(self.detector) if hasattr(self, "detector") else None)
        try:
            write_json_atomic(self.cfg.status_file, self.health.snapshot())
            self._space_back("the status file")
        except OSError as exc:
            if not is_disk_full(exc):
                log.warning("cannot write status file %s: %s", self.cfg.status_file, exc)
            else:
                self._disk_full("the status file", exc)
        self.notifier.status(self._status_line())

    def _status_line(self) -> str:
        h = self.health
        parts = [h.state, f"{h.files_done} files, {h.detections} detections"]
        if self.watcher:
            parts.append(f"{self.watcher.pending} pending")
        if h.files_failed:
            parts.append(f"{h.files_failed} failed")
        if h.mic_state:
            parts.append(f"mic {h.mic_state}")
        if h.disk_full:
            parts.append("DISK FULL: intake paused until space is freed")
        elif h.disk_low:
            parts.append("DISK LOW: clips/raw paused")
        return "; ".join(parts)

    def _export_now(self) -> None:
        """The periodic export: a full disk is one message (the store keeps every detection), not a traceback."""
        try:
            self._export()
            self._space_back("exports")
        except Exception as exc:
            if not is_disk_full(exc):
                log.exception("export failed")
            else:
                self._disk_full("exports", exc)

    def _export(self) -> None:
        from hootwatch.edge.store.exports import write_exports

        out = self.cfg.output
        formats = tuple(f for f, on in (("csv", out.csv), ("raven", out.raven), ("audacity", out.audacity)) if on)
        if not formats:
            return
        with DetectionStore(self.out_dir / DB_NAME) as store:
            write_exports(store, self.run_key, self.out_dir, self.detector.manifest.sample_rate / 2, formats)

    # ------------------------------------------------------------ folder
    def _start_folder(self) -> None:
        fcfg = self.cfg.sources.folder
        self._ledger_store = DetectionStore(self.out_dir / DB_NAME)  # the watcher thread's connection
        exclude = (self.out_dir, fcfg.archive_dir, self.cfg.raw_dir)
        self.watcher = FolderWatcher(fcfg, self.jobs, self._needs_scan, self.stop, exclude=exclude)
        self._scan_store = DetectionStore(self.out_dir / DB_NAME)  # the scanning loop's connection
        self.scanner = Scanner(self.detector, self._scan_store, self.settings, self.out_dir)
        self.beats.register("folder")
        self.watcher.start()
        t = threading.Thread(target=self._guarded, args=(self._folder_loop,), name="hootwatch-scan", daemon=True)
        t.start()
        self._threads.append(t)

    def _guarded(self, loop) -> None:
        """Run a worker loop; what kills it is kept for the status file (the main loop checks liveness)."""
        try:
            loop()
        except BaseException as exc:
            self._errors[threading.current_thread().name] = exc
            log.exception("%s stopped", threading.current_thread().name)

    def _needs_scan(self, path: Path, size: int, mtime_ns: int) -> bool:
        fcfg = self.cfg.sources.folder
        if self._ledger_store.due(path, self.run_key, fcfg.max_attempts):
            return True
        if fcfg.after == "keep":
            return False
        row = self._ledger_store.ledger(path, self.run_key)
        return row is not None and row.status == "done"  # committed but not yet archived/deleted

    def _folder_loop(self) -> None:
        store = self._scan_store
        progress = _Beat(self.beats)
        try:
            while not self.stop.is_set():
                self.beats.beat("folder")
                try:
                    job = self.jobs.get(timeout=0.5)
                except queue.Empty:
                    continue
                try:
                    self._scan_until_space(job, store, progress)
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
            store.close()

    def _scan_until_space(self, job: FileJob, store: DetectionStore, progress: Progress) -> None:
        """Scan the job; on a full disk pause intake (one message), wait for space, scan it again. A full disk
        is never the recording's fault: nothing of it is recorded, it counts no attempt."""
        while True:
            try:
                self._scan_job(job, store, progress)
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                if not self._wait_for_space("intake", exc, job.path):
                    raise ScanInterrupted() from None
                continue
            self._space_back("intake")
            return

    def _wait_for_space(self, what: str, exc: BaseException, path: Path | None = None) -> bool:
        """Say once that `what` is paused on a full disk; return when space may be back (False: stopping)."""
        self._disk_full(what, exc, f" ({path.name} will be scanned again)" if path else "")
        free0 = shutil.disk_usage(self.guard.existing_path()).free
        waited = 0.0
        while not self.stop.is_set():
            self.beats.beat("folder")  # waiting for space is not a stall: a restart would not help
            self.stop.wait(DISK_FULL_POLL_S)
            waited += DISK_FULL_POLL_S
            if shutil.disk_usage(self.guard.existing_path()).free > free0 + DISK_FULL_FREED or waited >= DISK_FULL_RETRY_S:
                return True
        return False

    def _disk_full(self, what: str, exc: BaseException, detail: str = "") -> None:
        """`what` waits for disk space. The first one says so for all (one message until space returns)."""
        with self._full_lock:
            first = not self._full
            self._full.add(what)
        if first:
            log.error("disk full on %s (%s): %s paused%s; detections, exports and the status file wait, nothing is "
                      "lost, and it all resumes by itself when space is freed (delete old clips or raw audio, or "
                      "move files off that disk)", self.out_dir, getattr(exc, "message", exc), what, detail)
            self.health.update(state="paused: disk full", disk_full=True, last_error=f"disk full: {what} paused")

    def _space_back(self, what: str) -> None:
        with self._full_lock:
            if what not in self._full:
                return
            self._full.discard(what)
            last = not self._full
        if last:
            log.warning("disk space back on %s: everything resumed", self.out_dir)
            self.health.update(state="running", disk_full=False)

    def _scan_job(self, job: FileJob, store: DetectionStore, progress: Progress) -> None:
        fcfg = self.cfg.sources.folder
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
            self._times_of(job.path, store)
            if outcome.wall_s > 0:
                self.health.update(real_time_factor=round(outcome.audio_s / outcome.wall_s, 1))
            log.info("%s: %d detection(s) in %.0f s of audio (%.0fx real time)", job.path.name,
                     outcome.n_detections, outcome.audio_s, outcome.audio_s / max(outcome.wall_s, 1e-9))
        self._after(job.path)

    def _times_of(self, path: Path, store: DetectionStore) -> None:
        """last_audio_utc: the recording's own time at the end of what was scanned; last_detection_utc: the
        newest detection of the run (a backlog of older cards does not move it back)."""
        row = store.ledger(path, self.run_key)
        if row is None:
            return
        end = _audio_end(row)
        # this file's newest (the UNIQUE index starts with file_key), against the newest so far
        mine = store.conn.execute("SELECT MAX(begin_utc) FROM detections WHERE file_key=? AND run_key=?",
                                  (row.file_key, self.run_key)).fetchone()[0]
        newest = max((t for t in (mine, self.health.last_detection_utc) if t), default=None)
        self.health.update(**({"last_audio_utc": end} if end else {}), last_detection_utc=newest)

    def _after(self, path: Path) -> None:
        """Archive or delete a recording whose detections are committed (done or already done), in batches of
        up to AFTER_BATCH (a batch goes when the queue is empty): first the ledger notes where each one goes,
        in one commit that makes their detections durable too (store.record_moved_many); only then are they
        moved (files and folders fsynced) or unlinked. A power cut never leaves a recording gone whose
        detections may roll back; one that is still waiting is scanned again (found done) at the next start."""
        fcfg = self.cfg.sources.folder
        if fcfg.after == "keep":
            return
        self._moving[str(path)] = path
        if len(self._moving) < AFTER_BATCH and not self.jobs.empty() and not self.stop.is_set():
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
            noted = [paths[i] for i in self._scan_store.record_moved_many(self.run_key, [(p, dest[p]) for p in paths])]
        except (sqlite3.Error, DiskFullError) as exc:
            log.warning("cannot note where %d recording(s) go, so they are kept for now: %s", len(paths), exc)
            return
        for p in set(paths) - set(noted):
            log.warning("%s: not recorded as done; it is kept", p)
        if fcfg.after == "delete":
            failed = fsio.remove_many(noted)
        else:
            failed = fsio.durable_move_many([(p, dest[p]) for p in noted])
        for p, exc in failed:
            log.warning("%s: cannot %s it: %s", p, fcfg.after, exc)

    # ------------------------------------------------------------ microphone
    def _start_microphone(self) -> None:
        from .microphone import Microphone, RawRecorder, sounddevice_stream

        mcfg = self.cfg.sources.microphone
        self._mic_store = DetectionStore(self.out_dir / DB_NAME)
        self._mic_held = _HoldWhenFull(self._mic_store, self._mic_disk_full, lambda: self._space_back("microphone"))
        self._mic_scanner = Scanner(self.detector, self._mic_held,
                                    dataclasses.replace(self.settings, tz=self.cfg.output.timezone), self.out_dir)
        self._mic_source = f"mic:{mcfg.device or 'default'}"
        raw = None
        if mcfg.record_raw:
            raw = RawRecorder(self.cfg.raw_dir, mcfg.sample_rate, mcfg.channels, mcfg.raw_format,
                              mcfg.raw_segment_s, mcfg.raw_budget_mb, allowed=self.guard.allows_optional)
        self.beats.register("microphone")
        self.mic = Microphone(mcfg, self.detector.manifest.sample_rate, self._on_audio, self._on_restart, self.stop,
                              health=self.health, raw=raw, stream_factory=self.stream_factory or sounddevice_stream,
                              active=self.listening.is_set, beat=lambda: self.beats.beat("microphone"))
        self.mic.start()

    def _on_audio(self, block, t_utc: dt.datetime) -> None:
        if self._live is None:
            self._live = LiveSession(self._mic_scanner, self._mic_source, t_utc)
        t0 = time.perf_counter()
        dets = self._live.push(block)
        wall = time.perf_counter() - t0
        audio_s = len(block) / self.detector.manifest.sample_rate
        end = t_utc + dt.timedelta(seconds=audio_s)
        self.health.update(last_audio_utc=end.isoformat(timespec="milliseconds"),
                           real_time_factor=round(audio_s / wall, 1) if wall > 0 else None)
        if dets:
            self.health.add(detections=len(dets))
            self.health.update(last_detection_utc=max(d.begin_utc for d in dets))
            for d in dets:
                log.info("microphone: %s detection at %s (score %.2f)", d.label, d.begin_local, d.max_score)

    def _mic_disk_full(self, exc: BaseException) -> None:
        self._disk_full("microphone", exc, " (its detections are held in memory until they can be written)")

    def _on_restart(self) -> None:
        if self._live is not None:
            dets = self._live.close()
            if dets:
                self.health.add(detections=len(dets))
                self.health.update(last_detection_utc=max(d.begin_utc for d in dets))
            self._live = None

    # ------------------------------------------------------------ stop
    def _start_review(self) -> None:
        """The review app in a thread of its own, over the same store (its own connection)."""
        from hootwatch.edge.review.server import serve

        r = self.cfg.review
        self.review_server = serve(self.out_dir, r.host, r.port, r.token, self.cfg.model.bundle, r.max_upload_mb)
        # not a watched worker: if the app cannot start (port taken), detection goes on without it
        self._review_thread = threading.Thread(target=self.review_server.run, name="hootwatch-review", daemon=True)
        self._review_thread.start()
        log.info("review app on http://%s:%d/%s", r.host, r.port, "?token=..." if r.token else "")

    def _shutdown(self, scheduler) -> None:
        self.stop.set()  # also when a worker died: the others stop too
        if getattr(self, "review_server", None) is not None:
            self.review_server.should_exit = True
            self._review_thread.join(10)
        self.health.update(state="stopping")
        self.notifier.stopping("draining")
        log.info("stopping: draining the windows in flight")
        if getattr(self, "scanner", None) is not None:
            self.scanner.stop()
        if self.watcher is not None:
            self.watcher.join()
        if self.mic is not None:
            self.mic.join()
            if self.mic.is_alive():  # closing the session under a live consumer would race it
                log.warning("microphone thread did not stop in time; its open detection is not written")
            else:
                self._on_restart()
        for t in self._threads:
            t.join(30)
        scheduler.shutdown(wait=True)
        try:
            self._export()
        except Exception as exc:  # a full disk at stop: every detection is in the store
            log.warning("final export failed: %s; every detection is in the store, `hootwatch run` exports again",
                        getattr(exc, "message", exc))
        # the scanning loop closes its own connection; these two belong to threads that have stopped
        if getattr(self, "_ledger_store", None) is not None and not self.watcher.is_alive():
            self._ledger_store.close()
        if getattr(self, "_mic_store", None) is not None and not self.mic.is_alive():
            if self._mic_held.held:
                self._mic_held.flush()
            if self._mic_held.held:
                log.error("%d microphone detection(s) could not be written (disk full) and are lost: %s",
                          len(self._mic_held.held), ", ".join(d.begin_utc for d in self._mic_held.held))
            self._mic_store.close()
        self.health.update(state="failed" if self.failure else "stopped")
        self._write_status()
        self.notifier.close()
        log.info("stopped")


class _HoldWhenFull:
    """The microphone's store: detections that cannot be written (disk full) are held in memory and written
    with the next ones (INSERT OR IGNORE keeps that idempotent), so a full disk loses none while we run."""

    def __init__(self, store: DetectionStore, on_full, on_written) -> None:
        self.store, self.on_full, self.on_written = store, on_full, on_written
        self.held: list = []
        self._run = None

    def __getattr__(self, name):
        return getattr(self.store, name)

    def add_detections(self, run, detections) -> int:
        self._run = run
        batch = self.held + list(detections)
        try:
            n = self.store.add_detections(run, batch)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self.held = batch
            self.on_full(exc)
            return 0
        if self.held:
            self.on_written()
        self.held = []
        return n

    def flush(self) -> None:
        if self.held and self._run is not None:
            self.add_detections(self._run, [])
