"""Annotation tables users really have, read into one record: `Annotation(audio, start_s, end_s, label)`.

- Raven selection tables (`*.selections.txt`): tab-separated, `Begin Time (s)`, `End Time (s)` and a label column
  (`Annotation`, `Species`, `label`, ... or the one the user names). Read directly as TSV: crowsetta's `raven`
  schema rejects real tables (blank `Annotation` cells, which Raven leaves by default; integer frequency columns).
  Empty label cells get the default label the user gives.
- Audacity label tracks (`start<TAB>end<TAB>label`, `*.txt`): crowsetta's `aud-seq` format.
- CSV `file,start_s,end_s,label` (file relative to the CSV).

Every parse error is re-raised as a HootwatchError naming the table and the fix.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.audio import AUDIO_EXTENSIONS
from hootwatch.edge.errors import HootwatchError

RAVEN_SUFFIX = ".selections.txt"
LABEL_COLUMNS = ("Annotation", "annotation", "Species", "species", "Label", "label", "Class", "class", "Sound Type")
CSV_COLUMNS = ("file", "start_s", "end_s", "label")


@dataclass(frozen=True)
class Annotation:
    audio: str        # path of the annotated recording
    start_s: float
    end_s: float
    label: str


class AnnotationError(HootwatchError):
    """An annotation table that cannot be read."""


def _bad(path: Path, what: str, fix: str = "") -> AnnotationError:
    return AnnotationError(f"{path}: {what}", fix or "check the table's columns and that it is tab- or comma-separated")


def audio_for_table(table: Path) -> Path | None:
    """The recording a Raven table or Audacity label track annotates: same stem beside it (any audio extension)."""
    name = table.name
    stem = name.split(".Table.")[0] if ".Table." in name else name[: -len(RAVEN_SUFFIX)] if name.endswith(
        RAVEN_SUFFIX) else table.stem
    for ext in AUDIO_EXTENSIONS:
        for cand in (table.with_name(stem + ext), table.with_name(stem + ext.upper())):
            if cand.is_file():
                return cand
    return None


def _raven_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f, delimiter="\t"), [])


def read_raven(path: str | os.PathLike, audio: str | os.PathLike | None = None, label_column: str | None = None,
               default_label: str | None = None) -> list[Annotation]:
    """Selections of one Raven table. Empty label cells take `default_label` (an error if there is none)."""
    path = Path(path)
    audio = Path(audio) if audio is not None else audio_for_table(path)
    if audio is None:
        raise _bad(path, "no recording with the same name beside this Raven table",
                   "put the table next to its audio file (e.g. REC.Table.1.selections.txt beside REC.wav)")
    header = [h.strip() for h in _raven_header(path)]
    for needed in ("Begin Time (s)", "End Time (s)"):
        if needed not in header:
            raise _bad(path, f"not a Raven selection table (no '{needed}' column; columns: {header})",
                       "export the selection table from Raven (File > Save Selection Table)")
    col = label_column or next((c for c in LABEL_COLUMNS if c in header), None)
    if label_column and label_column not in header:
        raise _bad(path, f"no column {label_column!r} (columns: {header})", "pass --label-column with one of them")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    labels = [(r.get(col) or "").strip() if col else "" for r in rows]
    out = []
    for r, lab in zip(rows, labels):
        if not lab:
            if default_label is None:
                raise _bad(path, f"selections without a label (label column: {col or 'none'})",
                           "name the label column with --label-column, or give the label of unlabelled "
                           "selections with --default-label (e.g. --default-label owl)")
            lab = default_label
        try:
            out.append(Annotation(str(audio), float(r["Begin Time (s)"]), float(r["End Time (s)"]), lab))
        except (TypeError, ValueError) as exc:
            raise _bad(path, f"bad time in selection {r.get('Selection', '?')} ({exc})") from None
    return out


def read_audacity(path: str | os.PathLike, audio: str | os.PathLike | None = None) -> list[Annotation]:
    """An Audacity label track (`start<TAB>end<TAB>label` per line) read with crowsetta's aud-seq format."""
    import crowsetta

    path = Path(path)
    audio = Path(audio) if audio is not None else audio_for_table(path)
    if audio is None:
        raise _bad(path, "no recording with the same name beside this Audacity label track",
                   "name the label file like its recording (REC.txt beside REC.wav)")
    if not path.read_text(encoding="utf-8", errors="replace").strip():
        return []  # a recording without calls
    try:
        seq = crowsetta.formats.by_name("aud-seq").from_file(path)
    except Exception as exc:
        raise _bad(path, f"crowsetta cannot read this Audacity label track ({type(exc).__name__}: {exc})",
                   "export it from Audacity with File > Export > Export Labels (start, end, label per line)") from None
    return [Annotation(str(audio), float(b), float(e), str(lab).strip())
            for b, e, lab in zip(seq.start_times, seq.end_times, seq.labels)]


def read_annotation_csv(path: str | os.PathLike) -> list[Annotation]:
    """CSV with columns file,start_s,end_s,label; `file` relative to the CSV's folder (or absolute)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise _bad(path, f"missing columns {missing} (has {reader.fieldnames})",
                       "an annotation CSV needs the header file,start_s,end_s,label")
        out = []
        for i, r in enumerate(reader, start=2):
            src = Path(r["file"])
            try:
                out.append(Annotation(str(src if src.is_absolute() else path.parent / src), float(r["start_s"]),
                                      float(r["end_s"]), r["label"].strip()))
            except (TypeError, ValueError) as exc:
                raise _bad(path, f"line {i}: bad time ({exc})", "start_s and end_s are seconds, e.g. 12.5") from None
    return out


def is_audacity_labels(path: Path) -> bool:
    """A .txt whose non-empty lines are `number<TAB>number<TAB>label` (Raven tables are excluded by name)."""
    if path.suffix.lower() != ".txt" or path.name.endswith(RAVEN_SUFFIX):
        return False
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return False
    if not lines:  # Audacity exports an empty file for a track without labels
        return audio_for_table(path) is not None
    for ln in lines[:20]:
        parts = ln.split("\t")
        if parts[0] == "\\":  # spectral selection line of Audacity
            continue
        try:
            float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            return False
    return True


def is_annotation_csv(path: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    return all(c in header for c in CSV_COLUMNS)


def find_tables(root: Path) -> list[Path]:
    """Every annotation table under `root`: Raven, Audacity label tracks and annotation CSVs."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and (p.name.endswith(RAVEN_SUFFIX) or is_annotation_csv(p) or is_audacity_labels(p)):
            out.append(p)
    return out


def read_table(path: Path, label_column: str | None = None, default_label: str | None = None) -> list[Annotation]:
    if path.name.endswith(RAVEN_SUFFIX):
        return read_raven(path, label_column=label_column, default_label=default_label)
    if path.suffix.lower() == ".csv":
        return read_annotation_csv(path)
    return read_audacity(path)
