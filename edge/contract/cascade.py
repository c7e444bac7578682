"""The two-stage scorer: a cheap first stage looks at every window, the full model scores only what it passes.

`CascadeDetector` has the interface the scan uses from `Detector` (`score`, `manifest`, `batch_size`,
`providers`), so the scan, the daemon, window scores and the review get the cascade without knowing of it;
`load_detector` returns one when the bundle has a first stage, and a plain `Detector` for old single-stage
bundles or with `exhaustive=True` (`hootwatch scan --exhaustive`, `model.exhaustive` in the daemon config).

The full model stays the judge of every detection: a window the first stage passes gets exactly the full model's
score (the same call `Detector.score` makes), a window it rejects gets `REJECTED_SCORE` (NaN, "not scored"). NaN
is below every threshold (`NaN >= t` is false for every t, 0 included), so a rejected window can never become or
extend a detection, whatever threshold a user passes. The first stage is deterministic numpy, so the same audio
gives the same rows.

The pass threshold was chosen at export on the validation clips to keep at least 99.5 % of the windows the full
(int8) model calls positive at the bundle's threshold (`manifest.first_stage["validation"]`), and, when recordings
were given (`export --first-stage-check`, `hootwatch cascade-check`), lowered until on them the cascade makes
exactly the rows of an exhaustive scan (`["recordings_check"]`, hootwatch.edge.scan.cascade_check). Scanning with a
much lower `--threshold` than the bundle's may lose windows the first stage was not validated for: use
`--exhaustive`, or check the bundle again.

On a GPU (CUDA or TensorRT provider) the full model runs the passed windows in batches of 8 and the first stage
takes GPU_BATCHES of those at a time; this path has not been measured on a GPU yet.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .detector import Detector
from hootwatch.edge.core.errors import BundleError
from .first_stage import FirstStage

REJECTED_SCORE = float("nan")
# windows handed to the first stage at once: its features vectorise over a batch, while the full model gets the
# passed ones in its own batch size (1 on a CPU, 8 on a GPU). On a GPU the cascade takes 16 full batches at once,
# so that the few windows passed still make batches worth a GPU call (128 windows of 5 s at 16 kHz: 41 MB).
FIRST_STAGE_BATCH = 16
GPU_BATCHES = 16


@dataclass
class PassCounter:
    """Windows the first stage saw and passed on (thread-safe: the daemon scores from its own thread)."""
    seen: int = 0
    passed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, seen: int, passed: int) -> None:
        with self._lock:
            self.seen += int(seen)
            self.passed += int(passed)

    @property
    def pass_rate(self) -> float | None:
        """Share of windows the full model scored (None before any window)."""
        return self.passed / self.seen if self.seen else None


@dataclass
class CascadeDetector:
    full: Detector
    first_stage: FirstStage
    pass_threshold: float
    batch_size: int = FIRST_STAGE_BATCH
    counter: PassCounter = field(default_factory=PassCounter)
    first_stage_on: ClassVar[bool] = True   # the scan's run key tells a cascade run from an exhaustive one

    @property
    def manifest(self):
        return self.full.manifest

    @property
    def bundle(self):
        return self.full.bundle

    @property
    def providers(self) -> list[str]:
        return self.full.providers

    @property
    def pass_rate(self) -> float | None:
        return self.counter.pass_rate

    def first_stage_scores(self, windows: np.ndarray) -> np.ndarray:
        return self.first_stage.score(np.atleast_2d(windows))

    @property
    def embeds(self) -> bool:
        return self.full.embeds

    def score_and_embed(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`score`, and the full model's embedding of each passed window; a rejected window's row is NaN: the
        full model never ran on it, and running it only for the embedding would undo the cascade's saving (a
        search then misses what the first stage rejects: `scan --exhaustive` embeds every window)."""
        x = np.atleast_2d(np.asarray(windows, np.float32))
        scores = np.full(len(x), REJECTED_SCORE, np.float32)
        emb = np.full((len(x), int(self.manifest.embedding["dim"])), np.nan, np.float32)
        if len(x) == 0:
            return scores, emb
        passed = np.flatnonzero(self.first_stage_scores(x) >= self.pass_threshold)
        if len(passed):
            scores[passed], emb[passed] = self.full.score_and_embed(x[passed])
        self.counter.add(len(x), len(passed))
        return scores, emb

    def score(self, windows: np.ndarray) -> np.ndarray:
        """The full model's owl probability for windows the first stage passes, REJECTED_SCORE (NaN) for the rest."""
        x = np.atleast_2d(np.asarray(windows, np.float32))
        out = np.full(len(x), REJECTED_SCORE, np.float32)
        if len(x) == 0:
            return out
        passed = np.flatnonzero(self.first_stage_scores(x) >= self.pass_threshold)
        if len(passed):
            out[passed] = self.full.score(x[passed])
        self.counter.add(len(x), len(passed))
        return out


def pass_rate_of(detector) -> float | None:
    """Share of windows the full model scored: the cascade's pass rate, 1.0 for a plain Detector."""
    return detector.pass_rate if isinstance(detector, CascadeDetector) else 1.0


def load_detector(bundle_dir: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None,
                  variant: str = "default", batch_size: int | None = None, warmup: bool = True,
                  exhaustive: bool = False) -> Detector | CascadeDetector:
    """The bundle's scorer: a CascadeDetector when it has a first stage (and not `exhaustive`), else a Detector.

    `batch_size` is the full model's (Detector.load); the first stage takes FIRST_STAGE_BATCH windows at a time."""
    full = Detector.load(bundle_dir, threads=threads, providers=providers, variant=variant, batch_size=batch_size,
                         warmup=warmup)
    spec = full.manifest.first_stage
    if exhaustive or not spec:
        return full
    path = full.bundle.path / spec["file"]   # hash-checked by load_bundle with every other file
    fs = FirstStage.load(path)
    if fs.sample_rate != full.manifest.sample_rate:
        raise BundleError(f"{path}: the first stage runs at {fs.sample_rate} Hz, the model at "
                          f"{full.manifest.sample_rate} Hz", "export the model again, or scan with --exhaustive")
    batch = FIRST_STAGE_BATCH if full.batch_size <= 1 else max(FIRST_STAGE_BATCH, GPU_BATCHES * full.batch_size)
    return CascadeDetector(full, fs, float(spec["pass_threshold"]), batch)
