"""The cascade's first stage: cheap spectral features of a window and a small numpy network over them.

The first stage looks at every window and passes on only those that might hold an owl call; the full model
(the judge) scores only those (contract/cascade.py). It is built by the trainer (hootwatch.trainer.first_stage),
distilled from the fine-tuned model's own decisions on the training clips, and shipped in the bundle as
`first_stage.npz`, hashed like every other file.

Features (`features`), all in dB relative to the window's own mean power, so that they do not depend on the
recorder's gain (the full model normalises each window too): a short-time power spectrum (32 ms Hann frames,
end to end) pooled into 12 log-spaced bands over 150-1500 Hz and 4 bands outside; per band the mean over the
window, the 90th percentile and the maximum above the median (a call stands out of its band's background for a
second or two); and the harmonic salience of each frame (the best F0 in 300-600 Hz: the mean level of its first
4 harmonics over the frame's 200-2500 Hz level), pooled as the mean of the 10 most salient frames, the 90th
percentile, the median and the share of frames 6 dB above the median. The network is a small MLP (ReLU,
sigmoid output) on standardised features.

Why numpy and not a second ONNX model: the network has ~1,300 weights, so an ONNX Runtime session (and int8)
would buy no speed and cost a session per process; numpy runs it in microseconds, deterministically, on any
edge device. The features dominate its cost (about 1 ms per 5 s window on one core, measured in
bench/scan_throughput.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.core.errors import BundleError

FILE_NAME = "first_stage.npz"
FRAME_S = 0.032
FRAME_HOP_S = 0.032    # frames do not overlap: half the FFTs of a 16 ms hop, and the stats pool over ~150
OWL_BANDS_HZ = (150.0, 1500.0)    # 12 log-spaced bands over the call's F0 and first harmonics
N_OWL_BANDS = 12
UPPER_EDGES_HZ = (2500.0, 4000.0)  # then 1500-2500, 2500-4000 and everything above
F0_HZ = (300.0, 600.0)             # F0 candidates (male 330-430 Hz, female 450-550 Hz) ...
F0_STEP_HZ = 15.0
N_HARMONICS = 4                    # ... and their first 4 harmonics
LEVEL_BAND_HZ = (200.0, 2500.0)
TOP_FRAMES = 10                    # ~0.3 s: the most salient stretch of the window
KEEP = 0.995                       # share of the full model's positive windows the first stage must pass on
FEATURE_VERSION = 1


def _frame_sizes(sample_rate: int) -> tuple[int, int]:
    return int(round(FRAME_S * sample_rate)), max(1, int(round(FRAME_HOP_S * sample_rate)))


def _bands(n_fft: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """First bin of each band and bins per band (bands are contiguous bins; those narrower than a bin vanish)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = np.concatenate([[0.0, 100.0], np.geomspace(*OWL_BANDS_HZ, N_OWL_BANDS + 1), UPPER_EDGES_HZ, [np.inf]])
    band_of_bin = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, len(edges) - 2)
    starts = np.flatnonzero(np.diff(np.concatenate([[-1], band_of_bin])))
    return starts, np.diff(np.concatenate([starts, [len(freqs)]]))


def _harmonic_bins(n_fft: int, sample_rate: int) -> np.ndarray:
    """(F0 candidates, harmonics) bin indices of the owl's F0 range and its first harmonics."""
    f0 = np.arange(F0_HZ[0], F0_HZ[1] + 1e-9, F0_STEP_HZ)
    hz = np.outer(f0, np.arange(1, N_HARMONICS + 1))
    return np.clip(np.round(hz / (sample_rate / n_fft)).astype(int), 0, n_fft // 2)


def n_features(sample_rate: int) -> int:
    n_fft, _ = _frame_sizes(sample_rate)
    return 3 * len(_bands(n_fft, sample_rate)[0]) + 4


def features(windows: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n, window_samples) raw audio -> (n, n_features) float32, one row per window (see the module doc).

    No matrix products: numpy would hand them to a multi-threaded BLAS, which competes with ONNX Runtime's threads
    (measured: 17 ms a window instead of 3 on a loaded 2-core machine)."""
    x = np.atleast_2d(np.asarray(windows, np.float32))
    n_fft, hop = _frame_sizes(sample_rate)
    if x.shape[-1] < n_fft:
        x = np.pad(x, [(0, 0), (0, n_fft - x.shape[-1])])
    x = x - x.mean(axis=-1, keepdims=True)        # DC offsets of real recorders
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[:, ::hop]   # (n, t, n_fft), a view
    spec = np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=-1)
    power = spec.real ** 2 + spec.imag ** 2                                           # (n, t, bins) float32
    ref = power.mean(axis=(1, 2), keepdims=True) + 1e-20
    starts, counts = _bands(n_fft, sample_rate)
    band_db = 10 * np.log10(np.add.reduceat(power, starts, axis=-1) / counts / ref + 1e-10)  # (n, t, bands)
    median = np.median(band_db, axis=1)
    # harmonic salience of each frame: the best F0 candidate's mean level at its harmonics over the frame's level
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    level = 10 * np.log10(power[..., (freqs >= LEVEL_BAND_HZ[0]) & (freqs <= LEVEL_BAND_HZ[1])].mean(axis=-1)
                          / ref[..., 0] + 1e-10)
    power_db = 10 * np.log10(power / ref + 1e-10)
    salience = power_db[..., _harmonic_bins(n_fft, sample_rate)].mean(axis=-1).max(axis=-1) - level   # (n, t)
    sal_median = np.median(salience, axis=1, keepdims=True)
    out = np.concatenate([
        band_db.mean(axis=1),
        np.percentile(band_db, 90, axis=1) - median,
        band_db.max(axis=1) - median,
        np.sort(salience, axis=1)[:, -TOP_FRAMES:].mean(axis=1, keepdims=True),
        np.percentile(salience, 90, axis=1)[:, None],
        sal_median,
        (salience > sal_median + 6.0).mean(axis=1, keepdims=True),
    ], axis=1)
    return out.astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))    # no overflow warning for large |z|


@dataclass(frozen=True)
class FirstStage:
    """Standardise, then dense layers (ReLU between, sigmoid out): P(the full model would call it an owl)."""
    sample_rate: int
    mean: np.ndarray
    scale: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        dims = [len(self.mean)] + [w.shape[1] for w in self.weights]
        ok = (len(self.weights) == len(self.biases) >= 1 and len(self.scale) == len(self.mean)
              and dims[-1] == 1 and dims[0] == n_features(self.sample_rate)
              and all(w.shape == (a, b) and bb.shape == (b,)
                      for w, bb, a, b in zip(self.weights, self.biases, dims, dims[1:])))
        if not ok:
            raise ValueError(f"first stage layers do not fit together (features {dims[0]}, "
                             f"expected {n_features(self.sample_rate)} at {self.sample_rate} Hz)")

    def score_features(self, f: np.ndarray) -> np.ndarray:
        h = (np.asarray(f, np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return _sigmoid(h[:, 0]).astype(np.float32)

    def score(self, windows: np.ndarray) -> np.ndarray:
        """(n, window_samples) raw audio -> (n,) first-stage scores in [0, 1]."""
        return self.score_features(features(windows, self.sample_rate))

    def save(self, path: str | os.PathLike) -> None:
        arrays = {"sample_rate": np.array(self.sample_rate), "feature_version": np.array(FEATURE_VERSION),
                  "mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FirstStage":
        redo = "export the model again with `hootwatch export`, or scan with --exhaustive"
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: the first stage cannot be read ({exc})", redo) from None
        try:
            if int(d["feature_version"]) != FEATURE_VERSION:
                raise BundleError(f"{path}: first-stage features version {int(d['feature_version'])}, this "
                                  f"hootwatch computes version {FEATURE_VERSION}",
                                  "upgrade hootwatch on this device, or scan with --exhaustive")
            n = sum(k.startswith("w") for k in d)
            return cls(int(d["sample_rate"]), d["mean"].astype(np.float64), d["scale"].astype(np.float64),
                       tuple(d[f"w{i}"].astype(np.float64) for i in range(n)),
                       tuple(d[f"b{i}"].astype(np.float64) for i in range(n)))
        except KeyError as exc:
            raise BundleError(f"{path}: the first stage lacks {exc}", redo) from None
        except ValueError as exc:
            raise BundleError(f"{path}: {exc}", redo) from None


@dataclass(frozen=True)
class PassThreshold:
    pass_threshold: float
    n_windows: int
    n_positive: int          # windows the full model calls positive at `full_threshold`
    kept: int                # of those, passed by the first stage
    passed: int              # windows passed in all
    full_threshold: float

    @property
    def recall(self) -> float:
        return self.kept / self.n_positive if self.n_positive else 1.0

    def to_dict(self) -> dict:
        return {"pass_threshold": self.pass_threshold, "windows": self.n_windows,
                "full_model_positives": self.n_positive, "positives_kept": self.kept,
                "positive_recall": round(self.recall, 4), "pass_rate": round(self.passed / max(self.n_windows, 1), 4),
                "full_threshold": self.full_threshold, "keep_target": KEEP}


def choose_pass_threshold(stage_scores: np.ndarray, full_scores: np.ndarray, full_threshold: float,
                          keep: float = KEEP) -> PassThreshold:
    """The highest pass threshold that keeps at least `keep` of the windows with full score >= full_threshold.

    With no positive window at all the threshold is 0 (every window passes): nothing was shown to be safe."""
    s = np.asarray(stage_scores, np.float64)
    pos = np.sort(s[np.asarray(full_scores) >= full_threshold])
    if len(pos) == 0:
        t = 0.0
    else:
        drop = int(np.floor(len(pos) * (1.0 - keep) + 1e-9))   # positives that may be lost
        t = float(pos[drop])
    passed = s >= t
    return PassThreshold(t, len(s), len(pos), int((pos >= t).sum()), int(passed.sum()), float(full_threshold))
