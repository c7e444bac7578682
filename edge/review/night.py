"""A night at a glance: per recorder and night, a long-duration false-colour spectrogram (one column per minute,
from the acoustic indices the scan kept, edge/scan/indices.py) and the night's detections and labels as marks.

    nights(store, run_key)                                   # [{recorder, night, files, audio_s, ...}, ...]
    ov = overview(store, run_key, "A", "2024-01-01")         # Overview: marks, axes facts, image (or why none)
    png_bytes(ov.image)                                      # the picture (scan/material.py's PNG writer)

Recorder and night as the review queues name them (the recorder id, or the recording's folder; the night is the
local date of the evening, queues.night_of), by the start of each recording in the zone it was scanned with. The
picture spans the night's recordings, from the hour before the first starts to the hour after the last ends: column
c is the minute starting `start_local` + c real minutes (`clock[c]` its clock time: arithmetic is in UTC, so a
daylight-saving change shifts the clock, not the columns); row 0 is the top frequency shown (`max_hz`), each row
`bin_hz` high. Minutes with no recording (or of a recording scanned before indices were kept) are hatched grey.
Marks: each detection (x = its start in minutes from `start_local`) with its current label, and each label of a
span that is no detection (an owl found in the near-miss or random queue). Pure reads of the store.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.recorder_time import parse_tz
from hootwatch.edge.scan.indices import false_colour
from hootwatch.edge.store.database import DetectionStore, LedgerRow, iso
from hootwatch.edge.store.indices import file_zones, indexed_files, read_indices
from hootwatch.edge.store.labels import LabelBook, Verdicts
from .calibrate import score_text
from .queues import night_of

NO_INDICES = "no acoustic indices for this night: it was scanned before they were kept; scan again to see the overview"
HATCH = (np.array([72, 72, 72], np.uint8), np.array([104, 104, 104], np.uint8))


@dataclass(frozen=True)
class NightFile:
    row: LedgerRow
    recorder: str
    night: str
    start: datetime       # aware, UTC: all arithmetic is in UTC (a local clock repeats or skips an hour at DST)
    zone: str
    tz: tzinfo            # the recorder's zone, for display

    @property
    def local(self) -> datetime:
        return self.start.astimezone(self.tz)


@dataclass(frozen=True)
class Mark:
    minute: float         # x: minutes from the overview's start
    kind: str             # detection | label
    label: str            # its current label ('' = not reviewed)
    file_key: str
    file: str
    start_s: float
    end_s: float
    begin_local: str
    score: float | None = None

    def to_dict(self) -> dict:
        """With the score as the review page shows it (calibrate.score_text); '' for a label's mark."""
        return asdict(self) | {"score_text": "" if self.score is None else score_text(self.score)}


@dataclass(frozen=True)
class Overview:
    recorder: str
    night: str
    zone: str
    start_local: str      # ISO: the left edge of column 0
    minutes: int
    clock: list[str]      # the clock time (HH:MM, recorder's zone) at the left edge of each column, and at the end
    files: int
    files_with_indices: int
    marks: list[Mark]
    bin_hz: float = 0.0
    max_hz: float = 0.0
    image: np.ndarray | None = field(default=None, repr=False)  # (rows, minutes, 3) uint8; None without indices

    @property
    def message(self) -> str:
        if self.files_with_indices == 0:
            return NO_INDICES
        if self.files_with_indices < self.files:
            return (f"{self.files - self.files_with_indices} of {self.files} recordings of this night were scanned "
                    "before indices were kept (hatched): scan again to see them")
        return ""

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("image", "marks")}
        return d | {"message": self.message, "rows": 0 if self.image is None else int(self.image.shape[0]),
                    "marks": [m.to_dict() for m in self.marks]}


def _recorder(row: LedgerRow) -> str:
    return row.recorder_id or Path(row.path).parent.name


def night_files(store: DetectionStore, run_key: str) -> dict[tuple[str, str], list[NightFile]]:
    """(recorder, night) -> its recordings scanned in the run, in time order."""
    zones = file_zones(store.conn, run_key)
    out: dict[tuple[str, str], list[NightFile]] = {}
    for row in store.ledger_rows(run_key, status="done"):
        if not row.start_utc:
            continue
        zone = zones.get(row.file_key) or "UTC"
        start = datetime.fromisoformat(row.start_utc).astimezone(timezone.utc)
        tz = parse_tz(zone) or timezone.utc
        f = NightFile(row, _recorder(row), night_of(start.astimezone(tz)), start, zone, tz)
        out.setdefault((f.recorder, f.night), []).append(f)
    for files in out.values():
        files.sort(key=lambda f: f.start)
    return out


def nights(store: DetectionStore, run_key: str) -> list[dict]:
    """Each recorder's nights: files, audio seconds, detections and whether indices were kept for them."""
    groups = night_files(store, run_key)
    have = indexed_files(store.conn)
    return [{"recorder": rec, "night": night, "files": len(files), "audio_s": sum(f.row.audio_s for f in files),
             "detections": sum(f.row.n_detections for f in files),
             "indices": sum(f.row.file_key in have for f in files)}
            for (rec, night), files in sorted(groups.items())]


def overview(store: DetectionStore, run_key: str, recorder: str, night: str,
             max_hz: float | None = None) -> Overview | None:
    """The night's overview; None when the run has no recording of that recorder and night."""
    files = night_files(store, run_key).get((recorder, night))
    if not files:
        return None
    tz = files[0].tz
    t0 = files[0].local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc)  # UTC from here on
    end = max(f.start + timedelta(seconds=f.row.audio_s) for f in files)
    minutes = max(60, math.ceil((end - t0).total_seconds() / 3600) * 60)
    marks = _marks(store, run_key, files, t0)
    found = read_indices(store.conn, [f.row.file_key for f in files], run_key)
    first = next((found[f.row.file_key] for f in files if f.row.file_key in found), None)
    clock = [(t0 + timedelta(minutes=c)).astimezone(tz).strftime("%H:%M") for c in range(minutes + 1)]
    base = Overview(recorder, night, files[0].zone, iso(t0.astimezone(tz)), minutes, clock, len(files), 0, marks)
    if first is None:
        return base
    top = first.n_bins * first.bin_hz
    shown = top if not max_hz else min(float(max_hz), top)
    rows = max(1, min(first.n_bins, math.ceil(shown / first.bin_hz)))
    cols = np.arange(minutes)
    image = np.where(((np.arange(rows)[:, None] + cols[None, :]) // 3 % 2 == 0)[..., None], *HATCH)
    used = 0
    for f in files:
        ind = found.get(f.row.file_key)
        if ind is None or (ind.n_bins, ind.bin_hz, ind.names) != (first.n_bins, first.bin_hz, first.names):
            continue
        used += 1
        at = round((f.start - t0).total_seconds() / 60)
        rgb = false_colour(ind.values)[-rows:]          # (rows, its minutes, 3), top frequency first
        c = np.arange(ind.n_minutes) + at
        keep = (c >= 0) & (c < minutes)
        image[:, c[keep]] = rgb[:, keep]
    return Overview(recorder, night, files[0].zone, base.start_local, minutes, clock, len(files), used, marks,
                    first.bin_hz, rows * first.bin_hz, image.astype(np.uint8))


def _marks(store: DetectionStore, run_key: str, files: list[NightFile], t0: datetime) -> list[Mark]:
    by_key = {f.row.file_key: f for f in files}
    book = LabelBook(store)
    current = book.current()
    verdicts = Verdicts(current)
    marks: list[Mark] = []
    spans: dict[str, list[tuple[float, float]]] = {}
    for d in store.detections(run_key):
        f = by_key.get(d["file_key"])
        if f is None:
            continue
        spans.setdefault(d["file_key"], []).append((d["start_s"], d["end_s"]))
        label = verdicts.of(d["file_key"], d["start_s"], d["end_s"]).label
        marks.append(_mark(f, t0, "detection", label, d["file_key"], d["file"], d["start_s"], d["end_s"],
                           d["max_score"]))
    for x in current:
        f = by_key.get(x.file_key)
        if f is None or any(a < x.end_s and x.start_s < b for a, b in spans.get(x.file_key, ())):
            continue
        marks.append(_mark(f, t0, "label", x.label, x.file_key, x.file, x.start_s, x.end_s, None))
    return sorted(marks, key=lambda m: m.minute)


def _mark(f: NightFile, t0: datetime, kind: str, label: str, key: str, file: str, a: float, b: float,
          score: float | None) -> Mark:
    begin = f.start + timedelta(seconds=a)
    return Mark(round((begin - t0).total_seconds() / 60, 3), kind, label, key, file, a, b, iso(begin.astimezone(f.tz)),
                score)
