"""A synthetic SD-card dump: what recorders leave on a card after some nights, plus the ground truth.

Layout written under OUT:
    OUT/<recorder>/YYYYMMDD_HHMMSS.WAV              AudioMoth naming (upper-case extension)
    OUT/<recorder>/<PREFIX>_YYYYMMDD_HHMMSS.wav     Song Meter naming (prefix may contain underscores)
    OUT/ground_truth.csv                            file,start_s,end_s,label,snr_db (file relative to OUT)

Each recorder has one sample rate (48000, 32000, 24000 or 22050 Hz) and writes contiguous files of a few
minutes (the next file starts where the previous ended). Owl bouts and discrete confusers (boobook,
frogmouth, koala) are laid one after another with random gaps; textures (wind, rain, insects, traffic)
overlap them. Every sound goes through forest propagation (distance low-pass + reverb) and is mixed at an
in-band SNR (see mixing.py for the definition) drawn from a range that includes hard cases near 0 dB.
One ground-truth row per call: a double-note owl call is one row; a bout is several rows. Bouts are cut at
file ends (calls that would straddle two files are dropped). Same seed, same bytes: all randomness flows
from numpy SeedSequence children of the seed; 16-bit PCM WAV.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import soundfile as sf

from . import calls, confusers
from .backgrounds import BackgroundPool, background
from .mixing import band_power, draw_snr, mix_at_snr
from .propagation import propagate, sample_propagation

RECORDER_RATES = (48000, 32000, 24000, 22050)
TRUTH_COLUMNS = ("file", "start_s", "end_s", "label", "snr_db")
DISCRETE = ("boobook", "frogmouth", "koala")


@dataclass(frozen=True)
class DumpConfig:
    hours: float = 1.0
    seed: int = 0
    backgrounds: Path | None = None
    event_gap_s: float = 30.0            # mean silence between discrete events
    owl_share: float = 0.35              # fraction of discrete events that are owl bouts
    textures_per_hour: float = 12.0
    hard_share: float = 0.3              # fraction of sounds at hard SNR
    hard_snr_db: tuple[float, float] = (-3.0, 3.0)
    easy_snr_db: tuple[float, float] = (3.0, 20.0)
    start: datetime = datetime(2024, 5, 1, 19, 0, 0)   # local time at the site (dusk)
    tz: str = "Australia/Sydney"                          # the site's (and the Song Meters') time zone


@dataclass(frozen=True)
class Recorder:
    name: str            # folder on the card
    kind: str            # "audiomoth" or "songmeter"
    sample_rate: int
    file_s: int

    def file_name(self, t_utc: datetime, tz: ZoneInfo) -> str:
        """AudioMoth names carry UTC (its default); Song Meter names the recorder's local time."""
        stamp = (t_utc if self.kind == "audiomoth" else t_utc.astimezone(tz)).strftime("%Y%m%d_%H%M%S")
        return f"{stamp}.WAV" if self.kind == "audiomoth" else f"{self.name}_{stamp}.wav"


@dataclass(frozen=True)
class TruthRow:
    file: str
    start_s: float
    end_s: float
    label: str
    snr_db: float


@dataclass(frozen=True)
class DumpSummary:
    files: list[str]
    rows: list[TruthRow]
    audio_s: float
    background: str
    counts: dict[str, int] = field(default_factory=dict)


def plan_recorders(rng: np.random.Generator, hours: float) -> list[tuple[Recorder, float]]:
    """Recorders (always at least one AudioMoth and one Song Meter) and the seconds each records."""
    n = 2 if hours < 0.5 else int(rng.integers(3, 5))
    names = ["AM01", "SM4_SITE_A", "AM02", "SM4_SITE_B"]
    recs = []
    for i in range(n):
        kind = "audiomoth" if i % 2 == 0 else "songmeter"
        minutes = rng.choice([1, 2, 5]) if kind == "audiomoth" else rng.choice([2, 5, 10])
        rate = int(rng.choice(RECORDER_RATES))
        recs.append(Recorder(names[i], kind, rate, int(minutes * 60)))
    total = hours * 3600.0
    shares = rng.dirichlet(np.full(n, 4.0))
    return [(r, max(10.0, float(total * s))) for r, s in zip(recs, shares)]


def _sound(rng: np.random.Generator, label: str, sr: int, individual: calls.Individual | None,
           max_s: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    if label == "owl":
        n_max = max(1, int(max_s // 6))
        return calls.owl_bout(rng, sr, n_calls=int(rng.integers(1, min(8, n_max) + 1)), individual=individual)
    return confusers.CONFUSERS[label](rng, sr)


def _mix_event(rng: np.random.Generator, out: np.ndarray, sr: int, t0: float, label: str,
               cfg: DumpConfig, individual: calls.Individual | None) -> list[tuple[float, float, float]]:
    """Propagate a sound, mix it at t0, return (start_s, end_s, measured snr_db) per call inside the file."""
    dur = len(out) / sr
    dry, spans = _sound(rng, label, sr, individual, dur - t0)
    spans = [(a, b) for a, b in spans if t0 + b <= dur - 0.05]
    if not spans:
        return []
    prop = sample_propagation(rng)   # one bird, one place: the same path for every call of a bout
    band = confusers.BANDS[label]
    target = draw_snr(rng, cfg.hard_share, cfg.hard_snr_db, cfg.easy_snr_db)
    rows = []
    # each call is mixed on its own (its SNR set against the background around it), so a bout that spans a
    # loud and a quiet stretch of background keeps its calls near the drawn SNR
    for i, (a, b) in enumerate(spans):
        chunk_end = int(spans[i + 1][0] * sr) if i + 1 < len(spans) else len(dry)
        wet = propagate(dry[int(a * sr): chunk_end], sr, rng, prop)
        start, n_span = int((t0 + a) * sr), int((b - a) * sr)
        reference = out[start: start + n_span].copy()   # what the call is heard against
        snr = target + (rng.normal(0, 1.5) if len(spans) > 1 else 0.0)
        gain = mix_at_snr(out, wet, start, (0, n_span), sr, band, snr)
        p_s = band_power(gain * wet[:n_span], sr, band)
        p_n = max(band_power(reference, sr, band), 1e-20)
        rows.append((t0 + a, t0 + b, float(10 * np.log10(max(p_s, 1e-20) / p_n))))
    return rows


def render_file(rng: np.random.Generator, rec: Recorder, seconds: float, pool: BackgroundPool | None,
                cfg: DumpConfig, individual: calls.Individual, first_owl: bool) -> tuple[np.ndarray, list]:
    sr = rec.sample_rate
    n = int(round(seconds * sr))
    out = background(rng, n, sr, pool)
    rows: list[tuple[float, float, str, float]] = []
    # textures first: for later calls they are part of the noise
    for _ in range(rng.poisson(cfg.textures_per_hour * seconds / 3600)):
        label = str(rng.choice(confusers.TEXTURES))
        t0 = float(rng.uniform(0, max(1.0, seconds - 20)))
        rows += [(a, b, label, s) for a, b, s in _mix_event(rng, out, sr, t0, label, cfg, None)]
    labels = list(DISCRETE)
    weights = np.array([confusers.WEIGHTS[k] for k in labels])
    t = float(rng.uniform(1.0, 10.0))
    first = first_owl
    while t < seconds - 3.0:
        if first or rng.random() < cfg.owl_share:
            label = "owl"
        else:
            label = str(rng.choice(labels, p=weights / weights.sum()))
        first = False
        events = _mix_event(rng, out, sr, t, label, cfg, individual)
        rows += [(a, b, label, s) for a, b, s in events]
        end = max((b for _, b, _ in events), default=t)
        t = end + 1.0 + float(rng.exponential(cfg.event_gap_s))
    peak = float(np.abs(out).max())
    if peak > 0.98:  # a limiter would distort; a gain keeps every SNR
        out *= np.float32(0.98 / peak)
    return out, rows


def write_truth(path: str | os.PathLike, rows: list[TruthRow]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRUTH_COLUMNS)
        for r in rows:
            w.writerow([r.file, f"{r.start_s:.3f}", f"{r.end_s:.3f}", r.label, f"{r.snr_db:.2f}"])


def write_dump(out_dir: str | os.PathLike, cfg: DumpConfig, progress=None) -> DumpSummary:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool = BackgroundPool.from_dir(cfg.backgrounds)
    root = np.random.SeedSequence(cfg.seed)
    plan_rng = np.random.default_rng(root.spawn(1)[0])
    recorders = plan_recorders(plan_rng, cfg.hours)
    rows: list[TruthRow] = []
    files: list[str] = []
    audio_s = 0.0
    for (rec, seconds), rec_seed in zip(recorders, root.spawn(len(recorders) + 1)[1:]):
        rec_rng = np.random.default_rng(rec_seed)
        individual = calls.sample_individual(rec_rng)  # the resident bird near this recorder
        (out / rec.name).mkdir(exist_ok=True)
        t = (cfg.start.replace(tzinfo=ZoneInfo(cfg.tz)).astimezone(timezone.utc)
             + timedelta(minutes=int(rec_rng.integers(0, 30))))
        left = float(int(seconds))
        first = True
        while left >= 5:
            length = float(min(rec.file_s, left))
            file_rng = np.random.default_rng(rec_rng.integers(2 ** 63))
            audio, events = render_file(file_rng, rec, length, pool, cfg, individual, first)
            rel = f"{rec.name}/{rec.file_name(t, ZoneInfo(cfg.tz))}"
            sf.write(out / rel, audio, rec.sample_rate, subtype="PCM_16")
            files.append(rel)
            rows += [TruthRow(rel, a, b, label, s) for a, b, label, s in events]
            audio_s += length
            if progress:
                progress(rel, length)
            t += timedelta(seconds=length)
            left -= length
            first = False
    rows.sort(key=lambda r: (r.file, r.start_s))
    write_truth(out / "ground_truth.csv", rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    return DumpSummary(files, rows, audio_s, "real" if pool else "synthetic", counts)
