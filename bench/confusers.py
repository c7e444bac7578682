"""Field sounds the project's training never used, made only for bench/review_round.py (never import this from
trainer/): barking owls, dogs, other owls, frogs and cattle, and a night of two recorders that holds them beside
powerful owl calls (the owl itself as trainer/synth renders it, so the owl is what the model knows and the
confusers are what it has never heard).

Every generator: (rng, sample_rate) -> (mono float32 peaking at 1, [(start_s, end_s) per call]). The parameters
are rough estimates from field-guide descriptions; what matters here is that they lie in or near the owl's band
(~300-600 Hz, double notes) and are new to the model, as a new site's sounds are.
- barking owl (Ninox connivens): a dog-like double "wook-wook", notes ~0.12 s, ~400-600 Hz, harsh (strong
  harmonics), 0.25-0.35 s apart, repeated a few times.
- dog: single or double barks, ~0.1-0.2 s bursts of harmonic noise with a fundamental near 350-700 Hz.
- other owls: a rufous-owl-like soft double hoot lower and shorter than the powerful owl's (~280-380 Hz, notes
  0.3-0.5 s, 0.5-0.9 s apart), repeated a few times.
- frogs: a pobblebonk-like "bonk", a short (0.05-0.1 s) tonal knock at 400-800 Hz, in choruses of 5-20.
- cattle: a moo, 1-2.5 s of a harmonic-rich tone at 120-250 Hz that rises then falls.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

from hootwatch.trainer.synth import calls
from hootwatch.trainer.synth.backgrounds import BackgroundPool, background
from hootwatch.trainer.synth.mixing import mix_at_snr
from hootwatch.trainer.synth.propagation import propagate, sample_propagation

Spans = list[tuple[float, float]]


def _fade(n: int, sr: int, attack_s: float, release_s: float) -> np.ndarray:
    t = np.arange(n) / sr
    return np.clip(t / attack_s, 0, 1) * np.clip((n / sr - t) / release_s, 0, 1)


def _harmonic(f0: np.ndarray, sr: int, harmonics: int, tilt_db: float) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return sum(10 ** (-tilt_db * (k - 1) / 20) * np.sin(k * phase) for k in range(1, harmonics + 1)
               if k * float(f0.max()) < 0.45 * sr)


def _series(notes: list[tuple[float, np.ndarray]], sr: int, call_spans: Spans) -> tuple[np.ndarray, Spans]:
    total = max(int(t * sr) + len(x) for t, x in notes) + 1
    out = np.zeros(total, np.float32)
    for t, x in notes:
        out[int(t * sr): int(t * sr) + len(x)] += x
    return (out / (np.abs(out).max() + 1e-12)).astype(np.float32), call_spans


def barking_owl(rng: np.random.Generator, sr: int) -> tuple[np.ndarray, Spans]:
    notes, spans, t = [], [], 0.0
    f = rng.uniform(420, 560)
    for _ in range(int(rng.integers(2, 6))):
        start = t
        for k in range(2):
            n = int(rng.uniform(0.1, 0.15) * sr)
            f0 = f * (1 - 0.12 * np.linspace(0, 1, n)) * (0.93 if k else 1.0)
            notes.append((t, (_harmonic(f0, sr, 5, 4.0) * _fade(n, sr, 0.01, 0.04)).astype(np.float32)))
            t += rng.uniform(0.25, 0.35)
        spans.append((start, t - 0.1))
        t += rng.uniform(0.8, 2.0)
    return _series(notes, sr, spans)


def dog(rng: np.random.Generator, sr: int) -> tuple[np.ndarray, Spans]:
    notes, spans, t = [], [], 0.0
    f = rng.uniform(350, 700)
    for _ in range(int(rng.integers(2, 8))):
        n = int(rng.uniform(0.1, 0.2) * sr)
        f0 = f * (1 + 0.2 * np.sin(np.linspace(0, np.pi, n)))
        x = _harmonic(f0, sr, 8, 3.0) * (1 + 0.6 * rng.standard_normal(n))
        notes.append((t, (x * _fade(n, sr, 0.005, 0.05)).astype(np.float32)))
        spans.append((t, t + n / sr))
        t += rng.uniform(0.3, 1.2)
    return _series(notes, sr, spans)


def other_owl(rng: np.random.Generator, sr: int) -> tuple[np.ndarray, Spans]:
    notes, spans, t = [], [], 0.0
    f = rng.uniform(280, 380)
    for _ in range(int(rng.integers(2, 5))):
        start = t
        for k in range(2):
            n = int(rng.uniform(0.3, 0.5) * sr)
            f0 = f * (1 + 0.03 * np.sin(np.linspace(0, np.pi, n))) * (0.95 if k else 1.0)
            notes.append((t, (_harmonic(f0, sr, 2, 14.0) * _fade(n, sr, 0.08, 0.15)).astype(np.float32)))
            t += n / sr + rng.uniform(0.2, 0.4)
        spans.append((start, t - 0.2))
        t += rng.uniform(3.0, 6.0)
    return _series(notes, sr, spans)


def frog(rng: np.random.Generator, sr: int) -> tuple[np.ndarray, Spans]:
    notes, t = [], 0.0
    for _ in range(int(rng.integers(5, 21))):
        n = int(rng.uniform(0.05, 0.1) * sr)
        f0 = np.full(n, rng.uniform(400, 800))
        notes.append((t, (_harmonic(f0, sr, 3, 8.0) * _fade(n, sr, 0.003, 0.06)).astype(np.float32)))
        t += rng.uniform(0.4, 1.5)
    return _series(notes, sr, [(0.0, t)])


def cattle(rng: np.random.Generator, sr: int) -> tuple[np.ndarray, Spans]:
    n = int(rng.uniform(1.0, 2.5) * sr)
    f = rng.uniform(120, 250)
    f0 = f * (1 + 0.35 * np.sin(np.linspace(0, np.pi, n)))
    x = _harmonic(f0, sr, 10, 2.0) * _fade(n, sr, 0.15, 0.4)
    return _series([(0.0, x.astype(np.float32))], sr, [(0.0, n / sr)])


CONFUSERS = {"barking_owl": barking_owl, "dog": dog, "other_owl": other_owl, "frog": frog, "cattle": cattle}
BAND = (150.0, 1500.0)   # where the SNR of every sound here is set


def render(rng: np.random.Generator, seconds: float, sr: int, pool: BackgroundPool | None, owl_share: float,
           gap_s: float, snr_db: tuple[float, float], individual) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """One recording: background, then owl bouts and new confusers one after another with random gaps."""
    out = background(rng, int(seconds * sr), sr, pool)
    rows, t = [], float(rng.uniform(1, 10))
    kinds = sorted(CONFUSERS)
    while t < seconds - 10:
        label = "owl" if rng.random() < owl_share else str(rng.choice(kinds))
        if label == "owl":
            dry, spans = calls.owl_bout(rng, sr, n_calls=int(rng.integers(1, 5)), individual=individual)
        else:
            dry, spans = CONFUSERS[label](rng, sr)
        if t + len(dry) / sr >= seconds - 0.5:
            break
        wet = propagate(dry, sr, rng, sample_propagation(rng))[: len(dry)]
        a, b = int(spans[0][0] * sr), int(spans[-1][1] * sr)
        mix_at_snr(out, wet, int(t * sr), (a, max(b, a + 1)), sr, BAND, float(rng.uniform(*snr_db)))
        rows += [(t + x, t + y, label) for x, y in spans]
        t += len(dry) / sr + 1.0 + float(rng.exponential(gap_s))
    peak = float(np.abs(out).max())
    if peak > 0.98:
        out *= np.float32(0.98 / peak)
    return out, rows


def write_night(out_dir: Path, recorders: tuple[str, ...], minutes: float, seed: int, file_minutes: float = 5.0,
                sample_rate: int = 24000, owl_share: float = 0.3, gap_s: float = 12.0,
                snr_db: tuple[float, float] = (0.0, 15.0), backgrounds: Path | None = None) -> dict[str, list[str]]:
    """A night of `minutes` per recorder, AudioMoth-style files (UTC names) in OUT/<recorder>/, and
    OUT/ground_truth.csv (file,start_s,end_s,label). Returns recorder -> its files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pool = BackgroundPool.from_dir(backgrounds) if backgrounds else None
    rows, files = [], {}
    for i, name in enumerate(recorders):
        rng = np.random.default_rng([seed, i])
        individual = calls.sample_individual(rng)      # the resident owl near this recorder
        t = datetime(2024, 6, 1, 9, 0, tzinfo=timezone.utc)
        left = minutes * 60
        (out_dir / name).mkdir(exist_ok=True)
        while left >= 30:
            length = min(file_minutes * 60, left)
            audio, events = render(rng, length, sample_rate, pool, owl_share, gap_s, snr_db, individual)
            rel = f"{name}/{t.strftime('%Y%m%d_%H%M%S')}.WAV"
            sf.write(out_dir / rel, audio, sample_rate, subtype="PCM_16")
            files.setdefault(name, []).append(rel)
            rows += [(rel, a, b, lab) for a, b, lab in events]
            t += timedelta(seconds=length)
            left -= length
    with open(out_dir / "ground_truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("file", "start_s", "end_s", "label"))
        w.writerows((r, f"{a:.3f}", f"{b:.3f}", lab) for r, a, b, lab in rows)
    return files
