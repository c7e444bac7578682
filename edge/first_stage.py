"""The cascade's first stage: cheap spectral features of a window and a small numpy network over them.

The first stage looks at every window and passes on only those that might hold an owl call; the full model
(the judge) scores only those (hootwatch.edge.cascade). It is built by the trainer (hootwatch.trainer.first_stage),
distilled from the fine-tuned model's own decisions on the training clips, and shipped in the bundle as
`first_stage.npz`, hashed like every other file.

Features (`features`), all in dB relative to the window's own mean power, so that they do not depend on the
recorder's gain (the full model normalises each window too): a short-time power spectrum (32 ms Hann frames,
end to end) pooled into log-spaced bands over 100-4000 Hz plus one band below and one above; per band the mean over
the window, the 90th percentile and the maximum above the median (a call stands out of its band's background
for a second or two); and the tonality of the owl's band (peak over mean power of 250-1200 Hz in a frame), its
90th percentile and median. The network is a small MLP (ReLU, sigmoid output) on standardised features.

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

from .errors import BundleError

FILE_NAME = "first_stage.npz"
FRAME_S = 0.032
FRAME_HOP_S = 0.032    # frames do not overlap: half the FFTs of a 16 ms hop, and the stats pool over ~150
BAND_EDGES_HZ = (100.0, 4000.0)
N_BANDS = 12
TONAL_BAND_HZ = (250.0, 1200.0)
FEATURE_VERSION = 1


def _frame_sizes(sample_rate: int) -> tuple[int, int]:
    return int(round(FRAME_S * sample_rate)), max(1, int(round(FRAME_HOP_S * sample_rate)))


def _bands(n_fft: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First bin of each band, bins per band (bands are contiguous bins), and the owl band's bin mask."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    top = min(BAND_EDGES_HZ[1], sample_rate / 2)
    edges = np.concatenate([[0.0], np.geomspace(BAND_EDGES_HZ[0], top, N_BANDS + 1), [np.inf]])
    band_of_bin = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, len(edges) - 2)
    starts = np.flatnonzero(np.diff(np.concatenate([[-1], band_of_bin])))   # bands narrower than a bin vanish
    counts = np.diff(np.concatenate([starts, [len(freqs)]]))
    tonal = (freqs >= TONAL_BAND_HZ[0]) & (freqs <= TONAL_BAND_HZ[1])
    return starts, counts, tonal


def n_features(sample_rate: int) -> int:
    n_fft, _ = _frame_sizes(sample_rate)
    return 3 * len(_bands(n_fft, sample_rate)[0]) + 2


def features(windows: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n, window_samples) raw audio -> (n, n_features) float32, one row per window (see the module doc).

    No matrix products: numpy would hand them to a multi-threaded BLAS, which competes with ONNX Runtime's threads
    (measured: 17 ms a window instead of 3 on a loaded 2-core machine)."""
    x = np.atleast_2d(np.asarray(windows, np.float32))
    n_fft, hop = _frame_sizes(sample_rate)
    starts, counts, tonal = _bands(n_fft, sample_rate)
    if x.shape[-1] < n_fft:
        x = np.pad(x, [(0, 0), (0, n_fft - x.shape[-1])])
    x = x - x.mean(axis=-1, keepdims=True)        # DC offsets of real recorders
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[:, ::hop]   # (n, t, n_fft), a view
    spec = np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=-1)
    power = spec.real ** 2 + spec.imag ** 2                                           # (n, t, bins) float32
    ref = power.mean(axis=(1, 2), keepdims=True) + 1e-20
    band_db = 10 * np.log10(np.add.reduceat(power, starts, axis=-1) / counts / ref + 1e-10)  # (n, t, bands)
    median = np.median(band_db, axis=1)
    tonal_p = power[..., tonal]
    tonality = 10 * np.log10((tonal_p.max(axis=-1) + 1e-20) / (tonal_p.mean(axis=-1) + 1e-20))  # (n, t)
    out = np.concatenate([
        band_db.mean(axis=1),
        np.percentile(band_db, 90, axis=1) - median,
        band_db.max(axis=1) - median,
        np.percentile(tonality, 90, axis=1)[:, None],
        np.median(tonality, axis=1)[:, None],
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
