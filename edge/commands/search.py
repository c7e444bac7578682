"""`hootwatch search OUTDIR --example CLIP [--example CLIP ...]`: the stored windows most like a few example calls,
best first, as a review queue ("search" in `hootwatch review OUTDIR`) and optionally a CSV.

An example is an audio clip, or `RECORDING@START-END` (seconds). The examples are embedded with --model and the
windows that bundle's graph embedded are searched (without --model: the bundle of the graph with the most stored
windows), each ranked by its best cosine similarity with any example (edge/review/search.py).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="rank stored windows by similarity to example calls (a review queue)",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch search results/ --example hoot1.wav "
                                     "--example night2.wav@310-315 --out ranked.csv")
    p.add_argument("out", metavar="OUTDIR", help="the output folder of a scan or `hootwatch embed`")
    p.add_argument("--example", action="append", required=True, metavar="CLIP",
                   help="an example call: a clip file, or RECORDING@START-END in seconds (repeat it)")
    p.add_argument("--model", default=None, metavar="BUNDLE",
                   help="the bundle to embed the examples with; the windows its graph embedded are searched "
                        "(default: the bundle of the graph with the most stored windows)")
    p.add_argument("--top", type=int, default=200, metavar="N", help="windows to keep (default 200)")
    p.add_argument("--out", dest="csv", default=None, metavar="RANKED.csv",
                   help="also write file, start_s, end_s, similarity (best first) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from hootwatch.edge.core.errors import ConfigError
    from hootwatch.edge.review.search import SEARCH_FILE, EmbeddingIndex, Example, embed_examples, write_ranked
    from hootwatch.edge.store.database import open_store

    if args.top < 1:
        raise ConfigError(f"--top {args.top}: must be at least 1", "e.g. --top 200")
    examples = [Example.parse(e) for e in args.example]
    for ex in examples:   # before the index is read: a typo should not wait for 10^6 windows
        ex.check()
    with open_store(args.out) as store:
        t0 = time.perf_counter()
        if args.model:   # its own backbone's windows, whichever backbone has the most
            det = _detector(args.model)
            index = EmbeddingIndex.load(store, det.manifest.backbone_id)
        else:
            index = EmbeddingIndex.load(store)
            if not index.bundle or not Path(index.bundle).is_dir():
                raise ConfigError(f"the bundle that made the stored embeddings ({index.bundle or 'unknown'}) is not "
                                  "here", "pass it with --model BUNDLE")
            det = _detector(index.bundle)
        hits = index.rank(embed_examples(det, examples), top=args.top)
        names = {k: store.recording_path(k) or k for k in {h.file_key for h in hits}}
        write_ranked(Path(args.out) / SEARCH_FILE, hits, names)
        if args.csv:
            write_ranked(args.csv, hits, names)
        wall = time.perf_counter() - t0
    print(f"{len(hits)} window(s) of {len(index)} ranked in {wall:.1f} s; best:")
    for h in hits[:5]:
        print(f"  {h.similarity:.3f}  {names[h.file_key]}  {h.start_s:.1f}-{h.end_s:.1f} s")
    written = f"; written to {args.csv}" if args.csv else ""
    print(f"review them: hootwatch review {args.out}  (queue 'search results'){written}")
    return 0


def _detector(bundle):
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.core.errors import ConfigError

    det = Detector.load(bundle, threads=2)
    if not det.embeds:
        raise ConfigError(f"--model {bundle}: this bundle outputs no embedding",
                          "pass the bundle the recordings were scanned or embedded with")
    return det
