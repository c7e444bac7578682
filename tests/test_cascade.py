"""The two-stage cascade: first stage (numpy features + MLP) in the bundle, CascadeDetector as the scan's scorer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hootwatch.edge.contract.bundle import load_bundle
from hootwatch.edge.contract.cascade import CascadeDetector, load_detector, pass_rate_of
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.core.errors import BundleError
from hootwatch.edge.contract.first_stage import FILE_NAME, FirstStage, choose_pass_threshold, features
from hootwatch.edge.scan.engine import ScanSettings, scan_into
from hootwatch.edge.store.database import STORE_NAME, DetectionStore
from tiny_bundles import add_first_stage, tone_bundle, tone_signal, write_tone

SR = 8000


@pytest.fixture(scope="module")
def cascade_bundle(tmp_path_factory):
    return add_first_stage(tone_bundle(tmp_path_factory.mktemp("cascade") / "bundle", sample_rate=SR))


def test_features_ignore_the_recorders_gain_and_dc_offset():
    x = tone_signal(5.0, SR, [(1.0, 2.5)], seed=3)
    f = features(np.stack([x, 8 * x + 0.03]), SR)
    assert f.shape[0] == 2 and np.isfinite(f).all()
    np.testing.assert_allclose(f[0], f[1], atol=0.05)
    assert not np.allclose(f[0], features(tone_signal(5.0, SR, [], seed=3)[None], SR)[0], atol=1.0)


def test_pass_threshold_keeps_at_least_99_5_percent_of_the_full_models_positives():
    rng = np.random.default_rng(0)
    full = rng.uniform(size=2000)
    stage = np.clip(full + rng.normal(0, 0.2, size=2000), 0, 1)
    chosen = choose_pass_threshold(stage, full, 0.5)
    pos = full >= 0.5
    kept = (stage[pos] >= chosen.pass_threshold).mean()
    assert kept >= 0.995 and chosen.recall == pytest.approx(kept)
    # the highest such threshold: one step higher drops more than 0.5 %
    higher = np.sort(stage[pos])[np.searchsorted(np.sort(stage[pos]), chosen.pass_threshold, side="right")]
    assert (stage[pos] >= higher).mean() < 0.995
    assert choose_pass_threshold(stage, full, 1.1).pass_threshold == 0.0   # no positive: everything passes


def test_first_stage_file_round_trips_and_a_bad_one_is_refused(cascade_bundle, tmp_path):
    stage = FirstStage.load(cascade_bundle / FILE_NAME)
    x = np.stack([tone_signal(5.0, SR, [(0, 5)]), tone_signal(5.0, SR, [])])
    stage.save(tmp_path / "again.npz")
    np.testing.assert_array_equal(FirstStage.load(tmp_path / "again.npz").score(x), stage.score(x))
    (tmp_path / "bad.npz").write_bytes(b"not a numpy file")
    with pytest.raises(BundleError, match="bad.npz.*cannot be read"):
        FirstStage.load(tmp_path / "bad.npz")


def test_rejected_windows_carry_nan_and_passed_ones_the_full_models_score(cascade_bundle):
    det = load_detector(cascade_bundle, threads=1)
    full = Detector.load(cascade_bundle, threads=1)
    assert isinstance(det, CascadeDetector) and det.manifest == full.manifest
    x = np.stack([tone_signal(5.0, SR, tones, seed=i) for i, tones in
                  enumerate([[(0, 5)], [], [(2, 4)], [], [(0, 5)], []])])
    s, ref = det.score(x), full.score(x)
    passed = ~np.isnan(s)
    np.testing.assert_array_equal(s[passed], ref[passed])
    assert passed[[0, 2, 4]].all()                 # tones the full model calls owl are passed
    assert (~passed).sum() >= 2                    # and quiet noise is not
    assert det.counter.seen == 6 and det.counter.passed == passed.sum()
    assert pass_rate_of(det) == pytest.approx(passed.mean()) and pass_rate_of(full) == 1.0
    assert not (np.float32("nan") >= 0.0)         # below every threshold, 0 included


def test_old_bundles_and_exhaustive_get_the_plain_detector(cascade_bundle, tmp_path):
    old = tone_bundle(tmp_path / "old", sample_rate=SR)
    assert "first_stage" not in json.loads((old / "manifest.json").read_text()) or \
        not json.loads((old / "manifest.json").read_text())["first_stage"]
    assert type(load_detector(old, threads=1)) is Detector
    assert type(load_detector(cascade_bundle, threads=1, exhaustive=True)) is Detector
    # a manifest written before the field existed (no "first_stage" key) still loads
    raw = json.loads((old / "manifest.json").read_text())
    raw.pop("first_stage", None)
    (old / "manifest.json").write_text(json.dumps(raw))
    assert load_bundle(old).manifest.first_stage == {}


def test_a_first_stage_without_a_hash_or_threshold_is_refused(cascade_bundle, tmp_path):
    import shutil
    d = tmp_path / "b"
    shutil.copytree(cascade_bundle, d)
    raw = json.loads((d / "manifest.json").read_text())
    raw["files"].pop(FILE_NAME)
    (d / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="no hash for first_stage.npz"):
        load_bundle(d)
    raw = json.loads((cascade_bundle / "manifest.json").read_text())
    raw["first_stage"]["pass_threshold"] = "high"
    (d / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="pass_threshold"):
        load_bundle(d)


def _rows(out):
    with DetectionStore(out / STORE_NAME) as store:
        return sorted((d["start_s"], d["end_s"], d["max_score"]) for d in store.detections())


def test_scan_with_the_cascade_finds_what_exhaustive_finds_at_a_fraction_of_the_windows(cascade_bundle, tmp_path):
    tones = [(12.0, 15.0), (40.0, 44.0), (70.0, 72.5), (101.0, 106.0)]
    write_tone(tmp_path / "card" / "20240101_220000.wav", 120.0, SR, tones, seed=5)
    rows = {}
    for name, exhaustive in (("cascade", False), ("exhaustive", True)):
        det = load_detector(cascade_bundle, threads=1, exhaustive=exhaustive)
        summary, _ = scan_into([tmp_path / "card"], det, tmp_path / name, ScanSettings(tz="UTC"))
        rows[name] = _rows(tmp_path / name)
        if not exhaustive:
            rate = det.pass_rate
    assert rows["cascade"] == rows["exhaustive"] and len(rows["cascade"]) == len(tones)
    assert 0 < rate < 0.6
    # the same audio scanned again by a fresh cascade: the same rows (deterministic)
    scan_into([tmp_path / "card"], load_detector(cascade_bundle, threads=1), tmp_path / "again", ScanSettings(tz="UTC"))
    assert _rows(tmp_path / "again") == rows["cascade"]


def test_rejected_windows_never_become_detections_even_at_threshold_zero(cascade_bundle, tmp_path):
    write_tone(tmp_path / "card" / "20240101_220000.wav", 60.0, SR, [(20.0, 24.0)], seed=2)
    det = load_detector(cascade_bundle, threads=1)
    scan_into([tmp_path / "card"], det, tmp_path / "out", ScanSettings(tz="UTC", threshold=0.0))
    with DetectionStore(tmp_path / "out" / STORE_NAME) as store:
        rows = store.detections()
    # at threshold 0 every scored window is positive: the detections hold exactly the windows passed on
    assert 0 < det.counter.passed < det.counter.seen == 23
    assert sum(r["n_windows"] for r in rows) == det.counter.passed
    assert all(not math.isnan(r["max_score"]) and not math.isnan(r["mean_score"]) for r in rows)
    assert any(r["start_s"] <= 20.0 and r["end_s"] >= 24.0 for r in rows)


def test_scan_command_reports_the_pass_rate_and_exhaustive_scores_every_window(cascade_bundle, tmp_path, capsys):
    from hootwatch.edge.commands.main import main

    write_tone(tmp_path / "rec" / "20240101_220000.wav", 60.0, SR, [(20.0, 24.0)], seed=2)
    base = ["scan", str(tmp_path / "rec"), "--model", str(cascade_bundle), "--threads", "1", "--quiet", "--tz", "UTC"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "windows scored by the full model" in ln)
    assert "(cascade)" in line and "100.0%" not in line
    assert main(base + ["--out", str(tmp_path / "b"), "--exhaustive"]) == 0
    assert "100.0% (--exhaustive" in capsys.readouterr().out
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")


def test_daemon_status_file_carries_the_pass_rate_and_the_config_key_turns_the_cascade_off(cascade_bundle, tmp_path):
    from hootwatch.edge.daemon.config import config_from_dict
    from hootwatch.edge.daemon.service import Daemon

    from daemon_helpers import run_daemon_until

    for exhaustive in (False, True):
        d = tmp_path / str(exhaustive)
        write_tone(d / "in" / "20240101_220000.wav", 60.0, SR, [(20.0, 24.0)], seed=2)
        cfg = config_from_dict({
            "model": {"bundle": str(cascade_bundle), "threads": 1, "exhaustive": exhaustive},
            "sources": {"folder": {"path": str(d / "in"), "settle_s": 0.0, "poll_interval_s": 0.5}},
            "output": {"dir": str(d / "out"), "timezone": "UTC"},
            "health": {"status_every_s": 0.5, "watchdog": False, "status_file": str(d / "status.json")}})
        daemon = Daemon(cfg)
        run_daemon_until(daemon, lambda: daemon.health.files_done >= 1)
        status = json.loads((d / "status.json").read_text())
        assert (status["pass_rate"] == 1.0) is exhaustive and 0 < status["pass_rate"] <= 1.0


def test_an_exhaustive_check_into_the_same_store_scores_every_window_again(cascade_bundle, tmp_path):
    """A cascade scan, then `--exhaustive` into the same output folder to check it: the check is its own run
    (its own run key and rows), not 'already scanned'; and scanning with the cascade again adds nothing."""
    write_tone(tmp_path / "card" / "20240101_220000.wav", 60.0, SR, [(20.0, 24.0)], seed=2)
    out = tmp_path / "out"
    summaries = {}
    for name, exhaustive in (("cascade", False), ("exhaustive", True), ("cascade again", False)):
        det = load_detector(cascade_bundle, threads=1, exhaustive=exhaustive)
        summaries[name], _ = scan_into([tmp_path / "card"], det, out, ScanSettings(tz="UTC"))
    assert [len(summaries[n].done) for n in summaries] == [1, 1, 0]
    with DetectionStore(out / STORE_NAME) as store:
        keys = sorted({d["run_key"] for d in store.detections()})
    assert len(keys) == 2 and sum(k.endswith("|exhaustive") for k in keys) == 1
