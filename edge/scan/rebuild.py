"""Detections for another operating point, rebuilt from the window scores a scan kept (no audio is decoded).

    run = rebuild(store, store.scored_run(run_key), threshold=0.7, min_hits=2)   # -> the new run's RunInfo

The new run has the source run's model and hop, the new threshold and min_hits; its rows are what a scan with
those settings would have written (same merging, `events.merge_windows`; same times, `scan.detection_of`), and
each file's detections, ledger row and window scores are written in one transaction, as a scan writes them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import datetime

from hootwatch.edge.core.errors import ConfigError
from hootwatch.edge.contract.events import merge_windows, windows_at_hop
from hootwatch.edge.contract.operating_point import OperatingPoint, Wording
from hootwatch.edge.contract.recorder_time import FileTime, parse_tz
from .engine import detection_of
from hootwatch.edge.store.database import DetectionStore, RunInfo


def rebuild(store: DetectionStore, run_key: str, threshold: float, min_hits: int | None = None) -> RunInfo:
    """Detections of run `run_key` again at `threshold` and `min_hits` (None: the run's own min_hits)."""
    OperatingPoint(threshold, min_hits, wording=Wording(fix_threshold="pass e.g. --threshold 0.7"))
    files = store.window_scores(run_key)
    ledger = {r.file_key: r for r in store.ledger_rows(run_key, status="done")}
    names = store.detection_files(run_key)
    new = None
    for ws in files:
        row = ledger.get(ws.file_key)
        if row is None:
            continue
        info = json.loads(ws.run)
        src = RunInfo(**{k: info[k] for k in RunInfo.__dataclass_fields__ if k in info})  # older: no 'exhaustive'
        # min_hits is stated at the bundle's hop, as for `hootwatch scan` (events.windows_at_hop)
        bundle_hop = float(info.get("bundle_hop_s", src.hop_s))
        k = src.min_hits if min_hits is None else windows_at_hop(int(min_hits), bundle_hop, src.hop_s)
        new = replace(src, threshold=float(threshold), min_hits=k)
        ftime = FileTime(datetime.fromisoformat(row.start_utc), parse_tz(ws.local_tz) or parse_tz("UTC"),
                         row.time_source, row.recorder_id)
        events = merge_windows(ws.starts, ws.ends, ws.scores, threshold, k, end_sample=ws.clamp_end or None)
        name = names.get(ws.file_key, row.path)
        dets = [detection_of(e, ftime, ws.sample_rate, src.label, ws.file_key, name) for e in events]
        store.commit_rebuilt(new, row, dets, replace(ws, run=json.dumps(info | asdict(new))))
    if new is None:
        raise ConfigError(f"run {run_key!r} has no scanned files with window scores", "scan the recordings first")
    return new

