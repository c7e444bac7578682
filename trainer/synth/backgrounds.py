"""Backgrounds to mix calls into: real night recordings (looped and cropped with crossfades), or synthetic
night noise (pink/brown noise plus faint insects) when none are available.

Real recordings are read through hootwatch.edge.contract.audio, the same decoder and resampler the edge uses.
From a folder laid out like ../shared/data/real we take only sound without owls or boobooks in it, and only the
recordings set aside for training (`TRAINING_BACKGROUNDS`): the Song Meter evening soundscapes (18:00-23:59) and
boobook/negative of the Dalby sites. The rest (`is_evaluation_only`) is kept for measuring false positives
(bench/accuracy.py), so that no figure is measured on a recording the model has heard. Any other folder is used
whole, except subfolders named positive/, owl/, misc/ or recorder_fixtures/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from hootwatch.edge.contract import audio
from hootwatch.edge.core.errors import ConfigError

from .confusers import insects
from .propagation import next_fast_len

_EXCLUDED_DIRS = {"positive", "owl", "misc", "recorder_fixtures"}
_SM_TIME = re.compile(r"_(\d{8})_(\d{2})(\d{2})(\d{2})")
CROSSFADE_S = 0.5

# The split of ../shared/data/real (see docs/benchmarks.md): training backgrounds are these, by site and hour;
# everything else there is evaluation-only. Split by site for boobook/negative (Dalby: training, Miles: a site the
# model never heard) and by hour for the one Song Meter site (evening: training, after midnight and day:
# evaluation).
TRAINING_BACKGROUNDS = {
    "boobook/negative": "Dalby sites (dalby_*); the Miles sites (miles_*) are evaluation-only",
    "soundscape_sm4": "18:00-23:59; 00:00-17:59 is evaluation-only",
}


def default_background_dir() -> Path | None:
    """../shared/data/real beside the working directory or beside the source checkout, when present."""
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *here.parents):
        cand = base.parent / "shared" / "data" / "real"
        if (cand / "README.md").is_file():
            return cand
    return None


def _hour(path: Path) -> int | None:
    m = _SM_TIME.search(path.name)
    return int(m.group(2)) if m else None


def is_evaluation_only(rel: Path) -> bool:
    """Whether a file of the ../shared/data/real layout (path relative to it) is kept out of training."""
    parts = rel.parts
    if set(parts[:-1]) & _EXCLUDED_DIRS:
        return True
    if "soundscape" in str(rel):
        hour = _hour(rel)
        return hour is None or hour < 18
    if "negative" in parts[:-1]:
        return not rel.name.startswith("dalby_")
    return False


def _is_shared_layout(root: Path) -> bool:
    return (root / "boobook").is_dir() or (root / "soundscape_sm4").is_dir()


def evaluation_files(root: str | os.PathLike) -> dict[str, list[Path]]:
    """The evaluation-only audio of a ../shared/data/real layout, by folder (what bench/accuracy.py scans)."""
    root = Path(root)
    groups: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if audio.is_audio_file(p) and is_evaluation_only(rel):
            groups.setdefault(str(rel.parent), []).append(p)
    return groups


def find_background_files(folder: str | os.PathLike) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: background folder not found", "pass --backgrounds with a folder of recordings")
    shared = _is_shared_layout(root)
    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if set(rel.parts[:-1]) & _EXCLUDED_DIRS or not audio.is_audio_file(p):
            continue
        if shared and is_evaluation_only(rel):
            continue
        files.append(p)
    if not files:
        raise ConfigError(f"{root}: no usable audio files for backgrounds",
                          "put night recordings without owls in it, or leave --backgrounds out for synthetic noise")
    return files


def synthetic_night(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Pink-to-brown noise at a quiet night level, with faint insects now and then."""
    nfft = next_fast_len(n)
    white = rng.standard_normal(nfft).astype(np.float32)
    slope = rng.uniform(0.5, 1.0)      # 0.5 -> pink, 1.0 -> brown (power ~ 1/f^(2*slope))
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    spec *= 1.0 / np.maximum(f, 20.0) ** slope * (f > 10)
    x = np.fft.irfft(spec, nfft)[:n].astype(np.float32)
    x *= np.float32(10 ** (rng.uniform(-55, -40) / 20) / (np.sqrt(np.mean(x ** 2)) + 1e-12))
    if rng.random() < 0.5:
        bug, _ = insects(rng, sample_rate, duration_s=n / sample_rate)
        x[: len(bug)] += bug * np.float32(10 ** (rng.uniform(-62, -50) / 20))
    return x


class BackgroundPool:
    """Real background recordings, decoded once per sample rate, handed out as crossfaded loops."""

    def __init__(self, files: list[Path]) -> None:
        self.files = list(files)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_dir(cls, folder: str | os.PathLike | None) -> "BackgroundPool | None":
        return cls(find_background_files(folder)) if folder is not None else None

    def recording(self, index: int, sample_rate: int) -> np.ndarray:
        key = (index % len(self.files), sample_rate)
        if key not in self._cache:
            x = audio.load(self.files[key[0]], sample_rate)
            self._cache[key] = (x - x.mean()).astype(np.float32)  # SM4 files carry a DC offset
        return self._cache[key]

    def sample(self, rng: np.random.Generator, n: int, sample_rate: int,
               choices: list[int] | None = None) -> np.ndarray:
        """n samples made of random pieces of the pool (from `choices` if given), joined by crossfades."""
        fade = int(CROSSFADE_S * sample_rate)
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        fade_in, fade_out = np.sin(0.5 * np.pi * ramp), np.cos(0.5 * np.pi * ramp)  # equal power
        out = np.zeros(n, np.float32)
        pos = 0
        while pos < n:
            idx = int(rng.choice(choices)) if choices else int(rng.integers(len(self.files)))
            src = self.recording(idx, sample_rate)
            if len(src) <= 2 * fade:
                continue
            start = int(rng.integers(0, max(1, len(src) // 2)))
            piece = src[start:] * np.float32(10 ** (rng.normal(0, 1.0) / 20))
            if pos == 0:
                take = min(len(piece), n)
                out[:take] = piece[:take]
                pos = take
                continue
            begin = pos - fade
            take = min(len(piece), n - begin)
            f = min(fade, take)
            out[begin: begin + f] = out[begin: begin + f] * fade_out[:f] + piece[:f] * fade_in[:f]
            out[begin + f: begin + take] = piece[f:take]
            pos = begin + take
            if take <= fade:
                break
        return out


def background(rng: np.random.Generator, n: int, sample_rate: int, pool: BackgroundPool | None,
               choices: list[int] | None = None) -> np.ndarray:
    return pool.sample(rng, n, sample_rate, choices) if pool is not None else synthetic_night(rng, n, sample_rate)
