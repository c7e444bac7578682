"""What runs on a Dask worker: the model loaded once per worker (a worker plugin) and the task that computes one
unit of work (a whole file -> `FileResult`, or a chunk of a long file -> `ChunkScores`). Workers never open
the store: results go back to the driver, which commits them.

Each worker keeps one ONNX Runtime session with `threads` intra-op threads. Run workers with one Dask thread
each (`--nthreads 1`, as `local:N` does), so that workers x threads <= cores.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.audio import iter_blocks, probe
from hootwatch.edge.core.errors import HootwatchError
from hootwatch.edge.contract.recorder_time import FileTime
from .units import Span

log = logging.getLogger(__name__)

PLUGIN_NAME = "hootwatch-scanner"
EXACT_SEEK_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "CAF")  # libsndfile seeks these to the sample


@dataclass(frozen=True)
class WorkUnit:
    index: int                  # the file's place in the scan's plan
    path: str                   # absolute: workers see the same paths (a shared filesystem)
    next_path: str | None       # the contiguous next file of the same recorder
    ftime: FileTime | None
    span: Span | None = None    # None: the whole file


@dataclass(frozen=True)
class ChunkScores:
    span: Span
    starts: np.ndarray = field(repr=False)    # window starts in the file (samples at the model's rate)
    scores: np.ndarray = field(repr=False)
    n_samples: int = 0          # samples decoded from span.start (the last chunk: to the end of the file)
    linked: bool = False        # the last chunk's windows ran on into the next contiguous file


@dataclass(frozen=True)
class UnitOutcome:
    unit: WorkUnit
    result: object = None       # scan.FileResult of a whole file
    chunk: ChunkScores | None = None
    failure: str = ""           # why the file cannot be scanned, worded as a local scan records it
    wall_s: float = 0.0
    worker: str = ""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))   # a batch job's allocation, not the whole node
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # the [cluster] extra is not installed: nothing here is used then
    _WorkerPlugin = object


class ScannerPlugin(_WorkerPlugin):
    """Loads the bundle once per worker (hash-checked, warmed up) and keeps a store-less Scanner for tasks."""

    name = PLUGIN_NAME

    def __init__(self, bundle_dir: str, settings, threads: int | None = None, providers: list[str] | None = None,
                 exhaustive: bool = False):
        self.bundle_dir, self.settings, self.threads, self.providers = str(bundle_dir), settings, threads, providers
        self.exhaustive = exhaustive
        self.scanner = None

    def setup(self, worker) -> None:
        from hootwatch.edge.contract.cascade import load_detector
        from hootwatch.edge.scan.engine import Scanner

        threads = self.threads or max(1, usable_cpus() // max(1, worker.state.nthreads))
        detector = load_detector(self.bundle_dir, threads=threads, providers=self.providers,
                                 batch_size=self.settings.batch_size, exhaustive=self.exhaustive)
        self.scanner = Scanner(detector, None, self.settings)
        log.info("hootwatch scanner ready on %s: %s, %d model threads", worker.address, type(detector).__name__,
                 threads)


class WorkerSetupError(HootwatchError):
    """A worker has no model (the plugin could not load the bundle there): a problem of the worker, not the file."""

    def __reduce__(self):  # it travels from the worker to the driver with its hint
        return type(self), (self.message, self.hint)


def _scanner():
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None or plugin.scanner is None:
        raise WorkerSetupError(f"the Dask worker {worker.address} has not loaded the model bundle",
                               "workers need the bundle and the recordings at the same paths as the machine running "
                               "the scan (a shared filesystem) and hootwatch[edge] installed; see the worker's log")
    return plugin.scanner


def compute_unit(unit: WorkUnit) -> UnitOutcome:
    """The task: every problem with the file is a failure in the outcome (as a local scan records it), so one bad
    file never costs a worker or a retry."""
    from distributed import get_worker

    t0 = time.perf_counter()
    scanner = _scanner()  # WorkerSetupError goes to the driver as it is: it stops the run
    try:
        if unit.span is None:
            result = scanner.compute_file(Path(unit.path), unit.next_path, unit.ftime)
            out = UnitOutcome(unit, result=result)
        else:
            out = UnitOutcome(unit, chunk=score_chunk(scanner, Path(unit.path), unit.next_path, unit.span))
    except HootwatchError as exc:
        out = UnitOutcome(unit, failure=exc.message)
    except Exception as exc:  # a bug or a runtime failure fails this file, not the run
        log.exception("%s: unexpected error", unit.path)
        out = UnitOutcome(unit, failure=f"{type(exc).__name__}: {exc}")
    return UnitOutcome(out.unit, out.result, out.chunk, out.failure, time.perf_counter() - t0, get_worker().address)


def chunk_blocks(path: Path, sample_rate: int, start: int, count: int | None, block_s: float = 30.0):
    """Samples [start, start + count) of the file at `sample_rate` (count None: to the end), bit for bit those a
    decode of the whole file gives. A file at the model's rate in a seekable format is read from `start`; one
    that must be resampled (or a compressed stream) is decoded from its beginning and the head dropped, because
    a resampler started mid-file differs from the continuous one in the last bits (decoding costs little next
    to the model)."""
    info = probe(path)
    if info.sample_rate == sample_rate and info.format in EXACT_SEEK_FORMATS:
        yield from iter_blocks(path, sample_rate, block_s, start_s=start / sample_rate,
                               duration_s=None if count is None else count / sample_rate)
        return
    skip, left = start, count
    for block in iter_blocks(path, sample_rate, block_s):
        if skip:
            cut = min(skip, len(block))
            block, skip = block[cut:], skip - cut
        if left is not None:
            block, left = block[:left], left - min(left, len(block))
        if len(block):
            yield block
        if left == 0:
            return


def score_chunk(scanner, path: Path, next_path: str | None, span: Span) -> ChunkScores:
    """The windows of `span` through the scan's loop (`Scanner.score_stream`); the last chunk ends as a local
    scan ends a file (end-aligned tail, or the run-on into the head of the next contiguous file).

    A scorer with context (the student cascade passes a window's neighbours) also gets that many windows before
    the span (as context, not scored: the chunk's batches stay a local scan's) and after it (scored in its last
    batch, their scores dropped), so each window is decided exactly as locally and belongs to one chunk only."""
    from hootwatch.edge.contract.score_loop import read_head

    spec = scanner.spec
    stream = scanner.score_stream()
    ctx = max(0, int(getattr(stream.scorer, "context", 0) or 0))
    hop, win = spec.hop_samples, spec.window_samples
    lead = min(ctx, span.start // hop)                    # context windows before the span (none before sample 0)
    if lead:    # given as context only, so the chunk's batches stay those of a local scan of the whole file
        before = np.concatenate(list(chunk_blocks(path, spec.sample_rate, span.start - lead * hop,
                                                  (lead - 1) * hop + win, scanner.settings.block_s)))
        stream.prime([before[i * hop:i * hop + win] for i in range(lead)])
    needed = span.samples_needed(spec)
    count = None if needed is None else needed + ctx * hop   # and the windows after it, decided with the next chunk
    for block in chunk_blocks(path, spec.sample_rate, span.start, count, scanner.settings.block_s):
        stream.push(block)
    n = stream.samples_seen
    linked = False
    if span.stop is None:
        stream.end_here()
        head = read_head(next_path, spec.sample_rate, spec.window_s) if next_path is not None else None
        if head is not None and len(head):
            stream.push(head)
            linked = True
    elif n < needed:
        raise HootwatchError(f"{path}: holds {span.start + n} samples at {spec.sample_rate} Hz, fewer than its "
                             "header promised", "copy it again from the recorder's card, or remove it")
    else:
        n = needed
    stream.finish()
    starts = stream.starts + span.start
    keep = (starts >= span.start) & (True if span.stop is None else starts < span.stop)
    return ChunkScores(span, starts[keep], stream.scores[keep], n, linked)
