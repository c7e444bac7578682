"""The microphone source: the capture thread (microphone.Microphone), its own store connection that holds
detections in memory while the disk is full, its Scanner and the live session its audio is pushed through, and
what it adds to the health counters.

Stopping: the microphone loop drains its ring buffer, then the session is closed (the tail window and any open
detection are written) and the held detections are written if they can be.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from hootwatch.edge.contract.cascade import CascadeDetector
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.core.errors import is_disk_full
from hootwatch.edge.scan.engine import LiveSession, Scanner, ScanSettings
from hootwatch.edge.store.database import STORE_NAME, DetectionStore
from .config import DaemonConfig
from .diskguard import DiskGuard
from .diskpause import DiskPause
from .health import Health
from .microphone import Microphone, RawRecorder, sounddevice_stream
from .notify import Heartbeats

log = logging.getLogger("hootwatch.daemon")


class LiveSource:
    """The microphone of `cfg.sources.microphone`, scanned with `detector` into the store in `cfg.output.dir`.
    Opens its store connection (and repairs raw audio cut short) when made; `start()` starts capturing.
    `active()` says whether the schedule is listening now; `stream_factory` builds the PortAudio stream."""

    def __init__(self, cfg: DaemonConfig, detector: Detector | CascadeDetector, settings: ScanSettings,
                 *, stop: threading.Event, health: Health, beats: Heartbeats, guard: DiskGuard, pause: DiskPause,
                 active: Callable[[], bool], stream_factory=None) -> None:
        mcfg = cfg.sources.microphone
        out_dir = Path(cfg.output.dir)
        self.health, self.beats, self.pause = health, beats, pause
        self.sample_rate = detector.manifest.sample_rate
        self.store = DetectionStore(out_dir / STORE_NAME)
        self.held = HoldWhenFull(self.store, self._disk_full, lambda: pause.space_back("microphone"))
        # live audio is shown in the site's zone
        self.scanner = Scanner(detector, self.held, dataclasses.replace(settings, tz=cfg.output.timezone), out_dir)
        self.source = f"mic:{mcfg.device or 'default'}"
        self.session: LiveSession | None = None  # from the first block after (re)opening to the next break
        raw = None
        if mcfg.record_raw:
            raw = RawRecorder(cfg.raw_dir, mcfg.sample_rate, mcfg.channels, mcfg.raw_format,
                              mcfg.raw_segment_s, mcfg.raw_budget_mb, allowed=guard.allows_optional)
        self.mic = Microphone(mcfg, self.sample_rate, self._on_audio, self._on_restart, stop,
                              health=health, raw=raw, stream_factory=stream_factory or sounddevice_stream,
                              active=active, beat=lambda: beats.beat("microphone"))

    def start(self) -> None:
        self.beats.register("microphone")
        self.mic.start()

    @property
    def workers(self) -> tuple[tuple[str, Microphone], ...]:
        """Its thread, as the daemon names it when it has died."""
        return ("microphone", self.mic),

    def stop(self) -> None:
        """Wait for the microphone loop to drain; then close the session (not under a live consumer)."""
        self.mic.join()
        if self.mic.is_alive():  # closing the session under a live consumer would race it
            log.warning("microphone thread did not stop in time; its open detection is not written")
        else:
            self._on_restart()

    def join(self) -> None:
        """Nothing more to wait for: `stop` waited for the microphone loop."""

    def close(self) -> None:
        """Write what is held (or say what is lost) and close the connection, once the microphone has stopped."""
        if self.mic.is_alive():
            return
        if self.held.held:
            self.held.flush()
        if self.held.held:
            log.error("%d microphone detection(s) could not be written (disk full) and are lost: %s",
                      len(self.held.held), ", ".join(d.begin_utc for d in self.held.held))
        self.store.close()

    # ------------------------------------------------------------ the microphone thread's callbacks
    def _on_audio(self, block, t_utc: dt.datetime) -> None:
        if self.session is None:
            self.session = LiveSession(self.scanner, self.source, t_utc)
        t0 = time.perf_counter()
        dets = self.session.push(block)
        wall = time.perf_counter() - t0
        audio_s = len(block) / self.sample_rate
        end = t_utc + dt.timedelta(seconds=audio_s)
        self.health.update(last_audio_utc=end.isoformat(timespec="milliseconds"),
                           real_time_factor=round(audio_s / wall, 1) if wall > 0 else None)
        if dets:
            self.health.add(detections=len(dets))
            self.health.update(last_detection_utc=max(d.begin_utc for d in dets))
            for d in dets:
                log.info("microphone: %s detection at %s (score %.2f)", d.label, d.begin_local, d.max_score)

    def _on_restart(self) -> None:
        if self.session is not None:
            dets = self.session.close()
            if dets:
                self.health.add(detections=len(dets))
                self.health.update(last_detection_utc=max(d.begin_utc for d in dets))
            self.session = None

    def _disk_full(self, exc: BaseException) -> None:
        self.pause.full("microphone", exc, " (its detections are held in memory until they can be written)")


class HoldWhenFull:
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
