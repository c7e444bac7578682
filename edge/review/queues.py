"""What a reviewer is shown, one item at a time: the review queues over one run of the store.

- `detections`: the run's detections, by score (highest first) or in time order;
- `near`: near misses, the highest-scoring windows that made no detection (no overlap with one);
- `random`: a uniform random sample of all the run's windows (without replacement, seeded): each window of the
  night is equally likely, so the share of owl calls found there is an honest estimate of the calls missed.
- `uncertain`: the unlabelled windows nearest the run's decision boundary (|logit(score) - logit(threshold)|
  smallest), as active learning asks: the labels that teach the next `hootwatch fit` the most.
- `search`: the latest `hootwatch search` (OUTDIR/search.csv), most similar to its examples first.
- `like`: "more like this": the windows most similar to one item (its stored embedding), edge/review/search.py.
Each queue says what it is for (DESCRIPTIONS; the page shows it).

Filters: recorder, night (the local date of the evening: a 02:00 window belongs to the night before), score range.
Each item carries its span, score, clock time in the recorder's zone, recorder, file, offset and its current label
(labels attach to audio spans, see edge/store/labels.py): a window's is the label of its own span; a detection's is
its verdict, from the labels covering it (`LabelBook.verdict`), and "conflict" with the disagreeing labels listed
when they disagree. Pure reads of the store; no web framework here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np

from hootwatch.edge.store.labels import CONFLICT, OWL, UNSURE, LabelBook, is_negative_label
from hootwatch.edge.contract.recorder_time import parse_tz
from hootwatch.edge.store.database import DetectionStore, iso

QUEUES = ("detections", "near", "random", "uncertain", "search")
DESCRIPTIONS = {
    "detections": "What the model calls an owl: confirm or reject each (sets precision).",
    "near": "Best-scoring windows that made no detection: calls the model nearly missed.",
    "random": "A uniform random sample of every window: an honest count of the calls missed.",
    "uncertain": "Windows nearest the decision boundary: the labels that improve the next `fit` the most.",
    "search": "The latest `hootwatch search`: windows most like your example calls, best first.",
    "like": "More like this: windows most like the item you picked, best first.",
}


@dataclass(frozen=True)
class Item:
    kind: str            # detection | window
    file_key: str
    file: str
    recorder: str
    start_s: float
    end_s: float
    score: float | None  # None: a window a cascade's first stage did not pass on (never scored by the model)
    begin_utc: str
    begin_local: str
    night: str           # YYYY-MM-DD of the evening the night began
    label: str = ""      # its current label ('' = not reviewed; 'conflict' for a detection whose labels disagree)
    conflict: tuple[dict, ...] = ()  # the disagreeing labels (label, start_s, end_s) of a 'conflict'
    similarity: float | None = None   # search and "more like this": cosine similarity to the examples

    def to_dict(self) -> dict:
        """The item, and its score as a person can tell it apart from the next (calibrate.score_text)."""
        from .calibrate import score_text
        text = "not scored (first stage passed it over)" if self.score is None else score_text(self.score)
        return asdict(self) | {"score_text": text}


@dataclass(frozen=True)
class Filters:
    recorder: str = ""
    night: str = ""
    min_score: float = 0.0
    max_score: float = 1.0

    def keep(self, it: Item) -> bool:
        score = 0.0 if it.score is None else it.score
        return ((not self.recorder or it.recorder == self.recorder) and (not self.night or it.night == self.night)
                and self.min_score <= score <= self.max_score)


def night_of(local: datetime) -> str:
    return (local - timedelta(hours=12)).date().isoformat()


class Queues:
    """The items of one run; built on each request from the store (a night is a few thousand windows)."""

    def __init__(self, store: DetectionStore, run_key: str) -> None:
        self.store, self.run_key = store, run_key
        self.book = LabelBook(store)
        self.ledger = {r.file_key: r for r in store.ledger_rows(run_key, status="done")}

    def _label(self, key: str, a: float, b: float) -> str:
        x = self.book.of_span(key, a, b)
        return x.label if x else ""

    def detections(self, order: str = "score") -> list[Item]:
        items = []
        for d in self.store.detections(self.run_key):
            local = datetime.fromisoformat(d["begin_local"])
            verdict = self.book.verdict(d["file_key"], d["start_s"], d["end_s"])
            items.append(Item("detection", d["file_key"], d["file"], d["recorder_id"] or self._folder(d["file"]),
                              d["start_s"], d["end_s"], d["max_score"], d["begin_utc"], d["begin_local"],
                              night_of(local), verdict.label, verdict.conflict))
        return _ordered(items, order)

    @staticmethod
    def _folder(path: str) -> str:
        from pathlib import Path
        return Path(path).parent.name

    def windows(self) -> list[Item]:
        """Every window of the run (the span of each window, its score), in file and time order."""
        out = []
        for ws in self.store.window_scores(self.run_key):
            row = self.ledger.get(ws.file_key)
            if row is None or not row.start_utc:
                continue
            t0, tz = datetime.fromisoformat(row.start_utc), parse_tz(ws.local_tz) or parse_tz("UTC")
            sr, win = ws.sample_rate, ws.window_samples
            for s, p in zip(ws.starts.tolist(), ws.scores.tolist()):
                a, b = round(s / sr, 3), round((s + win) / sr, 3)
                if ws.clamp_end:
                    b = min(b, round(ws.clamp_end / sr, 3))
                utc = t0 + timedelta(seconds=a)
                local = utc.astimezone(tz)
                out.append(Item("window", ws.file_key, row.path, row.recorder_id or self._folder(row.path), a, b,
                                None if p != p else float(p), iso(utc), iso(local), night_of(local)))
        return out

    def near_misses(self, limit: int = 500, filters: Filters = Filters()) -> list[Item]:
        spans: dict[str, list[tuple[float, float]]] = {}
        for d in self.store.detections(self.run_key):
            spans.setdefault(d["file_key"], []).append((d["start_s"], d["end_s"]))
        free = [w for w in self.windows() if w.score is not None and filters.keep(w)
                and not any(a < w.end_s and w.start_s < b for a, b in spans.get(w.file_key, ()))]
        free.sort(key=lambda w: -w.score)
        return [self._labelled(w) for w in free[:limit]]

    def random(self, n: int = 200, seed: int = 0, filters: Filters = Filters()) -> list[Item]:
        pool = [w for w in self.windows() if filters.keep(w)]
        pick = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
        return [self._labelled(pool[i]) for i in pick]

    def uncertain(self, n: int = 200, filters: Filters = Filters()) -> list[Item]:
        """Unlabelled scored windows nearest the run's threshold, nearest first (on the logit scale, where a
        step means the same at 0.5 as at 0.99)."""
        t = _logit(_run_threshold(self.run_key))
        pool = sorted((w for w in self.windows() if w.score is not None and filters.keep(w)),
                      key=lambda w: abs(_logit(w.score) - t))
        out = []
        for w in pool:   # labels looked up nearest first, only until n unlabelled ones are found
            w = self._labelled(w)
            if not w.label:
                out.append(w)
                if len(out) >= n:
                    break
        return out

    def ranked(self, hits, n: int = 200, filters: Filters = Filters()) -> list[Item]:
        """Search hits (search.Hit, best first) as items of this run's windows, with their similarity."""
        from dataclasses import replace
        by_span = {(w.file_key, w.start_s): w for w in self.windows()}
        out = []
        for h in hits:
            w = by_span.get((h.file_key, round(h.start_s, 3)))
            if w is not None and filters.keep(w):
                out.append(replace(self._labelled(w), similarity=h.similarity))
            if len(out) >= n:
                break
        return out

    def like(self, file_key: str, start_s: float, end_s: float, n: int = 200,
             filters: Filters = Filters()) -> list[Item]:
        """"More like this": the windows most similar to the stored embedding(s) of the window(s) over this span
        (the span's own windows left out). ConfigError when the store keeps no embedding there."""
        from hootwatch.edge.core.errors import ConfigError
        from .search import EmbeddingIndex
        index = EmbeddingIndex.load(self.store)
        rows = index.find(file_key, start_s, end_s)
        if not len(rows):
            raise ConfigError("this item has no stored embedding (a cascade's first stage rejected it, or it was "
                              "scanned without embeddings)", "pick another item, or scan with --exhaustive")
        hits = index.rank(index.floats(rows).mean(axis=0), top=n + len(rows), exclude=rows)
        return self.ranked(hits, n, filters)

    def _labelled(self, w: Item) -> Item:
        from dataclasses import replace
        return replace(w, label=self._label(w.file_key, w.start_s, w.end_s))

    def queue(self, name: str, order: str = "score", filters: Filters = Filters(), n: int = 200,
              seed: int = 0) -> list[Item]:
        if name == "detections":
            return [it for it in self.detections(order) if filters.keep(it)]
        if name == "near":
            return _ordered(self.near_misses(filters=filters), order)
        if name == "random":
            return self.random(n, seed, filters)
        if name == "uncertain":
            return self.uncertain(n, filters)
        if name == "search":
            from .search import SEARCH_FILE, read_ranked
            return self.ranked(read_ranked(self.store.path.parent / SEARCH_FILE), n, filters)
        raise ValueError(f"unknown queue {name!r}; known: {', '.join(QUEUES)}")


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def _run_threshold(run_key: str) -> float:
    """The threshold a run key names (`model|t=0.5|hop=...`, store.RunInfo.run_key), 0.5 when it names none."""
    part = next((x for x in run_key.split("|") if x.startswith("t=")), "t=0.5")
    return float(part[2:])


def _ordered(items: list[Item], order: str) -> list[Item]:
    if order == "time":
        return sorted(items, key=lambda it: (it.begin_utc, it.file_key))
    return sorted(items, key=lambda it: (-(it.score if it.score is not None else -1.0), it.begin_utc))


def progress(items: list[Item]) -> dict:
    """reviewed / total, and how many of each label so far (a conflict is not reviewed: it needs a decision)."""
    labels = [it.label for it in items if it.label and it.label != CONFLICT]
    return {"reviewed": len(labels), "total": len(items), "owl": labels.count(OWL),
            "not_owl": sum(1 for x in labels if is_negative_label(x)), "unsure": labels.count(UNSURE),
            "conflict": sum(1 for it in items if it.label == CONFLICT)}
