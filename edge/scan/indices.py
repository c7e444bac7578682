"""Acoustic indices per minute and frequency bin: the columns of the night overview, a long-duration false-colour
spectrogram as QUT Ecoacoustics' AnalysisPrograms draws it (Towsey et al. 2014, "Visualization of long-duration
acoustic recordings of the environment"; Towsey 2017, "The calculation of acoustic indices derived from
long-duration recordings of the natural environment").

    acc = MinuteIndices(sample_rate)        # during scan: fed the blocks the model scores (engine.compute_file)
    acc.push(block); ...; values = acc.finish()     # (minutes, 3, bins) float32, INDICES in that order
    rgb = false_colour(values)              # (bins, minutes, 3) uint8, high frequencies at the top

Per minute of audio (the last, shorter one too, when it holds at least MIN_S), a spectrogram: frames of
`frame_length(rate)` samples (the power of two nearest FRAME_S: 512 at 16 kHz; no overlap), Hann window, amplitude
A[f, t] relative to full scale (a full-scale sine reads 1) for the bins below the Nyquist frequency (above
MAX_BINS, adjacent bins are averaged down to MAX_BINS); its decibels D = 20 log10 A. Then, per bin f, over the
T frames of the minute:

    BGN[f]  background noise, dB re full scale: the median of D[f, :] (QUT takes the histogram's mode, which is
            unstable over one minute of 32 ms frames; for noise-like sound the mode lies a constant 1.6 dB above
            the median)
    ENT[f]  1 - temporal entropy (Towsey's ENT): 1 - H(p) / log T, p_t = A[f, t]^2 / sum_t A[f, t]^2: near 0
            for steady sound at any level (noise: about 0.06), high when the bin's energy comes in a few moments
    EVN[f]  acoustic events per second: the times the noise-reduced dB, max(0, D - BGN), smoothed over
            EVENT_SMOOTH frames (~0.1 s), rises through EVENT_DB, over the minute's length (a hoot is one event;
            noise about 0.07 per second)

Colours (`false_colour`): R = BGN, G = ENT, B = EVN, each scaled between fixed DISPLAY bounds so that nights and
recorders compare. A calling animal is bright in G and B at its pitch (a powerful owl's hoots, about 20 a minute:
a cyan line near 0.4 kHz); steady sound (wind, rain, a road, insects' drone) is red at its frequencies and its
brightness is its level, so a quiet stretch is black and a noisy one shows why calls may have been missed.
QUT's display bounds (ENT 0-0.6, EVN 0-2 events/s) suit dawn choruses; an owl's slow series fills a third of them,
so they are narrowed here. ACI (acoustic complexity, QUT's red) was left out: it is level-blind (noise of any
level reads about 0.59) and falls for sustained tonal notes, so an owl showed as a darker notch in the red.

Pure numpy: scikit-maad computes the same indices but brings scipy, scikit-image, pandas and matplotlib onto the
field device, and has no per-minute streaming over blocks.
"""

from __future__ import annotations

import numpy as np

INDICES = ("BGN", "ENT", "EVN")                                       # R, G, B
DISPLAY = {"BGN": (-100.0, -30.0), "ENT": (0.05, 0.4), "EVN": (0.0, 0.5)}  # dB, -, events per second
FRAME_S = 0.032
MAX_BINS = 256
MIN_S = 10.0            # a shorter tail of a file is not a minute worth showing
EVENT_DB = 6.0         # above the median: about 4.4 dB above the mode, QUT's 3 dB rule with smoothing
EVENT_SMOOTH = 3
MINUTE_S = 60.0
STEP = {"BGN": 0.25, "ENT": 1 / 512}  # rounded to what a picture can show: the store's float16 then compresses 2x


def frame_length(sample_rate: int) -> int:
    """The FFT frame: the power of two nearest FRAME_S (512 samples at 16 kHz)."""
    return int(2 ** round(np.log2(max(16.0, sample_rate * FRAME_S))))


def bin_pool(sample_rate: int) -> int:
    """How many FFT bins are averaged into one stored bin: 1 up to 16 kHz, then as many as keep MAX_BINS."""
    return max(1, frame_length(sample_rate) // 2 // MAX_BINS)


def n_bins(sample_rate: int) -> int:
    return frame_length(sample_rate) // 2 // bin_pool(sample_rate)


def bin_hz(sample_rate: int) -> float:
    """The width of a stored bin; bin f spans [f, f + 1) * bin_hz."""
    return sample_rate / frame_length(sample_rate) * bin_pool(sample_rate)


def amplitude(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """(bins, frames) amplitude spectrogram re full scale: non-overlapping Hann frames, bins below Nyquist, pooled."""
    n = frame_length(sample_rate)
    t = len(x) // n
    w = np.hanning(n).astype(np.float32)
    frames = np.asarray(x[:t * n], np.float32).reshape(t, n) * w
    a = np.abs(np.fft.rfft(frames, axis=1)[:, :n // 2]).astype(np.float32).T * np.float32(2 / w.sum())
    pool = bin_pool(sample_rate)
    return a.reshape(-1, pool, t).mean(axis=1) if pool > 1 else a


def minute_indices(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """(3, bins) float32: BGN, ENT, EVN of one stretch of audio (a minute), per bin (see the module docstring)."""
    a = amplitude(x, sample_rate)
    t = a.shape[1]
    out = np.zeros((len(INDICES), a.shape[0]), np.float32)
    if t < 2:
        return out
    db = 20 * np.log10(a + np.float32(1e-12))
    bgn = np.partition(db, t // 2, axis=1)[:, t // 2]  # the median (the upper one of an even count)
    out[0] = np.round(bgn / STEP["BGN"]) * STEP["BGN"]
    e = a.astype(np.float64) ** 2
    s = e.sum(axis=1, keepdims=True)
    p = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    h = -(p * np.log(p, out=np.zeros_like(p), where=p > 0)).sum(axis=1) / np.log(t)
    out[1] = np.round(np.where(s[:, 0] > 0, 1 - h, 0) / STEP["ENT"]) * STEP["ENT"]
    n = np.maximum(db - bgn[:, None], 0)
    if t >= EVENT_SMOOTH:
        c = np.cumsum(np.pad(n, ((0, 0), (1, 0))), axis=1)
        n = (c[:, EVENT_SMOOTH:] - c[:, :-EVENT_SMOOTH]) / EVENT_SMOOTH
    above = n >= EVENT_DB
    onsets = (above[:, 1:] & ~above[:, :-1]).sum(axis=1) + above[:, 0]
    out[2] = onsets / (len(x) / sample_rate)
    return out


class MinuteIndices:
    """Blocks of audio (any lengths, in order) -> the indices of each minute from the first sample."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = int(sample_rate)
        self._minute = int(round(MINUTE_S * self.sample_rate))
        self._buf: list[np.ndarray] = []
        self._held = 0
        self._rows: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        block = np.asarray(block, np.float32).reshape(-1)
        while len(block):
            take = min(len(block), self._minute - self._held)
            self._buf.append(block[:take])
            self._held += take
            block = block[take:]
            if self._held == self._minute:
                self._close()

    def finish(self) -> np.ndarray:
        """(minutes, 3, bins) float32; the tail joins when it holds at least MIN_S of audio."""
        if self._held >= MIN_S * self.sample_rate:
            self._close()
        self._buf, self._held = [], 0
        if not self._rows:
            return np.zeros((0, len(INDICES), n_bins(self.sample_rate)), np.float32)
        return np.stack(self._rows)

    def _close(self) -> None:
        self._rows.append(minute_indices(np.concatenate(self._buf), self.sample_rate))
        self._buf, self._held = [], 0


def false_colour(values: np.ndarray) -> np.ndarray:
    """(minutes, 3, bins) indices -> (bins, minutes, 3) uint8 RGB, high frequencies at the top: each index scaled
    between its DISPLAY bounds into R, G, B."""
    lo = np.array([DISPLAY[k][0] for k in INDICES], np.float32)[None, :, None]
    hi = np.array([DISPLAY[k][1] for k in INDICES], np.float32)[None, :, None]
    v = np.clip((np.asarray(values, np.float32) - lo) / (hi - lo), 0, 1)
    return np.round(v * 255).astype(np.uint8).transpose(2, 0, 1)[::-1]
