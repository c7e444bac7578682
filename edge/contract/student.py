"""The cascade's neural first stage: a small wav2vec2 (the "student") distilled from the fine-tuned model.

The trainer distils it from the full model's window scores (hootwatch.trainer.student); export converts it through
the same Optimum/ONNX/int8 path as the full model, checks its parity and chooses its pass rule
(hootwatch.export.student); it ships in the bundle as `student.onnx`, hashed like every other file, described by
the manifest's `first_stage` field:

    {"kind": "student", "file": "student.onnx", "input": "input_values", "output": "logits", "positive_index": 1,
     "pass_threshold": p, "neighbours": k, "rule": {...}, "parity": {...}, "training": {...}}

It reads the window exactly as the full model does (the bundle's normalisation, applied once for both: the band
limit costs more than the student itself), and a window passes when its owl probability is >= `pass_threshold`;
the full model then scores it and its `neighbours` windows on each side, so that an event that needs `min_hits`
windows in a row, or a call the student sees in one window only, is judged by the full model as in an exhaustive
scan (contract/cascade.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from hootwatch.edge.core.errors import BundleError

KIND = "student"
FILE_NAME = "student.onnx"
# a chosen pass threshold sits exactly on the score of the weakest window that must pass; ONNX Runtime may give that
# window a score a few ulps lower in another batch or build, so thresholds are set this fraction below it
PASS_MARGIN = 1e-3
# ... and a chosen threshold is then moved this many logits lower for calls the choice never saw: the hardest call of
# one night sets it, and another night holds harder ones. Measured on the demo's test night: a small student's rule
# (0.106, chosen on the validation night) lost 6 of 96 calls there; 1.2 logits lower (0.034) lost none
GENERALISATION_LOGITS = 2.0


def with_margin(threshold: float, logits: float = GENERALISATION_LOGITS) -> float:
    """`threshold` moved `logits` lower in log-odds (0 stays 0)."""
    t = float(threshold)
    if t <= 0.0:
        return 0.0
    if t >= 1.0:
        return float(1.0 / (1.0 + np.exp(logits)))
    return float(1.0 / (1.0 + (1.0 - t) / t * np.exp(logits)))


def is_student(spec: dict) -> bool:
    return bool(spec) and spec.get("kind") == KIND


@dataclass
class Student:
    session: object
    input_name: str
    output_name: str
    positive_index: int
    neighbours: int = 0

    @classmethod
    def load(cls, path: str | os.PathLike, spec: dict, threads: int | None = None,
             providers: list[str] | None = None) -> "Student":
        from .detector import open_session

        try:
            neighbours = int(spec.get("neighbours", 0))
            positive = int(spec["positive_index"])
            names = str(spec.get("input", "input_values")), str(spec.get("output", "logits"))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: the manifest's first_stage field is incomplete ({exc})",
                              "export the model again with `hootwatch export`, or scan with --exhaustive") from None
        session = open_session(path, threads, providers)
        have = {i.name for i in session.get_inputs()}, {o.name for o in session.get_outputs()}
        if names[0] not in have[0] or names[1] not in have[1]:
            raise BundleError(f"{path}: the student has inputs {sorted(have[0])} and outputs {sorted(have[1])}, the "
                              f"manifest names {names[0]!r} -> {names[1]!r}",
                              "export the model again with `hootwatch export`, or scan with --exhaustive")
        return cls(session, names[0], names[1], positive, max(0, neighbours))

    def score_normalised(self, x: np.ndarray) -> np.ndarray:
        """(n, window_samples) windows already normalised as the bundle says -> (n,) owl probabilities."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        if len(x) == 0:
            return np.zeros(0, np.float32)
        logits = self.session.run([self.output_name], {self.input_name: x})[0].astype(np.float64)
        z = logits - logits.max(axis=-1, keepdims=True)
        p = np.exp(z)
        return (p[:, self.positive_index] / p.sum(axis=-1)).astype(np.float32)


def dilate(passed: np.ndarray, neighbours: int) -> np.ndarray:
    """Boolean mask with every passed window's `neighbours` windows on each side passed too."""
    passed = np.asarray(passed, bool)
    if neighbours <= 0 or not passed.any():
        return passed
    out = passed.copy()
    for k in range(1, neighbours + 1):
        out[k:] |= passed[:-k]
        out[:-k] |= passed[k:]
    return out
