"""Building the cascade's first stage (edge.contract.first_stage) from a trained model, with no work from the user.

Distillation: the fine-tuned model scores the training clips (centred windows, no augmentation); a small MLP
(scikit-learn) learns from the edge's spectral features of the same raw windows which of them the model calls
an owl (score >= `target_level`). Its pass threshold is then chosen on the validation clips to keep at least
KEEP (99.5 %) of the windows the model calls positive. `hootwatch train` does this at the end of every run and
writes RUN/first_stage/ (weights, the validation figures and the scores the check at export compares with);
`hootwatch export` checks it again against the int8 model and the bundle's threshold (hootwatch.export.first_stage).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.first_stage import FILE_NAME, FirstStage, choose_pass_threshold, features

log = logging.getLogger(__name__)

DIR_NAME = "first_stage"
VALIDATION_FILE = "validation.npz"
REPORT_FILE = "report.json"
HIDDEN = (32,)
MIN_POSITIVES = 5           # fewer model-positive training windows: no first stage (the bundle scans exhaustively)
FEATURE_BATCH = 64


def features_and_scores(clips, sample_rate: int, window_s: float, score_fn) -> tuple[np.ndarray, np.ndarray]:
    """First-stage features and full-model scores of each clip's centred window (the cut evaluation makes),
    FEATURE_BATCH clips at a time so that a large training set never sits in memory as raw audio.
    `score_fn(raw windows) -> owl probabilities` applies the model exactly as the edge does."""
    feats, scores = [], []
    for i in range(0, len(clips), FEATURE_BATCH):
        raw = np.stack([c.cut(sample_rate, window_s) for c in clips[i:i + FEATURE_BATCH]]).astype(np.float32)
        feats.append(features(raw, sample_rate))
        scores.append(np.asarray(score_fn(raw), np.float32))
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
    return np.concatenate(feats), np.concatenate(scores)


def fit(feats: np.ndarray, full_scores: np.ndarray, target_level: float, sample_rate: int,
        seed: int = 0) -> FirstStage:
    """An MLP on standardised features predicting `full_scores >= target_level` (ValueError: too few positives)."""
    from sklearn.neural_network import MLPClassifier

    y = np.asarray(full_scores) >= target_level
    if y.sum() < MIN_POSITIVES or (~y).sum() < MIN_POSITIVES:
        raise ValueError(f"the model calls {int(y.sum())} of {len(y)} training windows an owl (score >= "
                         f"{target_level:g}); a first stage needs at least {MIN_POSITIVES} of each kind")
    mean = feats.mean(axis=0).astype(np.float64)
    scale = feats.std(axis=0).astype(np.float64) + 1e-6
    z = (feats - mean) / scale
    # positives repeated to balance the classes: MLPClassifier has no class weights, and a first stage that
    # learns "mostly not owl" would need a low pass threshold (many windows passed) to keep the rare positives
    reps = max(1, int(round((~y).sum() / y.sum())))
    idx = np.concatenate([np.flatnonzero(~y)] + [np.flatnonzero(y)] * reps)
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, alpha=1e-3, max_iter=400, random_state=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the pass threshold is validated, not the loss
        clf.fit(z[idx], y[idx])
    stage = FirstStage(sample_rate, mean, scale, tuple(np.asarray(w, np.float64) for w in clf.coefs_),
                       tuple(np.asarray(b, np.float64) for b in clf.intercepts_))
    # the edge's forward pass must be sklearn's (the weights travel as float32)
    ref = clf.predict_proba(z)[:, list(clf.classes_).index(True)]
    diff = float(np.abs(stage.score_features(feats) - ref).max())
    if diff > 1e-3:
        raise RuntimeError(f"first stage: the edge's forward pass differs from scikit-learn's by {diff:.2g}")
    return stage


def build(run_dir: Path, train_feats: np.ndarray, train_scores: np.ndarray, val_feats: np.ndarray,
          val_scores: np.ndarray, threshold: float, sample_rate: int, seed: int = 0) -> dict | None:
    """Fit, choose the pass threshold on validation, write RUN/first_stage/; returns the report (None: no stage).

    The distillation target is the model's decision at min(threshold, 0.5), so that an operating point chosen
    later below the run's threshold is still covered by what the first stage learnt."""
    target = min(float(threshold), 0.5)
    try:
        stage = fit(train_feats, train_scores, target, sample_rate, seed)
    except ValueError as exc:
        log.warning("no first stage for this run (%s): its bundle will score every window", exc)
        return None
    val_stage = stage.score_features(val_feats) if len(val_feats) else np.zeros(0, np.float32)
    chosen = choose_pass_threshold(val_stage, val_scores, threshold)
    out = Path(run_dir) / DIR_NAME
    out.mkdir(parents=True, exist_ok=True)
    stage.save(out / FILE_NAME)
    np.savez(out / VALIDATION_FILE, first_stage=val_stage, full=np.asarray(val_scores, np.float32))
    report = {"target_level": target, "hidden": list(HIDDEN), "train_windows": len(train_feats),
              "train_positives": int((np.asarray(train_scores) >= target).sum()),
              "validation": chosen.to_dict()}
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report
