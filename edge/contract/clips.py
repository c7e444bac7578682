"""A labelled stretch of a recording from which one analysis window is cut: the record passed from data loading
to training and to export's parity check, so both cut clips the same way.

`region` is where the window may lie: the whole file for a clip from a folder per label, or the span around an
annotated call such that any window inside it contains the call. Training draws a random position inside the
region (augmentation); evaluation takes the centre, deterministically.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import audio
from .windows import fit_length


@dataclass(frozen=True)
class ClipRef:
    source: str          # audio file path (absolute, or relative to the CSV that lists it)
    region_start_s: float
    region_end_s: float
    label: str
    recording: str       # split group: recording id, or site/recorder when known

    def window_start(self, window_s: float, rng: np.random.Generator | None = None) -> float:
        """Start of the window: random within the region with `rng`, else centred; never before 0."""
        slack = (self.region_end_s - self.region_start_s) - window_s
        if slack <= 0:
            return max(0.0, self.region_start_s + slack / 2)
        offset = rng.uniform(0.0, slack) if rng is not None else slack / 2
        return self.region_start_s + offset

    def cut(self, sample_rate: int, window_s: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Exactly one window of mono float32 audio at `sample_rate` (reflection-padded only if the file is shorter)."""
        start = self.window_start(window_s, rng)
        x = audio.load(self.source, sample_rate, start_s=start, duration_s=window_s)
        return fit_length(x, int(round(window_s * sample_rate)))


def write_clip_csv(path: str | os.PathLike, clips: list[ClipRef]) -> None:
    names = [f.name for f in fields(ClipRef)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for c in clips:
            w.writerow(asdict(c))


def read_clip_csv(path: str | os.PathLike) -> list[ClipRef]:
    base = Path(path).parent
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            src = Path(row["source"])
            out.append(ClipRef(str(src if src.is_absolute() else base / src), float(row["region_start_s"]),
                               float(row["region_end_s"]), row["label"], row["recording"]))
    return out
