"""Exports of the detections in the store, written atomically and durably (edge/core/fsio.py).

For the run just scanned (its settings: model, threshold, hop, min_hits = its `run_key`):
- `OUTDIR/detections.csv`: one row per detection (file, offsets, UTC and local times, label, scores,
  recorder, time source, model, threshold, hop, min_hits: every row says which run it belongs to; `review`: the
  reviewer's verdict when labels cover it, as the review app shows it: owl, not_owl, unsure, conflict or empty).
- `OUTDIR/raven/<file stem>.Table.1.selections.txt`: a Raven Pro selection table per recording that has
  detections. `Begin Time (s)` is the time in that recording (recordings of different sample rates cannot form
  one Raven file sequence, so one table over all of them would place selections wrongly); `Begin Path`,
  `Begin File` and `File Offset (s)` name the recording. Open the recording in Raven Pro, then File > Open
  Selection Table. `Begin Date` / `Begin Clock Time` are recorder local time.
- `OUTDIR/labels/<file stem>.txt`: Audacity label tracks (start<TAB>end<TAB>label), one per audio file that has
  detections; import in Audacity with File > Import > Labels.
- `OUTDIR/exports.json`: which run the files above hold, and every run exported into OUTDIR.

Every run's own copy stays in `OUTDIR/runs/<run>/` (same files), so rescanning into the same OUTDIR with another
threshold never hides an earlier run: the top level holds the latest, `exports.json` says which.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import datetime, timezone, tzinfo
from pathlib import Path

from hootwatch.edge.core import fsio
from hootwatch.edge.tables.label_tables import Annotation
from hootwatch.edge.tables.label_tables import audacity_text as audacity_track_text
from hootwatch.edge.tables.label_tables import raven_text as raven_table_text
from .database import DetectionStore
from .labels import LabelBook

CSV_COLUMNS = ("file", "start_s", "end_s", "begin_utc", "end_utc", "label", "score", "max_score", "mean_score",
               "n_windows", "begin_local", "end_local", "recorder_id", "time_source", "model_id", "threshold",
               "hop_s", "min_hits", "review")
RAVEN_EXTRA_COLUMNS = ("Begin Date", "Begin Clock Time", "Label", "Score", "Review")
RAVEN_TABLE_SUFFIX = ".Table.1.selections.txt"
RUNS_DIR = "runs"
INDEX_NAME = "exports.json"


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    return fsio.write_atomic(path, text)  # temporary file, fsync, rename, fsync of the folder


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r | {"score": r["max_score"]})
    return buf.getvalue()


def raven_text(rows: list[dict], high_freq_hz: float, low_freq_hz: float = 0.0) -> str:
    """Raven selection table of one recording's detections (times in that recording)."""
    table = []
    for r in sorted(rows, key=lambda r: r["start_sample"]):
        local = datetime.fromisoformat(r["begin_local"])
        table.append({"begin_s": r["start_s"], "end_s": r["end_s"], "low_hz": low_freq_hz, "high_hz": high_freq_hz,
                      "path": r["file"], "offset_s": r["start_s"], "Begin Date": local.strftime("%Y/%m/%d"),
                      "Begin Clock Time": local.strftime("%H:%M:%S.%f")[:-3], "Label": r["label"],
                      "Score": f"{r['max_score']:.4f}",
                      "Review": r.get("review", "")})
    return raven_table_text(table, RAVEN_EXTRA_COLUMNS)


def recording_clocks(store: DetectionStore) -> dict[str, tuple[datetime, tzinfo]]:
    """file_key -> (its start in UTC, the zone its local times are shown in), from the newest scan of each
    recording that knew its start time."""
    from hootwatch.edge.contract.recorder_time import parse_tz

    rows = store.conn.execute("SELECT f.file_key, f.start_utc, w.local_tz FROM files f LEFT JOIN window_scores w"
                              " ON w.file_key = f.file_key AND w.run_key = f.run_key"
                              " WHERE f.status = 'done' AND f.start_utc != '' ORDER BY f.processed_at").fetchall()
    return {key: (datetime.fromisoformat(start), parse_tz(tz) or timezone.utc) for key, start, tz in rows}


def audacity_text(rows: list[dict]) -> str:
    return audacity_track_text([Annotation(r["file"], r["start_s"], r["end_s"], f"{r['label']} {r['max_score']:.2f}")
                                for r in rows])


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


def run_folder_name(run_key: str) -> str:
    """A folder name for a run_key (`model|t=0.5|hop=2.5|k=2` -> `model_t=0.5_hop=2.5_k=2`)."""
    return re.sub(r"[^A-Za-z0-9=.+-]+", "_", run_key).strip("_") or "run"


WRITTEN_LIST = ".hootwatch-written.json"  # in raven/ and labels/: the names the last export wrote there


def _write_per_file(folder: Path, texts: dict[str, str]) -> None:
    """Write name -> text into `folder` and remove the tables an earlier export wrote there that this one does
    not (they belong to no detection of this run). Only names an export wrote are ever removed: files a user
    keeps in the folder (e.g. `hootwatch labels --export results/labels`) stay."""
    listed = folder / WRITTEN_LIST
    try:
        before = set(json.loads(listed.read_text()))
    except (OSError, ValueError, TypeError):
        before = set()
    for name, text in texts.items():
        write_atomic(folder / name, text)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(listed, json.dumps(sorted(texts)))
    for name in before - set(texts):
        if Path(name).name == name:  # a bare file name, never a path out of the folder
            (folder / name).unlink(missing_ok=True)


def _write_set(rows: list[dict], out: Path, high_freq_hz: float, formats: tuple[str, ...]) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(r)
    names = label_file_names(sorted(by_file))
    if "csv" in formats:
        paths["csv"] = write_atomic(out / "detections.csv", csv_text(rows))
    if "raven" in formats:
        paths["raven"] = out / "raven"
        _write_per_file(paths["raven"], {names[f][:-4] + RAVEN_TABLE_SUFFIX: raven_text(by_file[f], high_freq_hz)
                                         for f in names})
    if "audacity" in formats:
        paths["labels"] = out / "labels"
        _write_per_file(paths["labels"], {names[f]: audacity_text(by_file[f]) for f in names})
    return paths


def read_index(out_dir: str | os.PathLike) -> dict:
    """OUTDIR/exports.json: {"latest": run_key, "runs": {run_key: {"folder", "written_utc", "detections"}}}."""
    try:
        index = json.loads((Path(out_dir) / INDEX_NAME).read_text())
        return index if isinstance(index, dict) and isinstance(index.get("runs"), dict) else {"runs": {}}
    except (OSError, ValueError):
        return {"runs": {}}


def write_exports(store: DetectionStore, run_key: str, out_dir: str | os.PathLike, high_freq_hz: float,
                  formats: tuple[str, ...] = EXPORT_FORMATS) -> dict[str, Path]:
    """Write the chosen exports of one run's detections at the top of OUTDIR and in OUTDIR/runs/<run>/; returns
    {"csv": ..., "raven": ..., "labels": ...} (the keys of the formats written) and "run" (the run's folder)."""
    unknown = set(formats) - set(EXPORT_FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; known: {EXPORT_FORMATS}")
    out = Path(out_dir)
    verdicts = LabelBook(store).verdicts()
    rows = [r | {"review": verdicts.of(r["file_key"], r["start_s"], r["end_s"]).label}
            for r in store.detections(run_key)]
    run_dir = out / RUNS_DIR / run_folder_name(run_key)
    _write_set(rows, run_dir, high_freq_hz, formats)
    paths = _write_set(rows, out, high_freq_hz, formats)
    index = read_index(out)
    index["runs"][run_key] = {"folder": str(run_dir.relative_to(out)), "detections": len(rows),
                              "written_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    index["latest"] = run_key
    index["note"] = ("detections.csv, raven/ and labels/ hold the run named by 'latest'; every run's own copy "
                     "is in its folder under runs/")
    paths["index"] = write_atomic(out / INDEX_NAME, json.dumps(index, indent=2) + "\n")
    paths["run"] = run_dir
    return paths


def exports_note(paths: dict[str, Path]) -> str:
    """One line for the user: which run the exports hold, and where the earlier runs are."""
    index = read_index(paths["index"].parent)
    latest = index.get("latest", "?")
    others = [k for k in index["runs"] if k != latest]
    line = f"exports hold run {latest} (a copy stays in {paths['run']})"
    if others:
        line += f"; {len(others)} earlier run(s) into this folder stay in {paths['run'].parent} (see {INDEX_NAME})"
    return line
