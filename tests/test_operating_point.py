"""min_hits chosen on annotated audio by event-level F1, with the deterministic tone bundle."""

import csv

from hootwatch.edge.detector import Detector
from hootwatch.edge.evaluate import load_detections
from hootwatch.edge.scan import ScanSettings, scan_into
from hootwatch.export.operating_point import choose_min_hits

from tiny_bundles import tone_bundle, write_tone

SR = 8000


def test_min_hits_is_chosen_where_one_window_blips_are_false_alarms(tmp_path):
    bundle = tone_bundle(tmp_path / "bundle", sample_rate=SR)
    night = tmp_path / "night"
    owls, blips = [(10.0, 15.0), (35.0, 40.0)], [(24.0, 25.8), (49.0, 50.8)]   # blips fill one window (hop 2.5 s)
    write_tone(night / "AM01" / "20240501_090000.WAV", 60, sample_rate=SR, tones=owls + blips)
    with open(night / "ground_truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "start_s", "end_s", "label", "snr_db"])
        w.writerows([["AM01/20240501_090000.WAV", a, b, "owl", 10] for a, b in owls] +
                    [["AM01/20240501_090000.WAV", a, b, "boobook", 10] for a, b in blips])

    point = choose_min_hits(bundle, night, night / "ground_truth.csv", tmp_path / "work", tz="UTC", threads=1)

    one, two, three = point.metrics[1], point.metrics[2], point.metrics[3]
    assert (one.precision, one.recall, one.by_confuser) == (0.5, 1.0, {"boobook": 2})
    assert (two.precision, two.recall) == (1.0, 1.0) and (three.precision, three.recall) == (1.0, 1.0)
    assert point.min_hits == 2        # a tie goes to the smaller min_hits, which keeps more short calls


def test_keeping_detections_of_k_windows_equals_scanning_with_min_hits_k(tmp_path):
    detector = Detector.load(tone_bundle(tmp_path / "bundle", sample_rate=SR), threads=1)
    rec = write_tone(tmp_path / "rec" / "20240501_090000.WAV", 90, sample_rate=SR,
                     tones=[(3.0, 4.6), (10.0, 15.0), (24.0, 25.8), (35.0, 44.0), (60.0, 63.0)])
    _, once = scan_into([rec], detector, tmp_path / "k1", ScanSettings(tz="UTC", min_hits=1))
    for k in (1, 2, 3):
        _, direct = scan_into([rec], detector, tmp_path / f"direct{k}", ScanSettings(tz="UTC", min_hits=k))
        assert load_detections(once["csv"], min_windows=k) == load_detections(direct["csv"]), k
    assert len(load_detections(once["csv"])) > len(load_detections(once["csv"], min_windows=3)) > 0
