"""A linear head on the bundle's pooled embedding: P(owl) = sigmoid(w . e + b).

`hootwatch fit` (edge/review/fit.py) fits it on the stored embeddings of labelled windows and writes it into a
bundle's manifest (`head`); the detector then scores with it instead of the graph's logits, and
`hootwatch detections --bundle` rescores a whole archive from stored embeddings with the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


@dataclass(frozen=True)
class LinearHead:
    weights: np.ndarray   # (dim,) float64
    bias: float

    @classmethod
    def from_manifest(cls, manifest) -> "LinearHead":
        return cls(np.asarray(manifest.head["weights"], np.float64), float(manifest.head["bias"]))

    def decision(self, embeddings: np.ndarray) -> np.ndarray:
        """w . e + b for each row (the logit)."""
        return np.asarray(embeddings, np.float64) @ self.weights + self.bias

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """P(owl) for each row, float32; a row of NaN (a window with no embedding) scores NaN."""
        return sigmoid(self.decision(embeddings)).astype(np.float32)
