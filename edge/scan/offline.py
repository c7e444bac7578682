"""Window scores of recordings, windowed exactly as a scan windows them, and the detections any
(threshold, min_hits) makes of them: score once, then try operating points or pick training examples cheaply.

Files are planned and linked as a scan plans them (edge/scan/planning.py: contiguous files of one recorder continue
each other's window stream) and go through the same loop (edge/contract/score_loop.py), so `detections_at` gives
exactly the rows a scan with that operating point gives.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hootwatch.edge.tables.evaluate import Detection

log = logging.getLogger(__name__)

BATCH = 64   # windows scored per call: bounds memory on long files
CONTIGUOUS_TOL_S = 1.0   # as ScanSettings.contiguous_tol_s


@dataclass(frozen=True)
class FileScores:
    file: str                # path relative to the audio folder (as the truth table names it)
    starts: np.ndarray = field(compare=False)      # window start samples at the model's rate
    scores: np.ndarray = field(compare=False)      # owl probability of each window
    n_samples: int = 0       # samples of the file at the model's rate: events end there at the latest
    next_file: str = ""      # the contiguous next file its last windows ran on into ("" when none)


def score_windows(detector, audio_dir: str | os.PathLike, tz: str | None = None) -> list[FileScores]:
    """Window scores of every audio file under `audio_dir`, windowed exactly as a scan windows them.

    `tz` (the recorder's timezone) only serves to link contiguous files; without it, local-time names are read as
    UTC, which links the same files (a fixed offset does not change which files abut).
    """
    from hootwatch.edge.core.errors import AudioReadError
    from .planning import find_audio, plan_files, printable
    from hootwatch.edge.contract.recorder_time import parse_tz
    from hootwatch.edge.contract.score_loop import score_file

    m = detector.manifest
    spec = m.window_spec
    root = Path(audio_dir)
    out = []
    # every file the truth table may name, copies included; odd entries (FIFOs, dangling links...) never opened
    entries = []
    for f in find_audio([root], unique=False):
        if f.odd:
            log.warning("%s: %s (left out)", printable(f.path), f.odd)
        else:
            entries.append(f)
    for f in plan_files(entries, parse_tz(tz or "UTC"), CONTIGUOUS_TOL_S):
        try:
            scored = score_file(detector, spec, m.threshold, m.min_hits, f.path, f.next_path, batch_size=BATCH)
        except AudioReadError as exc:
            log.warning("%s (left out)", exc)
            continue
        nxt = f.next_path.relative_to(root).as_posix() if scored.linked else ""
        out.append(FileScores(f.path.relative_to(root).as_posix(), scored.starts, scored.scores, scored.n_samples,
                              nxt))
    return out


def detections_at(files: list[FileScores], window_samples: int, sample_rate: int, threshold: float,
                  min_hits: int, label: str = "owl") -> list[Detection]:
    from hootwatch.edge.contract.events import merge_windows

    dets = []
    for f in files:
        for e in merge_windows(f.starts, f.starts + window_samples, f.scores, threshold, min_hits,
                               end_sample=f.n_samples):
            dets.append(Detection(f.file, e.start_sample / sample_rate, e.end_sample / sample_rate, label,
                                  e.max_score))
    return dets
