"""bench/cascade_limits.py: the pass rate a first stage needs, and which windows hold a call."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "cascade_limits.py"


@pytest.fixture(scope="module")
def limits():
    spec = importlib.util.spec_from_file_location("bench_cascade_limits", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_needed_pass_rate_keeps_the_share_of_judge_positives_asked_for(limits):
    judge = np.array([0.9] * 10 + [0.1] * 90)
    stage = np.concatenate([np.linspace(0.5, 1.0, 10), np.linspace(0.0, 0.6, 90)])
    # keeping all ten positives needs a pass threshold of 0.5: they and the negatives scored >= 0.5 pass
    assert limits.needed_pass_rate(stage, judge, 0.7, 1.0) == pytest.approx((10 + np.sum(stage[10:] >= 0.5)) / 100)
    # losing one (90 %) lets the threshold rise to the second-lowest positive
    assert limits.needed_pass_rate(stage, judge, 0.7, 0.9) < limits.needed_pass_rate(stage, judge, 0.7, 1.0)
    assert np.isnan(limits.needed_pass_rate(stage, np.zeros(100), 0.7, 0.995))


def test_a_window_holds_a_call_when_at_least_0_3_s_of_it_is_inside(limits):
    starts = np.array([0.0, 2.5, 5.0, 7.5])
    got = limits.owl_windows(starts, 5.0, [(4.8, 6.0)])   # 0.2 s in the first window
    assert got.tolist() == [False, True, True, False]
