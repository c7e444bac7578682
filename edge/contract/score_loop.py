"""The one window -> score -> event loop, used by file scans, live audio, window_scores and mining alike.

    stream = ScoreStream(scorer, spec, threshold, min_hits)
    events = stream.push(block)          # windows completed by the block, scored in batches, events that closed
    stream.end_here()                    # (files) the recording ends here: later windows start before it
    events += stream.push(head_of_next)  # (contiguous files) the next file's head completes the last windows
    events += stream.finish()            # the end-aligned tail window, the open event closed
    stream.starts, stream.scores         # every window scored (start sample, score)
    stream.embeddings                    # and its pooled embedding, when the scorer `embeds` (else None)

`scorer` is anything with `.score(windows: np.ndarray) -> np.ndarray` (one score per window), `.manifest` and
`.batch_size`: the ONNX `Detector`, or a cascade of models; nothing here depends on how it scores. A scorer with a
`context` of k windows gets k windows on each side of every batch (`score(x, context=(before, after))`, scores for
the batch only), so its decisions do not depend on where the batches cut the stream (live audio scores each block
at once, so a live batch has no windows after it). A NaN score
is a window the scorer chose not to score (the cascade's rejected windows): it is below every threshold.

A file (`score_file`): decoded in blocks at the model's rate, windowed from its own first sample. With the next
contiguous file of the same recorder, the last windows run on into its head instead of being end-aligned (every
moment is covered with no gap; a window belongs to the file it starts in); events are clipped at the file's end,
so a call across the boundary gives two abutting rows, one per file, never overlapping ones.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from .audio import iter_blocks
from hootwatch.edge.core.errors import AudioReadError
from .events import Event, EventBuilder
from .windows import WindowSpec, WindowStream


class Scorer(Protocol):
    manifest: object
    batch_size: int

    def score(self, windows: np.ndarray) -> np.ndarray: ...


class ScoreStream:
    """Blocks of audio at the model's rate -> windows (WindowStream) -> scores in batches -> events (EventBuilder)."""

    def __init__(self, scorer: Scorer, spec: WindowSpec, threshold: float, min_hits: int = 1,
                 batch_size: int | None = None, keep_scores: bool = True) -> None:
        self.scorer, self.spec = scorer, spec
        self.keep_scores = keep_scores  # False for live audio: a session of days would keep every window's score
        self.batch_size = max(1, int(batch_size or getattr(scorer, "batch_size", 1) or 1))
        self._windows = WindowStream(spec)
        self._builder = EventBuilder(threshold, min_hits)
        self._pending: list[tuple[int, np.ndarray]] = []
        self._before: list[tuple[int, np.ndarray]] = []      # context windows already scored (see _score)
        self._starts: list[int] = []
        self._scores: list[np.ndarray] = []
        self._embeddings: list[np.ndarray] | None = [] if getattr(scorer, "embeds", False) else None
        self._end: int | None = None

    @property
    def samples_seen(self) -> int:
        return self._windows.samples_seen

    @property
    def starts(self) -> np.ndarray:
        return np.asarray(self._starts, np.int64)

    @property
    def scores(self) -> np.ndarray:
        return np.concatenate(self._scores).astype(np.float32) if self._scores else np.zeros(0, np.float32)

    @property
    def embeddings(self) -> np.ndarray | None:
        """(windows, dim) float32 in the order of `starts` (NaN rows: no embedding), or None."""
        if self._embeddings is None:
            return None
        return np.concatenate(self._embeddings) if self._embeddings else np.zeros((0, 0), np.float32)

    def end_here(self) -> None:
        """The recording ends at the samples pushed so far: windows pushed later (the next file's head) count only
        if they start before here, and every event ends here at the latest."""
        self._end = self.samples_seen
        self._builder.end_at(self._end)

    def push(self, block: np.ndarray, score_all: bool = False) -> list[Event]:
        """Feed mono float32 audio; windows are scored in full batches (all of them with `score_all`, for live
        audio, where a detection must not wait for the next block; a scorer with context still waits for the
        windows after the last one: a hop or two of latency)."""
        self._take(self._windows.push(np.asarray(block, np.float32).reshape(-1)))
        return self._score(score_all)

    def prime(self, windows: list[np.ndarray]) -> None:
        """Windows just before the first one pushed (a cluster chunk's predecessors): context only, never scored."""
        ctx = max(0, int(getattr(self.scorer, "context", 0) or 0))
        self._before = [(-1, np.asarray(w, np.float32)) for w in windows][-ctx:] if ctx else []

    def finish(self) -> list[Event]:
        """End of the audio: the end-aligned tail window (or the padded window of audio shorter than one window)
        when the hops left the end uncovered, every pending window scored, the open event closed."""
        if self._end is None:  # audio shorter than a window was padded: an event ends with the audio
            self._builder.end_at(self.samples_seen)
        self._take(self._windows.finish())
        return self._score(True, final=True) + self._builder.flush()

    def _take(self, windows: list[tuple[int, np.ndarray]]) -> None:
        if self._end is not None:
            windows = [(s, w) for s, w in windows if s < self._end]
        self._pending += windows

    def _score(self, score_all: bool, final: bool = False) -> list[Event]:
        events: list[Event] = []
        win = self.spec.window_samples
        # a scorer with `context` k (the cascade's student passes a window's neighbours) sees k windows on each side
        # of its batch: the batch waits for the k windows after it (until the audio ends), the last k of it stay as
        # the next one's before
        ctx = max(0, int(getattr(self.scorer, "context", 0) or 0))
        wait = 0 if final else ctx
        while len(self._pending) > wait and (score_all or len(self._pending) >= self.batch_size + ctx):
            size = min(self.batch_size, len(self._pending) - wait)
            batch, after = self._pending[:size], self._pending[size:size + ctx]
            self._pending = self._pending[size:]
            before = self._before
            x = np.stack([w for _, w in before + batch + after])
            kw = {"context": (len(before), len(after))} if ctx else {}
            if ctx:
                self._before = (before + batch)[-ctx:]
            if self._embeddings is not None:
                scores, emb = self.scorer.score_and_embed(x, **kw)
                self._embeddings.append(np.asarray(emb, np.float32))
            else:
                scores = self.scorer.score(x, **kw)
            scores = np.asarray(scores, np.float32).reshape(-1)
            if len(scores) != len(batch):
                raise RuntimeError(f"the scorer returned {len(scores)} scores for {len(batch)} windows")
            if self.keep_scores:
                self._starts += [s for s, _ in batch]
                self._scores.append(scores)
            for (s, _), p in zip(batch, scores):
                events += self._builder.push(s, s + win, float(p))
        return events


@dataclass(frozen=True)
class ScoredFile:
    """A file through the loop: its events, every window's start and score, and the samples it holds."""
    events: tuple[Event, ...]
    starts: np.ndarray = field(compare=False)
    scores: np.ndarray = field(compare=False)
    n_samples: int = 0
    linked: bool = False               # the last windows ran on into the next contiguous file
    embeddings: np.ndarray | None = field(default=None, compare=False)   # (windows, dim), NaN rows: none


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def prefetch(blocks: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """The same blocks in the same order, decoded ahead in a thread through a bounded queue of `depth` blocks, so
    decoding and resampling (libsndfile, soxr) overlap with scoring (ONNX Runtime), as birdnet's analyzer does.
    An error in the decoder is raised here, in order; stopping early (an error or a stop while scoring) ends the
    thread and closes the file. `depth` 0: decode in this thread."""
    if depth <= 0:
        yield from blocks
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not put(block):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_Raised(exc))
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="hootwatch-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)  # it stops within one block's decoding


def _tap(blocks: Iterator[np.ndarray], see: Callable[[np.ndarray], None]) -> Iterator[np.ndarray]:
    """The same blocks, each shown to `see` first; `blocks` is closed when this is (stopped early)."""
    try:
        for block in blocks:
            see(block)
            yield block
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


def read_head(path: str | os.PathLike, sample_rate: int, window_s: float) -> np.ndarray | None:
    """The first window's worth of a file at `sample_rate`, or None if it cannot be read."""
    try:
        blocks = list(iter_blocks(path, sample_rate, block_s=window_s, duration_s=window_s))
    except AudioReadError:
        return None
    return np.concatenate(blocks) if blocks else None


def score_file(scorer: Scorer, spec: WindowSpec, threshold: float, min_hits: int, path: str | os.PathLike,
               next_path: str | os.PathLike | None = None, block_s: float = 30.0, batch_size: int | None = None,
               on_block: Callable[[int], None] | None = None, prefetch_blocks: int = 2,
               on_decoded: Callable[[np.ndarray], None] | None = None) -> ScoredFile:
    """One file through the loop (see the module docstring); `on_block(n_samples)` is called before each decoded
    block is scored (progress, or raising to stop). Blocks are decoded ahead in a thread (`prefetch`) unless
    `prefetch_blocks` is 0; the result is the same. `on_decoded(block)` sees each block of the file (not the next
    file's head) in that thread, as it is decoded (acoustic indices, overlapping the scoring). AudioReadError when
    the file cannot be decoded."""
    stream = ScoreStream(scorer, spec, threshold, min_hits, batch_size)
    events: list[Event] = []
    blocks = iter_blocks(path, spec.sample_rate, block_s=block_s)
    for block in prefetch(blocks if on_decoded is None else _tap(blocks, on_decoded), prefetch_blocks):
        if on_block is not None:
            on_block(len(block))
        events += stream.push(block)
    stream.end_here()
    n_samples = stream.samples_seen
    head = read_head(next_path, spec.sample_rate, spec.window_s) if next_path is not None else None
    if head is not None and len(head):
        events += stream.push(head)
    events += stream.finish()
    return ScoredFile(tuple(events), stream.starts, stream.scores, n_samples,
                      head is not None and len(head) > 0, stream.embeddings)

