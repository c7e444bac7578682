"""`hootwatch fit`: a linear head on the stored embeddings of every labelled window, written as a new bundle.

    data = labelled_windows(store, EmbeddingIndex.load(store, bundle.manifest.backbone_id))
    head, info = fit_logistic(data.x, data.y)
    write_head_bundle(bundle, out, head, info | data.summary())

Which windows: every stored window whose span has a verdict by the project's one rule (labels.speaks_for: a label
covering the window, or an owl label lying inside it; the review app's verdict of that span): `owl` is 1, every
other label (`not_owl`, an imported `kookaburra`) 0; a window whose labels disagree (a conflict) or say only
`unsure` is left out. The manifest records which labels the head rests on (`LabelledWindows.summary`).

The fit: class-weighted (each class weighs half), L2-regularised logistic regression by Newton's method
(iteratively reweighted least squares) on standardised embeddings, with a strong penalty (L2, measured) and 1,000
random unlabelled windows as weak negatives (`weak_negatives`), folded back into one weight per dimension and a
bias. Hand-written numpy, because the edge ships neither scikit-learn nor scipy, and Newton on a few hundred
to a few thousand labelled windows of <= 1024 dimensions converges in about ten exact steps, in well under a
second, with the same answer every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.bundle import HEAD_FORMAT_VERSION, Bundle, Manifest, write_manifest
from hootwatch.edge.contract.head import LinearHead, sigmoid
from hootwatch.edge.core import fsio
from hootwatch.edge.core.errors import ConfigError
from hootwatch.edge.store.database import DetectionStore
from hootwatch.edge.store.labels import OWL, Label, LabelBook, _ms, speaks_for_spans, verdict_of
from .search import EmbeddingIndex


@dataclass(frozen=True)
class LabelledWindows:
    x: np.ndarray            # (n, dim) float32 embeddings
    y: np.ndarray            # (n,) 1 owl, 0 not
    rows: np.ndarray         # their rows in the index
    label_counts: dict       # label name -> windows
    used: tuple              # the current labels the windows' verdicts come from

    def summary(self) -> dict:
        """What the head rests on: window counts, and which labels (their ids, the newest one, and a hash of their
        (file_key, start_ms, end_ms, label), so a later fit on the same labels is seen to be the same)."""
        spans = sorted((x.file_key, _ms(x.start_s), _ms(x.end_s), x.label) for x in self.used)
        return {"windows": int(len(self.y)), "owl_windows": int(self.y.sum()),
                "other_windows": int(len(self.y) - self.y.sum()), "labels": dict(self.label_counts),
                "label_spans": len(self.used), "label_ids": sorted(x.id for x in self.used),
                "max_label_id": max((x.id for x in self.used), default=0),
                "labels_sha256": hashlib.sha256(json.dumps(spans).encode()).hexdigest()}


def labelled_windows(store: DetectionStore, index: EmbeddingIndex) -> LabelledWindows:
    """Every stored window with a usable verdict: the verdict the review app would give that window's span
    (labels.speaks_for / verdict_of), so a not-owl label on a near-miss window does not make its neighbours
    negatives. Windows whose labels disagree (a conflict) or say only `unsure` are left out."""
    sr, ws = index.sample_rate, index.window_samples
    speaking: dict[int, list[Label]] = {}
    for lab in LabelBook(store).current():
        rows = index.rows_of(lab.file_key)
        a = index.starts[rows] / sr
        for r in rows[speaks_for_spans(lab, a, a + ws / max(sr, 1))].tolist():
            speaking.setdefault(r, []).append(lab)
    keep, y, counts, used = [], [], {}, {}
    for r in sorted(speaking):
        v = verdict_of(speaking[r])
        if not v.reviewed:
            continue
        keep.append(r)
        y.append(int(v.label == OWL))
        counts[v.label] = counts.get(v.label, 0) + 1
        used.update((x.id, x) for x in v.labels)
    rows = np.array(keep, np.int64)
    x = index.floats(rows) if len(rows) else np.zeros((0, index.vectors.shape[1]), np.float32)
    return LabelledWindows(x, np.array(y, np.int64), rows, counts, tuple(used.values()))


# The L2 penalty on the standardised weights: strong, because a round gives ~100 labels in ~100-1000 dimensions,
# and they are no sample of the archive (search hits and boundary cases). Heavy shrinkage leaves about the direction
# between the class means, which needs few labels (as shrinkage LDA does); the scale along it is fitted afterwards
# (fit_logistic). Measured on the demo model (bench/search_round.py: a round on recorder A, then recorder B, 65
# calls in 0.5 h; before: precision 0.88, recall 0.91): l2 1 -> 0.76 / 0.72, 10 -> 0.89 / 0.75, 100 -> 0.89 / 0.85,
# 1000 -> 0.88 / 0.91. 5-fold cross-validation on the labels chose 10: their own folds do not show what
# generalises to another recorder. B is where 1000 was picked: a third recorder would confirm it.
L2 = 1000.0
USEFUL_EACH = 20       # labelled windows of each kind from which a head is usually of use (said when refusing)
WEAK_NEGATIVES = 1000   # unlabelled windows drawn at random as weak negatives
WEAK_SHARE = 0.5        # ... weighing together half as much as the labelled negatives


def weak_negatives(index: EmbeddingIndex, labelled_rows: np.ndarray, n: int = WEAK_NEGATIVES,
                   seed: int = 0) -> np.ndarray:
    """Embeddings of `n` unlabelled windows drawn uniformly from the store: nearly all of an archive is not owl, and
    the labelled negatives (search hits, the boundary) do not show its ordinary background. Taken as negatives
    with a small weight, as Perch's agile modelling does; a call among them weighs little against the labels."""
    free = np.setdiff1d(np.arange(len(index)), labelled_rows)
    pick = np.sort(np.random.default_rng(seed).choice(free, size=min(n, len(free)), replace=False))
    return index.floats(pick)


def _newton(z: np.ndarray, y: np.ndarray, cw: np.ndarray, l2: float, max_iter: int = 50,
            tol: float = 1e-6) -> tuple[np.ndarray, int]:
    """(coefficients, iterations) of the weighted L2 logistic regression on `z` (its last column the bias)."""
    reg = np.full(z.shape[1], float(l2))
    reg[-1] = 0.0   # the bias is not shrunk
    beta = np.zeros(z.shape[1])
    it = 0
    for it in range(1, max_iter + 1):
        p = sigmoid(z @ beta)
        grad = z.T @ (cw * (p - y)) + reg * beta
        hess = (z * (cw * p * (1 - p))[:, None]).T @ z + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < tol:
            break
    return beta, it


def _class_weights(y: np.ndarray) -> np.ndarray:
    n, n_pos = len(y), int(y.sum())
    return np.where(y == 1, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))


def _with_weak(z: np.ndarray, y: np.ndarray, cw: np.ndarray, weak: np.ndarray | None):
    """Labelled rows plus the weak negatives, which together weigh WEAK_SHARE of the labelled negatives."""
    if weak is None or not len(weak):
        return z, y, cw
    each = WEAK_SHARE * float(cw[y == 0].sum()) / len(weak)
    return np.vstack([z, weak]), np.r_[y, np.zeros(len(weak))], np.r_[cw, np.full(len(weak), each)]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2,
                 weak: np.ndarray | None = None) -> tuple[LinearHead, dict]:
    """(head, facts): class-weighted L2 logistic regression by Newton's method (see the module docstring); `weak`:
    embeddings of unlabelled windows taken as weak negatives (`weak_negatives`)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n_pos, n = int(y.sum()), len(y)
    if n_pos == 0 or n_pos == n:
        raise ConfigError(f"the labels give {n_pos} owl and {n - n_pos} other window(s): a head needs both",
                          "review some windows of each kind first (search for calls, then the uncertain queue)")
    # a dimension that barely varies among the labelled windows is not blown up to unit variance: its weight would
    # grow huge, and the float16 rounding of stored embeddings (or any drift) would swing the score
    mu, sd = x.mean(axis=0), np.maximum(x.std(axis=0), 0.05 * float(x.std(axis=0).max()) + 1e-9)
    z = np.hstack([(x - mu) / sd, np.ones((n, 1))])
    zw = None if weak is None or not len(weak) else np.hstack([(np.asarray(weak, np.float64) - mu) / sd,
                                                               np.ones((len(weak), 1))])
    facts: dict = {"method": "class-weighted L2 logistic regression, Newton/IRLS (numpy)",
                   "weak_negatives": 0 if zw is None else len(zw)}
    zz, yy, ww = _with_weak(z, y, _class_weights(y), zw)
    beta, it = _newton(zz, yy, ww, l2)
    # the strong penalty keeps the direction and squeezes the scores towards 0.5; the scale and offset along that
    # direction are then fitted alone (two numbers, no penalty: Platt scaling), so 0.5 is again the point where the
    # weighted classes balance
    d = zz @ beta
    (a, c), _ = _newton(np.c_[d, np.ones(len(d))], yy, ww, 0.0)
    beta = a * beta
    beta[-1] += c
    w = beta[:-1] / sd
    head = LinearHead(w, float(beta[-1] - (w * mu).sum()))
    pred = head.score(x) >= 0.5
    facts |= {"l2": float(l2), "iterations": it,
              "class_weights": {"owl": float(n / (2.0 * n_pos)), "other": float(n / (2.0 * (n - n_pos)))},
              "train_recall": float(pred[y == 1].mean()), "train_specificity": float((~pred[y == 0]).mean())}
    return head, facts


def fit_head(store: DetectionStore, source: Bundle, l2: float = L2,
             weak: int = WEAK_NEGATIVES) -> tuple[LinearHead, dict]:
    """`hootwatch fit`'s work: the head on the store's labelled windows of `source`'s backbone (and `weak` weak
    negatives), and the facts its bundle records (`trained_on`)."""
    index = EmbeddingIndex.load(store, source.manifest.backbone_id)
    data = labelled_windows(store, index)
    n_owl = int(data.y.sum())
    if n_owl == 0 or n_owl == len(data.y):
        raise ConfigError(f"{store.path}: its labels give {n_owl} owl and {len(data.y) - n_owl} not-owl window(s); "
                          f"a head needs both, and about {USEFUL_EACH} of each to be of use",
                          f"label windows first: hootwatch review {store.path.parent} (search for calls with "
                          "`hootwatch search`, then the uncertain queue), or import a table with `hootwatch labels "
                          "--import`")
    head, facts = fit_logistic(data.x, data.y, l2, weak_negatives(index, data.rows, weak) if weak else None)
    return head, data.summary() | facts | {"store": str(store.path.resolve()),
                                           "backbone_id": source.manifest.backbone_id}


def write_head_bundle(source: Bundle, out: str | os.PathLike, head: LinearHead, trained_on: dict,
                      threshold: float = 0.5, overwrite: bool = False) -> Manifest:
    """A copy of `source` (same graph, same files) whose manifest carries the head: format version 3, its own
    model id, the threshold given (0.5: the class-weighted head's balanced point). Built in a staging folder and
    renamed into place, so a failure leaves no half bundle."""
    out = Path(out)
    m = source.manifest
    if not m.embedding_output:
        raise ConfigError(f"{source.path}: this bundle outputs no embedding, so no head can sit on it",
                          "export the model again with this hootwatch")
    if out.resolve() == source.path.resolve():
        raise ConfigError(f"--out {out}: is the source bundle", "write the new bundle to another folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"--out {out}: already exists", "choose another folder, or add --overwrite")
    fsio.makedirs(out.parent)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for p in source.path.iterdir():
            if p.is_file() and p.name in m.files:
                shutil.copy2(p, stage / p.name)
        new = replace(m, head={"weights": [round(float(v), 8) for v in head.weights], "bias": float(head.bias),
                               "trained_on": trained_on},
                      threshold=float(threshold), format_version=HEAD_FORMAT_VERSION,
                      metrics=dict(m.metrics) | {"fit": {"from_bundle": str(source.path.resolve()),
                                                         "from_model_id": m.model_id}},
                      created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        manifest = write_manifest(stage, new)
        for p in stage.iterdir():
            fsio.fsync_file(p)
        fsio.fsync_dir(stage)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        stage.rename(out)
        fsio.fsync_dir(out.parent)
        return manifest
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
