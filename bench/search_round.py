"""Search-by-example and `fit` figures (issue 22). Prints numbers; asserts nothing.

    python bench/search_round.py [--windows 1000000] [--dim 768] [--hours 1000]

1. seconds per search over N stored windows (synthetic float16 embeddings of `dim`, brute force, best of 3);
2. store growth per recorder-hour (bytes a window in the table x windows an hour at the hop);
3. time of `fit` (Newton/IRLS) on 2,000 labelled windows, and of a rescore of `hours` recorder-hours of stored
   embeddings with the head (the matmul and sigmoid; the SQLite reads and event merging are not in it);
4. precision at 20 and 100 from 3 example calls on an unseen synthetic night, and one round (`fit` on <= 100
   reviewed windows of recorder A) then precision / recall / false positives per hour on recorder B, with the
   tests' tone bundle whose "embedding" is band powers (tests/embed_bundles.py): a check of the loop's plumbing,
   NOT a figure for wav2vec2 embeddings (that needs an exported model and the synthetic calls; not done yet).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def search_speed(n: int, dim: int) -> float:
    from hootwatch.edge.review.search import EmbeddingIndex
    rng = np.random.default_rng(0)
    vectors = np.empty((n, dim), np.float16)
    for i in range(0, n, 100_000):
        vectors[i:i + 100_000] = rng.standard_normal((min(100_000, n - i), dim)).astype(np.float16)
    index = EmbeddingIndex("m", "", 16000, 80000, ["f"], np.zeros(n, np.int32), np.arange(n, dtype=np.int64) * 40000,
                           vectors)
    q = rng.standard_normal((3, dim)).astype(np.float32)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        index.rank(q, top=200)
        best = min(best, time.perf_counter() - t)
    return best


def fit_and_rescore(dim: int, hours: float, hop_s: float = 2.5) -> tuple[float, float]:
    from hootwatch.edge.review.fit import fit_logistic
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, dim)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.standard_normal(2000) > 1.5).astype(int)
    t = time.perf_counter()
    head, _ = fit_logistic(x, y)
    t_fit = time.perf_counter() - t
    n = int(hours * 3600 / hop_s)
    chunk = rng.standard_normal((100_000, dim)).astype(np.float16)
    t = time.perf_counter()
    for i in range(0, n, len(chunk)):
        head.score(chunk[:min(len(chunk), n - i)].astype(np.float32))
    return t_fit, time.perf_counter() - t


def tone_round() -> dict:
    import soundfile as sf
    from embed_bundles import embedding_bundle
    from test_search_loop import SR, night
    from tiny_bundles import tone_signal
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.review.fit import fit_logistic, labelled_windows, write_head_bundle
    from hootwatch.edge.review.search import EmbeddingIndex, Example, embed_examples
    from hootwatch.edge.scan.engine import ScanSettings, scan_into
    from hootwatch.edge.scan.rescore import rescore
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.store.database import STORE_NAME, DetectionStore
    from hootwatch.edge.store.labels import LabelBook

    rng = np.random.default_rng(5)
    root = Path(tempfile.mkdtemp(prefix="search-bench-"))
    bundle = embedding_bundle(root / "b")
    det = Detector.load(bundle, threads=1)

    def calls(k):
        starts = np.sort(rng.choice(np.arange(2, 170, 6), k, replace=False))
        return [(float(a), float(a) + 4.0) for a in starts]
    truth = {}
    for rec in ("A", "B"):
        owl, conf = calls(8), calls(6)
        conf = [c for c in conf if not any(a < c[1] and c[0] < b for a, b in owl)]
        night(root / rec / "20240101_200000.wav", owl, conf, seed=ord(rec)).rename(root / rec / "20240101_200000.wav")
        truth[rec] = owl
        scan_into([root / rec], det, root / f"out{rec}", ScanSettings(tz="UTC"))
    examples = []
    for i in range(3):
        p = root / f"ex{i}.wav"
        sf.write(p, tone_signal(4.0, SR, [(0.3, 3.7)], seed=100 + i), SR)
        examples.append(Example(p))

    def is_owl(rec, a, b):
        return any(min(b, y) - max(a, x) >= 1.0 for x, y in truth[rec])
    out = {}
    with DetectionStore(root / "outA" / STORE_NAME) as store:
        index = EmbeddingIndex.load(store)
        hits = index.rank(embed_examples(det, examples), top=100)
        flags = [is_owl("A", h.start_s, h.end_s) for h in hits]
        out["p@20"], out["p@100"] = float(np.mean(flags[:20])), float(np.mean(flags[:100]))
        book = LabelBook(store)
        path = store.recording_path(index.file_keys[0])
        for h in hits[:100]:   # the reviewer: the top 100 search results, labelled from the truth
            book.add(h.file_key, path, h.start_s, h.end_s, "owl" if is_owl("A", h.start_s, h.end_s) else "not_owl")
        t = time.perf_counter()
        data = labelled_windows(store, index)
        head, _ = fit_logistic(data.x, data.y)
        out["fit_s"] = time.perf_counter() - t
        b2 = write_head_bundle(load_bundle(bundle), root / "b2", head, data.summary())
    for name, b in (("before", load_bundle(bundle)), ("after", load_bundle(root / "b2"))):
        with DetectionStore(root / "outB" / STORE_NAME) as store:
            src = [r for r in store.runs()][-1]["run_key"]
            run = rescore(store, src, b) if b.manifest.head else None
            rows = store.detections(run.run_key if run else src)
        tp = sum(any(r["start_s"] < y and x < r["end_s"] for x, y in truth["B"]) for r in rows)
        found = sum(any(r["start_s"] < y and x < r["end_s"] for r in rows) for x, y in truth["B"])
        out[name] = {"precision": tp / len(rows) if rows else float("nan"), "recall": found / len(truth["B"]),
                     "fp_per_hour": (len(rows) - tp) / (180 / 3600)}
    out["model_after"] = b2.model_id
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--hours", type=float, default=1000.0)
    ap.add_argument("--hop", type=float, default=2.5)
    a = ap.parse_args()
    print(f"search: {search_speed(a.windows, a.dim):.2f} s over {a.windows:,} windows of {a.dim} dims (float16, "
          f"brute force, 3 examples)")
    per_window = 2 * a.dim + 4   # float16 vector + ~4 B of start delta before zlib
    print(f"store growth: {per_window * 3600 / a.hop / 1e6:.2f} MB per recorder-hour of embeddings at hop {a.hop:g} s "
          f"({per_window} B a window; window scores and detections come on top, as before)")
    t_fit, t_rescore = fit_and_rescore(a.dim, a.hours, a.hop)
    print(f"fit: {t_fit:.2f} s on 2,000 labelled windows of {a.dim} dims; rescore of {a.hours:g} h "
          f"({int(a.hours * 3600 / a.hop):,} windows): {t_rescore:.1f} s (head only)")
    r = tone_round()
    print(f"tone bundle (plumbing check, not wav2vec2): p@20 {r['p@20']:.2f}, p@100 {r['p@100']:.2f}; fit "
          f"{r['fit_s'] * 1000:.0f} ms; recorder B before {r['before']}, after {r['after']}")


if __name__ == "__main__":
    main()
