"""Precision by score from the labels, a fitted score -> P(true owl call), and the threshold that reaches a
target precision (`hootwatch calibrate`, and the review app's calibration panel).

The reviewed detections of a run are its detections whose verdict (the labels covering them, see
edge/store/labels.py) is owl = 1 or not owl / any other sound = 0; unsure, conflicting and unreviewed ones are
left out. The fit is Platt-style logistic regression on the logit of the score,
p = sigmoid(a * logit(score) + b), fitted by Newton's method: two parameters, monotone, and exactly the identity
when the scores are already calibrated; written here because scikit-learn is not an edge dependency. The
threshold is the lowest score at which the detections scoring at least that much reach the target precision
under the fitted curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hootwatch.edge.core.errors import HootwatchError
from hootwatch.edge.store.labels import OWL, LabelBook
from hootwatch.edge.store.database import DetectionStore

MIN_LABELS = 30        # fewer reviewed detections than this: no threshold is written
MIN_PER_CLASS = 5


class CalibrationError(HootwatchError):
    """Too few or one-sided labels to calibrate on."""


@dataclass(frozen=True)
class Calibration:
    a: float
    b: float
    n_labels: int
    n_owl: int
    threshold: float | None          # None when the target cannot be reached
    target_precision: float
    expected_precision: float        # fitted precision of the detections at or above the threshold
    kept: int                        # reviewed detections at or above the threshold

    def probability(self, score) -> np.ndarray:
        return _sigmoid(self.a * _logit(np.asarray(score, np.float64)) + self.b)


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 1e-6, 1 - 1e-6)
    return np.log(s / (1 - s))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # 1 / (1 + e^-z) without overflowing at large |z|


def score_text(score: float, logit: bool = True, digits: int = 4) -> str:
    """A score a person can tell apart from its neighbours: near 1 as 1 - (1 - score) ("1 - 2.3e-4"), near 0 in
    exponent form, else `digits` decimals; with its logit, which keeps spreading where the score saturates."""
    def sci(v: float) -> str:
        m, e = f"{v:.{max(1, digits - 3)}e}".split("e")
        return f"{m}e{int(e)}"
    s = float(score)
    text = ("1" if s >= 1 else f"1 - {sci(1 - s)}" if s > 0.999 else sci(s) if 0 < s < 0.001 else f"{s:.{digits}f}")
    if logit and 0 < s < 1:
        text += f" (logit {np.log(s / (1 - s)):.2f})"
    return text


def _edge_texts(edges: np.ndarray) -> list[str]:
    """The bin edges in as few digits as tell them apart (crowded scores need more)."""
    for digits in range(4, 12):
        texts = [score_text(e, logit=False, digits=digits) for e in edges]
        if len(set(texts)) == len(texts):
            break
    return texts


def reviewed_detections(store: DetectionStore, run_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(max score, 1 owl / 0 not) of the run's detections that carry a verdict (labels covering them)."""
    verdicts = LabelBook(store).verdicts()
    scores, truth = [], []
    for d in store.detections(run_key):
        verdict = verdicts.of(d["file_key"], d["start_s"], d["end_s"])
        if not verdict.reviewed:
            continue
        scores.append(d["max_score"])
        truth.append(1.0 if verdict.label == OWL else 0.0)
    return np.asarray(scores, np.float64), np.asarray(truth, np.float64)


def score_bins(scores: np.ndarray, truth: np.ndarray, bins: int = 10) -> list[dict]:
    """Precision of the reviewed detections per score bin. The bins are quantiles of the scores (about the same
    number of detections in each), so they follow where the scores are: a confident model's detections all score
    above 0.99, and equal-width bins would hold them in one. Tied scores stay in one bin; edges are exact (no
    rounding: 0.99991 and 0.99998 differ)."""
    scores, truth = np.asarray(scores, np.float64), np.asarray(truth, np.float64)
    if scores.size == 0:
        return []
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)))
    if edges.size == 1:
        edges = np.repeat(edges, 2)
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, edges.size - 2)  # last bin holds the top
    texts = _edge_texts(edges)
    out = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        m = which == k
        if m.any():
            out.append({"lo": float(lo), "hi": float(hi), "range": f"{texts[k]} to {texts[k + 1]}",
                        "n": int(m.sum()), "owl": int(truth[m].sum()),
                        "precision": round(float(truth[m].mean()), 4)})
    return out


def too_few(n: int, n_owl: int, min_labels: int = MIN_LABELS) -> str:
    """Why n reviewed detections (n_owl of them owl) are too few to calibrate on; '' when they are enough."""
    if n >= min_labels and min(n_owl, n - n_owl) >= MIN_PER_CLASS:
        return ""
    few = (f"only {n} reviewed detection(s)" if n < min_labels else
           f"only {min(n_owl, n - n_owl)} reviewed detection(s) are {'owl' if n_owl < n - n_owl else 'not owl'}")
    return (f"{few} ({n_owl} owl, {n - n_owl} not owl of {n}): too few to calibrate on "
            f"(at least {min_labels}, with {MIN_PER_CLASS} of each)")


def precision_panel(scores: np.ndarray, truth: np.ndarray, bins: int = 10) -> dict:
    """The review page's precision-by-score panel: the bins, and `too_few` (calibrate's own refusal, '' if none)."""
    return {"labelled": int(len(scores)), "min_labels": MIN_LABELS, "too_few": too_few(len(scores), int(truth.sum())),
            "bins": score_bins(scores, truth, bins)}


def fit(scores: np.ndarray, truth: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a logit(s) + b) by Newton-Raphson, with a tiny ridge so separable data stays finite."""
    x = _logit(scores)
    X = np.stack([x, np.ones_like(x)], axis=1)
    w = np.array([1.0, 0.0])
    for _ in range(iters):
        p = _sigmoid(X @ w)
        grad = X.T @ (p - truth) + 1e-3 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-3 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


def calibrate(scores: np.ndarray, truth: np.ndarray, target_precision: float,
              min_labels: int = MIN_LABELS) -> Calibration:
    n, n_owl = len(scores), int(truth.sum())
    if reason := too_few(n, n_owl, min_labels):
        raise CalibrationError(
            reason,
            "review more detections with `hootwatch review OUTDIR` (lower-scoring ones too: scan with a lower "
            "--threshold, or rebuild with `hootwatch detections`), or import labels, then run calibrate again")
    if not 0 < target_precision < 1:
        raise CalibrationError(f"--target-precision {target_precision} must be between 0 and 1",
                               "pass e.g. --target-precision 0.9")
    a, b = fit(scores, truth)
    p = _sigmoid(a * _logit(scores) + b)
    order = np.argsort(-scores)
    cum = np.cumsum(p[order]) / np.arange(1, n + 1)   # fitted precision of the top k
    ok = np.nonzero(cum >= target_precision)[0]
    if len(ok) == 0:
        return Calibration(a, b, n, n_owl, None, target_precision, float(cum[0]), 0)
    k = int(ok.max())
    return Calibration(a, b, n, n_owl, float(scores[order][k]), target_precision, float(cum[k]), k + 1)
