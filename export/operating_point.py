"""The event-level operating point written into a bundle: the score threshold, and how many positive windows in a
row make a detection (min_hits).

The trainer chooses its threshold on validation clips, where owls are a third of the examples. A night is mostly
not owl, and with windows overlapping by half a call lies in two windows while many one-off false alarms fire
one. So both are chosen again on annotated recordings like those the model will scan (a validation night), by
event-level F1, with the bundle exactly as it will run in the field -- never on the recordings it is judged on.
The audio is scored once; every (threshold, min_hits) pair is then the same merge of window scores the scanner
makes (hootwatch.edge.events).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.evaluate import Detection, EventMetrics, event_metrics, load_truth

log = logging.getLogger(__name__)

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
MIN_HITS = (1, 2, 3)
BATCH = 64   # windows scored per call: bounds memory on long files


@dataclass(frozen=True)
class FileScores:
    file: str                # path relative to the audio folder (as the truth table names it)
    starts: np.ndarray       # window start samples at the model's rate
    scores: np.ndarray       # owl probability of each window


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    min_hits: int
    metrics: EventMetrics                           # at the chosen point
    grid: dict[tuple[float, int], EventMetrics]     # every pair tried

    def to_dict(self, chosen_on: str) -> dict:
        m = self.metrics
        return {"threshold": self.threshold, "min_hits": self.min_hits, "chosen_on": chosen_on,
                "rule": "best event-level F1 (ties: fewer windows, then the middle of the tied thresholds)",
                "precision": round(m.precision, 4), "recall": round(m.recall, 4), "f1": round(m.f1, 4),
                "fp_per_hour": round(m.fp_per_hour, 2), "owl_calls": m.n_true}


def score_windows(detector, audio_dir: str | os.PathLike) -> list[FileScores]:
    """Window scores of every audio file under `audio_dir`, windowed exactly as a scan windows one file."""
    from hootwatch.edge import audio
    from hootwatch.edge.errors import AudioReadError
    from hootwatch.edge.windows import WindowStream

    spec = detector.manifest.window_spec
    root = Path(audio_dir)
    out = []
    for path in sorted(p for p in root.rglob("*") if audio.is_audio_file(p)):
        stream, starts, scores, pending = WindowStream(spec), [], [], []

        def flush(final: bool = False) -> None:
            while pending and (final or len(pending) >= BATCH):
                batch, pending[:] = pending[:BATCH], pending[BATCH:]
                starts.extend(s for s, _ in batch)
                scores.append(detector.score(np.stack([w for _, w in batch])))

        try:
            for block in audio.iter_blocks(path, spec.sample_rate):
                pending.extend(stream.push(block))
                flush()
            pending.extend(stream.finish())
            flush(final=True)
        except AudioReadError as exc:
            log.warning("%s (left out of the operating point)", exc)
            continue
        out.append(FileScores(path.relative_to(root).as_posix(), np.asarray(starts, np.int64),
                              np.concatenate(scores) if scores else np.zeros(0, np.float32)))
    return out


def detections_at(files: list[FileScores], window_samples: int, sample_rate: int, threshold: float,
                  min_hits: int, label: str = "owl") -> list[Detection]:
    from hootwatch.edge.events import merge_windows

    dets = []
    for f in files:
        for e in merge_windows(f.starts, f.starts + window_samples, f.scores, threshold, min_hits):
            dets.append(Detection(f.file, e.start_sample / sample_rate, e.end_sample / sample_rate, label,
                                  e.max_score))
    return dets


def choose_operating_point(bundle: str | os.PathLike, audio_dir: str | os.PathLike, truth_csv: str | os.PathLike,
                           thresholds: tuple[float, ...] = THRESHOLDS, min_hits: tuple[int, ...] = MIN_HITS,
                           threads: int | None = None) -> OperatingPoint:
    """Best event-level F1 over thresholds x min_hits on annotated audio (truth: file,start_s,end_s,label)."""
    from hootwatch.edge.detector import Detector

    detector = Detector.load(bundle, threads=threads)
    m = detector.manifest
    files = score_windows(detector, audio_dir)
    truth = load_truth(truth_csv)
    hours = sum(_file_seconds(Path(audio_dir) / f.file) for f in files) / 3600.0
    thresholds = tuple(sorted(set(thresholds) | {round(m.threshold, 6)}))
    grid = {(t, k): event_metrics(detections_at(files, m.window_spec.window_samples, m.sample_rate, t, k,
                                                m.positive_label), truth, hours, positive_label=m.positive_label)
            for t in thresholds for k in min_hits}
    best_f1 = max(round(r.f1, 6) for r in grid.values())
    k = min(k for (t, k), r in grid.items() if round(r.f1, 6) == best_f1)
    tied = sorted(t for (t, kk), r in grid.items() if kk == k and round(r.f1, 6) == best_f1)
    t = tied[len(tied) // 2]   # the middle of a plateau is the choice least likely to sit on a cliff edge
    return OperatingPoint(t, k, grid[(t, k)], grid)


def _file_seconds(path: Path) -> float:
    from hootwatch.edge import audio
    return audio.probe(path).duration_s
