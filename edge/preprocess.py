"""Normalisation of model input, identical in training (trainer) and in the field (edge).

It reproduces the transformers Wav2Vec2FeatureExtractor in numpy: with do_normalize, each window is scaled to
zero mean and unit variance, `(x - mean) / sqrt(var + 1e-7)`. Per-window normalisation also removes the DC
offsets that real recorders show. The exact parameters travel in the bundle manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

KINDS = ("zero_mean_unit_var", "none")


@dataclass(frozen=True)
class Normalisation:
    kind: str = "zero_mean_unit_var"
    eps: float = 1e-7

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown normalisation {self.kind!r}; expected one of {KINDS}")

    @classmethod
    def from_feature_extractor(cls, do_normalize: bool) -> "Normalisation":
        return cls("zero_mean_unit_var" if do_normalize else "none")

    @classmethod
    def from_dict(cls, d: dict) -> "Normalisation":
        return cls(kind=str(d["kind"]), eps=float(d.get("eps", 1e-7)))

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, windows: np.ndarray) -> np.ndarray:
        """windows: (n_samples,) or (batch, n_samples) float -> float32 of the same shape."""
        x = np.asarray(windows, dtype=np.float32)
        if self.kind == "none":
            return x
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        return ((x - mean) / np.sqrt(var + self.eps)).astype(np.float32)
