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

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, tzinfo

import numpy as np

from hootwatch.edge.store.labels import CONFLICT, OWL, UNSURE, LabelBook, is_negative_label, speaks_for_spans
from hootwatch.edge.contract.recorder_time import parse_tz
from hootwatch.edge.store.database import DetectionStore, iso
from hootwatch.edge.store.window_scores import iter_window_scores, read_window_meta

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

    @property
    def scores_matter(self) -> bool:
        """Whether the score range leaves any window out (scores are probabilities, an unscored window counts 0)."""
        return self.min_score > 0.0 or self.max_score < 1.0

    def keep(self, it: Item) -> bool:
        score = 0.0 if it.score is None else it.score
        return ((not self.recorder or it.recorder == self.recorder) and (not self.night or it.night == self.night)
                and self.min_score <= score <= self.max_score)


def night_of(local: datetime) -> str:
    return (local - timedelta(hours=12)).date().isoformat()


@dataclass(frozen=True)
class _File:
    """One file of the run as the window queues place its windows (no per-window data)."""
    key: str
    path: str
    recorder: str
    t0: datetime
    tz: tzinfo
    sample_rate: int
    window_samples: int
    clamp_end: int
    n_windows: int
    first_night: str
    last_night: str

    def span(self, s: int) -> tuple[float, float]:
        sr = self.sample_rate
        a, b = round(s / sr, 3), round((s + self.window_samples) / sr, 3)
        return a, (min(b, round(self.clamp_end / sr, 3)) if self.clamp_end else b)

    def night(self, s: int) -> str:
        return night_of((self.t0 + timedelta(seconds=round(s / self.sample_rate, 3))).astimezone(self.tz))

    def item(self, s: int, p: float) -> Item:
        a, b = self.span(int(s))
        utc = self.t0 + timedelta(seconds=a)
        local = utc.astimezone(self.tz)
        return Item("window", self.key, self.path, self.recorder, a, b, None if p != p else float(p), iso(utc),
                    iso(local), night_of(local))

    def keep(self, starts: np.ndarray, scores: np.ndarray | None, filters: Filters) -> np.ndarray:
        """filters.keep of each window, from its arrays (`scores` may be None when filters.scores_matter is not)."""
        n = len(starts)
        if (filters.recorder and self.recorder != filters.recorder) or not self.may_hold(filters.night):
            return np.zeros(n, bool)
        mask = np.ones(n, bool)
        if filters.night and self.first_night != self.last_night:   # a file across local noon: night by window
            mask &= np.array([self.night(s) == filters.night for s in starts.tolist()], bool)
        if filters.scores_matter:
            p = np.nan_to_num(scores.astype(np.float64), nan=0.0)
            mask &= (filters.min_score <= p) & (p <= filters.max_score)
        return mask

    def may_hold(self, night: str) -> bool:
        return not night or self.first_night <= night <= self.last_night


class _Best:
    """The k windows of smallest key over the files streamed past it, ties in file then time order."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.key, self.file, self.start, self.score = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64),
                                                       np.zeros(0, np.float32))

    def add(self, key: np.ndarray, file_no: int, starts: np.ndarray, scores: np.ndarray) -> None:
        if len(self.key) >= self.k > 0:   # full: only keys below the worst kept can enter (an equal one comes later)
            better = key < self.key[-1]
            if not better.any():
                return
            key, starts, scores = key[better], starts[better], scores[better]
        pick = _smallest(key, self.k)
        self.key = np.concatenate([self.key, key[pick]])
        self.file = np.concatenate([self.file, np.full(len(pick), file_no, np.int64)])
        self.start = np.concatenate([self.start, starts[pick]])
        self.score = np.concatenate([self.score, scores[pick]])
        keep = _smallest(self.key, self.k)   # stable: earlier files first among equal keys
        self.key, self.file, self.start, self.score = self.key[keep], self.file[keep], self.start[keep], \
            self.score[keep]


def _smallest(key: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k smallest keys, smallest first, equal keys in position order (argpartition, then a
    stable sort of the few left)."""
    if k <= 0 or not len(key):
        return np.zeros(0, np.int64)
    if len(key) > k:
        kth = np.partition(key, k - 1)[k - 1]
        cand = np.flatnonzero(key <= kth)
    else:
        cand = np.arange(len(key))
    return cand[np.argsort(key[cand], kind="stable")][:k]


class Queues:
    """The items of one run, built on each request from the store. A season holds millions of windows: the
    window queues stream the per-file score arrays (one file at a time, numpy) and build items only for the
    windows they return, so a request's memory does not grow with the store."""

    def __init__(self, store: DetectionStore, run_key: str) -> None:
        self.store, self.run_key = store, run_key
        self.book = LabelBook(store)
        self.ledger = {r.file_key: r for r in store.ledger_rows(run_key, status="done")}
        self._files: list[_File] | None = None

    def _label(self, key: str, a: float, b: float) -> str:
        x = self.book.of_span(key, a, b)
        return x.label if x else ""

    def detections(self, order: str = "score") -> list[Item]:
        items = []
        verdicts = self.book.verdicts()
        for d in self.store.detections(self.run_key):
            local = datetime.fromisoformat(d["begin_local"])
            verdict = verdicts.of(d["file_key"], d["start_s"], d["end_s"])
            items.append(Item("detection", d["file_key"], d["file"], d["recorder_id"] or self._folder(d["file"]),
                              d["start_s"], d["end_s"], d["max_score"], d["begin_utc"], d["begin_local"],
                              night_of(local), verdict.label, verdict.conflict))
        return _ordered(items, order)

    @staticmethod
    def _folder(path: str) -> str:
        from pathlib import Path
        return Path(path).parent.name

    def files(self) -> list[_File]:
        """The run's files with window scores and a start time, in file_key order (the windows' order)."""
        if self._files is None:
            self._files = []
            for m in read_window_meta(self.store.conn, self.run_key):
                row = self.ledger.get(m.file_key)
                if row is None or not row.start_utc or not m.n_windows:
                    continue
                f = _File(m.file_key, row.path, row.recorder_id or self._folder(row.path),
                          datetime.fromisoformat(row.start_utc), parse_tz(m.local_tz) or parse_tz("UTC"),
                          m.sample_rate, m.window_samples, m.clamp_end, m.n_windows, "", "")
                self._files.append(replace(f, first_night=f.night(m.first_start), last_night=f.night(m.last_start)))
        return self._files

    def _scores(self, files: list[int] | None = None):
        """(file number, starts, scores) of the run's files (of `files` only, when given), one file at a time."""
        number = {f.key: i for i, f in enumerate(self.files())}
        keys = None if files is None else [self.files()[i].key for i in files]
        for ws in iter_window_scores(self.store.conn, self.run_key, keys):
            if ws.file_key in number:
                yield number[ws.file_key], ws.starts, ws.scores

    def windows(self) -> list[Item]:
        """Every window of the run, in file and time order: one object per window, for small stores (tests); the
        queues below never build it."""
        return [self.files()[i].item(s, p) for i, starts, scores in self._scores()
                for s, p in zip(starts.tolist(), scores.tolist())]

    def filter_choices(self) -> dict:
        """The recorders and nights the window filters can pick, from each file's first and last window (only a
        file across local noon has its windows' nights read)."""
        files = self.files()
        nights = {n for f in files for n in (f.first_night, f.last_night)}
        across = [i for i, f in enumerate(files) if f.first_night != f.last_night]
        for i, starts, _ in (self._scores(across) if across else ()):
            nights.update(files[i].night(s) for s in starts.tolist())
        return {"recorders": sorted({f.recorder for f in files}), "nights": sorted(nights)}

    def near_misses(self, limit: int = 500, filters: Filters = Filters()) -> list[Item]:
        spans = self.store.detection_spans(self.run_key)
        best = _Best(limit)
        for i, starts, scores in self._filtered(filters):
            f = self.files()[i]
            mask = ~np.isnan(scores) & f.keep(starts, scores, filters)
            if f.key in spans:
                mask &= ~self._overlapping(f, starts, spans[f.key])
            at = np.flatnonzero(mask)
            best.add(-scores[at].astype(np.float64), i, starts[at], scores[at])
        return [self._labelled(self.files()[i].item(s, p)) for i, s, p in zip(best.file, best.start, best.score)]

    @staticmethod
    def _overlapping(f: _File, starts: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
        """Windows overlapping a detection (compared as the items' rounded seconds, as a reviewer sees them); only
        windows within a millisecond of one are looked at one by one."""
        x = starts / f.sample_rate
        near = np.zeros(len(starts), bool)
        for a, b in spans:
            near |= (x - 0.001 < b) & (a < x + f.window_samples / f.sample_rate + 0.001)
        out = np.zeros(len(starts), bool)
        for j in np.flatnonzero(near).tolist():
            wa, wb = f.span(int(starts[j]))
            out[j] = any(a < wb and wa < b for a, b in spans)
        return out

    def _filtered(self, filters: Filters):
        """`_scores` of only the files that can hold a window the filters keep (by recorder and night)."""
        pick = [i for i, f in enumerate(self.files()) if (not filters.recorder or f.recorder == filters.recorder)
                and f.may_hold(filters.night)]
        return self._scores(pick) if pick else iter(())

    def random(self, n: int = 200, seed: int = 0, filters: Filters = Filters()) -> list[Item]:
        """The same sample as drawing from a list of every kept window: the windows each file keeps are counted
        (from the ledger alone unless a score range or a file across noon asks for its arrays), the draw picks
        positions in that list, and only the files holding them are read."""
        files = self.files()
        counts = np.array([0 if not f.may_hold(filters.night) or (filters.recorder and f.recorder != filters.recorder)
                           else f.n_windows for f in files], np.int64)
        must_read = [i for i, f in enumerate(files) if counts[i]
                     and (filters.scores_matter or (filters.night and f.first_night != f.last_night))]
        for i, starts, scores in (self._scores(must_read) if must_read else ()):
            counts[i] = int(files[i].keep(starts, scores, filters).sum())
        total = int(counts.sum())
        pick = np.random.default_rng(seed).choice(total, size=min(n, total), replace=False)
        ends = np.cumsum(counts)
        file_of = np.searchsorted(ends, pick, side="right")
        at = {}
        for i, starts, scores in (self._scores(sorted(set(file_of.tolist()))) if len(pick) else ()):
            kept = np.flatnonzero(files[i].keep(starts, scores, filters))
            for j in np.flatnonzero(file_of == i).tolist():
                w = kept[pick[j] - (ends[i] - counts[i])]
                at[j] = files[i].item(int(starts[w]), scores[w])
        return [self._labelled(at[j]) for j in range(len(pick))]

    def uncertain(self, n: int = 200, filters: Filters = Filters()) -> list[Item]:
        """Unlabelled scored windows (no label speaks for them, `labels.speaks_for`) nearest the run's threshold,
        nearest first (on the logit scale, where a step means the same at 0.5 as at 0.99)."""
        t = _logit(_run_threshold(self.run_key))
        labelled = self.book.verdicts().by_file
        best = _Best(n)
        for i, starts, scores in self._filtered(filters):
            f = self.files()[i]
            mask = ~np.isnan(scores) & f.keep(starts, scores, filters)
            if f.key in labelled:   # a window some label speaks for (the app shows it a verdict) is not unsure
                spans = np.array([f.span(s) for s in starts.tolist()], np.float64).reshape(-1, 2)
                for x in labelled[f.key]:
                    mask &= ~speaks_for_spans(x, spans[:, 0], spans[:, 1])
            at = np.flatnonzero(mask)
            best.add(np.abs(_logits(scores[at]) - t), i, starts[at], scores[at])
        return [self.files()[i].item(s, p) for i, s, p in zip(best.file, best.start, best.score)]

    def ranked(self, hits, n: int = 200, filters: Filters = Filters()) -> list[Item]:
        """Search hits (search.Hit, best first) as items of this run's windows, with their similarity; only the
        files the hits name are read."""
        number = {f.key: i for i, f in enumerate(self.files())}
        wanted: dict[int, set[float]] = {}
        for h in hits:
            if h.file_key in number:
                wanted.setdefault(number[h.file_key], set()).add(round(h.start_s, 3))
        found: dict[tuple[str, float], Item] = {}
        for i, starts, scores in (self._scores(sorted(wanted)) if wanted else ()):
            f = self.files()[i]
            for a in wanted[i]:
                j = int(np.searchsorted(starts / f.sample_rate, a - 0.002))
                for k in range(j, min(j + 4, len(starts))):
                    if f.span(int(starts[k]))[0] == a:
                        found[(f.key, a)] = f.item(int(starts[k]), scores[k])
                        break
        out = []
        for h in hits:
            w = found.get((h.file_key, round(h.start_s, 3)))
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
        index = EmbeddingIndex.cached(self.store)
        rows = index.find(file_key, start_s, end_s)
        if not len(rows):
            raise ConfigError("this item has no stored embedding (a cascade's first stage rejected it, or it was "
                              "scanned without embeddings)", "pick another item, or scan with --exhaustive")
        hits = index.rank(index.floats(rows).mean(axis=0), top=n + len(rows), exclude=rows)
        return self.ranked(hits, n, filters)

    def _labelled(self, w: Item) -> Item:
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


def _logits(p: np.ndarray) -> np.ndarray:
    """_logit of each score, vectorised (the same float64 arithmetic)."""
    p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


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
