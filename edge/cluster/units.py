"""Units of work of a cluster scan (pure functions): whole files, and fixed-length chunks of very long files.

A chunk of a file is the windows of the file's own grid (edge/contract/windows.py: hops from its first sample, the
end-aligned tail, the run-on into the next contiguous file) whose start lies in [start, stop). Chunk starts sit
on the hop grid and every chunk but the last holds a whole number of batches, so each window is cut from the
same samples and scored in the same batch as in a local scan of the whole file; the driver then runs the
file's concatenated window scores through the one event rule (edge/contract/events.py), so an event across a chunk edge
is one event, exactly as locally. The last chunk runs to the end of the file and handles its tail (and the
head of the next contiguous file) as a local scan does; it always holds at least one regular window.

    spans = chunk_spans(n_samples, spec, chunk_s=3600, batch_size=1)   # (Span(0, L), Span(L, 2L), Span(2L, None))
"""

from __future__ import annotations

from dataclasses import dataclass

from hootwatch.edge.contract.windows import WindowSpec


@dataclass(frozen=True)
class Span:
    start: int                  # start sample (model rate) of the chunk's first window, on the hop grid
    stop: int | None = None     # its windows start before this; None: to the end of the file (tail, run-on)

    def samples_needed(self, spec: WindowSpec) -> int | None:
        """Samples from `start` that hold every window of the chunk (None: the rest of the file)."""
        if self.stop is None:
            return None
        return self.stop - spec.hop_samples + spec.window_samples - self.start


def chunk_samples(spec: WindowSpec, chunk_s: float, batch_size: int = 1) -> int:
    """Chunk length in samples: `chunk_s` rounded to whole batches of hops, at least two windows long."""
    step = spec.hop_samples * max(1, int(batch_size))
    n = max(1, round(chunk_s * spec.sample_rate / step)) * step
    while n < 2 * spec.window_samples:
        n += step
    return n


def chunk_spans(n_samples: int, spec: WindowSpec, chunk_s: float, batch_size: int = 1) -> tuple[Span, ...]:
    """How a file of `n_samples` (at the model's rate) is cut: one Span(0, None) for a file up to 1.5 chunks,
    else chunks of `chunk_samples` with the remainder (half a chunk to 1.5 chunks) in the last."""
    size = chunk_samples(spec, chunk_s, batch_size)
    if n_samples <= size + size // 2:
        return (Span(0, None),)
    count = (n_samples - size // 2) // size + 1      # the last chunk keeps at least half a chunk
    starts = [i * size for i in range(count)]
    return tuple(Span(s, s + size) for s in starts[:-1]) + (Span(starts[-1], None),)


def merge_chunks(chunks, spec: WindowSpec, threshold: float, min_hits: int):
    """The chunks of one file (worker.ChunkScores, any order) -> score_loop.ScoredFile: the windows in order,
    their events by the one event rule, as a local scan of the whole file makes them (an event open at a chunk
    edge continues into the next chunk; every event ends with the file, as offline.detections_at)."""
    import numpy as np

    from hootwatch.edge.contract.events import merge_windows
    from hootwatch.edge.contract.score_loop import ScoredFile

    chunks = sorted(chunks, key=lambda c: c.span.start)
    if not chunks or chunks[-1].span.stop is not None or any(
            a.span.stop != b.span.start for a, b in zip(chunks, chunks[1:])) or chunks[0].span.start != 0:
        raise ValueError(f"chunks do not cover the file: {[c.span for c in chunks]}")
    last = chunks[-1]
    starts = np.concatenate([c.starts for c in chunks]).astype(np.int64)
    scores = np.concatenate([c.scores for c in chunks]).astype(np.float32)
    n = last.span.start + last.n_samples
    events = merge_windows(starts, starts + spec.window_samples, scores, threshold, min_hits, end_sample=n)
    return ScoredFile(tuple(events), starts, scores, n, last.linked)
