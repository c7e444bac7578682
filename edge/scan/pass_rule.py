"""The cascade's pass rule, about calls rather than windows: the student's pass threshold (and how many neighbours
of a passed window the full model also scores) chosen on labelled validation recordings so that every owl call
the full model detects there is still detected by the cascade.

The full model's own false alarms need not be reproduced (nothing cheap can predict noise-driven alarms, and
keeping 99.5 % of the full model's positive windows meant passing 58-97 % of all windows: docs/benchmarks.md), so
only labelled calls count. Detection is monotone in the pass threshold (a lower one passes a superset of windows,
so every event only grows), so a binary search over the student's own scores finds the highest threshold that
keeps every call; it is then set GENERALISATION_LOGITS lower in log-odds (another night holds harder calls than the
one that chose it); among the neighbour counts tried, the one that passes the fewest windows wins.

The same simulation (`cascade_rows`) serves `hootwatch cascade-check` (scan.cascade_check), which needs no labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.student import GENERALISATION_LOGITS, PASS_MARGIN, dilate, with_margin
from hootwatch.edge.tables.evaluate import Detection, calls_found
from hootwatch.edge.tables.label_tables import TruthEvent, find_tables, read_table, read_truth_csv
from .offline import FileScores, detections_at

NEIGHBOURS_TRIED = (0, 1)
TRUTH_FILE = "ground_truth.csv"


def passed_mask(first: np.ndarray, pass_threshold: float, neighbours: int) -> np.ndarray:
    return dilate(np.asarray(first) >= pass_threshold, neighbours)


def cascade_rows(full: list[FileScores], first: list[np.ndarray] | None, pass_threshold: float, manifest,
                 neighbours: int = 0) -> list[Detection]:
    """The detections a scan makes: exhaustive (`first` None), or the cascade's at this pass threshold (rejected
    windows NaN), each file on its own, at the bundle's threshold and min_hits."""
    files = full if first is None else [
        replace(f, scores=np.where(passed_mask(c, pass_threshold, neighbours), f.scores, np.nan).astype(np.float32))
        for f, c in zip(full, first)]
    return detections_at(files, manifest.window_spec.window_samples, manifest.sample_rate, manifest.threshold,
                         manifest.min_hits, manifest.positive_label)


@dataclass(frozen=True)
class PassRule:
    pass_threshold: float
    neighbours: int
    windows: int
    passed: int                  # windows the full model scores (the student's, and their neighbours)
    calls: int                   # owl calls in the labels
    calls_detected: int          # of those, detected by the full model scoring every window
    calls_kept: int              # of those, still detected by the cascade (all, by construction)
    exhaustive_detections: int
    cascade_detections: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.windows if self.windows else 1.0

    def to_dict(self) -> dict:
        return {"rule": "every labelled owl call the full model detects is still detected, then "
                        f"{GENERALISATION_LOGITS:g} logits lower for calls not seen",
                "pass_threshold": self.pass_threshold, "neighbours": self.neighbours, "windows": self.windows,
                "pass_rate": round(self.pass_rate, 4), "calls": self.calls, "calls_detected": self.calls_detected,
                "calls_kept": self.calls_kept, "exhaustive_detections": self.exhaustive_detections,
                "cascade_detections": self.cascade_detections}


def event_pass_rule(full: list[FileScores], first: list[np.ndarray], truth: list[TruthEvent], manifest,
                    neighbours: int, root: str | os.PathLike | None = None, start: float = 1.0) -> PassRule | None:
    """The highest pass threshold <= `start` keeping every owl call the exhaustive scan detects (None: the full
    model detects no labelled call here, so nothing shows any threshold is safe)."""
    label = manifest.positive_label
    exhaustive = cascade_rows(full, None, 0.0, manifest)
    want = calls_found(exhaustive, truth, root, label)
    if not want:
        return None
    cheap = np.concatenate(first) if first else np.zeros(0, np.float32)
    cand = np.unique(cheap[np.isfinite(cheap) & (cheap <= start)])

    def ok(t: float) -> bool:
        return want <= calls_found(cascade_rows(full, first, t, manifest, neighbours), truth, root, label)

    t = 0.0
    if len(cand) and ok(float(cand[0])):
        lo, hi = 0, len(cand) - 1          # ok(cand[lo]) holds; find the last index where it does
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ok(float(cand[mid])):
                lo = mid
            else:
                hi = mid - 1
        t = with_margin(float(cand[lo]) * (1.0 - PASS_MARGIN))
    rows = cascade_rows(full, first, t, manifest, neighbours)
    kept = want & calls_found(rows, truth, root, label)
    passed = int(sum(passed_mask(c, t, neighbours).sum() for c in first))
    n_calls = sum(e.label == label for e in truth)
    return PassRule(t, neighbours, len(cheap), passed, n_calls, len(want), len(kept), len(exhaustive), len(rows))


def cheapest_rule(full: list[FileScores], first: list[np.ndarray], truth: list[TruthEvent], manifest,
                  root: str | os.PathLike | None = None, start: float = 1.0,
                  neighbours_tried: tuple[int, ...] = NEIGHBOURS_TRIED) -> PassRule | None:
    """`event_pass_rule` for each neighbour count; the one that passes the fewest windows (ties: fewer neighbours)."""
    rules = [r for k in neighbours_tried if (r := event_pass_rule(full, first, truth, manifest, k, root, start))]
    return min(rules, key=lambda r: (r.passed, r.neighbours)) if rules else None


def read_labels(audio_dir: str | os.PathLike) -> list[TruthEvent]:
    """The labels of a folder of recordings: its ground_truth.csv (as `hootwatch synth dump` writes), else every
    annotation table under it (Raven, Audacity, annotation CSV), with files relative to the folder. [] if none."""
    root = Path(audio_dir)
    if (root / TRUTH_FILE).is_file():
        return read_truth_csv(root / TRUTH_FILE)
    out = []
    for table in find_tables(root):
        for a in read_table(table):
            audio = Path(a.audio)
            try:
                rel = audio.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                rel = audio.as_posix()
            out.append(TruthEvent(rel, a.start_s, a.end_s, a.label))
    return out
