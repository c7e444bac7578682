"""Window timing (pure functions) kept apart from slicing, as OpenSoundscape does.

Windows overlap by default (5 s with a 2.5 s hop) so no call is cut in half by every window. The last partial
window is handled explicitly: when the audio does not end on a hop, one more window is aligned to the end of
the audio (it overlaps the previous one) instead of padding with silence, which a model could learn to key on.
Only audio shorter than one window is padded, by reflection, the same way in training and in the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .operating_point import SETTINGS, OperatingPoint


@dataclass(frozen=True)
class WindowSpec:
    sample_rate: int
    window_s: float = 5.0
    hop_s: float = 2.5

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be positive, got {self.window_s}")
        OperatingPoint(hop_s=self.hop_s, window_s=self.window_s, wording=SETTINGS)

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return max(1, int(round(self.hop_s * self.sample_rate)))


def window_starts(n_samples: int, spec: WindowSpec) -> np.ndarray:
    """Start sample of every window over `n_samples` of audio.

    Regular hops; plus one end-aligned window when the hops leave a tail uncovered; a single window at 0 when
    the audio is shorter than a window (it is padded by `fit_length`). Empty audio has no windows.
    """
    win, hop = spec.window_samples, spec.hop_samples
    if n_samples <= 0:
        return np.zeros(0, dtype=np.int64)
    if n_samples <= win:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_samples - win + 1, hop, dtype=np.int64)
    if starts[-1] + win < n_samples:
        starts = np.append(starts, n_samples - win)
    return starts


def clip_times(duration_s: float, spec: WindowSpec) -> list[tuple[float, float]]:
    """(start_s, end_s) of each window over `duration_s` seconds; end is clipped to the audio for short audio."""
    n = int(round(duration_s * spec.sample_rate))
    return [
        (s / spec.sample_rate, min(s + spec.window_samples, max(n, 1)) / spec.sample_rate)
        for s in window_starts(n, spec)
    ]


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Exactly `n` samples: the first `n`, or reflection-padded on both sides when shorter.

    Reflection (not zeros) so that short clips never carry a block of digital silence: the model cannot use
    padding as a cue, and both classes are treated identically.
    """
    x = np.asarray(x, dtype=np.float32)
    if len(x) >= n:
        return x[:n]
    if len(x) == 0:
        return np.zeros(n, np.float32)
    if len(x) == 1:
        return np.full(n, x[0], np.float32)
    missing = n - len(x)
    left = missing // 2
    return np.pad(x, (left, missing - left), mode="reflect").astype(np.float32)


def slice_windows(audio: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """(starts, windows[n, window_samples]) over an in-memory signal."""
    starts = window_starts(len(audio), spec)
    win = spec.window_samples
    out = np.stack([fit_length(audio[s:s + win], win) for s in starts]) if len(starts) else np.zeros((0, win), np.float32)
    return starts, out


class WindowStream:
    """Slides windows over audio that arrives in blocks (a file read in pieces, or a microphone).

    `push` returns the windows completed by a block; `finish` returns the end-aligned tail window (or the padded
    window of audio shorter than one window). Window starts are sample offsets from the first sample pushed, so
    a stream can continue across contiguous files of one recorder without a gap.
    """

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0      # absolute sample index of _buf[0]
        self._next_start = 0     # absolute start of the next regular window
        self._total = 0          # samples pushed so far
        self._last_emitted: int | None = None

    @property
    def samples_seen(self) -> int:
        return self._total

    def push(self, block: np.ndarray) -> list[tuple[int, np.ndarray]]:
        win, hop = self.spec.window_samples, self.spec.hop_samples
        self._buf = np.concatenate([self._buf, np.asarray(block, np.float32)])
        self._total += len(block)
        out = []
        while self._next_start + win <= self._total:
            i = self._next_start - self._buf_start
            out.append((self._next_start, self._buf[i:i + win].copy()))
            self._last_emitted = self._next_start
            self._next_start += hop
        # keep only what a future window (or the end-aligned tail) can still need
        keep_from = min(self._next_start, max(0, self._total - win)) - self._buf_start
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._buf_start += keep_from
        return out

    def finish(self) -> list[tuple[int, np.ndarray]]:
        win = self.spec.window_samples
        if self._total == 0:
            return []
        if self._last_emitted is None:
            if self._total >= win:  # pragma: no cover - push() would have emitted it
                return []
            return [(0, fit_length(self._buf, win))]
        if self._last_emitted + win < self._total:
            start = self._total - win
            i = start - self._buf_start
            return [(start, self._buf[i:i + win].copy())]
        return []
