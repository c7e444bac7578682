"""Labels people give to stretches of audio, kept in the store's SQLite file, never lost and never overwritten.

Table `labels` (in the same file as the detections; created by the store's migrations, database.py)
  one row per act of labelling: the audio span (recording content key `file_key` + start/end, in whole
  milliseconds so a span is matched exactly), the label, who and when, where it came from (`review` for the web
  app, `import:<table>` for `hootwatch labels --import`) and the id of the row it replaces. Rows are only ever
  added: relabelling adds a row, undo adds a row with an empty label ("cleared"). The label of a span is its
  newest row; the older ones are its history.

Labels attach to the audio, not to a detection row: a rescan with another model or threshold shows them on
its own detections. A label means what the reviewer saw: it speaks for a span (`speaks_for`) only when it covers
that span (`covers`: the span's own label, or one covering most of it and lying mostly inside it), is an owl
label lying wholly inside it, or is a negative label holding it wholly (no owl in what was shown, so in no part
of it), never by a partial overlap with a neighbouring window; labels that speak for one span
and disagree are a conflict, shown as such (`detection_verdict`). The review app, `calibrate`, the exports and the
night overview ask `LabelBook.verdicts` (or `verdict` for one span); `dataset` (`label_conflicts`), `fit`'s windows
and the uncertain queue use the same `speaks_for`.

Each `add` is its own durable transaction (BEGIN IMMEDIATE ... COMMIT with synchronous=FULL, the store's path
for what cannot be redone), so when it returns the label survives a crash, kill -9 or a power cut; the web app
tells the page "saved" only after that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.core.errors import HootwatchError
from .database import DetectionStore, utc_now

OWL, NOT_OWL, UNSURE, CLEARED = "owl", "not_owl", "unsure", ""
REVIEW_LABELS = (OWL, NOT_OWL, UNSURE)
CONFLICT = "conflict"   # a verdict, never a label: covering labels disagree (owl and not owl)
COVER_SHARE = 0.5       # a label covers a span when the overlap is more than this share of both


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
        return is_negative_label(self.label)


def is_negative_label(label: str) -> bool:
    return label not in (OWL, UNSURE, CLEARED, CONFLICT)


def covers(label_start_s: float, label_end_s: float, start_s: float, end_s: float) -> bool:
    """Does a label on [label_start_s, label_end_s) cover the span [start_s, end_s)? Its own span does; another
    one only when the overlap is more than half the span AND more than half the label (a window inside a
    detection, or a detection-sized label shifted a little), never a neighbouring window that merely overlaps it
    (two windows a half-window hop apart share exactly half: each is its own stretch, and may hold the call or
    not)."""
    return bool(_speaks_ms(_ms(label_start_s), _ms(label_end_s), False, _ms(start_s), _ms(end_s)))


def _speaks_ms(la, lb, owl, a, b, neg=False):
    """Does the label [la, lb) (an owl label when `owl`, a negative one when `neg`) speak for the span [a, b)? On
    whole milliseconds, elementwise over ints or numpy arrays (many spans of one label, or many labels of one span):
    `covers`; or an owl label lying wholly inside the span (the span holds that call); or a negative label holding
    the span wholly (the reviewer heard no owl anywhere in what was shown, so in no part of it either: a not-owl
    detection's windows, which `fit` learns from)."""
    overlap = np.minimum(b, lb) - np.maximum(a, la)
    cover = ((la == a) & (lb == b)) | ((overlap > COVER_SHARE * (b - a)) & (overlap > COVER_SHARE * (lb - la)))
    return cover | (owl & (a <= la) & (lb <= b)) | (neg & (la <= a) & (b <= lb))


def speaks_for(label: Label, start_s: float, end_s: float) -> bool:
    """Does `label` give the span [start_s, end_s) a verdict? When it covers the span (`covers`), or when it says
    owl and lies wholly inside it (a call marked in a table: the span holds it). The one relation the app's
    verdicts, `label_conflicts` (dataset), fit's windows and the uncertain queue's exclusion all use."""
    return label.label != CLEARED and bool(_speaks_ms(_ms(label.start_s), _ms(label.end_s), label.is_owl,
                                                      _ms(start_s), _ms(end_s), label.is_negative))


def speaks_for_spans(label: Label, starts_s: np.ndarray, ends_s: np.ndarray) -> np.ndarray:
    """`speaks_for` over many spans of the label's recording at once: a bool array."""
    hit = _speaks_ms(_ms(label.start_s), _ms(label.end_s), label.is_owl, _ms_array(starts_s), _ms_array(ends_s),
                     label.is_negative)
    return hit & (label.label != CLEARED)


@dataclass(frozen=True)
class Verdict:
    """What the reviewer said about one span, from the labels speaking for it."""
    label: str                       # '' unreviewed | owl | not_owl (or another sound's name) | unsure | conflict
    labels: tuple[Label, ...] = ()   # the labels it comes from (both sides of a conflict)

    @property
    def reviewed(self) -> bool:
        """A usable verdict: owl or not owl (unsure, conflict and unreviewed are not)."""
        return self.label == OWL or is_negative_label(self.label)

    @property
    def conflict(self) -> tuple[dict, ...]:
        """The disagreeing labels of a conflict (label and span), for the page and the reports."""
        if self.label != CONFLICT:
            return ()
        return tuple({"label": x.label, "start_s": x.start_s, "end_s": x.end_s} for x in self.labels)


def detection_verdict(labels: list[Label], start_s: float, end_s: float) -> Verdict:
    """The verdict of the span [start_s, end_s) from labels of its recording: only those that speak for it
    (`speaks_for`) count; see `verdict_of`."""
    return verdict_of([x for x in labels if speaks_for(x, start_s, end_s)])


def verdict_of(mine: list[Label]) -> Verdict:
    """The verdict the labels speaking for one span give: owl and not owl together are a conflict (never resolved
    silently); otherwise the owl, the not-owl or the unsure verdict they give (the newest label when several
    negatives name different sounds)."""
    mine = [x for x in mine if x.label != CLEARED]
    if not mine:
        return Verdict(CLEARED)
    owl = [x for x in mine if x.is_owl]
    neg = [x for x in mine if x.is_negative]
    if owl and neg:
        return Verdict(CONFLICT, tuple(owl + neg))
    if owl or neg:
        return Verdict(OWL if owl else max(neg, key=lambda x: x.id).label, tuple(owl or neg))
    return Verdict(UNSURE, tuple(mine))


def label_conflicts(labels: list[Label]) -> list[tuple[Label, Label]]:
    """Pairs of current labels on one stretch (one speaks for the other's span, `speaks_for`) where one says owl
    and the other not owl: neither can be trusted until the reviewer decides (the app shows the span as a
    conflict)."""
    by_file: dict[str, list[Label]] = {}
    for x in labels:
        if x.is_owl or x.is_negative:
            by_file.setdefault(x.file_key, []).append(x)
    out = []
    for xs in by_file.values():
        owls, negs = [x for x in xs if x.is_owl], [x for x in xs if x.is_negative]
        out += [(o, n) for o in owls for n in negs
                if speaks_for(o, n.start_s, n.end_s) or speaks_for(n, o.start_s, o.end_s)]
    return out


class Verdicts:
    """Verdicts of many spans from labels loaded once (`LabelBook.verdicts`): what queues, exports, calibrate and
    the night overview ask for each detection, without a query per detection (the labels speaking for a span are
    found with one vectorised `_speaks_ms` over its recording's labels)."""

    def __init__(self, labels: list[Label]) -> None:
        by_file: dict[str, list[Label]] = {}
        for x in sorted(labels, key=lambda x: x.id):   # the order `LabelBook.overlapping` gives
            if x.label != CLEARED:
                by_file.setdefault(x.file_key, []).append(x)
        self.by_file = by_file
        self._spans = {k: (_ms_array([x.start_s for x in xs]), _ms_array([x.end_s for x in xs]),
                           np.array([x.is_owl for x in xs], bool), np.array([x.is_negative for x in xs], bool))
                       for k, xs in by_file.items()}

    def of(self, file_key: str, start_s: float, end_s: float) -> Verdict:
        if file_key not in self._spans:
            return Verdict(CLEARED)
        la, lb, owl, neg = self._spans[file_key]
        hit = np.flatnonzero(_speaks_ms(la, lb, owl, _ms(start_s), _ms(end_s), neg))
        return verdict_of([self.by_file[file_key][i] for i in hit.tolist()])


def _ms(t: float) -> int:
    return int(round(float(t) * 1000))


def _ms_array(t) -> np.ndarray:
    return np.round(np.asarray(t, np.float64) * 1000).astype(np.int64)


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
        """Current labels of spans that overlap [start_s, end_s) in this recording (the newest row of each span,
        found among this recording's rows only: the labels_span index, not a pass over the whole table)."""
        rows = self.conn.execute(
            "SELECT l.* FROM labels l JOIN (SELECT MAX(id) AS id FROM labels WHERE file_key=? AND start_ms < ?"
            " AND end_ms > ? GROUP BY start_ms, end_ms) m ON l.id = m.id WHERE l.label != '' ORDER BY l.id",
            (file_key, _ms(end_s), _ms(start_s))).fetchall()
        return [_label(r) for r in rows]

    def verdict(self, file_key: str, start_s: float, end_s: float) -> Verdict:
        """What the reviewer said about this span (a detection's verdict): see `detection_verdict`. For many spans
        ask `verdicts()` once instead."""
        return detection_verdict(self.overlapping(file_key, start_s, end_s), start_s, end_s)

    def verdicts(self) -> Verdicts:
        """Every current label loaded once, to ask many verdicts in memory (`Verdicts.of`)."""
        return Verdicts(self.current())

    def count(self) -> int:
        return len(self.current())


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
