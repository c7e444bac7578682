"""Event-level evaluation of detections against a ground-truth table (numpy + csv only).

Ground truth: CSV `file,start_s,end_s,label,snr_db` (as `hootwatch synth dump` writes; snr_db optional), read by
`label_tables.read_truth_csv` as the trainer reads annotations; label `owl` for the powerful owl, anything else
names a confuser. Detections: hootwatch's detections.csv (`file,start_s,end_s,label,score`, extra columns
ignored); `file` may be a path -- it is matched to the truth's file by the path relative to the dump root, else by
its trailing path parts, else by base name.

Counting (intervals overlap when they share more than touching end points):
- recall = true owl calls overlapped by at least one detection / true owl calls (a call is found once,
  however many detections overlap it);
- precision = detections overlapping at least one true owl call / detections (one detection spanning two
  calls is one true positive);
- fp_per_hour = false-positive detections / audio hours;
- by_confuser: false positives by the confuser label(s) they overlap ("none" when they overlap nothing).
Only detections whose label is the positive label count (all, when the detections carry no label).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from .label_tables import TruthEvent

POSITIVE = "owl"


@dataclass(frozen=True)
class Detection:
    file: str
    start_s: float
    end_s: float
    label: str = POSITIVE
    score: float = 1.0


@dataclass(frozen=True)
class EventMetrics:
    precision: float
    recall: float
    f1: float
    fp_per_hour: float
    n_true: int
    n_detections: int
    n_found: int = 0
    n_true_positive_detections: int = 0
    by_confuser: dict[str, int] = field(default_factory=dict)


def _float(row: dict, key: str) -> float | None:
    v = (row.get(key) or "").strip()
    return float(v) if v else None


def load_detections(path: str | os.PathLike, positive_label: str = POSITIVE) -> list[Detection]:
    """Detections of the positive label (rows without a label column all count)."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            label = (r.get("label") or positive_label).strip()
            if label != positive_label:
                continue
            out.append(Detection(r["file"], float(r["start_s"]), float(r["end_s"]), label,
                                 _float(r, "score") or 0.0))
    return out


def _overlaps(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 < b1 and b0 < a1


def _file_key(det_file: str, truth_files: set[str], root: str | None) -> str | None:
    p = PurePath(det_file.replace("\\", "/"))
    if root is not None:
        try:
            rel = Path(det_file).resolve().relative_to(Path(root).resolve()).as_posix()
            if rel in truth_files:
                return rel
        except ValueError:
            pass
    parts = p.parts
    for k in range(len(parts)):          # longest trailing match first: "AM01/x.WAV" before "x.WAV"
        cand = "/".join(parts[k:])
        if cand in truth_files:
            return cand
    by_name = [t for t in truth_files if PurePath(t).name == p.name]
    return by_name[0] if len(by_name) == 1 else None


def _match(detections: list[Detection], truth: list[TruthEvent], root: str | os.PathLike | None,
           positive_label: str) -> tuple[list[TruthEvent], set[int], int, dict[str, int], int]:
    """(owl calls, indices of those found, true-positive detections, false positives by confuser, detections)."""
    truth_files = {t.file for t in truth}
    by_file: dict[str, list[TruthEvent]] = {}
    for t in truth:
        by_file.setdefault(t.file, []).append(t)
    owls = [t for t in truth if t.label == positive_label]
    found: set[int] = set()
    owl_index = {id(t): i for i, t in enumerate(owls)}
    tp = 0
    by_confuser: dict[str, int] = {}
    dets = [d for d in detections if d.label == positive_label]
    for d in dets:
        key = _file_key(d.file, truth_files, None if root is None else str(root))
        events = by_file.get(key, []) if key else []
        hits = [t for t in events if _overlaps(d.start_s, d.end_s, t.start_s, t.end_s)]
        owl_hits = [t for t in hits if t.label == positive_label]
        if owl_hits:
            tp += 1
            found.update(owl_index[id(t)] for t in owl_hits)
        else:
            names = sorted({t.label for t in hits}) or ["none"]
            for name in names:
                by_confuser[name] = by_confuser.get(name, 0) + 1
    return owls, found, tp, by_confuser, len(dets)


def calls_found(detections: list[Detection], truth: list[TruthEvent], root: str | os.PathLike | None = None,
                positive_label: str = POSITIVE) -> set[int]:
    """Indices (among the truth's owl calls, in table order) of the calls at least one detection overlaps."""
    return _match(detections, truth, root, positive_label)[1]


def event_metrics(detections: list[Detection], truth: list[TruthEvent], audio_hours: float,
                  root: str | os.PathLike | None = None, positive_label: str = POSITIVE) -> EventMetrics:
    owls, found, tp, by_confuser, n_det = _match(detections, truth, root, positive_label)
    precision = tp / n_det if n_det else 0.0
    recall = len(found) / len(owls) if owls else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    fp = n_det - tp
    return EventMetrics(precision, recall, f1, fp / audio_hours if audio_hours > 0 else float("inf"),
                        len(owls), n_det, len(found), tp, dict(sorted(by_confuser.items())))


def audio_hours(root: str | os.PathLike) -> float:
    """Total duration of the audio files under root, from their headers."""
    from hootwatch.edge.contract import audio
    total = 0.0
    for p in Path(root).rglob("*"):
        if audio.is_audio_file(p):
            total += audio.probe(p).duration_s
    return total / 3600.0
