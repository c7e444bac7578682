"""Label tables users really have, read and written: Raven selection tables, Audacity label tracks, and CSV
`file,start_s,end_s,label`. One record, `Annotation(audio, start_s, end_s, label)`, for the trainer, the
benchmarks and the exports alike (stdlib csv only, so the edge can use it).

- Raven selection tables (`*.selections.txt`): tab-separated, `Begin Time (s)`, `End Time (s)` and a label
  column (`Annotation`, `Species`, `label`, ... or the one the user names). Raven Pro saves each selection once
  per view (`View` = `Waveform 1`, `Spectrogram 1`): one row per `Selection` number is kept. A table over
  several files opened together (Raven's multi-file columns `Begin Path` / `Begin File` and `File Offset (s)`)
  puts each selection in its own file at its offset; `Begin Time (s)` there runs on across the files.
  Empty label cells get the default label the user gives. (crowsetta's `raven` schema rejects real tables:
  blank `Annotation` cells, which Raven leaves by default, and integer frequency columns.)
- Audacity label tracks (`*.txt`, one `start<TAB>end<TAB>label` per line; `\\<TAB>low<TAB>high` lines after a
  label are its frequency range, ignored). Plain TSV, so read here rather than with crowsetta.
- CSV `file,start_s,end_s,label` (file relative to the CSV; `snr_db` optional): also the ground truth that
  `evaluate` scores detections against, read by the same `read_truth_csv`.

Every parse error is raised as an AnnotationError naming the table and the fix.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.contract.audio import AUDIO_EXTENSIONS
from hootwatch.edge.core.errors import HootwatchError

RAVEN_SUFFIX = ".selections.txt"
LABEL_COLUMNS = ("Annotation", "annotation", "Species", "species", "Label", "label", "Class", "class", "Sound Type")
CSV_COLUMNS = ("file", "start_s", "end_s", "label")
RAVEN_FILE_COLUMNS = ("Begin Path", "Begin File")   # Raven's multi-file columns, fullest first


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


def raven_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [h.strip() for h in next(csv.reader(f, delimiter="\t"), [])]


def is_multi_file_raven(path: Path) -> bool:
    """A Raven table whose rows name their own files (`Begin Path` / `Begin File` with `File Offset (s)`)."""
    header = raven_header(path)
    return "File Offset (s)" in header and any(c in header for c in RAVEN_FILE_COLUMNS)


def _raven_file(path: Path, row: dict) -> Path:
    """The recording of one row of a multi-file table: its Begin Path if that exists, else Begin File (or the Begin
    Path's name) beside the table."""
    full = (row.get("Begin Path") or "").strip()
    name = (row.get("Begin File") or "").strip() or Path(full.replace("\\", "/")).name
    if full and Path(full).is_file():
        return Path(full)
    return path.parent / name


def one_row_per_selection(rows: list[dict]) -> list[dict]:
    """Raven writes a selection once per view (Waveform 1, Spectrogram 1, ...): keep the first row of each
    `Selection` number (tables without that column are kept whole)."""
    seen, out = set(), []
    for r in rows:
        sel = (r.get("Selection") or "").strip()
        if sel:
            if sel in seen:
                continue
            seen.add(sel)
        out.append(r)
    return out


def read_raven(path: str | os.PathLike, audio: str | os.PathLike | None = None, label_column: str | None = None,
               default_label: str | None = None) -> list[Annotation]:
    """Selections of one Raven table. Empty label cells take `default_label` (an error if there is none)."""
    path = Path(path)
    header = raven_header(path)
    for needed in ("Begin Time (s)", "End Time (s)"):
        if needed not in header:
            raise _bad(path, f"not a Raven selection table (no '{needed}' column; columns: {header})",
                       "export the selection table from Raven (File > Save Selection Table)")
    multi = audio is None and is_multi_file_raven(path)
    if not multi:
        audio = Path(audio) if audio is not None else audio_for_table(path)
        if audio is None:
            raise _bad(path, "no recording with the same name beside this Raven table",
                       "put the table next to its audio file (e.g. REC.Table.1.selections.txt beside REC.wav), or "
                       "save it from Raven with the Begin Path and File Offset (s) columns")
    col = label_column or next((c for c in LABEL_COLUMNS if c in header), None)
    if label_column and label_column not in header:
        raise _bad(path, f"no column {label_column!r} (columns: {header})", "pass --label-column with one of them")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [{(k or "").strip(): v for k, v in r.items()} for r in csv.DictReader(f, delimiter="\t")]
    out = []
    for r in one_row_per_selection(rows):
        lab = (r.get(col) or "").strip() if col else ""
        if not lab:
            if default_label is None:
                raise _bad(path, f"selections without a label (label column: {col or 'none'})",
                           "name the label column with --label-column, or give the label of unlabelled "
                           "selections with --default-label (e.g. --default-label owl)")
            lab = default_label
        try:
            begin, end = float(r["Begin Time (s)"]), float(r["End Time (s)"])
            if multi:
                offset = float(r["File Offset (s)"])
                out.append(Annotation(str(_raven_file(path, r)), offset, offset + end - begin, lab))
            else:
                out.append(Annotation(str(audio), begin, end, lab))
        except (TypeError, ValueError) as exc:
            raise _bad(path, f"bad time in selection {r.get('Selection', '?')} ({exc})") from None
    return out


def read_audacity(path: str | os.PathLike, audio: str | os.PathLike | None = None) -> list[Annotation]:
    """An Audacity label track: `start<TAB>end<TAB>label` per line (a missing label is empty)."""
    path = Path(path)
    audio = Path(audio) if audio is not None else audio_for_table(path)
    if audio is None:
        raise _bad(path, "no recording with the same name beside this Audacity label track",
                   "name the label file like its recording (REC.txt beside REC.wav)")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.rstrip("\r\n").split("\t")
        if not line.strip() or parts[0].strip() == "\\":   # blank, or the frequency range of the label above
            continue
        try:
            start, end = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise _bad(path, f"line {i} is not start<TAB>end<TAB>label: {line[:60]!r}",
                       "export it from Audacity with File > Export > Export Labels") from None
        out.append(Annotation(str(audio), start, end, "\t".join(parts[2:]).strip()))
    return out


@dataclass(frozen=True)
class TruthEvent:
    """One row of a CSV table as written: `file` as in the table (evaluation matches it to detections by its path
    relative to the recordings), `snr_db` where the table has it."""
    file: str
    start_s: float
    end_s: float
    label: str
    snr_db: float | None = None


def read_truth_csv(path: str | os.PathLike) -> list[TruthEvent]:
    """CSV with columns file,start_s,end_s,label, and snr_db optionally (as `hootwatch synth dump` writes); other
    columns are ignored. The one reader of these tables: ground truth for evaluation, annotations for training."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise _bad(path, f"missing columns {missing} (has {reader.fieldnames})",
                       "an annotation CSV needs the header file,start_s,end_s,label")
        out = []
        for i, r in enumerate(reader, start=2):
            try:
                start, end = float(r["start_s"]), float(r["end_s"])
            except (TypeError, ValueError) as exc:
                raise _bad(path, f"line {i}: bad time ({exc})", "start_s and end_s are seconds, e.g. 12.5") from None
            snr = (r.get("snr_db") or "").strip()
            try:
                snr_db = float(snr) if snr else None
            except ValueError:
                raise _bad(path, f"line {i}: bad snr_db {snr!r}", "snr_db is in decibels, e.g. 6.5, or empty") from None
            out.append(TruthEvent(r["file"], start, end, r["label"].strip(), snr_db))
    return out


def read_annotation_csv(path: str | os.PathLike) -> list[Annotation]:
    """The rows of `read_truth_csv`, each `file` relative to the CSV's folder (or absolute)."""
    path = Path(path)
    return [Annotation(str(src if (src := Path(t.file)).is_absolute() else path.parent / src), t.start_s, t.end_s,
                       t.label) for t in read_truth_csv(path)]


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
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
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


# --- writing ---------------------------------------------------------------------------------------------------

RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Begin Path", "Begin File", "File Offset (s)")


def raven_text(rows: list[dict], extra_columns: tuple[str, ...] = ()) -> str:
    """A Raven selection table. Each row holds `begin_s`, `end_s` (on the table's own time line), `low_hz`,
    `high_hz`, `path`, `offset_s` (in its own file) and any of `extra_columns` by name."""
    lines = ["\t".join(RAVEN_COLUMNS + extra_columns)]
    for i, r in enumerate(rows, 1):
        lines.append("\t".join(str(v) for v in (
            i, "Spectrogram 1", 1, f"{r['begin_s']:.3f}", f"{r['end_s']:.3f}", f"{r['low_hz']:.1f}",
            f"{r['high_hz']:.1f}", r["path"], Path(r["path"]).name, f"{r['offset_s']:.3f}",
            *(r[c] for c in extra_columns))))
    return "\n".join(lines) + "\n"


def audacity_text(annotations: list[Annotation]) -> str:
    return "".join(f"{a.start_s:.3f}\t{a.end_s:.3f}\t{a.label}\n" for a in annotations)


def annotation_csv_text(annotations: list[Annotation], extra_columns: tuple[str, ...] = (),
                        extra_values: list[tuple] | None = None) -> str:
    """The CSV table of `annotations`; `extra_columns` after the four, each row's values in `extra_values`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow((*CSV_COLUMNS, *extra_columns))
    extra = extra_values if extra_values is not None else [()] * len(annotations)
    w.writerows((a.audio, f"{a.start_s:.3f}", f"{a.end_s:.3f}", a.label, *more)
                for a, more in zip(annotations, extra, strict=True))
    return buf.getvalue()
