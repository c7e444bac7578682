"""Owl-class metrics are about the owl whatever its label index."""

from __future__ import annotations

import numpy as np
import pytest

from hootwatch.trainer.metrics import binary_metrics, choose_threshold, positive_scores


def logits_for(owl_index: int, owl_prob: np.ndarray) -> np.ndarray:
    p = np.stack([1 - owl_prob, owl_prob], axis=1) if owl_index == 1 else np.stack([owl_prob, 1 - owl_prob], axis=1)
    return np.log(np.clip(p, 1e-9, 1))


@pytest.mark.parametrize("owl_index", [0, 1])
def test_metrics_are_for_the_owl_whether_index_0_or_1(owl_index):
    is_owl = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    owl_prob = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.1, 0.1, 0.05, 0.4])
    labels = np.where(is_owl, owl_index, 1 - owl_index)
    s = positive_scores(logits_for(owl_index, owl_prob), owl_index)
    np.testing.assert_allclose(s, owl_prob, atol=1e-6)
    m = binary_metrics(labels == owl_index, s, 0.5)
    # predicted owl: 0.9, 0.8, 0.7 (owls) and 0.6 (not) -> TP 3, FP 1, FN 1, TN 5
    assert m["confusion_matrix"] == [[5, 1], [1, 3]]
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    # AP by hand: ranks 0.9 T, 0.8 T, 0.7 T, 0.6 F, 0.4 F, 0.3 T -> (1 + 1 + 1 + 4/6) / 4
    assert m["pr_auc"] == pytest.approx((3 + 4 / 6) / 4)
    assert m["n_positive"] == 4


def test_a_model_that_never_says_owl_scores_zero():
    y = np.array([1, 1, 0, 0, 0, 0])
    m = binary_metrics(y, np.zeros(6), 0.5)
    assert m["recall"] == 0 and m["f1"] == 0 and m["confusion_matrix"] == [[4, 0], [2, 0]]


def test_threshold_max_f1_sits_in_the_gap():
    y = np.array([1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.6, 0.4, 0.2, 0.1])
    t = choose_threshold(y, s)
    assert 0.4 < t <= 0.6 and t == pytest.approx(0.5)
    assert binary_metrics(y, s, t)["f1"] == 1.0


def test_threshold_for_target_recall():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.95, 0.9, 0.5, 0.2, 0.6, 0.3, 0.1, 0.05])
    t = choose_threshold(y, s, target_recall=1.0)
    assert t == pytest.approx(0.2) and binary_metrics(y, s, t)["recall"] == 1.0
    t = choose_threshold(y, s, target_recall=0.75)
    assert t == pytest.approx(0.5) and binary_metrics(y, s, t)["recall"] == 0.75
