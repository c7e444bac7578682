"""Search by example: rank every stored window by cosine similarity to a few example calls.

    index = EmbeddingIndex.load(store)                      # every stored window of one backbone (embeddings.py)
    queries = embed_examples(detector, ["hoot.wav", "night1.wav@12.5-17.5"])
    ranked = index.rank(queries, top=200)                   # best first: Hit(file_key, start_s, end_s, similarity)

Brute force: the float16 vectors stay float16 in memory (1.5 GB for 10^6 windows of 768 dimensions), each chunk
is turned into unit float32 rows and multiplied with the unit queries (one BLAS matmul).
bench/search_round.py measures it over 10^6 windows; it answers in seconds, so there is no vector index.
A window's similarity is its best cosine with any example (one example matching is enough). An example longer
than a window gives one query: the mean of its windows' embeddings.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.core.errors import ConfigError
from hootwatch.edge.store.database import DetectionStore
from hootwatch.edge.store.embeddings import embedding_models, read_embeddings

MAX_EXAMPLE_S = 60.0  # longer is no call but a stretch of night: a meaningless query, and GBs for a whole-night file
CHUNK = 16384   # windows turned to float32 at a time (50 MB at 768 dimensions; larger chunks were no faster)
SEARCH_FILE = "search.csv"   # the latest search of an output folder: the review page's "search" queue
_CACHE: dict = {}            # EmbeddingIndex.cached: the last index loaded and the stamp of the store it came from


@dataclass(frozen=True)
class Hit:
    file_key: str
    start_s: float
    end_s: float
    similarity: float


@dataclass
class EmbeddingIndex:
    """Every embedded window of one backbone and hop: file of each row, start sample, float16 vector."""
    model_id: str
    bundle: str
    sample_rate: int
    window_samples: int
    file_keys: list[str]
    file_index: np.ndarray     # (n,) int32 index into file_keys
    starts: np.ndarray         # (n,) int64 start sample
    vectors: np.ndarray        # (n, dim) float16

    @classmethod
    def load(cls, store: DetectionStore, model_id: str | None = None) -> "EmbeddingIndex":
        """The backbone `model_id`'s windows (None: the backbone with the most). ConfigError when there are none,
        naming the bundles the stored embeddings came from."""
        stored = embedding_models(store.conn)
        models = [m for m in stored if model_id is None or m["model_id"] == model_id]
        if not models and stored:   # another bundle's: name it (its path is kept in every row)
            came_from = "; ".join(f"{m['bundle'] or 'a bundle no longer named'} (graph {m['model_id']}, "
                                  f"{m['windows']} windows)" for m in stored)
            raise ConfigError(f"{store.path}: no window embeddings of graph {model_id} are stored; the store's "
                              f"embeddings came from {came_from}",
                              "use that bundle (or a head fitted on it), or embed the recordings with this one: "
                              "hootwatch embed RECORDINGS --model BUNDLE --out OUTDIR")
        if not models:
            raise ConfigError(f"{store.path}: no window embeddings are stored",
                              "scan (or `hootwatch embed`) the recordings with a bundle that outputs embeddings "
                              "(exported by this hootwatch; `hootwatch export --embedding-only` for a backbone)")
        m = models[0]
        rows = read_embeddings(store.conn, m["model_id"], hop_samples=m["hop_samples"])
        return cls.of(rows, m["model_id"], m["bundle"] or "")

    @classmethod
    def cached(cls, store: DetectionStore, model_id: str | None = None) -> "EmbeddingIndex":
        """`load`, kept for the next request ("more like this" on item after item) until the store's embeddings
        change (rows added, replaced or dropped, or another file at the store's path). One index is kept: it is
        the size of every stored vector (1.5 GB per 10^6 windows)."""
        stamp = (str(store.path.resolve()), model_id, os.stat(store.path).st_ino,
                 *store.conn.execute("SELECT COUNT(*), MAX(rowid), SUM(n_windows) FROM window_embeddings").fetchone())
        if _CACHE.get("stamp") != stamp:
            _CACHE.clear()   # the old index goes before the new one is read: never two in memory
            _CACHE.update(index=cls.load(store, model_id), stamp=stamp)
        return _CACHE["index"]

    @classmethod
    def of(cls, rows: list, model_id: str, bundle: str = "") -> "EmbeddingIndex":
        dim = rows[0].dim if rows else 0
        return cls(model_id, bundle, rows[0].sample_rate if rows else 0, rows[0].window_samples if rows else 0,
                   [r.file_key for r in rows],
                   np.concatenate([np.full(len(r.starts), i, np.int32) for i, r in enumerate(rows)] or [[]]),
                   np.concatenate([r.starts for r in rows] or [np.zeros(0, np.int64)]),
                   np.concatenate([r.vectors for r in rows] or [np.zeros((0, dim), np.float16)]))

    def __len__(self) -> int:
        return len(self.starts)

    def floats(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        return self.vectors[rows].astype(np.float32)

    def rows_of(self, file_key: str) -> np.ndarray:
        """The rows of one file's windows (they are contiguous: the index is built file by file)."""
        if file_key not in self.file_keys:
            return np.zeros(0, np.int64)
        i = self.file_keys.index(file_key)
        return np.arange(np.searchsorted(self.file_index, i, "left"), np.searchsorted(self.file_index, i, "right"))

    def find(self, file_key: str, start_s: float, end_s: float) -> np.ndarray:
        """Rows of the windows of `file_key` that overlap [start_s, end_s) the most (ties: all of them)."""
        rows = self.rows_of(file_key)
        a = self.starts[rows] / self.sample_rate
        overlap = np.minimum(a + self.window_samples / self.sample_rate, end_s) - np.maximum(a, start_s)
        if not len(rows) or overlap.max() <= 0:
            return np.zeros(0, np.int64)
        return rows[overlap >= overlap.max() - 1e-6]

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """Best cosine similarity of every stored window with any of the queries, float32 (n,)."""
        q = _unit(np.atleast_2d(np.asarray(queries, np.float32)))
        out = np.empty(len(self), np.float32)
        for i in range(0, len(self), CHUNK):
            x = self.vectors[i:i + CHUNK].astype(np.float32)
            norms = np.sqrt(np.einsum("ij,ij->i", x, x))   # dividing the scores, not the rows: one pass less
            out[i:i + CHUNK] = (x @ q.T).max(axis=1) / np.maximum(norms, 1e-12)
        return out

    def rank(self, queries: np.ndarray, top: int = 200, exclude: np.ndarray | None = None) -> list[Hit]:
        """The `top` most similar windows, best first (`exclude`: rows left out, e.g. the example itself)."""
        sims = self.similarities(queries)
        if exclude is not None and len(exclude):
            sims[exclude] = -np.inf
        k = min(int(top), len(sims))
        if k <= 0:
            return []
        best = np.argpartition(-sims, k - 1)[:k]
        best = best[np.argsort(-sims[best], kind="stable")]
        sr, win = self.sample_rate, self.window_samples
        return [Hit(self.file_keys[self.file_index[i]], round(self.starts[i] / sr, 3),
                    round((self.starts[i] + win) / sr, 3), round(float(sims[i]), 6)) for i in best
                if np.isfinite(sims[i])]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Example:
    path: Path
    start_s: float = 0.0
    end_s: float | None = None   # None: to the end of the file

    @classmethod
    def parse(cls, text: str) -> "Example":
        """`CLIP` (a whole file) or `RECORDING@START-END` (seconds)."""
        path, at, span = str(text).rpartition("@") if "@" in str(text) else (str(text), "", "")
        if not at:
            return cls(Path(text))
        try:
            a, b = (float(v) for v in span.split("-", 1))
        except ValueError:
            raise ConfigError(f"--example {text!r}: the span after @ must be START-END in seconds",
                              "e.g. --example night1.wav@12.5-17.5") from None
        if not 0 <= a < b:
            raise ConfigError(f"--example {text!r}: the span must have 0 <= START < END", "e.g. night1.wav@12.5-17.5")
        return cls(Path(path), a, b)

    def check(self) -> None:
        """ConfigError unless the file is audio and the span lies within it and is at most MAX_EXAMPLE_S long."""
        from hootwatch.edge.contract.audio import probe

        if not self.path.is_file():
            raise ConfigError(f"--example {self.path}: no such file", "give an audio clip, or RECORDING@START-END")
        length = probe(self.path).duration_s
        said = f"{self.path.name} is {length:.3g} s long"
        if self.end_s is None:
            if length > MAX_EXAMPLE_S:
                raise ConfigError(f"--example {self.path}: {said}, more than one call (at most {MAX_EXAMPLE_S:g} s)",
                                  f"give the call's span in it: --example RECORDING@START-END, e.g. "
                                  f"{self.path.name}@12.5-17.5 (seconds)")
            return
        if self.end_s > length + 1e-3:
            raise ConfigError(f"--example {self.path}@{self.start_s:g}-{self.end_s:g}: {said}; give a span within it",
                              f"START-END in seconds between 0 and {length:.3g}")
        if self.end_s - self.start_s > MAX_EXAMPLE_S:
            raise ConfigError(f"--example {self.path}@{self.start_s:g}-{self.end_s:g}: the span is longer than one "
                              f"call (at most {MAX_EXAMPLE_S:g} s)",
                              "give one call's span: --example RECORDING@START-END, e.g. a few seconds")


def embed_examples(detector, examples: list[Example]) -> np.ndarray:
    """One query vector per example: the mean embedding of its windows (the bundle's window and hop; a clip
    shorter than a window is padded as training pads it)."""
    from hootwatch.edge.contract.audio import load
    from hootwatch.edge.contract.windows import slice_windows

    m = detector.manifest
    out = []
    for ex in examples:
        ex.check()
        dur = None if ex.end_s is None else ex.end_s - ex.start_s
        x = load(ex.path, m.sample_rate, start_s=ex.start_s, duration_s=dur)
        if not len(x):
            raise ConfigError(f"--example {ex.path}: no audio in it (or the span is past its end)",
                              "check the span: START-END in seconds within the recording")
        _, windows = slice_windows(x, m.window_spec)
        out.append(detector.embed(windows).mean(axis=0))
    return np.stack(out)


def write_ranked(path: str | os.PathLike, hits: list[Hit], names: dict[str, str]) -> Path:
    """CSV file, start_s, end_s, similarity (best first); `names`: file_key -> recording path."""
    import io

    from hootwatch.edge.core.fsio import write_atomic

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "start_s", "end_s", "similarity", "file_key"])
    for h in hits:
        w.writerow([names.get(h.file_key, h.file_key), h.start_s, h.end_s, h.similarity, h.file_key])
    return write_atomic(path, buf.getvalue())


def read_ranked(path: str | os.PathLike) -> list[Hit]:
    p = Path(path)
    if not p.is_file():
        return []
    with open(p, newline="") as f:
        return [Hit(r["file_key"], float(r["start_s"]), float(r["end_s"]), float(r["similarity"]))
                for r in csv.DictReader(f)]
