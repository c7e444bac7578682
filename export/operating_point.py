"""The event-level operating point written into a bundle: how many positive windows in a row make a detection.

With windows overlapping by half, a call of one to two seconds lies in two windows, while many one-off false
alarms (a single boobook note, a gust) fire one window only. Whether `min_hits` 2 pays off depends on the model
and the site, so it is chosen on annotated recordings (a validation night), by event-level F1, with the bundle
exactly as it will run in the field -- never on the recordings the model is judged on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.evaluate import EventMetrics, audio_hours, event_metrics, load_detections, load_truth

CANDIDATES = (1, 2, 3)


@dataclass(frozen=True)
class OperatingPoint:
    min_hits: int
    metrics: dict[int, EventMetrics]     # event-level metrics on the annotated audio for each candidate


def choose_min_hits(bundle: str | os.PathLike, audio_dir: str | os.PathLike, truth_csv: str | os.PathLike,
                    work_dir: str | os.PathLike, tz: str | None = None, candidates: tuple[int, ...] = CANDIDATES,
                    threads: int | None = None) -> OperatingPoint:
    """Scan `audio_dir` with the bundle once (min_hits 1), then score each candidate min_hits by keeping the
    detections of at least that many windows -- the detections a scan with it would make. The best event-level F1
    wins (ties: the smaller min_hits, which keeps more of the short calls)."""
    from hootwatch.edge.detector import Detector
    from hootwatch.edge.scan import ScanSettings, scan_into

    detector = Detector.load(bundle, threads=threads)
    truth, hours = load_truth(truth_csv), audio_hours(audio_dir)
    _, paths = scan_into([audio_dir], detector, Path(work_dir), ScanSettings(tz=tz, min_hits=1))
    results = {k: event_metrics(load_detections(paths["csv"], min_windows=k), truth, hours, root=audio_dir)
               for k in candidates}
    best = max(candidates, key=lambda k: (round(results[k].f1, 6), -k))
    return OperatingPoint(best, results)
