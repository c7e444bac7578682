"""The review queues over many stored windows (issue 24): a request's memory stays far below one object per stored
window, and near / random / uncertain / search / the filter lists give exactly what the one-object-per-window
implementation gave (kept below as the reference, over `Queues.windows()`).

The stores are written straight through the store's own `commit_file` (no audio, no model): cheap."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from hootwatch.edge.review.queues import Filters, Queues, _logit, _run_threshold
from hootwatch.edge.review.search import EmbeddingIndex, Hit
from hootwatch.edge.store.database import Detection, DetectionStore, RunInfo, iso
from hootwatch.edge.store.embeddings import WindowEmbeddings
from hootwatch.edge.store.labels import LabelBook
from hootwatch.edge.store.window_scores import WindowScores

SR, HOP, WIN = 16000, 2.5, 5.0
RUN = RunInfo("scale-test", "0" * 64, 0.5, HOP, 2, "owl")


def fill(store: DetectionStore, n_files: int, minutes: float, seed: int = 0, nan_every: int = 0) -> list[str]:
    """`n_files` recordings of `minutes` each on two recorders in Sydney's zone, starting at 21:00 local, one
    each night; the last starts at 11:55 local so that it runs across noon (two nights). Scores random, with
    ties (rounded to 1/64) and, every `nan_every`-th window, a window a cascade's first stage passed over."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 / HOP)
    starts = (np.arange(n) * HOP * SR).astype(np.int64)
    paths = []
    for i in range(n_files):
        t0 = datetime(2026, 1, 1, 10, tzinfo=timezone.utc) + timedelta(days=i)   # 21:00 in Sydney (+11)
        if i == n_files - 1:
            t0 = datetime(2026, 1, 1, 0, 55, tzinfo=timezone.utc)                 # 11:55 in Sydney
        path = f"/cards/{'AB'[i % 2]}/{t0:%Y%m%d_%H%M%S}.wav"
        scores = np.round(rng.beta(0.5, 3.0, n) * 64) / 64
        if nan_every:
            scores[::nan_every] = np.nan
        dets = []
        for k in rng.choice(n - 2, 2, replace=False):
            s = float(starts[k]) / SR
            b, e = t0 + timedelta(seconds=s), t0 + timedelta(seconds=s + WIN + HOP)
            dets.append(Detection(f"path:{path}", path, int(starts[k]), round(s, 3), round(s + WIN + HOP, 3), iso(b),
                                  iso(e), iso(b), iso(e), "owl", 0.9, 0.8, 2, "filename"))
        store.commit_file(path, RUN, dets, audio_s=minutes * 60, start_utc=iso(t0), time_source="filename",
                          window_scores=WindowScores(starts, scores.astype(np.float32), SR, int(WIN * SR),
                                                     RUN.model_id, local_tz="Australia/Sydney",
                                                     clamp_end=int(minutes * 60 * SR)))
        paths.append(path)
    return paths


# the implementation before issue 24, one Item per stored window: the reference the queues must still match
def ref_near(q: Queues, limit: int = 500, filters: Filters = Filters()):
    spans: dict = {}
    for d in q.store.detections(q.run_key):
        spans.setdefault(d["file_key"], []).append((d["start_s"], d["end_s"]))
    free = [w for w in q.windows() if w.score is not None and filters.keep(w)
            and not any(a < w.end_s and w.start_s < b for a, b in spans.get(w.file_key, ()))]
    free.sort(key=lambda w: -w.score)
    return [q._labelled(w) for w in free[:limit]]


def ref_random(q: Queues, n: int = 200, seed: int = 0, filters: Filters = Filters()):
    pool = [w for w in q.windows() if filters.keep(w)]
    pick = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
    return [q._labelled(pool[i]) for i in pick]


def ref_uncertain(q: Queues, n: int = 200, filters: Filters = Filters()):
    t = _logit(_run_threshold(q.run_key))
    pool = sorted((w for w in q.windows() if w.score is not None and filters.keep(w)),
                  key=lambda w: abs(_logit(w.score) - t))
    out = [w for w in map(q._labelled, pool) if not w.label]
    return out[:n]


def ref_ranked(q: Queues, hits, n: int = 200, filters: Filters = Filters()):
    by_span = {(w.file_key, w.start_s): w for w in q.windows()}
    out = []
    for h in hits:
        w = by_span.get((h.file_key, round(h.start_s, 3)))
        if w is not None and filters.keep(w):
            out.append(replace(q._labelled(w), similarity=h.similarity))
        if len(out) >= n:
            break
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "detections.sqlite"
    with DetectionStore(path) as store:
        paths = fill(store, 6, 20, nan_every=7)
        book = LabelBook(store)
        q = Queues(store, RUN.run_key)
        for w in q.uncertain(n=3) + q.near_misses(limit=2):   # labelled windows leave the uncertain queue
            book.add(w.file_key, paths[0], w.start_s, w.end_s, "not_owl")
    return path


FILTERS = [Filters(), Filters(recorder="B"), Filters(min_score=0.2, max_score=0.6),
           Filters(night="2026-01-03"), Filters(night="2025-12-31"), Filters(night="2026-01-01", min_score=0.5),
           Filters(recorder="B", night="2026-01-02")]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: f"{f.recorder}|{f.night}|{f.min_score}-{f.max_score}")
def test_the_streaming_queues_give_what_one_object_per_window_gave(small, filters):
    with DetectionStore(small) as store:
        q = Queues(store, RUN.run_key)
        assert q.near_misses(limit=40, filters=filters) == ref_near(q, 40, filters)
        assert q.uncertain(n=30, filters=filters) == ref_uncertain(q, 30, filters)
        for seed, n in ((0, 25), (7, 10), (3, 100000)):
            assert q.random(n, seed, filters) == ref_random(q, n, seed, filters)
        hits = [Hit(w.file_key, w.start_s, w.end_s, 1 - k / 100) for k, w in enumerate(ref_random(q, 60, 5))]
        hits.insert(3, Hit("path:/cards/nowhere.wav", 5.0, 10.0, 0.5))
        assert q.ranked(hits, 20, filters) == ref_ranked(q, hits, 20, filters)


def test_the_filter_lists_come_from_the_files_and_match_every_windows_own(small):
    with DetectionStore(small) as store:
        q = Queues(store, RUN.run_key)
        items = q.windows()
        choices = q.filter_choices()
        assert choices == {"recorders": sorted({w.recorder for w in items}), "nights": sorted({w.night for w in items})}
        assert "2025-12-31" in choices["nights"] and "2026-01-01" in choices["nights"]   # the file across noon
        labelled = {(x.file_key, x.start_s) for x in LabelBook(store).current()}
        assert labelled and not labelled & {(w.file_key, w.start_s) for w in q.uncertain(n=10 ** 6)}


def test_a_queue_request_over_many_windows_stays_far_below_one_object_per_window(tmp_path):
    with DetectionStore(tmp_path / "detections.sqlite") as store:
        fill(store, 120, 60, seed=1)                          # 120 recorder-hours: 172,800 windows
        q = Queues(store, RUN.run_key)
        total = sum(f.n_windows for f in q.files())
        tracemalloc.start()
        one_file = Queues(store, RUN.run_key)._scores([0])
        i, starts, scores = next(one_file)
        items = [q.files()[i].item(s, p) for s, p in zip(starts.tolist(), scores.tolist())]
        per_window = tracemalloc.get_traced_memory()[0] / len(items)   # what every window's object cost before
        del items, one_file
        peaks = {}
        for name, call in {"filters": q.filter_choices, "near": lambda: q.near_misses(),
                           "random": lambda: q.random(200, 3), "uncertain": lambda: q.uncertain(200),
                           "random scored": lambda: q.random(200, 3, Filters(min_score=0.3))}.items():
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            assert call()
            peaks[name] = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
    assert per_window > 200
    for name, peak in peaks.items():   # one object per window would be total * per_window (tens of MB)
        assert peak < 0.03 * total * per_window, (name, peak, total * per_window)


def test_more_like_this_keeps_its_embedding_index_until_the_store_changes(tmp_path):
    with DetectionStore(tmp_path / "detections.sqlite") as store:
        paths = fill(store, 2, 1)
        rng = np.random.default_rng(0)

        def embed(path):
            n = 24
            store.commit_file(path, RUN, [], audio_s=60, start_utc="2026-01-01T10:00:00.000+00:00",
                              window_scores=WindowScores(np.arange(n) * int(HOP * SR), np.zeros(n, np.float32), SR,
                                                         int(WIN * SR), RUN.model_id),
                              embeddings=WindowEmbeddings(np.arange(n) * int(HOP * SR),
                                                          rng.standard_normal((n, 8)).astype(np.float16), "bb", -1,
                                                          SR, int(WIN * SR), int(HOP * SR)))
        embed(paths[0])
        first = EmbeddingIndex.cached(store)
        assert EmbeddingIndex.cached(store) is first and len(first) == 24
        embed(paths[1])
        second = EmbeddingIndex.cached(store)
        assert second is not first and len(second) == 48
        like = Queues(store, RUN.run_key).like(second.file_keys[0], 0.0, 5.0, n=5)
        assert len(like) == 5 and (0.0, 5.0) not in [(w.start_s, w.end_s) for w in like if w.file_key ==
                                                     second.file_keys[0]]
