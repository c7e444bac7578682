"""The scan engine: audio files (or live audio) -> scored windows -> events -> rows in the DetectionStore.

Used by `hootwatch scan` (edge/scan_cli.py) and by the daemon (edge/daemon/).

    detector = Detector.load(bundle_dir, threads=2)
    with DetectionStore(out_dir / STORE_NAME) as store:
        scanner = Scanner(detector, store, ScanSettings(tz="Australia/Melbourne"), out_dir)
        outcome = scanner.scan_file(path)              # one file -> FileOutcome (done | skipped | failed)
        summary = scanner.scan_paths([folder])         # files and folders, recursive -> ScanSummary
        live = LiveSession(scanner, "mic0", start_utc) # live audio at the model's sample rate
        detections = live.push(block); ...; live.close()

Per file: decode in blocks at the bundle's sample rate (`audio.iter_blocks`), slide windows (`WindowStream`,
window from the bundle, hop from the bundle or `hop_s`), score them in batches (`Detector.score`), merge
positive windows into events (`events.EventBuilder`), give each its absolute time (`recorder_time.file_time`),
then commit the file's detections and its ledger row in ONE transaction (`DetectionStore.commit_file`).
A file already done with the same settings (and unchanged size/mtime) is skipped, so re-scanning adds no
duplicates; an interrupted file (Ctrl-C, `Scanner.stop()`, kill -9) leaves nothing behind and is redone.

Contiguous files (`scan_paths`): files of one recorder (same folder and recorder id, same sample rate) where
the next starts where the previous ends (within `contiguous_tol_s`) are one continuous recording. Each file's
window grid starts at its own first sample; its last windows run on into the first seconds of the next file
instead of being end-aligned, so every moment is covered with no gap, and a window spanning the boundary
belongs to the file it starts in. Each file's rows thus depend only on that file and the head of the next,
both fixed on disk: re-processing gives identical rows and keys, and per-file commits stay crash safe.
An event still open at a boundary ends there (a call across two files gives two abutting rows, one per file).
`scan_file(path)` alone (the daemon, where the next file may not exist yet) end-aligns the last window.

Bad input (corrupt, truncated, empty, not audio, unreadable) fails that file only: the ledger records it as
failed with the reason, the outcome says why, and the scan goes on.

Live audio (`LiveSession`): blocks from a microphone at the bundle's sample rate, windows continuous across
blocks; times are `start_utc` + samples / rate (the capture clock). Detections are written as they close.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .audio import AudioInfo, iter_blocks, is_audio_file, probe
from .errors import AudioReadError, ConfigError, HootwatchError
from .events import Event, EventBuilder
from .recorder_time import FileTime, file_time, parse_tz
from .store import STORE_NAME, Detection, DetectionStore, RunInfo, file_key, iso
from .windows import WindowSpec, WindowStream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanSettings:
    hop_s: float | None = None          # None: the bundle's hop
    threshold: float | None = None      # None: the bundle's threshold
    min_hits: int | None = None         # minimum positive windows per detection (default: the bundle's)
    tz: str | None = None               # recorder timezone (IANA name or +HH:MM) for local-time sources
    batch_size: int | None = None       # windows per ONNX Runtime call (None: the detector's, 1 on CPU)
    clips: bool = False                 # write padded audio clips + spectrograms for review
    block_s: float = 30.0               # seconds decoded at a time
    contiguous_tol_s: float = 1.0       # gap allowed between contiguous files
    clip_pad_s: float = 1.0             # padding each side of a review clip


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    status: str                         # done | skipped | failed
    reason: str = ""
    n_detections: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0


@dataclass(frozen=True)
class ScanSummary:
    outcomes: tuple[FileOutcome, ...]
    wall_s: float
    interrupted: bool = False

    def _by(self, status: str) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[FileOutcome]:
        return self._by("done")

    @property
    def skipped(self) -> list[FileOutcome]:
        return self._by("skipped")

    @property
    def failed(self) -> list[FileOutcome]:
        return self._by("failed")

    @property
    def audio_s(self) -> float:
        return sum(o.audio_s for o in self.done)

    @property
    def n_detections(self) -> int:
        return sum(o.n_detections for o in self.done)

    @property
    def realtime_factor(self) -> float:
        """Audio seconds scanned per wall-clock second."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


def detection_rule(manifest, settings) -> str:
    """The threshold and min_hits in force, and whether they are the bundle's (users compare runs by them)."""
    def part(name, given, bundle, fmt):
        return f"{name} {fmt.format(bundle if given is None else given)} ({'bundle' if given is None else 'given'})"
    return ", ".join((part("threshold", settings.threshold, manifest.threshold, "{:.3f}"),
                      part("min_hits", settings.min_hits, manifest.min_hits, "{}")))


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    info: AudioInfo | None              # None when the header cannot be read (the file will fail)
    time: FileTime | None
    next_path: Path | None = None       # the contiguous next file of the same recorder, if any


class ScanInterrupted(Exception):
    """Scanner.stop() was called; the current file was not recorded."""


class Progress:
    """Hooks a progress display implements; the default does nothing."""

    def planned(self, files: list[PlannedFile]) -> None: ...
    def file_started(self, path: Path, duration_s: float) -> None: ...
    def advance(self, audio_s: float) -> None: ...
    def file_finished(self, outcome: FileOutcome) -> None: ...


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


def check_wav_complete(path: Path) -> None:
    """AudioReadError when a WAV's header promises more audio than the file holds (a truncated copy).

    libsndfile quietly reads what is there, so a card pulled mid-copy would pass as a short recording.
    """
    if path.suffix.lower() != ".wav":
        return
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64/W64 and friends: leave it to libsndfile
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = f.read(4), int.from_bytes(f.read(4), "little")
            if cid == b"data":
                if n != 0xFFFFFFFF and pos + 8 + n > size:
                    raise AudioReadError(
                        f"{path}: truncated: its header promises {n} bytes of audio but the file holds "
                        f"{size - pos - 8}", "copy it again from the recorder's card, or remove it")
                return
            pos += 8 + n + (n & 1)


class Scanner:
    def __init__(self, detector, store: DetectionStore, settings: ScanSettings = ScanSettings(),
                 out_dir: str | os.PathLike | None = None) -> None:
        m = detector.manifest
        self.detector, self.store, self.settings = detector, store, settings
        self.out_dir = Path(out_dir) if out_dir is not None else None
        hop_s = settings.hop_s if settings.hop_s else m.hop_s
        if not 0 < hop_s <= m.window_s:
            raise ConfigError(f"hop {hop_s:g} s must be above 0 and at most the model's window ({m.window_s:g} s)",
                              f"pass --hop between 0 and {m.window_s:g} (hop_s in the daemon config), or leave it "
                              "unset to use the bundle's")
        self.spec = WindowSpec(m.sample_rate, m.window_s, hop_s)
        threshold = m.threshold if settings.threshold is None else float(settings.threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold {threshold} is outside [0, 1]", "pass --threshold between 0 and 1")
        min_hits = m.min_hits if settings.min_hits is None else int(settings.min_hits)
        if min_hits < 1:
            raise ConfigError(f"min_hits {min_hits} must be at least 1", "pass e.g. --min-hits 2")
        self.tz = parse_tz(settings.tz)
        self.run = RunInfo(model_id=m.model_id, model_sha256=m.files.get(m.model_file, ""), threshold=threshold,
                           hop_s=self.spec.hop_s, min_hits=min_hits, label=m.positive_label)
        self._stop = threading.Event()

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    def stop(self) -> None:
        """Ask a running scan to stop: the current file is abandoned (not recorded) and scan_paths returns."""
        self._stop.set()

    # planning
    def plan(self, paths: Iterable[str | os.PathLike]) -> list[PlannedFile]:
        """Probe every file, find its start time (ConfigError if a timezone is needed and missing) and link
        contiguous files of the same recorder."""
        files = []
        for p in collect_audio(paths):
            try:
                info = probe(p)
            except AudioReadError:  # it fails (and is recorded) when scanned; no time needed
                files.append(PlannedFile(p, None, None))
                continue
            files.append(PlannedFile(p, info, file_time(p, self.tz)))
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(files):
            if f.info is not None:
                groups.setdefault((f.path.parent.resolve(), f.time.recorder_id, f.info.sample_rate), []).append(i)
        linked = list(files)
        for idx in groups.values():
            idx.sort(key=lambda i: files[i].time.start_utc)
            for a, b in zip(idx, idx[1:]):
                fa, fb = files[a], files[b]
                end_a = fa.time.at(fa.info.duration_s)
                if abs((fb.time.start_utc - end_a).total_seconds()) <= self.settings.contiguous_tol_s:
                    linked[a] = PlannedFile(fa.path, fa.info, fa.time, fb.path)
        return linked

    # scanning
    def scan_paths(self, paths: Iterable[str | os.PathLike], progress: Progress | None = None) -> ScanSummary:
        progress = progress or Progress()
        t0 = time.perf_counter()
        planned = self.plan(paths)
        progress.planned(planned)
        outcomes, interrupted = [], False
        for f in planned:
            try:
                outcome = self.scan_file(f.path, next_path=f.next_path, ftime=f.time, progress=progress)
            except ScanInterrupted:
                interrupted = True
                break
            outcomes.append(outcome)
        return ScanSummary(tuple(outcomes), time.perf_counter() - t0, interrupted)

    def scan_file(self, path: str | os.PathLike, next_path: str | os.PathLike | None = None,
                  ftime: FileTime | None = None, progress: Progress | None = None) -> FileOutcome:
        """Scan one file and record it. Raises ScanInterrupted after stop(), KeyboardInterrupt on Ctrl-C,
        ConfigError when the file's time needs a timezone; every problem with the file itself is a
        'failed' outcome recorded in the ledger."""
        progress = progress or Progress()
        path = Path(path)
        t0 = time.perf_counter()
        if not self.store.needs_processing(path, self.run.run_key):
            row = self.store.ledger(path, self.run.run_key)
            outcome = FileOutcome(path, "skipped", "already scanned with these settings", 0, row.audio_s if row else 0.0)
            progress.file_finished(outcome)
            return outcome
        try:
            info = probe(path)
            check_wav_complete(path)
            ftime = ftime or file_time(path, self.tz)
            progress.file_started(path, info.duration_s)
            events, n_samples = self._events_of_file(path, Path(next_path) if next_path else None, progress)
            detections = [self._detection(path, ftime, e) for e in events]
            audio_s = n_samples / self.sample_rate
            self.store.commit_file(path, self.run, detections, audio_s=audio_s, start_utc=iso(ftime.start_utc),
                                   time_source=ftime.source, recorder_id=ftime.recorder_id)
        except (ScanInterrupted, KeyboardInterrupt, ConfigError):
            raise
        except HootwatchError as exc:
            return self._failed(path, exc.message, t0, progress)
        except Exception as exc:  # a bug or a runtime failure must not stop a night's scan
            log.exception("%s: unexpected error", path)
            return self._failed(path, f"{type(exc).__name__}: {exc}", t0, progress)
        if self.settings.clips and self.out_dir is not None and detections:
            from .review import write_review
            try:
                write_review(path, detections, self.out_dir / "clips", pad_s=self.settings.clip_pad_s)
            except (OSError, HootwatchError) as exc:  # a full disk must not stop the scan: detections are committed
                log.warning("%s: review clips not written (%s); its detections are saved", path,
                            getattr(exc, "message", exc))
        outcome = FileOutcome(path, "done", "", len(detections), audio_s, time.perf_counter() - t0)
        progress.file_finished(outcome)
        return outcome

    def _failed(self, path: Path, reason: str, t0: float, progress: Progress) -> FileOutcome:
        log.warning("skipping %s", reason)
        self.store.record_failure(path, self.run, reason)
        outcome = FileOutcome(path, "failed", reason, 0, 0.0, time.perf_counter() - t0)
        progress.file_finished(outcome)
        return outcome

    def _windows_of_file(self, path: Path, next_path: Path | None, progress: Progress,
                         counter: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        sr, stream = self.sample_rate, WindowStream(self.spec)
        for block in iter_blocks(path, sr, block_s=self.settings.block_s):
            if self._stop.is_set():
                raise ScanInterrupted(str(path))
            counter[0] += len(block)
            progress.advance(len(block) / sr)
            yield from stream.push(block)
        n = counter[0]
        head = self._head(next_path) if next_path is not None else None
        if head is None or len(head) == 0:
            yield from stream.finish()
            return
        pending = [(s, w) for s, w in stream.push(head) if s < n]
        yield from pending
        # a next file shorter than a window: end-align what is still missing
        yield from [(s, w) for s, w in stream.finish() if s < n]

    def _head(self, next_path: Path) -> np.ndarray | None:
        """The first window's worth of the next contiguous file, or None if it cannot be read."""
        try:
            blocks = list(iter_blocks(next_path, self.sample_rate, block_s=self.spec.window_s,
                                      duration_s=self.spec.window_s))
        except AudioReadError:
            return None
        return np.concatenate(blocks) if blocks else None

    def _events_of_file(self, path: Path, next_path: Path | None, progress: Progress) -> tuple[list[Event], int]:
        counter = [0]
        builder = EventBuilder(self.run.threshold, self.run.min_hits)
        events: list[Event] = []
        batch: list[tuple[int, np.ndarray]] = []
        for item in self._windows_of_file(path, next_path, progress, counter):
            batch.append(item)
            if len(batch) >= (self.settings.batch_size or self.detector.batch_size):
                events += self._score_batch(batch, builder, None)
                batch = []
        # the file's sample count is known only now; the stream may have run into the next file
        events += self._score_batch(batch, builder, None)
        events += builder.flush()
        n = counter[0]
        if next_path is None:  # audio shorter than a window was padded: a detection ends with the audio
            events = [replace(e, end_sample=min(e.end_sample, n)) for e in events]
        return events, n

    def _score_batch(self, batch: list[tuple[int, np.ndarray]], builder: EventBuilder,
                     total: int | None) -> list[Event]:
        if not batch:
            return []
        scores = self.detector.score(np.stack([w for _, w in batch]))
        win = self.spec.window_samples
        events = []
        for (s, _), p in zip(batch, scores):
            end = s + win if total is None else min(s + win, max(total, 1))
            events += builder.push(s, end, float(p))
        return events

    def _detection(self, path: Path, ftime: FileTime, e: Event, key: str | None = None,
                   name: str | None = None) -> Detection:
        sr = self.sample_rate
        start_s, end_s = e.start_sample / sr, e.end_sample / sr
        b, en = ftime.at(start_s), ftime.at(end_s)
        return Detection(
            file_key=key or file_key(path), file=name or str(path), start_sample=int(e.start_sample),
            start_s=round(start_s, 3), end_s=round(end_s, 3), begin_utc=iso(b), end_utc=iso(en),
            begin_local=iso(ftime.local(b)), end_local=iso(ftime.local(en)), label=self.run.label,
            max_score=round(e.max_score, 6), mean_score=round(e.mean_score, 6), n_windows=e.n_windows,
            time_source=ftime.source, recorder_id=ftime.recorder_id)


@dataclass
class LiveSession:
    """Continuous live audio (blocks at the bundle's sample rate) -> detections written as they close.

    Times come from the capture clock: `start_utc` (aware) + samples pushed / rate. Each session is its own
    "file" in the store (`file` = source_id, file_key = live:SOURCE:START), so nothing collides with files.
    """
    scanner: Scanner
    source_id: str
    start_utc: datetime
    recorder_id: str = ""
    _stream: WindowStream = field(init=False)
    _builder: EventBuilder = field(init=False)
    _time: FileTime = field(init=False)
    _key: str = field(init=False)

    def __post_init__(self) -> None:
        if self.start_utc.tzinfo is None:
            raise ValueError("start_utc must be timezone-aware (UTC)")
        s = self.scanner
        self._stream = WindowStream(s.spec)
        self._builder = EventBuilder(s.run.threshold, s.run.min_hits)
        self._time = FileTime(self.start_utc.astimezone(timezone.utc), s.tz or timezone.utc, "capture_clock",
                              self.recorder_id)
        self._key = f"live:{self.source_id}:{iso(self._time.start_utc)}"

    @property
    def samples_seen(self) -> int:
        return self._stream.samples_seen

    def push(self, block: np.ndarray) -> list[Detection]:
        """Feed mono float32 audio at the model's rate; returns (and stores) detections that closed."""
        windows = self._stream.push(np.asarray(block, np.float32).reshape(-1))
        events = self.scanner._score_batch(windows, self._builder, None)
        return self._record(events)

    def close(self) -> list[Detection]:
        """End of the stream: score the end-aligned tail window and close any open event."""
        total = self._stream.samples_seen
        events = self.scanner._score_batch(self._stream.finish(), self._builder, total)
        return self._record(events + self._builder.flush())

    def _record(self, events: list[Event]) -> list[Detection]:
        if not events:
            return []
        dets = [self.scanner._detection(Path(self.source_id), self._time, e, self._key, self.source_id)
                for e in events]
        self.scanner.store.add_detections(self.scanner.run, dets)
        return dets


def scan_into(paths: Iterable[str | os.PathLike], detector, out_dir: str | os.PathLike,
              settings: ScanSettings = ScanSettings(), progress: Progress | None = None) -> tuple[ScanSummary, dict]:
    """Scan into OUTDIR's store and rewrite its exports (also when interrupted, before re-raising).

    Returns the summary and the export paths ({"csv", "raven", "labels"}).
    """
    from .exports import write_exports

    out = Path(out_dir)
    with DetectionStore(out / STORE_NAME) as store:
        scanner = Scanner(detector, store, settings, out)
        try:
            summary = scanner.scan_paths(paths, progress)
        finally:
            exports = write_exports(store, scanner.run.run_key, out, detector.manifest.sample_rate / 2)
    return summary, exports
