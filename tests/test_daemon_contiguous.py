"""The daemon links contiguous files it already holds, as a scan does (issue 13 item 1): same rows as `scan`."""

from __future__ import annotations

import soundfile as sf

from hootwatch.edge.daemon.config import config_from_dict
from hootwatch.edge.daemon.service import Daemon
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.scan.engine import ScanSettings, scan_into

from daemon_helpers import run_daemon_until
from tiny_bundles import tone_bundle, tone_signal

SR = 8000


def test_a_call_heard_only_across_the_boundary_is_found_by_the_daemon_as_by_scan(tmp_path):
    bundle = tone_bundle(tmp_path / "bundle", sample_rate=SR)
    # a 2 s call from 29 s to 31 s of one recording cut into two 30 s files: no window of either file alone holds
    # more than 1 s of it (20 %); the window from 27.5 s in `a`, running on into `b`, holds all of it
    x = tone_signal(60, SR, tones=[(29, 31)])
    inbox = tmp_path / "in"
    inbox.mkdir()
    sf.write(inbox / "20240101_220000.wav", x[:30 * SR], SR, subtype="FLOAT")
    sf.write(inbox / "20240101_220030.wav", x[30 * SR:], SR, subtype="FLOAT")
    summary, _ = scan_into([inbox], Detector.load(bundle, threads=1), tmp_path / "scan", ScanSettings(tz="UTC"))
    assert summary.n_detections == 1
    cfg = config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1},
        "sources": {"folder": {"path": str(inbox), "settle_s": 0.0, "poll_interval_s": 0.5}},
        "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
        "health": {"status_every_s": 0.5, "watchdog": False},
    })
    daemon = Daemon(cfg)
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 2)
    from hootwatch.edge.store.database import DetectionStore

    with DetectionStore(tmp_path / "out" / "detections.sqlite") as store:
        rows = [(r["begin_utc"], r["end_utc"]) for r in store.detections()]
    assert rows == [("2024-01-01T22:00:27.500+00:00", "2024-01-01T22:00:30.000+00:00")]
