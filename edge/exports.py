"""Exports of the detections in the store, written atomically and durably (edge/fsio.py).

- `OUTDIR/detections.csv`: one row per detection (file, offsets, UTC and local times, label, scores,
  recorder, time source, model, threshold).
- `OUTDIR/detections.selections.txt`: a Raven Pro selection table. Following Raven's convention for a list of
  files opened together, `Begin Time (s)` runs on across the files in order (the scanned files sorted by
  path, each adding its duration), while `Begin File` and `File Offset (s)` locate the selection in its own
  file. `Begin Date` / `Begin Clock Time` are recorder local time.
- `OUTDIR/labels/<file stem>.txt`: Audacity label tracks (start<TAB>end<TAB>label), one per audio file that has
  detections; import in Audacity with File > Import > Labels.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime
from pathlib import Path

from . import fsio
from .store import DetectionStore, LedgerRow

CSV_COLUMNS = ("file", "start_s", "end_s", "begin_utc", "end_utc", "label", "score", "max_score", "mean_score",
               "n_windows", "begin_local", "end_local", "recorder_id", "time_source", "model_id", "threshold",
               "hop_s", "min_hits")
RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Begin File", "File Offset (s)", "Begin Date", "Begin Clock Time", "Label",
                 "Score")


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    return fsio.write_atomic(path, text)  # temporary file, fsync, rename, fsync of the folder


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r | {"score": r["max_score"]})
    return buf.getvalue()


def raven_text(rows: list[dict], files: list[LedgerRow], high_freq_hz: float, low_freq_hz: float = 0.0) -> str:
    """Raven selection table over `files` (in this order) holding `rows`."""
    offsets, t = {}, 0.0
    for f in files:
        offsets[f.file_key] = t
        t += f.audio_s
    order = {f.file_key: i for i, f in enumerate(files)}
    rows = sorted((r for r in rows if r["file_key"] in offsets), key=lambda r: (order[r["file_key"]], r["start_sample"]))
    lines = ["\t".join(RAVEN_COLUMNS)]
    for i, r in enumerate(rows, 1):
        base = offsets[r["file_key"]]
        local = datetime.fromisoformat(r["begin_local"])
        lines.append("\t".join(str(v) for v in (
            i, "Spectrogram 1", 1, f"{base + r['start_s']:.3f}", f"{base + r['end_s']:.3f}", f"{low_freq_hz:.1f}",
            f"{high_freq_hz:.1f}", Path(r["file"]).name, f"{r['start_s']:.3f}", local.strftime("%Y/%m/%d"),
            local.strftime("%H:%M:%S.%f")[:-3], r["label"], f"{r['max_score']:.4f}")))
    return "\n".join(lines) + "\n"


def audacity_text(rows: list[dict]) -> str:
    return "".join(f"{r['start_s']:.3f}\t{r['end_s']:.3f}\t{r['label']} {r['max_score']:.2f}\n" for r in rows)


def label_file_names(files: list[str]) -> dict[str, str]:
    """Label file name for each audio file: its stem, made unique when two folders hold the same name."""
    names, used = {}, set()
    for f in files:
        stem = Path(f).stem
        name, k = f"{stem}.txt", 1
        while name in used:
            k += 1
            name = f"{stem}_{k}.txt"
        used.add(name)
        names[f] = name
    return names


EXPORT_FORMATS = ("csv", "raven", "audacity")


def write_exports(store: DetectionStore, run_key: str, out_dir: str | os.PathLike, high_freq_hz: float,
                  formats: tuple[str, ...] = EXPORT_FORMATS) -> dict[str, Path]:
    """Write the chosen exports of one run's detections; returns {"csv": ..., "raven": ..., "labels": ...}
    (the keys of the formats written)."""
    unknown = set(formats) - set(EXPORT_FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; known: {EXPORT_FORMATS}")
    out = Path(out_dir)
    rows = store.detections(run_key)
    paths: dict[str, Path] = {}
    if "csv" in formats:
        paths["csv"] = write_atomic(out / "detections.csv", csv_text(rows))
    if "raven" in formats:
        files = store.ledger_rows(run_key, status="done")
        paths["raven"] = write_atomic(out / "detections.selections.txt", raven_text(rows, files, high_freq_hz))
    if "audacity" in formats:
        paths["labels"] = out / "labels"
        by_file: dict[str, list[dict]] = {}
        for r in rows:
            by_file.setdefault(r["file"], []).append(r)
        for f, name in label_file_names(sorted(by_file)).items():
            write_atomic(out / "labels" / name, audacity_text(by_file[f]))
    return paths
