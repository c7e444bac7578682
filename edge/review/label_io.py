"""Label tables in and out of the store (`hootwatch labels OUTDIR --import TABLE / --export TABLE`).

Formats, chosen by the name of TABLE, read and written by `edge.label_tables` (the one implementation the
trainer and the benchmarks use too):
- `*.csv`: `file,start_s,end_s,label` (an export adds `begin_local,end_local,reviewer`: the clock time in the
  recorder's zone and who labelled it; an import ignores them);
- `*.selections.txt`: a Raven selection table; the recording of each row is its `Begin Path` / `Begin File`
  (multi-file tables, as hootwatch writes them), else the one the table's name names (`REC.Table.1...` -> REC);
- any other `*.txt`: an Audacity label track of the recording its name names; exporting to a folder (or a
  `*.txt` path, whose folder is used) writes one track per recording.

Here a table's recording is one the store has scanned, found by path or by name (`labels.resolve_recording`),
so a colleague's table works wherever its audio lies. Every row is checked before any is added.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from hootwatch.edge.core.errors import HootwatchError
from hootwatch.edge.store.database import iso
from hootwatch.edge.store.exports import label_file_names, recording_clocks, write_atomic
from hootwatch.edge.tables.label_tables import (RAVEN_SUFFIX, Annotation, annotation_csv_text, audacity_text,
                                                is_multi_file_raven, raven_text, read_annotation_csv, read_audacity,
                                                read_raven)
from hootwatch.edge.store.labels import Label, LabelBook, resolve_recording


class LabelTableError(HootwatchError):
    """A label table that cannot be imported or exported."""


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(RAVEN_SUFFIX):
        return "raven"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".txt") or path.is_dir() or not path.suffix:
        return "audacity"
    raise LabelTableError(f"{path}: unknown label table type",
                          "use a .csv (file,start_s,end_s,label), a Raven .selections.txt or Audacity .txt labels")


def _named_recording(book: LabelBook, path: Path) -> str:
    """The store's recording a single-file Raven table or an Audacity track is named after."""
    name = path.name
    stem = (name.split(".Table.")[0] if ".Table." in name else name[: -len(RAVEN_SUFFIX)]
            if name.endswith(RAVEN_SUFFIX) else path.stem)
    return resolve_recording(book.store, stem, path.parent)[1]


def read_rows(book: LabelBook, path: str | os.PathLike) -> list[Annotation]:
    """The table's rows, each `audio` a recording path as the table names it."""
    path = Path(path)
    if not path.is_file():
        raise LabelTableError(f"{path}: no such label table", "check the path")
    kind = _kind(path)
    if kind == "csv":
        return read_annotation_csv(path)
    if kind == "raven":
        if is_multi_file_raven(path):
            return read_raven(path, default_label="")
        return read_raven(path, audio=_named_recording(book, path), default_label="")
    return read_audacity(path, audio=_named_recording(book, path))


def import_table(book: LabelBook, path: str | os.PathLike, reviewer: str = "", default_label: str = "") -> int:
    """Add every row of a table as labels (a span already holding the same label is not added again).
    Every row is checked before any is written, so a bad table adds nothing. Returns the labels added."""
    path = Path(path)
    resolved = []
    for r in read_rows(book, path):
        label = r.label or default_label
        if not label:
            raise LabelTableError(f"{path}: a row for {Path(r.audio).name} at {r.start_s:g} s has no label",
                                  "fill the label column, or pass --default-label owl")
        key, rec = resolve_recording(book.store, r.audio, path.parent)
        resolved.append((key, rec, r.start_s, r.end_s, label))
    added = 0
    for key, rec, a, b, label in resolved:
        now = book.of_span(key, a, b)
        if now is not None and now.label == label:
            continue
        book.add(key, rec, a, b, label, reviewer=reviewer, source=f"import:{path.name}")
        added += 1
    return added


def _annotations(labels: list[Label]) -> list[Annotation]:
    return [Annotation(x.file, x.start_s, x.end_s, x.label) for x in labels]


EXPORT_COLUMNS = ("begin_local", "end_local", "reviewer")  # after the CSV's four


def _clock(clocks: dict, x: Label) -> tuple[str, str]:
    """(begin, end) of a label as ISO clock times in its recorder's zone; '' when the recording's start is unknown."""
    if x.file_key not in clocks:
        return "", ""
    start, tz = clocks[x.file_key]
    return tuple(iso((start + timedelta(seconds=t)).astimezone(tz)) for t in (x.start_s, x.end_s))


def export_table(book: LabelBook, path: str | os.PathLike, high_freq_hz: float = 4000.0) -> list[Path]:
    """Write the current labels; returns the files written. CSV and Raven tables carry each label's clock time in
    its recorder's zone and its reviewer (an Audacity track holds times and a label only)."""
    path = Path(path)
    labels = book.current()
    kind = _kind(path)
    clocks = recording_clocks(book.store)
    if kind == "csv":
        text = annotation_csv_text(_annotations(labels), EXPORT_COLUMNS,
                                   [(*_clock(clocks, x), x.reviewer) for x in labels])
        return [write_atomic(path, text)]
    if kind == "raven":  # a multi-file table: each row names its recording, times on one running line
        offsets, t, rows = {}, 0.0, []
        durations = {r.path: r.audio_s for r in book.store.ledger_rows()}
        for x in labels:
            if x.file not in offsets:
                offsets[x.file] = t
                t += durations.get(x.file, 0.0) or x.end_s
            begin = _clock(clocks, x)[0]
            rows.append({"begin_s": offsets[x.file] + x.start_s, "end_s": offsets[x.file] + x.end_s, "low_hz": 0.0,
                         "high_hz": high_freq_hz, "path": x.file, "offset_s": x.start_s, "Annotation": x.label,
                         "Begin Date": begin[:10].replace("-", "/"), "Begin Clock Time": begin[11:23],
                         "Reviewer": x.reviewer})
        return [write_atomic(path, raven_text(rows, ("Annotation", "Begin Date", "Begin Clock Time", "Reviewer")))]
    folder = path if path.is_dir() or not path.suffix else path.parent
    by_file: dict[str, list[Label]] = {}
    for x in labels:
        by_file.setdefault(x.file, []).append(x)
    return [write_atomic(folder / name, audacity_text(_annotations(by_file[f])))
            for f, name in label_file_names(sorted(by_file)).items()]
