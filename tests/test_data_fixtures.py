"""Synthetic labelled audio for the data and trainer tests (no test cases here; imported by them).

Owl: a two-note "woo-hoo" (330-550 Hz, second note a little higher) in noise, at a random position.
Not owl: noise alone, or a single higher tone, or a fast three-note series (a band/rhythm confuser).
Files vary in sample rate, length and channel count, as users' clips do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATES = (8000, 16000, 22050, 32000)


def owl_call(sr: int, rng: np.random.Generator) -> np.ndarray:
    f0 = rng.uniform(330, 550)
    out = []
    for k, dur in enumerate((rng.uniform(0.35, 0.5), rng.uniform(0.35, 0.5))):
        t = np.arange(int(dur * sr)) / sr
        f = f0 * (1 + 0.06 * k) + 40 * np.sin(np.pi * t / dur)
        note = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.hanning(len(t))
        out.append(note)
        if k == 0:
            out.append(np.zeros(int(rng.uniform(0.4, 0.55) * sr)))
    return np.concatenate(out).astype(np.float32)


def confuser(sr: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:
        return np.zeros(int(0.2 * sr), np.float32)
    if kind == 1:
        t = np.arange(int(rng.uniform(0.3, 1.0) * sr)) / sr
        return (np.sin(2 * np.pi * rng.uniform(900, 1800) * t) * np.hanning(len(t))).astype(np.float32)
    t = np.arange(int(0.12 * sr)) / sr
    note = np.sin(2 * np.pi * rng.uniform(700, 1000) * t) * np.hanning(len(t))
    gap = np.zeros(int(0.15 * sr))
    return np.concatenate([note, gap, note, gap, note]).astype(np.float32)


def clip(label: str, sr: int, dur_s: float, rng: np.random.Generator, snr_db: float = 10.0) -> np.ndarray:
    n = int(dur_s * sr)
    noise = rng.normal(0, 1, n).astype(np.float32)
    noise = np.cumsum(noise) * 0.02 + noise * 0.3  # reddish background
    noise /= np.std(noise) + 1e-9
    sig = owl_call(sr, rng) if label == "owl" else confuser(sr, rng)
    x = noise * 0.05
    if len(sig) and np.any(sig):
        start = int(rng.integers(0, max(1, n - len(sig))))
        seg = sig[: n - start]
        gain = 0.05 * 10 ** (snr_db / 20)
        x[start:start + len(seg)] += gain * seg
    return np.clip(x, -1, 1).astype(np.float32)


def make_label_folders(root: Path, n_recordings: int = 6, clips_per_recording: int = 4, seed: int = 0,
                       labels=("owl", "not_owl"), dur_range=(2.5, 4.0)) -> Path:
    """root/LABEL/recRR_LABEL_KK.wav: recording id recRR_LABEL (from the name, minus the clip index)."""
    rng = np.random.default_rng(seed)
    for lab in labels:
        (root / lab).mkdir(parents=True, exist_ok=True)
        for r in range(n_recordings):
            sr = int(RATES[rng.integers(len(RATES))])
            for k in range(clips_per_recording):
                x = clip(lab, sr, rng.uniform(*dur_range), rng, snr_db=rng.uniform(6, 16))
                if k % 3 == 2:
                    x = np.stack([x, x * 0.9], axis=1)  # some stereo
                sf.write(root / lab / f"rec{r:02d}{lab}_{k:03d}.wav", x, sr)
    return root


def make_annotated_recording(path: Path, sr: int, dur_s: float, call_times: list[float], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = int(dur_s * sr)
    x = rng.normal(0, 0.02, n).astype(np.float32)
    for t in call_times:
        c = owl_call(sr, rng) * 0.3
        i = int(t * sr)
        x[i:i + len(c)] += c[: n - i]
    sf.write(path, x, sr)
    return path
