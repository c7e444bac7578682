"""A synthetic labelled training set in the folder-per-label layout users bring:

    OUT/owl/REC0003_01.wav ...        clips holding at least one whole owl call (sometimes more of a bout)
    OUT/not_owl/REC0003_02.flac ...   confusers (boobook most of all) or plain background
    OUT/recordings.csv                file,recording  -- split by recording, never by clip

Nothing but the call separates the classes: both draw from the same background pool, the same clip lengths
(4-12 s), rates, channel counts and file formats, and the same SNR distribution. A "recording" is one place
and one night: one rate, one channel count, one resident owl, one or two background sources, several clips of
both classes. About 35 % of clips are owl (a realistic imbalance).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from . import calls, confusers
from .backgrounds import BackgroundPool, background
from .mixing import draw_snr, mix_at_snr
from .propagation import propagate

RATES = (48000, 44100, 32000, 24000, 22050)


@dataclass(frozen=True)
class TrainSetConfig:
    clips: int = 400
    seed: int = 0
    backgrounds: Path | None = None
    owl_share: float = 0.35
    # a window (5 s) to 1.5 windows: with the call inside the stretch every 5 s crop shares, a random crop of an
    # owl clip always holds the whole call, so no "owl" training window is call-free (label noise)
    clip_s: tuple[float, float] = (5.0, 7.5)
    window_s: float = 5.0
    clips_per_recording: tuple[int, int] = (3, 9)
    background_only_share: float = 0.25      # of not_owl clips
    hard_share: float = 0.3
    hard_snr_db: tuple[float, float] = (-3.0, 3.0)
    easy_snr_db: tuple[float, float] = (3.0, 20.0)


@dataclass(frozen=True)
class TrainSetSummary:
    n_clips: int
    n_recordings: int
    background: str
    counts: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Recording:
    rid: int
    sample_rate: int
    channels: int
    ext: str
    individual: calls.Individual
    sources: list[int] | None


def _owl(rng: np.random.Generator, sr: int, length_s: float, ind: calls.Individual) -> tuple[np.ndarray, tuple[float, float]]:
    n_calls = int(rng.choice([1, 1, 2, 3]))
    dry, spans = calls.owl_bout(rng, sr, n_calls=n_calls, individual=ind, gap_s=(3.0, 8.0))
    return dry, spans[0]


def _confuser(rng: np.random.Generator, sr: int, length_s: float) -> tuple[str, np.ndarray, tuple[float, float]]:
    names = list(confusers.CONFUSERS)
    w = np.array([confusers.WEIGHTS[k] for k in names])
    label = str(rng.choice(names, p=w / w.sum()))
    gen = confusers.CONFUSERS[label]
    dry, spans = gen(rng, sr) if label in ("boobook", "frogmouth", "koala") else gen(rng, sr, duration_s=length_s)
    first = spans[0] if spans else (0.0, len(dry) / sr)
    return label, dry, (first[0], min(first[1], first[0] + length_s))


def call_position(rng: np.random.Generator, length_s: float, call_s: float, window_s: float) -> float:
    """Start of the (first) call: inside the stretch that every window-long crop of the clip contains, so any
    crop holds the whole call; anywhere it fits when the clip is too long for that; 0 when the call is longer."""
    lo, hi = max(0.0, length_s - window_s), min(length_s, window_s) - call_s
    if hi < lo:
        lo, hi = 0.0, max(0.0, length_s - call_s)
    return float(rng.uniform(lo, hi))


def make_clip(rng: np.random.Generator, rec: Recording, is_owl: bool, pool: BackgroundPool | None,
              cfg: TrainSetConfig) -> tuple[np.ndarray, str]:
    """One mono clip and what is in it ("owl", a confuser name, or "background")."""
    sr = rec.sample_rate
    length_s = float(rng.uniform(*cfg.clip_s))
    n = int(length_s * sr)
    out = background(rng, n, sr, pool, rec.sources)
    if not is_owl and rng.random() < cfg.background_only_share:
        return out, "background"
    if is_owl:
        kind = "owl"
        dry, (a, b) = _owl(rng, sr, length_s, rec.individual)
    else:
        kind, dry, (a, b) = _confuser(rng, sr, length_s)
    wet = propagate(dry[: int((a + length_s) * sr)], sr, rng)   # what cannot reach the clip is cut first
    span_n = int((b - a) * sr)
    pos = int(call_position(rng, length_s, b - a, cfg.window_s) * sr)
    a_n = int(a * sr)
    start = pos - a_n
    if start < 0:  # the sound begins (reverb, earlier notes) before its first call: drop the lead-in
        wet, start, a_n = wet[-start:], 0, pos
    span = (a_n, min(a_n + span_n, n - start))
    mix_at_snr(out, wet[: n - start], start, span, sr, confusers.BANDS.get(kind, (250.0, 1200.0)),
               draw_snr(rng, cfg.hard_share, cfg.hard_snr_db, cfg.easy_snr_db))
    return out, kind


def _to_channels(rng: np.random.Generator, x: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return x
    other = x * np.float32(10 ** (rng.normal(0, 1) / 20)) + np.float32(1e-3) * rng.standard_normal(len(x)).astype(np.float32)
    return np.stack([x, other], axis=1)


def write_trainset(out_dir: str | os.PathLike, cfg: TrainSetConfig) -> TrainSetSummary:
    out = Path(out_dir)
    for label in ("owl", "not_owl"):
        (out / label).mkdir(parents=True, exist_ok=True)
    pool = BackgroundPool.from_dir(cfg.backgrounds)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed))
    rows: list[tuple[str, str]] = []
    counts: dict[str, int] = {"owl": 0, "not_owl": 0}
    kinds: dict[str, int] = {}
    rid = 0
    while len(rows) < cfg.clips:
        rid += 1
        n_src = len(pool.files) if pool else 0
        rec = Recording(
            rid=rid, sample_rate=int(rng.choice(RATES)), channels=int(rng.choice([1, 1, 2])),
            ext=str(rng.choice(["wav", "wav", "wav", "flac"])), individual=calls.sample_individual(rng),
            sources=[int(i) for i in rng.choice(n_src, size=min(2, n_src), replace=False)] if n_src else None,
        )
        n_clips = min(int(rng.integers(*cfg.clips_per_recording)), cfg.clips - len(rows))
        for k in range(n_clips):
            is_owl = bool(rng.random() < cfg.owl_share)
            x, kind = make_clip(rng, rec, is_owl, pool, cfg)
            peak = float(np.abs(x).max())
            if peak > 0.98:
                x = x * np.float32(0.98 / peak)
            label = "owl" if is_owl else "not_owl"
            rel = f"{label}/REC{rid:04d}_{k + 1:02d}.{rec.ext}"
            sf.write(out / rel, _to_channels(rng, x, rec.channels), rec.sample_rate, subtype="PCM_16")
            rows.append((rel, f"REC{rid:04d}"))
            counts[label] += 1
            kinds[kind] = kinds.get(kind, 0) + 1
    with open(out / "recordings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "recording"])
        w.writerows(rows)
    return TrainSetSummary(len(rows), rid, "real" if pool else "synthetic", counts, kinds)
