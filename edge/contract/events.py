"""Window scores -> events (detections).

Consecutive positive windows (score >= threshold) merge into one event: it starts where its first window
starts, ends where its last window ends, and keeps the max and mean score and the number of windows. Events
with fewer than `min_hits` positive windows are dropped. An event never ends after the end of its recording
(`end_at`): a window that runs on into the next contiguous file, or the padded window of a short file, is cut
there. Positions are integer sample offsets in the stream, so re-processing the same audio yields exactly the
same events (the store keys on them).

`min_hits` is stated at the bundle's hop. It stands for a stretch of positive windows, min_hits x the bundle's
hop in seconds (2 x 2.5 s = 5 s), which is what it keeps meaning at another hop: `windows_at_hop` converts it to
ceil(min_hits x bundle hop / hop) windows (5 at a 1 s hop), so a finer hop does not let one-window blips through.

`EventBuilder` works on a stream (windows arrive in order, events are emitted when they close);
`merge_windows` is the same over arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .operating_point import SETTINGS, OperatingPoint


@dataclass(frozen=True)
class Event:
    start_sample: int      # first sample of the first positive window (stream offset)
    end_sample: int        # one past the last sample of the last positive window
    max_score: float
    mean_score: float
    n_windows: int


def windows_at_hop(min_hits: int, bundle_hop_s: float, hop_s: float) -> int:
    """The positive windows in a row that make a detection at `hop_s`, for `min_hits` stated at the bundle's hop:
    the same seconds of positive windows, min_hits x bundle_hop_s, rounded up to whole windows (at least 1)."""
    return max(1, math.ceil(min_hits * bundle_hop_s / hop_s - 1e-9))


class EventBuilder:
    """Feed (start_sample, end_sample, score) windows in order; get events as they close."""

    def __init__(self, threshold: float, min_hits: int = 1) -> None:
        OperatingPoint(min_hits=min_hits, wording=SETTINGS)
        self.threshold, self.min_hits = float(threshold), int(min_hits)
        self._open: tuple[int, int, list[float]] | None = None
        self._limit: int | None = None

    def end_at(self, sample: int | None) -> None:
        """Events end at `sample` at the latest (the end of the recording); None: no limit."""
        self._limit = None if sample is None else int(sample)

    def push(self, start: int, end: int, score: float) -> list[Event]:
        if score >= self.threshold:
            if self._open is None:
                self._open = (int(start), int(end), [float(score)])
            else:
                s, e, scores = self._open
                scores.append(float(score))
                self._open = (s, max(e, int(end)), scores)
            return []
        return self.flush()

    def flush(self) -> list[Event]:
        """Close the open event (end of stream, or a gap)."""
        if self._open is None:
            return []
        s, e, scores = self._open
        self._open = None
        if len(scores) < self.min_hits:
            return []
        if self._limit is not None:
            e = min(e, self._limit)
        return [Event(s, e, max(scores), float(np.mean(scores)), len(scores))]


def merge_windows(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, threshold: float,
                  min_hits: int = 1, end_sample: int | None = None) -> list[Event]:
    builder = EventBuilder(threshold, min_hits)
    builder.end_at(end_sample)
    events = []
    for s, e, p in zip(starts, ends, scores):
        events += builder.push(int(s), int(e), float(p))
    return events + builder.flush()
