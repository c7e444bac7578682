"""The driver: the one process that owns the store. It plans the scan as a local scan does, asks the ledger which
files still need work (`Scanner.settled`), sends those (a few units per worker ahead, never the whole archive)
and records each file's result with the local scan's own code (`Scanner.record`: detections, window scores where
kept and the ledger row in one transaction, notes, review clips, the outcome; `Scanner.fail` for a failure).

Crash safety follows from the ledger: a file is committed whole or not at all, so after a crash of the driver,
a worker or the scheduler, running the same command again sends only what is not committed. A worker killed
mid-task: the scheduler runs the task elsewhere; a unit whose workers keep dying (`allowed-failures`) fails its
file with the reason, and the run goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from hootwatch.edge.contract.audio import wav_truncation
from hootwatch.edge.scan.engine import Progress, ScanSummary
from .connect import quiet_dask
from .units import chunk_spans, merge_chunks
from .worker import UnitOutcome, WorkerSetupError, WorkUnit, compute_unit

log = logging.getLogger(__name__)

AHEAD_PER_WORKER = 2         # units queued per worker beyond the one it runs: keeps it busy while we commit
CHUNK_BATCH = 8              # chunks hold whole batches of 1 (CPU default), 8 (GPU default) and --batch-size windows


@dataclass(frozen=True)
class BundleModel:
    """What the driver's Scanner needs of a detector: the (hash-checked) manifest. The driver never scores."""
    bundle: object
    batch_size: int = 1
    first_stage_on: bool = False    # the workers run the bundle's cascade (the run key says so)

    @property
    def manifest(self):
        return self.bundle.manifest


class SchedulerLost(Exception):
    """The connection to the Dask scheduler is gone; everything committed so far stays."""


class ClusterDriver:
    def __init__(self, client, scanner, chunk_s: float, progress: Progress | None = None,
                 exhaustive: bool = False) -> None:
        self.client, self.scanner, self.chunk_s, self.exhaustive = client, scanner, chunk_s, exhaustive
        self.progress = progress or Progress()
        self._futures: dict = {}
        self._chunks: dict[int, dict[int, object]] = {}
        self._spans: dict[int, int] = {}
        self._truncated: dict[int, float | None] = {}
        self._t0: dict[int, float] = {}
        self._failed: set[int] = set()
        self._outcomes: dict = {}
        self.units_sent = 0
        self.chunked_files = 0

    # what to send
    def _units(self, planned):
        sc = self.scanner
        batch = math.lcm(CHUNK_BATCH, sc.settings.batch_size or 1)
        if sc.detector.manifest.first_stage and not self.exhaustive:  # the cascade's batches (on a CPU or a GPU)
            from hootwatch.edge.contract.cascade import FIRST_STAGE_BATCH, GPU_BATCHES
            batch = math.lcm(batch, FIRST_STAGE_BATCH, GPU_BATCHES * (sc.settings.batch_size or CHUNK_BATCH))
        for i, f in enumerate(planned):
            path = f.path
            self._t0[i] = time.perf_counter()
            if f.odd:  # as Scanner.scan_paths: never opened, not in the ledger
                self._outcomes[i] = sc._odd(path, f.odd, "failed" if f.given else "odd", self.progress)
                continue
            settled = sc.settled(path, self.progress)
            if settled is not None:
                self._outcomes[i] = settled
                continue
            absolute = str(path.resolve())
            nxt = str(f.next_path.resolve()) if f.next_path is not None else None
            self.progress.file_started(path, f.info.duration_s if f.info is not None else 0.0)
            spans = ()
            if f.info is not None and f.time is not None:  # else the worker fails it, as compute_file does
                n = f.info.frames * sc.spec.sample_rate // f.info.sample_rate
                spans = chunk_spans(n, sc.spec, self.chunk_s, batch)
            if len(spans) <= 1:
                yield WorkUnit(i, absolute, nxt, f.time)
                continue
            self._truncated[i] = wav_truncation(path)
            self._spans[i] = len(spans)
            self.chunked_files += 1
            for span in spans:
                yield WorkUnit(i, absolute, nxt, f.time, span)

    def _limit(self) -> int:
        try:
            workers = len(self.client.nthreads())
        except Exception:  # the scheduler is unreachable: the next result will say so
            workers = 1
        return max(1, workers) * (1 + AHEAD_PER_WORKER)

    # the loop
    def run(self, planned) -> ScanSummary:
        from distributed import as_completed

        self._planned = planned
        t0 = time.perf_counter()
        self.progress.planned(planned)
        units = self._units(planned)
        done = as_completed()
        interrupted = False

        def top_up() -> None:
            limit = self._limit()
            while len(self._futures) < limit:
                unit = next(units, None)
                if unit is None:
                    return
                if unit.index in self._failed:  # a chunk of a file that already failed
                    continue
                fut = self.client.submit(compute_unit, unit, pure=False,
                                         key=f"hootwatch-{unit.index}-{unit.span.start if unit.span else 'file'}-"
                                             f"{time.monotonic_ns()}")
                self._futures[fut] = unit
                self.units_sent += 1
                done.add(fut)

        try:
            top_up()
            for fut in done:
                unit = self._futures.pop(fut)
                try:
                    self._take(unit, fut)
                except SchedulerLost as exc:
                    log.error("%s", exc)
                    # for the rest of this process: the client's attempts to reconnect end in tracebacks
                    quiet_dask(logging.CRITICAL)
                    interrupted = True
                    break
                top_up()
        finally:
            if self._futures:
                self.client.cancel(list(self._futures))
        outcomes = tuple(self._outcomes[i] for i in sorted(self._outcomes))
        return ScanSummary(outcomes, time.perf_counter() - t0, interrupted)

    def _take(self, unit: WorkUnit, fut) -> None:
        from distributed import KilledWorker

        if unit.index in self._failed:
            return
        try:
            out: UnitOutcome = fut.result()
        except KilledWorker as exc:
            deaths = getattr(exc, "allowed_failures", 0) + 1
            part = "" if unit.span is None else f" (the chunk from {unit.span.start / self.scanner.sample_rate:.0f} s)"
            self._fail(unit.index, f"{self._path(unit)}: {deaths} Dask workers died while scanning it{part}: out of "
                       "memory, or the decoder or the model crashed on this file (see the worker logs); check the "
                       "file, or scan it alone with a plain `hootwatch scan`")
            return
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            raise SchedulerLost("lost the connection to the Dask scheduler; every file finished is committed: "
                                "restart the scheduler (or the cluster) and run the same command again to continue"
                                ) from None
        except WorkerSetupError:  # not the file's fault: stop (what is committed stays), as a scan without a model
            raise
        except Exception as exc:  # the task itself broke (it catches every problem with the file)
            self._fail(unit.index, exc)
            return
        if out.failure:  # worded with the path the worker read: name the file as the scan was given it
            self._fail(unit.index, out.failure.replace(unit.path, str(self._path(unit))))
            return
        sr = self.scanner.sample_rate
        if out.chunk is None:
            self.progress.advance(out.result.audio_s)
            self._record(unit.index, self._as_given(unit, out.result))
            return
        span = out.chunk.span
        self.progress.advance(((span.stop - span.start) if span.stop is not None else out.chunk.n_samples) / sr)
        got = self._chunks.setdefault(unit.index, {})
        got[span.start] = out.chunk
        if len(got) == self._spans[unit.index]:
            del self._chunks[unit.index]
            sc = self.scanner
            scored = merge_chunks(got.values(), sc.spec, sc.run.threshold, sc.run.min_hits)
            self._record(unit.index, sc.result_of(self._path(unit), unit.ftime, scored, self._truncated[unit.index]))

    def _path(self, unit: WorkUnit) -> Path:
        return self._planned[unit.index].path

    def _as_given(self, unit: WorkUnit, result):
        """A worker read the file at its absolute path; rows and notes name it as the scan was given it, as a
        local scan does."""
        path = self._path(unit)
        return replace(result, path=path, detections=tuple(replace(d, file=str(path)) for d in result.detections),
                       notes=tuple(n.replace(unit.path, str(path)) for n in result.notes))

    # recording: the local scan's own code
    def _record(self, index: int, result) -> None:
        self._outcomes[index] = self.scanner.record(result, self._t0[index], self.progress)

    def _fail(self, index: int, why) -> None:
        self._failed.add(index)
        self._chunks.pop(index, None)
        self._call_off(index)
        self._outcomes[index] = self.scanner.fail(self._planned[index].path, why, self._t0[index], self.progress)

    def _call_off(self, index: int) -> None:
        """Cancel the queued chunks of a failed file. Not those running: a cancelled task keeps running in its
        worker while the scheduler gives the worker the next task, which would then share its fate."""
        rest = [f for f, u in self._futures.items() if u.index == index]
        if not rest:
            return
        try:
            running = {key for keys in self.client.processing().values() for key in keys}
        except Exception:  # the scheduler is unreachable: the next result will say so
            return
        queued = [f for f in rest if f.key not in running]
        if queued:
            self.client.cancel(queued)
