"""The two-stage scorer: a cheap first stage looks at every window, the full model scores only what it passes.

`CascadeDetector` has the interface the scan uses from `Detector` (`score`, `manifest`, `batch_size`,
`providers`), so the scan, the daemon, window scores and the review get the cascade without knowing of it;
`load_detector` returns one when the bundle has a first stage, and a plain `Detector` for single-stage bundles or
with `exhaustive=True` (`hootwatch scan --exhaustive`, `model.exhaustive` in the daemon config).

Two kinds of first stage: the student (contract/student.py: a small wav2vec2 distilled from the full model, in
ONNX; bundles from this version on) and the numpy feature MLP of earlier bundles (contract/first_stage.py), still
read. The student reads the same normalised windows as the full model (normalised once here, for both) and
passes a window with its `neighbours` on each side; the score loop hands the cascade those neighbours as context
(`score(windows, context=(before, after))`), so what passes never depends on where a batch ends.

The full model stays the judge of every detection: a window the first stage passes gets exactly the full model's
score (the same call `Detector.score` makes), a window it rejects gets `REJECTED_SCORE` (NaN, "not scored"). NaN
is below every threshold (`NaN >= t` is false for every t, 0 included), so a rejected window can never become or
extend a detection, whatever threshold a user passes.

The student's pass threshold was chosen at export (hootwatch.export.student) so that every owl call of the labelled
validation recordings (or clips) that the full int8 model detects is still detected by the cascade
(`manifest.first_stage["rule"]`). `hootwatch cascade-check` (and `export --first-stage-check` without labels) lowers
it on unlabelled recordings until the cascade makes exactly the rows of an exhaustive scan there. Scanning with a
much lower `--threshold` than the bundle's may lose windows the first stage was not validated for: use
`--exhaustive`, or check the bundle again.

On a GPU (CUDA or TensorRT provider) the full model runs the passed windows in batches of 8 and the first stage
takes GPU_BATCHES of those at a time.
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
from .student import Student, dilate, is_student

REJECTED_SCORE = float("nan")
# windows handed to the first stage at once (the student is one session call a batch, and its context windows are
# screened again with the next batch: 2 of 32), while the full model gets the passed ones in its own batch size (1
# on a CPU, 8 on a GPU). On a GPU the cascade takes 16 full batches at once, so that the few windows passed still
# make batches worth a GPU call (128 windows of 5 s at 16 kHz: 41 MB).
FIRST_STAGE_BATCH = 32
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
    first_stage: FirstStage | Student
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

    @property
    def context(self) -> int:
        """Windows on each side a batch needs to decide its own (the student's neighbours): the score loop hands
        them over (`score(windows, context=(before, after))`), so the decision never depends on where batches cut."""
        return self.first_stage.neighbours if isinstance(self.first_stage, Student) else 0

    def first_stage_scores(self, windows: np.ndarray, normalised: bool = False) -> np.ndarray:
        """The first stage's score of each window (`normalised`: the windows are the full model's input already,
        which the feature MLP of earlier bundles cannot read)."""
        x = np.atleast_2d(np.asarray(windows, np.float32))
        if isinstance(self.first_stage, Student):
            return self.first_stage.score_normalised(x if normalised else self.full.normalise(x))
        if normalised:
            raise ValueError("the feature first stage reads raw windows")
        return self.first_stage.score(x)

    def _screen(self, windows: np.ndarray, context: tuple[int, int]):
        """(the batch's windows, normalised or raw, with a flag saying which; the indices the full model scores)."""
        x = np.atleast_2d(np.asarray(windows, np.float32))
        before, after = context
        end = len(x) - after
        if end <= before:
            return x[:0], False, np.zeros(0, np.int64)
        if isinstance(self.first_stage, Student):
            xn = self.full.normalise(x)
            keep = dilate(self.first_stage.score_normalised(xn) >= self.pass_threshold, self.first_stage.neighbours)
            return xn[before:end], True, np.flatnonzero(keep[before:end])
        keep = self.first_stage.score(x) >= self.pass_threshold
        return x[before:end], False, np.flatnonzero(keep[before:end])

    @property
    def embeds(self) -> bool:
        return self.full.embeds

    def score_and_embed(self, windows: np.ndarray, context: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        """`score`, and the full model's embedding of each passed window; a rejected window's row is NaN: the
        full model never ran on it, and running it only for the embedding would undo the cascade's saving (a
        search then misses what the first stage rejects: `scan --exhaustive` embeds every window)."""
        x, normalised, passed = self._screen(windows, context)
        scores = np.full(len(x), REJECTED_SCORE, np.float32)
        emb = np.full((len(x), int(self.manifest.embedding["dim"])), np.nan, np.float32)
        if len(passed):
            scores[passed], emb[passed] = self.full.score_and_embed(x[passed], normalised=normalised)
        self.counter.add(len(x), len(passed))
        return scores, emb

    def score(self, windows: np.ndarray, context: tuple[int, int] = (0, 0)) -> np.ndarray:
        """The full model's owl probability for windows the first stage passes, REJECTED_SCORE (NaN) for the rest.
        `context`: how many of `windows` at the start and at the end only inform the decision (not scored)."""
        x, normalised, passed = self._screen(windows, context)
        out = np.full(len(x), REJECTED_SCORE, np.float32)
        if len(passed):
            out[passed] = self.full.score(x[passed], normalised=normalised)
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
    batch = FIRST_STAGE_BATCH if full.batch_size <= 1 else max(FIRST_STAGE_BATCH, GPU_BATCHES * full.batch_size)
    if is_student(spec):
        return CascadeDetector(full, Student.load(path, spec, threads, providers), float(spec["pass_threshold"]),
                               batch)
    fs = FirstStage.load(path)
    if fs.sample_rate != full.manifest.sample_rate:
        raise BundleError(f"{path}: the first stage runs at {fs.sample_rate} Hz, the model at "
                          f"{full.manifest.sample_rate} Hz", "export the model again, or scan with --exhaustive")
    return CascadeDetector(full, fs, float(spec["pass_threshold"]), batch)
