"""Metrics for the positive (owl) class, computed one-vs-rest from the softmax probability of that class.

Whatever index "owl" has among the labels, `y_true` is 1 for owl and 0 for everything else, and the score is the
owl probability, so precision, recall, F1, PR-AUC (average precision) and the confusion matrix are always about
the owl. Confusion matrix layout (sklearn): rows = true [not owl, owl], columns = predicted [not owl, owl].
"""

from __future__ import annotations

import numpy as np

from hootwatch.edge.contract.detector import softmax


def positive_scores(logits: np.ndarray, positive_index: int) -> np.ndarray:
    return softmax(np.asarray(logits, np.float64))[:, positive_index]


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """precision, recall, f1, pr_auc, confusion_matrix, balanced_accuracy for y_true in {0,1} (1 = owl)."""
    from sklearn.metrics import (average_precision_score, balanced_accuracy_score, confusion_matrix,
                                 precision_recall_fscore_support)

    y_true = np.asarray(y_true).astype(int)
    scores = np.asarray(scores, np.float64)
    y_pred = (scores >= threshold).astype(int)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", pos_label=1, zero_division=0)
    has_both = 0 < y_true.sum() < len(y_true)
    return {
        "precision": float(p), "recall": float(r), "f1": float(f),
        "pr_auc": float(average_precision_score(y_true, scores)) if y_true.sum() else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if has_both else float("nan"),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist(),
        "threshold": float(threshold), "n": int(len(y_true)), "n_positive": int(y_true.sum()),
    }


def best_f1(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The highest F1 over all thresholds (what choosing the threshold on these scores can reach)."""
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true).astype(int)
    if y_true.sum() == 0:
        return 0.0
    precision, recall, _ = precision_recall_curve(y_true, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    return float(f1.max())


def choose_threshold(y_true: np.ndarray, scores: np.ndarray, target_recall: float | None = None) -> float:
    """The threshold with the best F1 on these scores, or the highest one that still reaches `target_recall`."""
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true).astype(int)
    if y_true.sum() == 0:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    if target_recall is not None:
        ok = np.flatnonzero(recall >= target_recall)
        return float(thresholds[ok[-1]]) if len(ok) else float(thresholds[0])
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    best = float(thresholds[int(np.argmax(f1))])
    # same decisions on these scores, but the boundary sits midway into the gap below the lowest accepted score
    below = np.asarray(scores)[np.asarray(scores) < best]
    return float((best + below.max()) / 2) if len(below) else best


def pr_curve_png(path, curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float, positive_label: str) -> None:
    """Save precision-recall curves ({name: (y_true, scores)}) with the operating point of `threshold`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, (y, s) in curves.items():
        if np.sum(y) == 0:
            continue
        p, r, _ = precision_recall_curve(y, s)
        ax.plot(r, p, label=f"{name} (AP {average_precision_score(y, s):.3f})")
        m = binary_metrics(y, s, threshold)
        ax.plot([m["recall"]], [m["precision"]], "o", color=ax.lines[-1].get_color())
    ax.set_xlabel(f"recall ({positive_label})")
    ax.set_ylabel(f"precision ({positive_label})")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"precision-recall, threshold {threshold:.3f} (dots)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
