"""The synthetic powerful owl call, measured from the waveform (not from the parameters that made it)."""

from __future__ import annotations

import numpy as np
import pytest

from hootwatch.trainer.synth.calls import owl_bout, owl_call, sample_individual
from hootwatch.trainer.synth.propagation import Propagation, propagate

SR = 32000  # a recorder rate


def envelope(x: np.ndarray, sr: int, win_s: float = 0.02) -> np.ndarray:
    n = int(win_s * sr)
    return np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(n) / n, mode="same"))


def segments(x: np.ndarray, sr: int, rel: float = 0.1, min_gap_s: float = 0.04,
             min_len_s: float = 0.1) -> list[tuple[float, float]]:
    """Sound segments where the envelope exceeds `rel` of its maximum."""
    env = envelope(x, sr)
    on = env > rel * env.max()
    edges = np.flatnonzero(np.diff(np.r_[0, on.astype(int), 0]))
    segs = [(a / sr, b / sr) for a, b in zip(edges[::2], edges[1::2])]
    merged: list[tuple[float, float]] = []
    for a, b in segs:
        if merged and a - merged[-1][1] < min_gap_s:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return [(a, b) for a, b in merged if b - a >= min_len_s]


def peak_hz(x: np.ndarray, sr: int, lo: float = 150.0, hi: float = 1500.0) -> float:
    nfft = 1 << 16
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft))
    freqs = np.fft.rfftfreq(nfft, 1 / sr)
    band = (freqs > lo) & (freqs < hi)
    return float(freqs[band][np.argmax(spec[band])])


def measure_calls(n: int, seed: int, sex: str | None = None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ind = sample_individual(rng, sex)
        x, spans = owl_call(rng, SR, ind)
        segs = segments(x, SR)
        assert len(segs) == 2, f"expected two notes, found {segs}"
        pitches = [peak_hz(x[int(a * SR): int(b * SR)], SR) for a, b in segs]
        out.append((segs, pitches, x, spans))
    return out


def test_two_notes_with_owl_timing():
    for segs, _, _, spans in measure_calls(30, seed=1):
        (a1, b1), (a2, b2) = segs
        assert 0.75 <= a2 - a1 <= 1.1, "onset-to-onset about 0.9 s"
        for a, b in segs:
            assert 0.27 <= b - a <= 0.82, f"note duration {b - a:.2f} s outside 0.3-0.8 s"
        # the labelled span covers both notes
        assert spans[0][0] <= a1 + 0.02 and spans[0][1] >= b2 - 0.03


def test_pitch_in_published_ranges_and_sexes_differ():
    female = [p for _, ps, _, _ in measure_calls(15, seed=2, sex="female") for p in ps]
    male = [p for _, ps, _, _ in measure_calls(15, seed=3, sex="male") for p in ps]
    assert all(430 <= p <= 560 for p in female), female
    assert all(320 <= p <= 440 for p in male), male
    assert np.median(female) - np.median(male) > 60


def test_second_note_usually_higher():
    calls = measure_calls(40, seed=4)
    higher = sum(p2 >= p1 - 2 for _, (p1, p2), _, _ in calls)
    assert higher >= 0.65 * len(calls)
    assert higher < len(calls) or len(calls) < 10  # "often", not always: some variation exists


def test_pitch_arches_within_a_note():
    rng = np.random.default_rng(5)
    x, _ = owl_call(rng, SR)
    (a, b), _ = segments(x, SR)
    note = x[int(a * SR): int(b * SR)]
    thirds = np.array_split(note, 5)
    tracks = [peak_hz(t, SR) for t in thirds]
    assert max(tracks[1:4]) > tracks[0] and max(tracks[1:4]) > tracks[-1], tracks
    assert 20 < max(tracks) - min(tracks) < 250


def test_weak_harmonics_nothing_above_2khz():
    for _, _, x, _ in measure_calls(10, seed=6):
        spec = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / SR)
        assert spec[freqs > 2000].sum() / spec.sum() < 0.01
        fundamental = spec[(freqs > 300) & (freqs < 600)].sum()
        harmonics = spec[(freqs > 620) & (freqs < 2000)].sum()
        assert 1e-4 < harmonics / fundamental < 0.3


def test_calls_vary():
    calls = measure_calls(20, seed=7)
    pitches = [ps[0] for _, ps, _, _ in calls]
    durations = [segs[0][1] - segs[0][0] for segs, _, _, _ in calls]
    assert np.std(pitches) > 20 and np.std(durations) > 0.03


def test_bout_gaps_from_waveform():
    rng = np.random.default_rng(8)
    x, spans = owl_bout(rng, SR, n_calls=5)
    notes = segments(x, SR, rel=0.05)
    assert len(notes) == 10
    onsets = np.array([a for a, _ in notes[::2]])
    gaps = np.diff(onsets)
    assert np.all((gaps >= 2.9) & (gaps <= 15.1)), gaps
    assert len(spans) == 5 and np.allclose(onsets, [s for s, _ in spans], atol=0.05)


@pytest.mark.parametrize("distance", [30.0, 500.0])
def test_propagation_reverb_tail_and_distance_lowpass(distance):
    rng = np.random.default_rng(9)
    x, spans = owl_call(rng, SR)
    clicks = x + 0.3 * np.sin(2 * np.pi * 4000 * np.arange(len(x)) / SR).astype(np.float32)
    y = propagate(clicks, SR, rng, Propagation(distance_m=distance, rt60_s=1.0, drr_db=0.0))
    assert len(y) > len(x)
    tail = y[len(x) + int(0.05 * SR): len(x) + int(0.3 * SR)]
    late = y[len(x) + int(0.6 * SR): len(x) + int(0.85 * SR)]
    assert np.sqrt(np.mean(tail ** 2)) > 3 * np.sqrt(np.mean(late ** 2)) > 0  # decaying reverb

    def hi_lo(sig):
        spec = np.abs(np.fft.rfft(sig)) ** 2
        f = np.fft.rfftfreq(len(sig), 1 / SR)
        return spec[(f > 3800) & (f < 4200)].sum() / spec[(f > 300) & (f < 600)].sum()

    ratio = hi_lo(y) / hi_lo(clicks)
    assert (ratio < 0.1) if distance > 100 else (0.3 < ratio < 1.5)
