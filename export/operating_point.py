"""The event-level operating point written into a bundle: the score threshold, and how many positive windows in a
row make a detection (min_hits).

The trainer chooses its threshold on validation clips, where owls are a third of the examples. A night is mostly
not owl, and with windows overlapping by half a call lies in two windows while many one-off false alarms fire
one. So both are chosen again on annotated recordings like those the model will scan (a validation night), by
event-level F1, with the bundle exactly as it will run in the field -- never on the recordings it is judged on.
The audio is scored once; every (threshold, min_hits) pair is then the same merge of window scores the scanner
makes (hootwatch.edge.contract.events).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.contract.operating_point import OperatingPoint, Wording
from hootwatch.edge.scan.offline import detections_at, score_windows
from hootwatch.edge.tables.evaluate import EventMetrics, event_metrics
from hootwatch.edge.tables.label_tables import read_truth_csv

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
MIN_HITS = (1, 2, 3)
# F1 differences smaller than this are noise on a night of ~150 calls (one call is ~0.007 of recall): the highest
# F1 alone tends to sit at the edge of a cliff (measured: threshold 0.98 on a validation night, recall on the test
# night 0.85 there against 0.87-0.91 at thresholds 0.3-0.7)
F1_TOLERANCE = 0.01
# a chosen pair out of range can only be one of choose_operating_point's `thresholds` or `min_hits`
_CANDIDATES = Wording("threshold", "min_hits", fix_threshold="try thresholds between 0 and 1",
                      fix_min_hits="try min_hits of at least 1")


@dataclass(frozen=True)
class ChosenPoint:
    point: OperatingPoint                           # the threshold and min_hits chosen (both set)
    metrics: EventMetrics                           # at the chosen point
    grid: dict[tuple[float, int], EventMetrics]     # every pair tried

    def to_dict(self, chosen_on: str) -> dict:
        m = self.metrics
        return {"threshold": self.point.threshold, "min_hits": self.point.min_hits, "chosen_on": chosen_on,
                "rule": f"event-level F1 within {F1_TOLERANCE} of the best: the min_hits with the most such "
                        "thresholds (ties: fewer), then the middle one of them",
                "precision": round(m.precision, 4), "recall": round(m.recall, 4), "f1": round(m.f1, 4),
                "fp_per_hour": round(m.fp_per_hour, 2), "owl_calls": m.n_true}


def choose_operating_point(bundle: str | os.PathLike, audio_dir: str | os.PathLike, truth_csv: str | os.PathLike,
                           thresholds: tuple[float, ...] = THRESHOLDS, min_hits: tuple[int, ...] = MIN_HITS,
                           threads: int | None = None) -> ChosenPoint:
    """The most robust good pair of thresholds x min_hits on annotated audio (truth: file,start_s,end_s,label):
    of the pairs whose event-level F1 is within F1_TOLERANCE of the best, the min_hits with the widest plateau of
    thresholds (ties: the smaller min_hits), and the middle threshold of that plateau."""
    from hootwatch.edge.contract.detector import Detector

    detector = Detector.load(bundle, threads=threads)
    m = detector.manifest
    files = score_windows(detector, audio_dir)
    truth = read_truth_csv(truth_csv)
    hours = sum(_file_seconds(Path(audio_dir) / f.file) for f in files) / 3600.0
    thresholds = tuple(sorted(set(thresholds) | {round(m.threshold, 6)}))
    grid = {(t, k): event_metrics(detections_at(files, m.window_spec.window_samples, m.sample_rate, t, k,
                                                m.positive_label), truth, hours, positive_label=m.positive_label)
            for t in thresholds for k in min_hits}
    t, k = pick({key: r.f1 for key, r in grid.items()})
    return ChosenPoint(OperatingPoint(t, k, wording=_CANDIDATES, complete=True), grid[(t, k)], grid)


def pick(f1: dict[tuple[float, int], float], tolerance: float = F1_TOLERANCE) -> tuple[float, int]:
    """(threshold, min_hits) from F1 by pair: the pairs within `tolerance` of the best F1 form a plateau per
    min_hits; the widest plateau wins (ties: the smaller min_hits), and its middle threshold."""
    best = max(f1.values())
    plateau: dict[int, list[float]] = {}
    for (t, k), v in f1.items():
        if v >= best - tolerance - 1e-9:
            plateau.setdefault(k, []).append(t)
    k = max(plateau, key=lambda k: (len(plateau[k]), -k))
    ts = sorted(plateau[k])
    return ts[len(ts) // 2], k


def _file_seconds(path: Path) -> float:
    from hootwatch.edge.contract import audio
    return audio.probe(path).duration_s
