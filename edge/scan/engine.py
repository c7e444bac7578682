"""The scan engine: audio files (or live audio) -> scored windows -> events -> rows in the DetectionStore.

Used by `hootwatch scan` (edge/commands/scan.py) and by the daemon (edge/daemon/).

    detector = Detector.load(bundle_dir, threads=2)
    with DetectionStore(out_dir / STORE_NAME) as store:
        scanner = Scanner(detector, store, ScanSettings(tz="Australia/Melbourne"), out_dir)
        outcome = scanner.scan_file(path)              # one file -> FileOutcome (done | skipped | failed)
        result = scanner.compute_file(path)            # the same in two steps: compute (no store touched) ...
        scanner.commit(result)                         # ... and record (one transaction)
        summary = scanner.scan_paths([folder])         # files and folders, recursive -> ScanSummary
        live = LiveSession(scanner, "mic0", start_utc) # live audio at the model's sample rate
        detections = live.push(block); ...; live.close()

Per file, `compute_file` (pure: no store, so a worker process can run it) decodes in blocks at the bundle's sample
rate (`audio.iter_blocks`) and runs the one window -> score -> event loop (`score_loop`: `WindowStream`, window
from the bundle, hop from the bundle or `hop_s`; the scorer's `score` in batches; `events.EventBuilder`), gives
each event its absolute time (`recorder_time.file_time`) and returns a `FileResult` (ledger facts, detections,
every window's start and score, and the acoustic indices of each minute, `scan/indices.py`, from the same decoded
blocks, in the decoding thread); `commit` then writes the file's detections and its ledger row in ONE transaction
(`DetectionStore.commit_file`). The scorer is anything with `.score`, `.manifest` and `.batch_size`.
A file already done with the same settings (and unchanged size/mtime) is skipped, so re-scanning adds no
duplicates; an interrupted file (Ctrl-C, `Scanner.stop()`, kill -9) leaves nothing behind and is redone.

Contiguous files (`scan_paths`): files of one recorder (same folder and recorder id, same sample rate) where
the next starts where the previous ends (within `contiguous_tol_s`) are one continuous recording. Each file's
window grid starts at its own first sample; its last windows run on into the first seconds of the next file
instead of being end-aligned, so every moment is covered with no gap, and a window spanning the boundary
belongs to the file it starts in. Each file's rows thus depend only on that file and the head of the next,
both fixed on disk: re-processing gives identical rows and keys, and per-file commits stay crash safe.
An event still open at a boundary ends there (a call across two files gives two abutting rows, one per file,
never overlapping ones): in scan, in `scan.offline` (operating point, mining), and in the daemon, which passes
`next_contiguous(path)` when the next file is already there. `scan_file(path)` with no next file end-aligns the
last window.

Bad input (corrupt, truncated, empty, not audio, unreadable) fails that file only: the ledger records it as
failed with the reason, the outcome says why, and the scan goes on.

Live audio (`LiveSession`): blocks from a microphone at the bundle's sample rate, windows continuous across
blocks; times are `start_utc` + samples / rate (the capture clock). Detections are written as they close.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from hootwatch.edge.contract.audio import probe, wav_truncation
from hootwatch.edge.core.errors import AudioReadError, ConfigError, DiskFullError, HootwatchError, is_disk_full
from hootwatch.edge.contract.events import Event, windows_at_hop
from hootwatch.edge.contract.operating_point import SETTINGS, OperatingPoint
from .planning import (PlannedFile, collect_audio, find_audio, next_contiguous, odd_entry,  # noqa: F401
                       plan_files, printable, start_time)
from hootwatch.edge.contract.recorder_time import FileTime, parse_tz
from hootwatch.edge.contract.score_loop import ScoredFile, ScoreStream, score_file
from hootwatch.edge.store.database import STORE_NAME, Detection, DetectionStore, RunInfo, file_key, iso
from hootwatch.edge.store.indices import MinuteIndexRows
from hootwatch.edge.store.embeddings import WindowEmbeddings
from hootwatch.edge.store.window_scores import WindowScores
from .indices import INDICES, MinuteIndices, bin_hz
from hootwatch.edge.contract.windows import WindowSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanSettings:
    hop_s: float | None = None          # None: the bundle's hop
    threshold: float | None = None      # None: the bundle's threshold
    min_hits: int | None = None         # positive windows per detection, at the bundle's hop (default: the bundle's)
    tz: str | None = None               # recorder timezone (IANA name or +HH:MM) for local-time sources
    batch_size: int | None = None       # windows per ONNX Runtime call (None: the detector's, 1 on CPU)
    clips: bool = False                 # write padded audio clips + spectrograms for review
    block_s: float = 30.0               # seconds decoded at a time
    contiguous_tol_s: float = 1.0       # gap allowed between contiguous files
    clip_pad_s: float = 1.0             # padding each side of a review clip
    prefetch_blocks: int = 2            # blocks decoded ahead in a thread while the model scores (0: none)
    indices: bool = True                # acoustic indices per minute for the night overview (scan/indices.py)


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    status: str                         # done | skipped (already done) | odd (no recording: never opened) | failed
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
    def odd(self) -> list[FileOutcome]:
        """Entries found in a folder that cannot be scanned (planning.odd_entry): not scanned, not done."""
        return self._by("odd")

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
    """The threshold and min_hits in force, and whether they are the bundle's (users compare runs by them); at a
    hop other than the bundle's, the windows min_hits stands for there (events.windows_at_hop)."""
    def part(name, given, bundle, fmt):
        return f"{name} {fmt.format(bundle if given is None else given)} ({'bundle' if given is None else 'given'})"
    rule = ", ".join((part("threshold", settings.threshold, manifest.threshold, "{:.3f}"),
                      part("min_hits", settings.min_hits, manifest.min_hits, "{}")))
    hop = settings.hop_s or manifest.hop_s
    if hop != manifest.hop_s:
        k = manifest.min_hits if settings.min_hits is None else int(settings.min_hits)
        rule += (f" = {windows_at_hop(k, manifest.hop_s, hop)} windows at hop {hop:g} s (min_hits counts windows "
                 f"at the bundle's hop, {manifest.hop_s:g} s: {k * manifest.hop_s:g} s of positive windows)")
    return rule


@dataclass(frozen=True)
class FileResult:
    """One file computed, not yet recorded (`Scanner.compute_file` -> `Scanner.commit`): what the ledger row
    and the detection rows will hold, and the score of every window (start sample at the model's rate)."""
    path: Path
    key: str                            # store.file_key: the recording's identity
    audio_s: float
    start_utc: str                      # ISO, from recorder_time.file_time
    time_source: str
    recorder_id: str
    detections: tuple[Detection, ...]
    starts: np.ndarray = field(compare=False, repr=False)
    scores: np.ndarray = field(compare=False, repr=False)
    notes: tuple[str, ...] = ()         # warnings that did not fail the file (shown in the outcome)
    local_tz: str = ""                  # the zone its local times are shown in (kept with the window scores)
    indices: MinuteIndexRows | None = field(default=None, compare=False, repr=False)  # per minute, night overview
    embeddings: np.ndarray | None = field(default=None, compare=False, repr=False)  # per window, bundles with one


class ScanInterrupted(Exception):
    """Scanner.stop() was called; the current file was not recorded."""


class Progress:
    """Hooks a progress display implements; the default does nothing."""

    def planned(self, files: list[PlannedFile]) -> None: ...
    def file_started(self, path: Path, duration_s: float) -> None: ...
    def advance(self, audio_s: float) -> None: ...
    def file_finished(self, outcome: FileOutcome) -> None: ...


class Scanner:
    def __init__(self, detector, store: DetectionStore, settings: ScanSettings = ScanSettings(),
                 out_dir: str | os.PathLike | None = None) -> None:
        m = detector.manifest
        self.detector, self.store, self.settings = detector, store, settings
        self.out_dir = Path(out_dir) if out_dir is not None else None
        point = OperatingPoint(m.threshold if settings.threshold is None else float(settings.threshold),
                               m.min_hits if settings.min_hits is None else int(settings.min_hits),
                               settings.hop_s if settings.hop_s else m.hop_s, window_s=m.window_s, wording=SETTINGS)
        self.spec = WindowSpec(m.sample_rate, m.window_s, point.hop_s)
        # stated at the bundle's hop; RunInfo (and every row) holds the windows in a row needed at this hop
        min_hits = windows_at_hop(point.min_hits, m.hop_s, self.spec.hop_s)
        self.tz = parse_tz(settings.tz)
        self.run = RunInfo(model_id=m.model_id, model_sha256=m.files.get(m.model_file, ""), threshold=point.threshold,
                           hop_s=self.spec.hop_s, min_hits=min_hits, label=m.positive_label,
                           exhaustive=bool(m.first_stage) and not getattr(detector, "first_stage_on", False))
        self._stop = threading.Event()
        self.clip_room: Callable[[int], bool] | None = None  # room(nbytes) asked before each clip (the daemon's)

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    def stop(self) -> None:
        """Ask a running scan to stop: the current file is abandoned (not recorded) and scan_paths returns."""
        self._stop.set()

    # planning
    def plan(self, paths: Iterable[str | os.PathLike]) -> list[PlannedFile]:
        """Probe every file, find its start time (ConfigError if a timezone is needed and missing) and link
        contiguous files of the same recorder (edge/scan/planning.py)."""
        return plan_files(find_audio(paths), self.tz, self.settings.contiguous_tol_s)

    def next_contiguous(self, path: str | os.PathLike) -> Path | None:
        """The file that continues `path` (same folder and recorder, starting where it ends), if already there:
        the daemon passes it to scan_file as a scan of the folder would."""
        return next_contiguous(path, self.tz, self.settings.contiguous_tol_s)

    # scanning
    def scan_paths(self, paths: Iterable[str | os.PathLike], progress: Progress | None = None) -> ScanSummary:
        progress = progress or Progress()
        t0 = time.perf_counter()
        planned = self.plan(paths)
        progress.planned(planned)
        outcomes, interrupted = [], False
        for f in planned:
            if f.odd:
                outcomes.append(self._odd(f.path, f.odd, "failed" if f.given else "odd", progress))
                continue
            try:
                outcome = self.scan_file(f.path, next_path=f.next_path, ftime=f.time, progress=progress)
            except ScanInterrupted:
                interrupted = True
                break
            outcomes.append(outcome)
        return ScanSummary(tuple(outcomes), time.perf_counter() - t0, interrupted)

    def scan_file(self, path: str | os.PathLike, next_path: str | os.PathLike | None = None,
                  ftime: FileTime | None = None, progress: Progress | None = None) -> FileOutcome:
        """Scan one file and record it: `compute_file` then `record`. Raises ScanInterrupted after stop(),
        KeyboardInterrupt on Ctrl-C, ConfigError when the file's time needs a timezone, DiskFullError when the
        store's disk is full (nothing is recorded against the file: scan it again when there is space); every
        problem with the file itself is a 'failed' outcome recorded in the ledger. An entry that is no file to
        scan (a FIFO, a device, a dangling link, a name that is not UTF-8) fails unopened and unrecorded."""
        progress = progress or Progress()
        path = Path(path)
        t0 = time.perf_counter()
        settled = self.settled(path, progress)
        if settled is not None:
            return settled
        try:
            result = self.compute_file(path, next_path, ftime, progress)
        except (ScanInterrupted, KeyboardInterrupt, ConfigError, DiskFullError):
            raise
        except Exception as exc:
            return self.fail(path, exc, t0, progress)
        return self.record(result, t0, progress)

    def settled(self, path: Path, progress: Progress) -> FileOutcome | None:
        """The outcome of a file that needs no computing (an odd entry: failed; already done: skipped), else None.
        The cluster driver asks this before it sends a file out."""
        why = odd_entry(path)
        if why:
            return self._odd(path, why, "failed", progress)
        if not self._disk(lambda: self.store.needs_processing(path, self.run.run_key)):
            row = self.store.ledger(path, self.run.run_key)
            outcome = FileOutcome(path, "skipped", "already scanned with these settings", 0, row.audio_s if row else 0.0)
            progress.file_finished(outcome)
            return outcome
        return None

    def record(self, result: FileResult, t0: float, progress: Progress) -> FileOutcome:
        """Commit a computed file (here, or one a cluster worker computed) and report it: 'done', or 'failed'
        when the commit fails for the file's sake; DiskFullError when the store's disk is full."""
        try:
            self._disk(lambda: self.commit(result))
        except (KeyboardInterrupt, ConfigError, DiskFullError):
            raise
        except Exception as exc:
            return self.fail(result.path, exc, t0, progress)
        for note in result.notes:
            log.warning("%s", note)
        self._write_review(result)
        outcome = FileOutcome(result.path, "done", "; ".join(result.notes), len(result.detections), result.audio_s,
                              time.perf_counter() - t0)
        progress.file_finished(outcome)
        return outcome

    def fail(self, path: Path, exc: BaseException | str, t0: float, progress: Progress) -> FileOutcome:
        """Record a file as failed: a HootwatchError's message, another exception (a bug or a runtime failure must
        not stop a night's scan) with its type, or the reason as given."""
        if isinstance(exc, HootwatchError):
            reason = exc.message
        elif isinstance(exc, BaseException):
            log.error("%s: unexpected error", path, exc_info=exc)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = exc
        return self._failed(path, reason, t0, progress)

    def compute_file(self, path: str | os.PathLike, next_path: str | os.PathLike | None = None,
                     ftime: FileTime | None = None, progress: Progress | None = None) -> FileResult:
        """One file -> FileResult, touching no store (a worker process can run it; `commit` records it).
        Raises HootwatchError naming the file when it cannot be scanned, ScanInterrupted after stop()."""
        progress = progress or Progress()
        path = Path(path)
        why = odd_entry(path)
        if why:
            raise AudioReadError(f"{printable(path)}: {why}")
        info = probe(path)
        truncated = wav_truncation(path)
        ftime = ftime or start_time(path, self.tz)
        progress.file_started(path, info.duration_s)

        minutes = MinuteIndices(self.sample_rate) if self.settings.indices else None

        def on_block(n: int) -> None:
            if self._stop.is_set():
                raise ScanInterrupted(str(path))
            progress.advance(n / self.sample_rate)

        scored = score_file(self.detector, self.spec, self.run.threshold, self.run.min_hits, path,
                            Path(next_path) if next_path else None, block_s=self.settings.block_s,
                            batch_size=self.settings.batch_size, on_block=on_block,
                            prefetch_blocks=self.settings.prefetch_blocks,
                            on_decoded=None if minutes is None else minutes.push)
        indices = None if minutes is None else MinuteIndexRows(minutes.finish(), INDICES, self.sample_rate,
                                                               bin_hz(self.sample_rate))
        return self.result_of(path, ftime, scored, truncated, indices)

    def result_of(self, path: Path, ftime: FileTime, scored: ScoredFile, truncated: float | None = None,
                  indices: MinuteIndexRows | None = None) -> FileResult:
        """A file's scored windows -> its FileResult (also for a long file whose chunks cluster workers scored).
        `truncated`: the seconds a cut-short WAV's header promises (audio.wav_truncation)."""
        detections = tuple(self._detection(path, ftime, e) for e in scored.events)
        audio_s = scored.n_samples / self.sample_rate
        notes = () if truncated is None else (
            f"{path}: truncated: {audio_s:.1f} s of {truncated:.1f} s are in the file (a copy cut short?); the "
            "audio there was scanned",)
        return FileResult(path, file_key(path), audio_s, iso(ftime.start_utc), ftime.source, ftime.recorder_id,
                          detections, scored.starts, scored.scores, notes,
                          local_tz=_tz_name(ftime.local_tz), indices=indices, embeddings=scored.embeddings)

    def commit(self, result: FileResult) -> None:
        """Record a computed file: its detections, its window scores, its acoustic indices and its ledger row 'done',
        in one transaction."""
        m = self.detector.manifest
        scores = WindowScores(result.starts, result.scores, self.sample_rate, self.spec.window_samples,
                              self.run.model_id, result.local_tz, int(round(result.audio_s * self.sample_rate)),
                              json.dumps(asdict(self.run) | {"bundle_hop_s": m.hop_s}))
        self.store.commit_file(result.path, self.run, result.detections, audio_s=result.audio_s,
                               start_utc=result.start_utc, time_source=result.time_source,
                               recorder_id=result.recorder_id, reason="; ".join(result.notes),
                               window_scores=scores, indices=result.indices, embeddings=self._embeddings(result))

    def _embeddings(self, result: FileResult) -> WindowEmbeddings | None:
        if result.embeddings is None or not len(result.starts):
            return None
        bundle = getattr(self.detector, "bundle", None)
        return WindowEmbeddings.of(result.starts, result.embeddings, self.detector.manifest, self.spec.hop_samples,
                                   str(bundle.path.resolve()) if bundle is not None else "")

    def _write_review(self, result: FileResult) -> None:
        """Clips after the commit, and only with room (`clip_room`): a clip never fails its file or the scan."""
        if not (self.settings.clips and self.out_dir is not None and result.detections):
            return
        from .material import write_review
        try:
            written, stopped = write_review(result.path, list(result.detections), self.out_dir / "clips",
                                            pad_s=self.settings.clip_pad_s, room=self.clip_room)
        except (OSError, RuntimeError, HootwatchError) as exc:  # the recording could not be read again
            written, stopped = [], str(getattr(exc, "message", exc))
        if stopped:
            n = len(result.detections)
            log.warning("%s: review clips not written for %d of its %d detections (%s); its detections are saved",
                        printable(result.path), n - len(written) // 2, n, stopped)

    def _failed(self, path: Path, reason: str, t0: float, progress: Progress) -> FileOutcome:
        log.warning("skipping %s", reason)
        self._disk(lambda: self.store.record_failure(path, self.run, reason))
        outcome = FileOutcome(path, "failed", reason, 0, 0.0, time.perf_counter() - t0)
        progress.file_finished(outcome)
        return outcome

    def _odd(self, path: Path, why: str, status: str, progress: Progress) -> FileOutcome:
        """An entry that is no file to scan: reported, never opened, not in the ledger (it has no content to key
        on, or a name the store cannot hold)."""
        reason = f"{printable(path)}: {why}"
        log.warning("%s %s", "skipping" if status == "odd" else "cannot scan", reason)
        outcome = FileOutcome(path, status, reason)
        progress.file_finished(outcome)
        return outcome

    def _disk(self, write):
        """Run a store access; a full disk becomes DiskFullError (the run pauses; never the recording's fault)."""
        try:
            return write()
        except DiskFullError:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                raise DiskFullError(f"the disk holding {self.store.path} is full ({exc})",
                                    "free some space on it; recordings not yet recorded are scanned again when "
                                    "the scan is run again (the daemon resumes by itself)") from exc
            raise

    def score_stream(self, keep_scores: bool = True) -> ScoreStream:
        """The window -> score -> event loop with this scan's settings (live audio keeps no window scores)."""
        return ScoreStream(self.detector, self.spec, self.run.threshold, self.run.min_hits, self.settings.batch_size,
                           keep_scores)

    def _detection(self, path: Path, ftime: FileTime, e: Event, key: str | None = None,
                   name: str | None = None) -> Detection:
        return detection_of(e, ftime, self.sample_rate, self.run.label, key or file_key(path), name or str(path))


def detection_of(e: Event, ftime: FileTime, sr: int, label: str, key: str, name: str) -> Detection:
    """An event of a file (sample offsets at `sr`) as a store row with its absolute times (scan and rebuild)."""
    start_s, end_s = e.start_sample / sr, e.end_sample / sr
    b, en = ftime.at(start_s), ftime.at(end_s)
    return Detection(
        file_key=key, file=name, start_sample=int(e.start_sample),
        start_s=round(start_s, 3), end_s=round(end_s, 3), begin_utc=iso(b), end_utc=iso(en),
        begin_local=iso(ftime.local(b)), end_local=iso(ftime.local(en)), label=label,
        max_score=round(e.max_score, 6), mean_score=round(e.mean_score, 6), n_windows=e.n_windows,
        time_source=ftime.source, recorder_id=ftime.recorder_id)


def _tz_name(tz) -> str:
    """A zone as text `recorder_time.parse_tz` reads back: an IANA key, or an offset like +10:00."""
    key = getattr(tz, "key", None)
    if key:
        return key
    off = tz.utcoffset(None) if tz is not None else None
    if not off:
        return "UTC"
    minutes = int(off.total_seconds() // 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


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
    _stream: ScoreStream = field(init=False)
    _time: FileTime = field(init=False)
    _key: str = field(init=False)

    def __post_init__(self) -> None:
        if self.start_utc.tzinfo is None:
            raise ValueError("start_utc must be timezone-aware (UTC)")
        s = self.scanner
        self._stream = s.score_stream(keep_scores=False)  # a session of days: no score per window kept
        self._time = FileTime(self.start_utc.astimezone(timezone.utc), s.tz or timezone.utc, "capture_clock",
                              self.recorder_id)
        self._key = f"live:{self.source_id}:{iso(self._time.start_utc)}"

    @property
    def samples_seen(self) -> int:
        return self._stream.samples_seen

    def push(self, block: np.ndarray) -> list[Detection]:
        """Feed mono float32 audio at the model's rate; returns (and stores) detections that closed."""
        return self._record(self._stream.push(block, score_all=True))

    def close(self) -> list[Detection]:
        """End of the stream: score the end-aligned tail window and close any open event."""
        return self._record(self._stream.finish())

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
    from hootwatch.edge.store.exports import write_exports

    out = Path(out_dir)
    with DetectionStore(out / STORE_NAME) as store:
        scanner = Scanner(detector, store, settings, out)
        try:
            summary = scanner.scan_paths(paths, progress)
        finally:
            exports = write_exports(store, scanner.run.run_key, out, detector.manifest.sample_rate / 2)
    return summary, exports
