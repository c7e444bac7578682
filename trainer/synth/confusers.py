"""Sounds a powerful owl detector must not fire on: other callers in the same band or rhythm, and weather/noise.

Every generator has the signature (rng, sample_rate, duration_s=None) -> (audio, [(start_s, end_s), ...]):
mono float32 peaking at 1, and the labelled spans (one per call; a call is a boobook "boo-book" pair, a
frogmouth "oom" series, one koala bellow, or the whole stretch of a texture such as wind or rain).

Parameters (sources; estimates marked):
- Southern boobook (Ninox boobook) "boo-book": two short notes, the second lower. Checked against the real
  Raven tables in ../shared/data/real/boobook (QUT Ecoacoustics): a selection spans 0.6-1.1 s including both
  notes, 310-1000 Hz; the waveform shows note 1 ~0.12-0.2 s falling ~700->610 Hz, note 2 ~0.15-0.25 s at
  ~550-600 Hz, onsets ~0.3-0.4 s apart; pairs repeated every ~1.5-6 s in long series (HANZAB vol. 4: repeated
  for long periods). Our ranges: note 1 at 560-800 Hz, note 2 40-140 Hz lower.
- Tawny frogmouth (Podargus strigoides): a low, soft, steadily repeated "oom-oom-oom" (HANZAB vol. 4;
  Menkhorst & Franklin). F0 220-380 Hz, notes 0.15-0.3 s, 0.35-0.65 s apart, series of 6-30: estimates.
- Koala (Phascolarctos cinereus) male bellow: pulsed snore-like inhalation and belch-like exhalation with a
  very low pulse rate (~10-50 Hz; Charlton et al. 2011, J. Exp. Biol. "Perceptual and acoustic
  consequences of ... the koala bellow") and broad formants; bellows of 2-8 s: our synthesis is crude.
- Wind gusts, rain, insects (narrow-band stridulation at 3-6 kHz, pulsed), distant traffic (low rumble with
  slow swells): generic textures, all parameters estimates.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .calls import smooth_noise
from .propagation import next_fast_len

Spans = list[tuple[float, float]]
Generator = Callable[..., tuple[np.ndarray, Spans]]


def _shape(x: np.ndarray, sample_rate: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter by a frequency-domain gain curve (zero-phase FFT filter)."""
    nfft = next_fast_len(len(x))
    spec = np.fft.rfft(x, nfft)
    spec *= gain(np.fft.rfftfreq(nfft, 1.0 / sample_rate))
    return np.fft.irfft(spec, nfft)[: len(x)].astype(np.float32)


def _norm(x: np.ndarray) -> np.ndarray:
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def _fade(n: int, sample_rate: int, attack_s: float, release_s: float) -> np.ndarray:
    t = np.arange(n) / sample_rate
    a = np.clip(t / max(attack_s, 1e-3), 0, 1)
    r = np.clip((n / sample_rate - t) / max(release_s, 1e-3), 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * a)) * (0.5 - 0.5 * np.cos(np.pi * r))


def _tone(rng: np.random.Generator, sample_rate: int, duration_s: float, f_start: float, f_end: float,
          harmonic_db: float, attack_s: float, release_s: float, jitter: float = 0.004) -> np.ndarray:
    n = int(duration_s * sample_rate)
    u = np.linspace(0, 1, n)
    f = f_start + (f_end - f_start) * u ** rng.uniform(0.6, 1.5)
    f = f * (1 + jitter * smooth_noise(rng, n, sample_rate, 40))
    phase = 2 * np.pi * np.cumsum(f) / sample_rate
    x = np.sin(phase)
    for k in (2, 3):
        if f_start * k < 0.45 * sample_rate:
            x += 10 ** (harmonic_db * (k - 1) / 20) * np.sin(k * phase)
    return (x * _fade(n, sample_rate, attack_s, release_s)).astype(np.float32)


def _place(parts: list[tuple[float, np.ndarray]], sample_rate: int) -> np.ndarray:
    total = max(int(round(t * sample_rate)) + len(p) for t, p in parts)
    out = np.zeros(total, np.float32)
    for t, p in parts:
        i = int(round(t * sample_rate))
        out[i: i + len(p)] += p
    return out


def boobook(rng: np.random.Generator, sample_rate: int, duration_s: float | None = None,
            n_calls: int | None = None) -> tuple[np.ndarray, Spans]:
    """A series of "boo-book" pairs, one span per pair."""
    n_calls = int(n_calls or rng.integers(2, 10))
    f1 = rng.uniform(560, 800)
    drop = rng.uniform(40, 140)
    period = rng.uniform(1.2, 6.0)
    parts, spans, t = [], [], 0.0
    for _ in range(n_calls):
        d1, d2 = rng.uniform(0.12, 0.22), rng.uniform(0.15, 0.26)
        ioi = d1 + rng.uniform(0.1, 0.22)
        a = f1 + rng.normal(0, 8)
        n1 = _tone(rng, sample_rate, d1, a + rng.uniform(0, 60), a - rng.uniform(20, 90), rng.uniform(-30, -15),
                   0.02, 0.06)
        b = a - drop
        n2 = _tone(rng, sample_rate, d2, b + rng.uniform(-10, 30), b - rng.uniform(10, 60), rng.uniform(-30, -15),
                   0.03, 0.1) * np.float32(10 ** (rng.normal(-1, 1.5) / 20))
        parts += [(t, n1), (t + ioi, n2)]
        spans.append((t, t + ioi + d2))
        t += period * rng.uniform(0.85, 1.15)
    out = _place(parts, sample_rate)
    if duration_s is not None:
        out, spans = _crop(out, spans, sample_rate, duration_s)
    return _norm(out), spans


def frogmouth(rng: np.random.Generator, sample_rate: int, duration_s: float | None = None) -> tuple[np.ndarray, Spans]:
    """A steady "oom-oom-oom" series; the whole series is one span."""
    n = int(rng.integers(6, 30))
    f0 = rng.uniform(220, 380)
    ioi = rng.uniform(0.35, 0.65)
    parts = []
    for i in range(n):
        d = rng.uniform(0.15, 0.3)
        f = f0 + rng.normal(0, 4)
        parts.append((i * ioi * rng.uniform(0.97, 1.03),
                      _tone(rng, sample_rate, d, f, f - rng.uniform(0, 25), rng.uniform(-25, -12), 0.04, 0.08)))
    out = _place(parts, sample_rate)
    spans = [(0.0, len(out) / sample_rate)]
    if duration_s is not None:
        out, spans = _crop(out, spans, sample_rate, duration_s)
    return _norm(out), spans


def koala(rng: np.random.Generator, sample_rate: int, duration_s: float | None = None) -> tuple[np.ndarray, Spans]:
    """A male bellow: alternating pulsed inhalation 'snores' and exhalation 'belches'."""
    total = float(duration_s or rng.uniform(2.0, 8.0))
    n = int(total * sample_rate)
    t = np.arange(n) / sample_rate
    cycle = rng.uniform(0.6, 1.4)
    inhale = (np.mod(t, cycle) / cycle) < rng.uniform(0.55, 0.75)
    rate = np.where(inhale, rng.uniform(25, 50), rng.uniform(10, 25))
    rate = rate * (1 + 0.1 * smooth_noise(rng, n, sample_rate, 5))
    phase = np.cumsum(rate) / sample_rate
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal cycle
    pulses = pulses * (1 + 0.3 * rng.standard_normal(n)) + 0.05 * rng.standard_normal(n) * inhale
    f1, f2 = rng.uniform(250, 450), rng.uniform(700, 1200)

    def formants(f: np.ndarray) -> np.ndarray:
        return (np.exp(-0.5 * ((f - f1) / 120) ** 2) + 0.6 * np.exp(-0.5 * ((f - f2) / 250) ** 2)
                + 0.1 * (f < 3000))

    x = _shape(pulses, sample_rate, formants)
    x *= _fade(n, sample_rate, 0.1, 0.3) * (0.6 + 0.4 * np.abs(smooth_noise(rng, n, sample_rate, 2)))
    return _norm(x), [(0.0, total)]


def wind(rng: np.random.Generator, sample_rate: int, duration_s: float | None = None) -> tuple[np.ndarray, Spans]:
    """Gusty wind: low-frequency (mostly < 300 Hz) noise with slow gust modulation."""
    total = float(duration_s or rng.uniform(10, 60))
    n = int(total * sample_rate)
    corner = rng.uniform(60, 250)
    x = _shape(rng.standard_normal(n).astype(np.float32), sample_rate,
               lambda f: 1 / (1 + (f / corner) ** 2) / np.sqrt(np.maximum(f, 5.0) / 5.0))
    gust = np.exp(rng.uniform(0.5, 1.5) * smooth_noise(rng, n, sample_rate, rng.uniform(0.2, 1.0)))
    x *= gust * _fade(n, sample_rate, 1.0, 1.0)
    return _norm(x), [(0.0, total)]


def rain(rng: np.random.Generator, sample_rate: int, duration_s: float | None = None) -> tuple[np.ndarray, Spans]:
    """Drops on leaves: Poisson impulses of random size, each a short decaying broadband burst, plus hiss."""
    total = float(duration_s or rng.uniform(10, 60))
    n = int(total * sample_rate)
    drops = np.zeros(n, np.float32)
    count = rng.poisson(rng.uniform(20, 200) * total)
    drops[rng.integers(0, n, count)] = rng.lognormal(0, 0.8, count) * rng.choice([-1, 1], count)
    k = int(0.006 * sample_rate)
    kernel = (rng.standard_normal(k) * np.exp(-np.arange(k) / (rng.uniform(0.001, 0.003) * sample_rate)))
    nfft = next_fast_len(n + k)
    spec = np.fft.rfft(drops, nfft) * np.fft.rfft(kernel, nfft)
    f = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    x = np.fft.irfft(spec * (f > 300), nfft)[:n].astype(np.float32)
    x += 0.05 * np.abs(x).max() * rng.standard_normal(n).astype(np.float32)
    x *= _fade(n, sample_rate, 2.0, 2.0)
    return _norm(x), [(0.0, total)]


def insects(rng: np.random.Generator, sample_rate: int, duration_s: float | None = None) -> tuple[np.ndarray, Spans]:
    """Stridulation: a narrow band at 3-6 kHz, pulsed at 10-60 syllables per second."""
    total = float(duration_s or rng.uniform(10, 60))
    n = int(total * sample_rate)
    fc = min(rng.uniform(3000, 6000), 0.4 * sample_rate)
    bw = rng.uniform(100, 600)
    carrier = _shape(rng.standard_normal(n).astype(np.float32), sample_rate,
                     lambda f: np.exp(-0.5 * ((f - fc) / bw) ** 2))
    t = np.arange(n) / sample_rate
    rate, duty = rng.uniform(10, 60), rng.uniform(0.3, 0.7)
    pulse = (np.mod(t * rate, 1.0) < duty).astype(np.float32)
    pulse = np.convolve(pulse, np.ones(max(1, int(0.002 * sample_rate))) / int(0.002 * sample_rate + 1), "same")
    x = carrier * pulse * _fade(n, sample_rate, 1.0, 1.0)
    return _norm(x), [(0.0, total)]


def traffic(rng: np.random.Generator, sample_rate: int, duration_s: float | None = None) -> tuple[np.ndarray, Spans]:
    """Distant traffic: a low rumble (< 500 Hz) with the slow swell of a passing vehicle and faint tyre noise."""
    total = float(duration_s or rng.uniform(10, 40))
    n = int(total * sample_rate)
    x = _shape(rng.standard_normal(n).astype(np.float32), sample_rate,
               lambda f: 1 / (1 + (f / 120) ** 2) + 0.05 * ((f > 500) & (f < 2000)))
    t = np.arange(n) / sample_rate
    centre, width = rng.uniform(0.3, 0.7) * total, rng.uniform(0.15, 0.35) * total
    x *= (0.2 + np.exp(-0.5 * ((t - centre) / width) ** 2)) * _fade(n, sample_rate, 1.0, 1.0)
    return _norm(x), [(0.0, total)]


def _crop(x: np.ndarray, spans: Spans, sample_rate: int, duration_s: float) -> tuple[np.ndarray, Spans]:
    n = int(duration_s * sample_rate)
    return x[:n], [(a, b) for a, b in spans if b <= duration_s]


CONFUSERS: dict[str, Generator] = {
    "boobook": boobook, "frogmouth": frogmouth, "koala": koala,
    "wind": wind, "rain": rain, "insects": insects, "traffic": traffic,
}

# the band each sound's SNR is measured in (Hz)
BANDS: dict[str, tuple[float, float]] = {
    "owl": (250.0, 1200.0), "boobook": (400.0, 1500.0), "frogmouth": (150.0, 1000.0),
    "koala": (100.0, 2000.0), "wind": (5.0, 500.0), "rain": (300.0, 8000.0),
    "insects": (2500.0, 7000.0), "traffic": (20.0, 600.0),
}

# relative frequency with which the mixers pick each confuser (boobook is the hard one)
WEIGHTS: dict[str, float] = {
    "boobook": 0.35, "frogmouth": 0.15, "koala": 0.1, "wind": 0.1, "rain": 0.1, "insects": 0.1, "traffic": 0.1,
}
TEXTURES = ("wind", "rain", "insects", "traffic")
