"""The daemon: one model, the configured sources, the schedule, health and exports, until SIGTERM.

    load config -> load + warm up the model -> open the store -> start the sources (folder watcher + scanning
    loop, microphone) and the review app -> start the scheduler jobs (status file, exports, disk guard,
    schedule) -> READY=1 -> wait for SIGTERM/SIGINT -> STOPPING=1 -> drain -> flush exports -> exit 0

This module is that lifecycle. The sources are intake.py (the watched folder) and live.py (the microphone), what
waits on a full disk is diskpause.py, the worker threads are threads.Worker (the main loop stops the daemon when
one dies), the review app runs in a review.server.ServerThread. What start-up makes is one `Running` record, made
whole once the sources have started; the main loop, the periodic jobs and the shutdown are given it.

Threads: the watchdog observer and the folder tracker (producers) hand complete files over a bounded queue to
the scanning loop (consumer); PortAudio's callback fills the microphone ring that the microphone loop drains.
Each processing loop has its own SQLite connection (same WAL database) and its own Scanner (sharing the one
ONNX Runtime session, which is thread-safe). The processing loops feed systemd's watchdog (notify.Heartbeats).

Stopping: the scanning loop abandons the file in progress (nothing of it is recorded; it is scanned again at
the next start, so the result is the same as if it had finished), the microphone loop drains its ring buffer
and closes its session (the tail window and any open detection are written), then the exports are written.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hootwatch.edge.contract.cascade import CascadeDetector, load_detector, pass_rate_of
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.core.errors import DiskFullError, is_disk_full
from hootwatch.edge.review.access import shown_address, url_host
from hootwatch.edge.review.server import ServerThread, serve
from hootwatch.edge.scan.engine import Scanner, ScanSettings, detection_rule
from hootwatch.edge.store.database import STORE_NAME, DetectionStore
from .config import DaemonConfig, all_problems
from .diskguard import DiskGuard
from .diskpause import DiskPause
from .health import Health, write_json_atomic
from .intake import Intake, audio_end
from .live import LiveSource
from .notify import Heartbeats, Notifier
from .preflight import preflight
from . import signals
from .schedule import is_active, next_change
from .threads import death
from .upkeep import EXIT_STORE_DAMAGED, Upkeep

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("hootwatch.daemon")
logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run would drown the journal

SCHEDULE_CHECK_S = 5.0
DISK_CHECK_S = 30.0
EXPORT_RETRY_S = 30.0  # an export that failed (a full disk) is tried again this often until it is written


@dataclass(frozen=True)
class Running:
    """What start-up made: the model and its settings, the run they write to, the configured sources (started,
    the folder's first), the review app where it is enabled, and the scheduler of the periodic jobs."""
    detector: Detector | CascadeDetector
    settings: ScanSettings
    run_key: str
    sources: tuple[Intake | LiveSource, ...]
    review: ServerThread | None
    scheduler: BackgroundScheduler

    @property
    def intake(self) -> Intake | None:
        """The folder source, where one is configured (the status counts its queue and pending files)."""
        return next((s for s in self.sources if isinstance(s, Intake)), None)


class Daemon:
    """The seams for tests and benchmarks: `intake` and `live`, the classes of the folder and microphone sources
    (a subclass may wrap a step, such as `Intake.scan` or `Intake.after`, or keep its instance to look at);
    `stream_factory`, what builds the microphone's PortAudio stream; `stop`, the event that stops `run()`."""

    def __init__(self, cfg: DaemonConfig, stop: threading.Event | None = None, notifier: Notifier | None = None,
                 stream_factory=None, intake: type[Intake] = Intake, live: type[LiveSource] = LiveSource) -> None:
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self.notifier = notifier or Notifier()
        self.stream_factory = stream_factory
        self.intake_class, self.live_class = intake, live
        self.health = Health()
        self.out_dir = Path(cfg.output.dir)
        self.guard = DiskGuard(self.out_dir, cfg.health.min_free_mb)
        self.pause = DiskPause(self.out_dir, self.health, self.guard, self.stop)
        self.listening = threading.Event()
        self.beats = Heartbeats(self.notifier, enabled=cfg.health.watchdog)
        self.export_due = False  # the exports lag behind the store (an export failed, or a stop's did)
        self.upkeep = Upkeep(cfg, self.health, self.stop)

    def run(self) -> int:
        """Start, run until stopped (or a worker thread dies), shut down; the exit status (1: a worker died)."""
        running = self._start()
        if running is None:
            return 0
        failure = self._run_until_stop(running)
        self._shutdown(running, failed=failure is not None)
        return 1 if failure else EXIT_STORE_DAMAGED if self.upkeep.failed else 0

    def _start(self) -> Running | None:
        """Everything up to READY=1; what it started, or None when stopped before that."""
        cfg = self.cfg
        self._install_signals()
        if self.stop.is_set():
            return None
        problems = preflight(cfg, check_microphone=self.stream_factory is None)
        if problems:  # what check-config reports: refuse to start (exit 2), every problem at once
            raise all_problems(problems, str(cfg.source_file or "config"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.notifier.status("loading model")
        detector = self._load_model()
        if self.stop.is_set():  # stopped while the model loaded: nothing started, nothing to drain
            log.info("stopped before start-up finished")
            return None
        # recorder local-time file names are read in the recorders' zone; live audio is shown in the site's
        settings = ScanSettings(hop_s=cfg.model.hop_s, threshold=cfg.model.threshold, min_hits=cfg.model.min_hits,
                                tz=cfg.recorder_timezone, clips=cfg.output.clips)
        try:
            recovery = self.upkeep.check_at_start()
            with DetectionStore(self.out_dir / STORE_NAME) as store:
                run_key = Scanner(detector, store, settings).run.run_key
                self._counters_from(store, run_key)
                self.export_due = _exports_stale(store, run_key, self.out_dir)
        except Exception as exc:
            if is_disk_full(exc):  # exit status 4: systemd starts it again (RestartSec) until there is space
                raise DiskFullError(f"the disk holding {self.out_dir} is full: the detection store cannot be opened",
                                    "free some space there; hootwatch starts again by itself under systemd") from None
            raise
        log.info("detection rule: %s", detection_rule(detector.manifest, settings))
        self.guard.check()
        self._check_schedule()
        sources = self._start_sources(detector, settings, run_key)
        intake = next((s for s in sources if isinstance(s, Intake)), None)
        if recovery is not None and recovery.rescan and intake is not None:
            intake.rescan(recovery.rescan)
        review = self._start_review() if cfg.review.enabled else None
        running = Running(detector, settings, run_key, sources, review, _scheduler())
        self._start_jobs(running)
        self.health.update(state="running")
        self._write_status(running)
        self.notifier.ready(self._status_line(running))
        log.info("ready: %s", self._status_line(running))
        return running

    # ------------------------------------------------------------ start
    def _load_model(self) -> Detector | CascadeDetector:
        m = self.cfg.model
        det = load_detector(m.bundle, threads=m.threads, providers=m.providers or None, warmup=True,
                            exhaustive=m.exhaustive)
        man = det.manifest  # hop_s against its window: checked by preflight
        self.health.update(model=f"{man.backbone or 'model'} {man.model_id} on {det.providers[0]}")
        log.info("model %s loaded (%s, %d Hz, %.1f s windows, %s)", m.bundle, det.providers[0], man.sample_rate,
                 man.window_s, "cascade first stage on" if isinstance(det, CascadeDetector) else "every window scored")
        return det

    def _counters_from(self, store: DetectionStore, run_key: str) -> None:
        """Status counters and times of this run (model and settings) as the store has them, so a restart does
        not read as a fresh start."""
        rows = store.ledger_rows(run_key)
        done = [r for r in rows if r.status == "done"]
        ends = [audio_end(r) for r in done]
        newest = store.newest_detection_utc(run_key)
        self.health.update(files_done=len(done), files_failed=sum(r.status == "failed" for r in rows),
                           detections=store.count(run_key), last_detection_utc=newest,
                           last_audio_utc=max((e for e in ends if e), default=None))

    def _install_signals(self) -> None:
        signals.install(self.stop)  # `hootwatch run` installed it already, before its imports; this is for tests

    def _start_sources(self, detector: Detector | CascadeDetector, settings: ScanSettings,
                       run_key: str) -> tuple[Intake | LiveSource, ...]:
        """The configured sources, each made and started in turn: the watched folder, then the microphone."""
        sources = self.cfg.sources
        shared = dict(stop=self.stop, health=self.health, beats=self.beats, guard=self.guard, pause=self.pause)
        started: list[Intake | LiveSource] = []
        if sources.folder is not None:
            started.append(self.intake_class(self.cfg, detector, settings, run_key, **shared))
            started[-1].start()
        if sources.microphone is not None:
            started.append(self.live_class(self.cfg, detector, settings, **shared, active=self.listening.is_set,
                                           stream_factory=self.stream_factory))
            started[-1].start()
        return tuple(started)

    def _start_review(self) -> ServerThread:
        """The review app in a thread of its own, over the same store (its own connection)."""
        r = self.cfg.review
        # not a watched worker: if the app cannot start (port taken), detection goes on without it
        server = serve(self.out_dir, r.host, r.port, r.token, self.cfg.model.bundle, r.max_upload_mb,
                       allow_hosts=r.allow_hosts, max_analyze_s=r.max_analyze_s)
        review = ServerThread(server, "hootwatch-review")
        review.start()
        log.info("review app on http://%s:%d/%s", url_host(shown_address(r.host)), r.port,
                 "?token=..." if r.token else "")
        return review

    # ------------------------------------------------------------ running
    def _run_until_stop(self, running: Running) -> str | None:
        """Wait for the stop event; why the daemon failed, when a worker thread died first."""
        while not self.stop.wait(1.0):
            dead = self._dead_worker(running)
            if dead:
                self._fail(running, dead)
                return dead
        return None

    def _dead_worker(self, running: Running) -> str | None:
        """'<what> died (<error>)' for a worker thread that ended while the daemon was not stopping."""
        if self.stop.is_set():
            return None
        for source in running.sources:
            for what, worker in source.workers:
                why = death(what, worker)
                if why:
                    return why
        return None

    def _fail(self, running: Running, why: str) -> None:
        """A worker died: say so everywhere, stop feeding the watchdog, stop (exit 1: systemd restarts us)."""
        self.beats.fail()
        log.error("%s: stopping; restart hootwatch (systemd does so by itself) and report this as a bug", why)
        self.health.update(state="failed", last_error=why)
        self._write_status(running)

    # ------------------------------------------------------------ periodic jobs
    def _start_jobs(self, running: Running) -> None:
        sched = running.scheduler
        sched.add_job(self._write_status, "interval", args=(running,), seconds=self.cfg.health.status_every_s,
                      id="status")
        sched.add_job(self._check_schedule, "interval", seconds=SCHEDULE_CHECK_S, id="schedule")
        sched.add_job(self.guard.check, "interval", seconds=DISK_CHECK_S, id="disk")
        if self.cfg.output.export_every_min > 0:
            sched.add_job(self._export_now, "interval", args=(running,), minutes=self.cfg.output.export_every_min,
                          id="export")
        sched.add_job(self._export_if_due, "interval", args=(running,), seconds=EXPORT_RETRY_S, id="export-retry",
                      next_run_time=dt.datetime.now(dt.timezone.utc) if self.export_due else None)
        self.upkeep.schedule(sched)
        sched.start()

    def _check_schedule(self) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        active = is_active(now, self.cfg.schedule, self.cfg.tz)
        if active != self.listening.is_set():
            log.info("schedule: %s", "listening" if active else "outside the listening windows")
        (self.listening.set if active else self.listening.clear)()
        nxt = next_change(now, self.cfg.schedule, self.cfg.tz)
        self.health.update(schedule_active=active, next_schedule_change_utc=nxt.isoformat() if nxt else None)

    def _write_status(self, running: Running) -> None:
        intake = running.intake
        self.health.update(queue_depth=intake.jobs.qsize() if intake is not None else 0,
                           files_pending=intake.watcher.pending if intake is not None else 0,
                           disk_free_mb=round(self.guard.free_mb, 1) if self.guard.free_mb is not None else None,
                           disk_low=not self.guard.writes_allowed, pass_rate=pass_rate_of(running.detector))
        self.upkeep.measure_wal()
        try:
            write_json_atomic(self.cfg.status_file, self.health.snapshot())
            self.pause.space_back("the status file")
        except OSError as exc:
            if not is_disk_full(exc):
                log.warning("cannot write status file %s: %s", self.cfg.status_file, exc)
            else:
                self.pause.full("the status file", exc)
        self.notifier.status(self._status_line(running))

    def _status_line(self, running: Running) -> str:
        h = self.health
        parts = [h.state, f"{h.files_done} files, {h.detections} detections"]
        if running.intake is not None:
            parts.append(f"{running.intake.watcher.pending} pending")
        if h.files_failed:
            parts.append(f"{h.files_failed} failed")
        if h.mic_state:
            parts.append(f"mic {h.mic_state}")
        if h.disk_full:
            parts.append("DISK FULL: intake paused until space is freed")
        elif h.disk_low:
            parts.append("DISK LOW: clips/raw paused")
        return "; ".join(parts)

    def _export_if_due(self, running: Running) -> None:
        if self.export_due:
            self._export_now(running)

    def _export_now(self, running: Running) -> None:
        """The periodic export: a full disk is one message (the store keeps every detection), not a traceback;
        a failed export is tried again every EXPORT_RETRY_S until it is written."""
        try:
            self._export(running)
            self.export_due = False
            self.pause.space_back("exports")
        except Exception as exc:
            self.export_due = True
            if not is_disk_full(exc):
                log.exception("export failed")
            else:
                self.pause.full("exports", exc)

    def _export(self, running: Running) -> None:
        from hootwatch.edge.store.exports import write_exports

        out = self.cfg.output
        formats = tuple(f for f, on in (("csv", out.csv), ("raven", out.raven), ("audacity", out.audacity)) if on)
        if not formats:
            return
        with DetectionStore(self.out_dir / STORE_NAME) as store:
            write_exports(store, running.run_key, self.out_dir, running.detector.manifest.sample_rate / 2, formats)

    # ------------------------------------------------------------ stop
    def _shutdown(self, running: Running, failed: bool) -> None:
        self.stop.set()  # also when a worker died: the others stop too
        if running.review is not None:
            running.review.stop()
        self.health.update(state="stopping")
        self.notifier.stopping("draining")
        log.info("stopping%s: draining the windows in flight",
                 f" ({signals.RECEIVED[-1]} received)" if signals.RECEIVED else "")
        # the folder abandons the file in progress; the microphone drains its ring, writes the tail window and any
        # open detection; then the scanning loop ends
        for source in running.sources:
            source.stop()
        for source in running.sources:
            source.join()
        running.scheduler.shutdown(wait=True)
        try:
            self._export(running)
        except Exception as exc:  # a full disk at stop: every detection is in the store
            log.warning("final export failed: %s; every detection is in the store, and the next start writes the "
                        "exports again", getattr(exc, "message", exc))
        # the scanning loop closes its own connection; the others belong to threads that have stopped
        for source in running.sources:
            source.close()
        self.upkeep.checkpoint("TRUNCATE")  # the WAL emptied: a stopped store is one file
        self.health.update(state="failed" if failed else "stopped")
        self._write_status(running)
        self.notifier.close()
        log.info("stopped")


def _exports_stale(store: DetectionStore, run_key: str, out_dir: Path) -> bool:
    """Whether the exports in `out_dir` hold fewer or more of the run's detections than the store (an export lost
    to a full disk or a kill): the daemon writes them again at once."""
    from hootwatch.edge.store.exports import read_index

    return read_index(out_dir)["runs"].get(run_key, {}).get("detections") != store.count(run_key)


def _scheduler() -> BackgroundScheduler:
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(timezone=dt.timezone.utc, job_defaults={"coalesce": True, "max_instances": 1})
