import numpy as np
import pytest

from hootwatch.edge.contract.events import Event, EventBuilder, merge_windows


def test_consecutive_positive_windows_merge():
    starts = np.array([0, 10, 20, 30, 40, 50])
    scores = np.array([0.1, 0.6, 0.9, 0.2, 0.7, 0.1])
    ev = merge_windows(starts, starts + 15, scores, threshold=0.5)
    assert ev == [Event(10, 35, 0.9, pytest.approx(0.75), 2), Event(40, 55, 0.7, 0.7, 1)]


def test_min_hits_drops_short_events_and_threshold_is_inclusive():
    starts = np.array([0, 10, 20, 30, 40])
    scores = np.array([0.5, 0.5, 0.1, 0.5, 0.1])
    assert [e.n_windows for e in merge_windows(starts, starts + 15, scores, 0.5, min_hits=2)] == [2]
    assert merge_windows(starts, starts + 15, scores, 0.51) == []


def test_builder_streams_and_flushes_open_event():
    b = EventBuilder(0.5)
    assert b.push(0, 5, 0.9) == [] and b.push(2, 7, 0.8) == []
    assert b.flush() == [Event(0, 7, 0.9, pytest.approx(0.85), 2)]
    assert b.flush() == []
    with pytest.raises(ValueError):
        EventBuilder(0.5, min_hits=0)
