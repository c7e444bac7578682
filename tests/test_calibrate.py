"""Calibration from labels: a known score -> precision curve is recovered, the threshold lands in the bundle."""

import numpy as np
import pytest

from hootwatch.edge.contract.bundle import load_bundle, sha256_file
from hootwatch.edge.review.calibrate import CalibrationError, calibrate, fit, score_bins
from hootwatch.edge.commands.main import main
from hootwatch.edge.store.labels import LabelBook
from hootwatch.edge.store.database import DetectionStore

from review_helpers import scanned_store


def test_fit_recovers_a_known_score_to_precision_curve():
    rng = np.random.default_rng(0)
    s = rng.uniform(0.05, 0.999, 4000)
    true_p = 1 / (1 + np.exp(-(2.0 * np.log(s / (1 - s)) - 1.0)))  # a = 2, b = -1
    y = (rng.uniform(size=s.size) < true_p).astype(float)
    a, b = fit(s, y)
    assert abs(a - 2.0) < 0.2 and abs(b + 1.0) < 0.2
    bins = score_bins(s, y, 10)
    for row in bins:  # empirical precision per bin follows the curve
        mid = (row["lo"] + row["hi"]) / 2
        expect = 1 / (1 + np.exp(-(2 * np.log(mid / (1 - mid)) - 1)))
        assert abs(row["precision"] - expect) < 0.12
    cal = calibrate(s, y, 0.9)
    kept = y[s >= cal.threshold]
    assert abs(kept.mean() - 0.9) < 0.03 and cal.kept == kept.size


def test_too_few_labels_are_refused():
    with pytest.raises(CalibrationError, match="only 10 reviewed"):
        calibrate(np.linspace(0.5, 1, 10), np.array([0, 1] * 5, float), 0.9)


def test_calibrate_writes_the_threshold_into_the_bundle_and_keeps_the_model(tmp_path, capsys):
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import ScanSettings, scan_into

    from tiny_bundles import tone_bundle, write_tone

    bundle = tone_bundle(tmp_path / "bundle", sample_rate=8000)
    # 40 tones of 0.8 .. 3.5 s, 15 s apart: window scores from low to high; the long ones are the "owls"
    lengths = np.linspace(0.8, 3.5, 40)
    tones = [(15 * i + 5, 15 * i + 5 + d) for i, d in enumerate(lengths)]
    write_tone(tmp_path / "rec" / "20240101_100000.WAV", 15 * 40 + 5, 8000, tones=tones)
    out = tmp_path / "out"
    scan_into([tmp_path / "rec"], Detector.load(bundle, threads=1), out, ScanSettings(threshold=0.05))
    with DetectionStore(out / "detections.sqlite") as s:
        book = LabelBook(s)
        dets = s.detections()
        for d in dets:
            long_call = any(a < d["end_s"] and d["start_s"] < b and b - a >= 2.2 for a, b in tones)
            book.add(d["file_key"], d["file"], d["start_s"], d["end_s"], "owl" if long_call else "not_owl")
    assert len(dets) >= 30
    before = sha256_file(bundle / "model.onnx"), load_bundle(bundle).manifest.model_id
    assert main(["calibrate", str(out), "--bundle", str(bundle), "--target-precision", "0.9",
                 "--min-labels", "100"]) == 2
    assert "too few to calibrate" in capsys.readouterr().err and load_bundle(bundle).manifest.threshold == 0.5
    assert main(["calibrate", str(out), "--bundle", str(bundle), "--target-precision", "0.9"]) == 0
    assert f"on {len(dets)} reviewed" in capsys.readouterr().out
    m = load_bundle(bundle).manifest
    assert m.threshold != 0.5 and m.metrics["operating_point"]["target_precision"] == 0.9
    assert (sha256_file(bundle / "model.onnx"), m.model_id) == before
    kept = [d for d in dets if d["max_score"] >= m.threshold]
    owl = [d for d in kept if any(a < d["end_s"] and d["start_s"] < b and b - a >= 2.2 for a, b in tones)]
    assert len(owl) / len(kept) >= 0.85


def test_one_sided_labels_are_refused_saying_which_side_is_short():
    with pytest.raises(CalibrationError, match="only 3 reviewed detection.s. are not owl"):
        calibrate(np.linspace(0.9, 1, 99), np.array([1.0] * 96 + [0.0] * 3), 0.9)


def test_calibrate_refuses_a_run_the_store_does_not_have(tmp_path, capsys):
    bundle, _, out = scanned_store(tmp_path)
    with DetectionStore(out / "detections.sqlite") as s:
        [run] = {d["run_key"] for d in s.detections()}
    assert main(["calibrate", str(out), "--bundle", str(bundle), "--target-precision", "0.9", "--run", "nope"]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'detections.sqlite'}: no run 'nope' in this store" in err and run in err and "--run" in err
    assert load_bundle(bundle).manifest.threshold == 0.5


def test_bins_follow_where_the_scores_are():
    """A confident model's detections all score above 0.99: equal-width bins put them in one bin."""
    rng = np.random.default_rng(1)
    s = 1 - 10 ** rng.uniform(-6, -2, 200)
    y = (rng.uniform(size=200) < 0.7).astype(float)
    bins = score_bins(s, y, 5)
    assert [b["n"] for b in bins] == [40] * 5
    assert bins[0]["lo"] == s.min() and bins[-1]["hi"] == s.max()
    assert all(a["hi"] == b["lo"] and a["lo"] < a["hi"] for a, b in zip(bins, bins[1:]))
    assert sum(b["owl"] for b in bins) == y.sum()
    # tied scores (a saturated model says 1.0 often) fall in one bin each, none twice
    tied = np.r_[np.ones(50), np.linspace(0.5, 0.9, 50)]
    rows = score_bins(tied, np.ones(100), 10)
    assert sum(b["n"] for b in rows) == 100 and rows[-1]["hi"] == 1.0


def test_the_panel_says_too_few_exactly_when_calibrate_refuses():
    from hootwatch.edge.review.calibrate import MIN_LABELS, precision_panel
    for n, n_owl in ((MIN_LABELS - 1, 12), (MIN_LABELS, 15), (MIN_LABELS + 10, 2), (15, 7)):
        s, y = np.linspace(0.9, 1, n), np.r_[np.ones(n_owl), np.zeros(n - n_owl)]
        panel = precision_panel(s, y)
        try:
            calibrate(s, y, 0.9)
            refused = ""
        except CalibrationError as exc:
            refused = exc.message
        assert panel["labelled"] == n and panel["min_labels"] == MIN_LABELS
        assert panel["too_few"] == refused and bool(refused) == (n < MIN_LABELS or min(n_owl, n - n_owl) < 5)


def test_scores_near_one_are_told_apart():
    from hootwatch.edge.review.calibrate import score_text
    texts = [score_text(s) for s in (0.5, 0.9991, 0.9999, 0.99999, 1 - 6e-8, 1.0, 2e-5)]
    assert len(set(texts)) == len(texts)
    assert texts[2].startswith("1 - 1.0e-4 (logit 9.21") and texts[5] == "1" and texts[6].startswith("2.0e-5")


def test_bin_edges_are_written_with_the_digits_that_tell_them_apart():
    s = 0.9975 + np.linspace(0, 4e-6, 40)  # a model whose detections all score 0.99750x
    rows = score_bins(s, np.ones(40), 4)
    ranges = [b["range"] for b in rows]
    assert len(rows) == 4 and len(set(ranges)) == 4 and all(" to " in r for r in ranges)
