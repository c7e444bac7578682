"""Detections of a whole archive from a bundle with a fitted head, from the stored embeddings (no audio decoded).

    run = rescore(store, store.scored_run(None), bundle)   # -> the new run's RunInfo

For each file of the source run (its window grid: window_scores), every window with a stored embedding of the
bundle's backbone at the run's hop gets the head's score (`LinearHead.score`, the function the detector scores
with); a window with none (a cascade's first stage rejected it) stays NaN, below every threshold, as in a scan.
The windows then go through the same merging as a scan and a rebuild (`events.merge_windows`, the EventBuilder
of the score loop) at the bundle's threshold and min_hits, and each file's detections, ledger row and window
scores are written in one transaction as a new run (model id: the head's, `Manifest.model_id`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import datetime

import numpy as np

from hootwatch.edge.contract.bundle import Bundle
from hootwatch.edge.contract.events import merge_windows, windows_at_hop
from hootwatch.edge.contract.head import LinearHead
from hootwatch.edge.contract.recorder_time import FileTime, parse_tz
from hootwatch.edge.core.errors import ConfigError
from hootwatch.edge.store.database import DetectionStore, RunInfo
from hootwatch.edge.store.embeddings import read_embeddings
from .engine import detection_of


def rescore(store: DetectionStore, run_key: str, bundle: Bundle) -> RunInfo:
    m = bundle.manifest
    if not m.head:
        raise ConfigError(f"{bundle.path}: has no fitted head, so there is nothing to rescore with",
                          "pass a bundle written by `hootwatch fit`, or rescan the recordings with this one")
    head = LinearHead.from_manifest(m)
    ledger = {r.file_key: r for r in store.ledger_rows(run_key, status="done")}
    names = store.detection_files(run_key)
    new, files = None, 0
    for ws in store.window_scores(run_key):
        row = ledger.get(ws.file_key)
        info = json.loads(ws.run)
        hop = int(round(float(info.get("hop_s", m.hop_s)) * ws.sample_rate))
        stored = read_embeddings(store.conn, m.backbone_id, ws.file_key, hop)
        if row is None or not stored:
            continue
        files += 1
        e = stored[0]
        scores = np.full(len(ws.starts), np.nan, np.float32)
        at = {int(s): i for i, s in enumerate(ws.starts.tolist())}
        idx = [at.get(int(s), -1) for s in e.starts.tolist()]
        ok = np.array([i >= 0 for i in idx], bool)
        if ok.any():
            scores[np.array(idx)[ok]] = head.score(e.floats()[ok])
        src_hop = float(info.get("hop_s", m.hop_s))
        k = windows_at_hop(m.min_hits, m.hop_s, src_hop)
        new = RunInfo(model_id=m.model_id, model_sha256=m.files.get(m.model_file, ""), threshold=float(m.threshold),
                      hop_s=src_hop, min_hits=k, label=m.positive_label)
        ftime = FileTime(datetime.fromisoformat(row.start_utc), parse_tz(ws.local_tz) or parse_tz("UTC"),
                         row.time_source, row.recorder_id)
        events = merge_windows(ws.starts, ws.ends, scores, new.threshold, k, end_sample=ws.clamp_end or None)
        name = names.get(ws.file_key, row.path)
        dets = [detection_of(ev, ftime, ws.sample_rate, m.positive_label, ws.file_key, name) for ev in events]
        run_json = json.dumps(asdict(new) | {"bundle_hop_s": m.hop_s, "rescored_from": run_key})
        store.commit_rebuilt(new, row, dets, replace(ws, scores=scores, model_id=m.model_id, run=run_json))
    if new is None:
        raise ConfigError(f"run {run_key!r}: no file has stored embeddings of this bundle's backbone "
                          f"({m.backbone_id})",
                          "scan (or `hootwatch embed`) the recordings with the bundle the head was fitted on")
    return new
