"""The bundle's operating point (threshold, min_hits) chosen on annotated audio, with the deterministic tone bundle."""

import csv

from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.tables.evaluate import load_detections
from hootwatch.edge.scan.engine import ScanSettings, scan_into
from hootwatch.edge.scan.offline import detections_at, score_windows
from hootwatch.export.operating_point import choose_operating_point

from tiny_bundles import tone_bundle, write_tone

SR = 8000
FILE = "AM01/20240501_090000.WAV"


def _night(root, owls, others):
    write_tone(root / FILE, 60, sample_rate=SR, tones=owls + [span for span, _ in others])
    with open(root / "ground_truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "start_s", "end_s", "label", "snr_db"])
        w.writerows([[FILE, a, b, "owl", 10] for a, b in owls] + [[FILE, a, b, label, 10] for (a, b), label in others])
    return root


def test_min_hits_is_chosen_where_one_window_blips_are_false_alarms(tmp_path):
    bundle = tone_bundle(tmp_path / "bundle", sample_rate=SR)
    # hop 2.5 s: each owl lies whole in two windows (1.6 s: 32 % of each), each boobook blip in one (1.8 s: 36 %),
    # so no threshold keeps the owls and drops the blips; two windows in a row do
    night = _night(tmp_path / "night", [(10.4, 12.0), (35.4, 37.0)],
                   [((24.0, 25.8), "boobook"), ((49.0, 50.8), "boobook")])

    chosen = choose_operating_point(bundle, night, night / "ground_truth.csv", threads=1)

    assert all(m.f1 < 1.0 for (t, k), m in chosen.grid.items() if k == 1)
    one = chosen.grid[(0.5, 1)]
    assert (one.precision, one.recall, one.by_confuser) == (0.5, 1.0, {"boobook": 2})
    assert chosen.point.min_hits == 2 and (chosen.metrics.precision, chosen.metrics.recall) == (1.0, 1.0)
    # every threshold that separates tone from noise ties: the middle of them is taken, not an edge
    tied = sorted(t for (t, k), m in chosen.grid.items() if k == 2 and m.f1 == 1.0)
    assert len(tied) > 2 and chosen.point.threshold == tied[len(tied) // 2]
    assert chosen.to_dict("test")["min_hits"] == 2 and chosen.to_dict("test")["threshold"] == chosen.point.threshold


def test_a_wide_plateau_beats_a_slightly_higher_f1_on_a_cliff():
    from hootwatch.export.operating_point import pick

    thresholds = (0.1, 0.3, 0.5, 0.7, 0.9, 0.98)
    # min_hits 1: one lucky threshold on a cliff edge; min_hits 2: a plateau just below it
    f1 = {(t, 1): 0.80 for t in thresholds} | {(0.98, 1): 0.955}
    f1 |= {(t, 2): 0.95 for t in (0.3, 0.5, 0.7, 0.9)} | {(0.1, 2): 0.90, (0.98, 2): 0.93}
    assert pick(f1) == (0.7, 2)            # the middle (upper of the two central ones) of 0.3-0.9
    assert pick(f1, tolerance=0.0) == (0.98, 1)
    # equal plateaus: fewer windows
    assert pick({(0.5, 1): 0.9, (0.6, 1): 0.9, (0.5, 2): 0.9, (0.6, 2): 0.9}) == (0.6, 1)


def test_scored_windows_merge_into_exactly_the_scans_detections(tmp_path):
    detector = Detector.load(tone_bundle(tmp_path / "bundle", sample_rate=SR), threads=1)
    night = _night(tmp_path / "night", [(3.0, 4.6), (10.0, 15.0), (35.0, 44.0)], [((24.0, 25.8), "boobook")])
    files = score_windows(detector, night)
    m = detector.manifest
    for k in (1, 2, 3):
        _, paths = scan_into([night], detector, tmp_path / f"scan{k}", ScanSettings(tz="UTC", min_hits=k))
        scanned = [(d.start_s, d.end_s) for d in load_detections(paths["csv"])]
        ours = [(d.start_s, d.end_s) for d in detections_at(files, m.window_spec.window_samples, SR, m.threshold, k)]
        assert ours == scanned and scanned, k
