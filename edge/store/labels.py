"""Labels people give to stretches of audio, kept in the store's SQLite file, never lost and never overwritten.

Table `labels` (in the same file as the detections; created by the store's migrations, database.py)
  one row per act of labelling: the audio span (recording content key `file_key` + start/end, in whole
  milliseconds so a span is matched exactly), the label, who and when, where it came from (`review` for the web
  app, `import:<table>` for `hootwatch labels --import`) and the id of the row it replaces. Rows are only ever
  added: relabelling adds a row, undo adds a row with an empty label ("cleared"). The label of a span is its
  newest row; the older ones are its history.

Labels attach to the audio, not to a detection row: a rescan with another model or threshold shows them on
its own detections (a detection carries a label when the spans overlap, see `labels_overlapping`).

Each `add` is its own durable transaction (BEGIN IMMEDIATE ... COMMIT with synchronous=FULL, the store's path
for what cannot be redone), so when it returns the label survives a crash, kill -9 or a power cut; the web app
tells the page "saved" only after that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.core.errors import HootwatchError
from .database import DetectionStore, utc_now

OWL, NOT_OWL, UNSURE, CLEARED = "owl", "not_owl", "unsure", ""
REVIEW_LABELS = (OWL, NOT_OWL, UNSURE)


class LabelError(HootwatchError):
    """A label that cannot be recorded (unknown recording, bad span)."""


@dataclass(frozen=True)
class Label:
    id: int
    file_key: str
    file: str
    start_s: float
    end_s: float
    label: str           # owl | not_owl | unsure | any other sound name from an imported table | "" (cleared)
    reviewer: str
    source: str
    created_utc: str
    replaces: int | None

    @property
    def is_owl(self) -> bool:
        return self.label == OWL

    @property
    def is_negative(self) -> bool:
        """A reviewed 'not the owl' (not_owl, or any other sound an imported table names)."""
        return self.label not in (OWL, UNSURE, CLEARED)


def _ms(t: float) -> int:
    return int(round(float(t) * 1000))


def _label(row) -> Label:
    return Label(row["id"], row["file_key"], row["file"], row["start_ms"] / 1000, row["end_ms"] / 1000, row["label"],
                 row["reviewer"], row["source"], row["created_utc"], row["replaces"])


# the newest row of each span
_CURRENT = ("SELECT l.* FROM labels l JOIN (SELECT MAX(id) AS id FROM labels GROUP BY file_key, start_ms, end_ms) m"
            " ON l.id = m.id")


class LabelBook:
    """The labels of one store (shares the store's connection)."""

    def __init__(self, store: DetectionStore) -> None:
        self.store = store
        self.conn = store.conn

    def add(self, file_key: str, file: str, start_s: float, end_s: float, label: str, reviewer: str = "",
            source: str = "review") -> Label:
        """Record a label for a span (committed when this returns). An empty label clears the span."""
        a, b = _ms(start_s), _ms(end_s)
        if not (0 <= a < b):
            raise LabelError(f"{file}: span {start_s}..{end_s} s is empty or negative",
                             "give a start before the end, both at or after 0 s")
        with self.store.transaction(durable=True) as cur:  # a person's work cannot be redone: fsync it
            prev = cur.execute("SELECT id FROM labels WHERE file_key=? AND start_ms=? AND end_ms=? ORDER BY id DESC"
                               " LIMIT 1", (file_key, a, b)).fetchone()
            cur.execute("INSERT INTO labels (file_key, file, start_ms, end_ms, label, reviewer, source, created_utc,"
                        " replaces) VALUES (?,?,?,?,?,?,?,?,?)",
                        (file_key, file, a, b, label.strip(), reviewer, source, utc_now(), prev[0] if prev else None))
            new_id = cur.lastrowid
        return self.get(new_id)

    def get(self, label_id: int) -> Label:
        row = self.conn.execute("SELECT * FROM labels WHERE id=?", (label_id,)).fetchone()
        if row is None:
            raise LabelError(f"no label with id {label_id}", "reload the page")
        return _label(row)

    def current(self, include_cleared: bool = False) -> list[Label]:
        """The label of every span (its newest row), in recording and time order."""
        rows = self.conn.execute(_CURRENT + " ORDER BY l.file, l.start_ms, l.end_ms").fetchall()
        labels = [_label(r) for r in rows]
        return labels if include_cleared else [x for x in labels if x.label != CLEARED]

    def history(self, file_key: str, start_s: float, end_s: float) -> list[Label]:
        """Every row of one span, oldest first."""
        rows = self.conn.execute("SELECT * FROM labels WHERE file_key=? AND start_ms=? AND end_ms=? ORDER BY id",
                                 (file_key, _ms(start_s), _ms(end_s))).fetchall()
        return [_label(r) for r in rows]

    def of_span(self, file_key: str, start_s: float, end_s: float) -> Label | None:
        h = self.history(file_key, start_s, end_s)
        return h[-1] if h and h[-1].label != CLEARED else None

    def overlapping(self, file_key: str, start_s: float, end_s: float) -> list[Label]:
        """Current labels of spans that overlap [start_s, end_s) in this recording."""
        rows = self.conn.execute(_CURRENT + " WHERE l.file_key=? AND l.start_ms < ? AND l.end_ms > ? AND l.label != ''"
                                 " ORDER BY l.id", (file_key, _ms(end_s), _ms(start_s))).fetchall()
        return [_label(r) for r in rows]

    def count(self) -> int:
        return len(self.current())


def label_for_detection(labels: list[Label]) -> str:
    """One verdict for a detection from the labels overlapping it: owl if any says owl, else the newest one's."""
    if not labels:
        return ""
    if any(x.is_owl for x in labels):
        return OWL
    return max(labels, key=lambda x: x.id).label


def known_recordings(store: DetectionStore) -> dict[str, tuple[str, str]]:
    """file_key -> (path it was last scanned from, recorder id) of every recording in the ledger."""
    out = {}
    for r in store.conn.execute("SELECT file_key, path, recorder_id, processed_at FROM files ORDER BY processed_at"):
        out[r["file_key"]] = (r["path"], r["recorder_id"])
    return out


def resolve_recording(store: DetectionStore, name: str | os.PathLike, base: Path | None = None) -> tuple[str, str]:
    """(file_key, path) of the recording a table names: by path (absolute, or relative to `base`), else by a
    unique file name. LabelError naming the candidates when it is unknown or ambiguous."""
    known = known_recordings(store)
    by_path = {p: k for k, (p, _) in known.items()}
    text = str(name).strip()
    cands = [Path(text)] if Path(text).is_absolute() else ([base / text] if base else []) + [Path(text)]
    for c in cands:
        try:
            resolved = str(c.resolve())
        except OSError:
            continue
        if resolved in by_path:
            return by_path[resolved], resolved
    want = Path(text.replace("\\", "/")).name
    hits = {k: p for k, (p, _) in known.items() if Path(p).name == want}
    if len(hits) == 1:
        (k, p), = hits.items()
        return k, p
    # a name given without its extension (Audacity label files are named after the recording's stem)
    stem_hits = {k: p for k, (p, _) in known.items() if Path(p).stem == Path(want).stem} if not hits else {}
    if len(stem_hits) == 1:
        (k, p), = stem_hits.items()
        return k, p
    many = hits or stem_hits
    if many:
        raise LabelError(f"{text!r} names {len(many)} recordings in the store ({', '.join(sorted(many.values())[:3])})",
                         "give the file's full path in the table's file column")
    raise LabelError(f"{text!r} is not a recording this store has scanned",
                     "scan the recording into this output folder first, or fix the file name in the table")
