"""One round of the agile loop with a reviewer simulated from ground truth: the demo's last step and the bench's.

    result = one_round(results_dir, recordings, truth, bundle, examples, round_dir)

1. search the store of `results_dir` with the example calls (edge/review/search.py);
2. the "reviewer" labels the SEARCH_ITEMS best hits, the UNCERTAIN_ITEMS windows of the scan's uncertain queue and
   RANDOM_ITEMS of its random sample (100 items in all), each from the ground truth: owl when the window holds at
   least MIN_OVERLAP_S of an owl call, else the sound the truth names there (or not_owl). The random ones stand for
   the night's ordinary background, which neither search nor the boundary shows;
3. `fit` a head on every labelled window's embedding and write the bundle `round_dir/bundle`;
4. rescore the whole store with it (`detections --bundle`, no audio decoded) and write its detections to
   `round_dir/detections.csv`.
Figures: search precision at 20 and 100, the labels used, fit and rescore seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

SEARCH_ITEMS = 50
UNCERTAIN_ITEMS = 25
RANDOM_ITEMS = 25
MIN_OVERLAP_S = 1.0


@dataclass(frozen=True)
class RoundResult:
    bundle: Path
    csv: Path
    precision_at_20: float
    precision_at_100: float
    labels: dict                 # label -> windows labelled
    fit_s: float
    rescore_s: float


def truth_label(truth_by_file: dict, path: str, a: float, b: float) -> str:
    events = truth_by_file.get(str(Path(path).resolve()), [])
    if any(min(b, t.end_s) - max(a, t.start_s) >= MIN_OVERLAP_S for t in events if t.label == "owl"):
        return "owl"
    other = [t for t in events if t.label != "owl" and min(b, t.end_s) > max(a, t.start_s)]
    return "not_owl" if not other else other[0].label


def one_round(results: Path, recordings: Path, truth: list, bundle: Path, examples: list[Path],
              round_dir: Path, threads: int | None = None,
              items: tuple[int, int, int] = (SEARCH_ITEMS, UNCERTAIN_ITEMS, RANDOM_ITEMS)) -> RoundResult:
    """`items`: how many search hits, uncertain and random windows the reviewer labels."""
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.review.fit import fit_head, write_head_bundle
    from hootwatch.edge.review.queues import Queues
    from hootwatch.edge.review.search import EmbeddingIndex, Example, embed_examples
    from hootwatch.edge.scan.rescore import rescore
    from hootwatch.edge.store.database import open_store
    from hootwatch.edge.store.exports import write_exports
    from hootwatch.edge.store.labels import LabelBook

    by_file: dict = {}
    for t in truth:
        by_file.setdefault(str((Path(recordings) / t.file).resolve()), []).append(t)
    with open_store(results) as store:
        run = store.latest_run()
        index = EmbeddingIndex.load(store)
        det = Detector.load(bundle, threads=threads)
        hits = index.rank(embed_examples(det, [Example(Path(p)) for p in examples]), top=100)
        paths = {k: store.recording_path(k) or "" for k in index.file_keys}
        owl = [truth_label(by_file, paths[h.file_key], h.start_s, h.end_s) == "owl" for h in hits]
        book = LabelBook(store)
        n_search, n_uncertain, n_random = items
        spans = [(h.file_key, h.start_s, h.end_s) for h in hits[:n_search]]
        queues = Queues(store, run)
        for n, queue in ((n_uncertain, queues.uncertain(n=n_uncertain + len(spans))),
                         (n_random, queues.random(n=n_random + len(spans) + n_uncertain, seed=1))):
            new = [(it.file_key, it.start_s, it.end_s) for it in queue]
            spans += [x for x in new if x not in set(spans)][:n]
        counts: dict = {}
        for key, a, b in spans:
            label = truth_label(by_file, paths[key], a, b)
            book.add(key, paths[key], a, b, label, reviewer="simulated from ground truth")
            counts[label] = counts.get(label, 0) + 1
        t0 = time.perf_counter()
        source = load_bundle(bundle)
        head, trained_on = fit_head(store, source)
        written = write_head_bundle(source, round_dir / "bundle", head, trained_on, overwrite=True)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rescored = rescore(store, store.scored_run(run), load_bundle(round_dir / "bundle"))
        rescore_s = time.perf_counter() - t0
        csv = write_exports(store, rescored.run_key, round_dir, written.sample_rate / 2)["csv"]
    n20, n100 = owl[:20], owl[:100]
    return RoundResult(round_dir / "bundle", csv, sum(n20) / max(len(n20), 1), sum(n100) / max(len(n100), 1),
                       counts, fit_s, rescore_s)
