"""Window scores of recordings, windowed exactly as a scan windows each file, and the detections any
(threshold, min_hits) makes of them: score once, then try operating points or pick training examples cheaply."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .evaluate import Detection

log = logging.getLogger(__name__)

BATCH = 64   # windows scored per call: bounds memory on long files


@dataclass(frozen=True)
class FileScores:
    file: str                # path relative to the audio folder (as the truth table names it)
    starts: np.ndarray       # window start samples at the model's rate
    scores: np.ndarray       # owl probability of each window


def score_windows(detector, audio_dir: str | os.PathLike) -> list[FileScores]:
    """Window scores of every audio file under `audio_dir`, windowed exactly as a scan windows one file."""
    from . import audio
    from .errors import AudioReadError
    from .windows import WindowStream

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
            log.warning("%s (left out)", exc)
            continue
        out.append(FileScores(path.relative_to(root).as_posix(), np.asarray(starts, np.int64),
                              np.concatenate(scores) if scores else np.zeros(0, np.float32)))
    return out


def detections_at(files: list[FileScores], window_samples: int, sample_rate: int, threshold: float,
                  min_hits: int, label: str = "owl") -> list[Detection]:
    from .events import merge_windows

    dets = []
    for f in files:
        for e in merge_windows(f.starts, f.starts + window_samples, f.scores, threshold, min_hits):
            dets.append(Detection(f.file, e.start_sample / sample_rate, e.end_sample / sample_rate, label,
                                  e.max_score))
    return dets
