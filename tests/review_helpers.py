"""A small store made by a real scan with the tone bundle: shared by the label, review and dataset tests."""

from __future__ import annotations

from pathlib import Path

from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.scan.engine import ScanSettings, scan_into

from tiny_bundles import tone_bundle, write_tone

SR = 8000
# two recorders, one 60 s file each; tones (calls) at known times
TONES = {"A/20240101_100000.WAV": [(10, 13), (40, 43)], "B/20240101_100000.WAV": [(20, 23)]}


def scanned_store(root: Path, threshold: float | None = None, min_hits: int | None = None,
                  seconds: float = 60.0, embeddings: bool = False) -> tuple[Path, Path, Path]:
    """(bundle, recordings folder, OUTDIR) after `scan` of the recordings (`embeddings`: with a bundle whose graph
    also gives each window's embedding, kept in the store for "more like this")."""
    bundle = root / "bundle"
    if not bundle.exists():
        if embeddings:
            from embed_bundles import embedding_bundle
            embedding_bundle(bundle, sample_rate=SR)
        else:
            tone_bundle(bundle, sample_rate=SR)
    rec = root / "rec"
    for name, tones in TONES.items():
        if not (rec / name).exists():
            write_tone(rec / name, seconds, SR, tones=tones, seed=len(name) + int(tones[0][0]))
    out = root / "out"
    scan_into([rec], Detector.load(bundle, threads=1), out, ScanSettings(threshold=threshold, min_hits=min_hits))
    return bundle, rec, out
