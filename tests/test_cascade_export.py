"""The cascade's first stage from a training run into the bundle: checked against the int8 model at export."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("optimum.exporters.onnx")

from hootwatch.edge.contract.cascade import CascadeDetector, load_detector  # noqa: E402
from hootwatch.edge.contract.detector import Detector  # noqa: E402
from hootwatch.edge.core.errors import ConfigError  # noqa: E402
from hootwatch.edge.contract.first_stage import FILE_NAME, features  # noqa: E402
from hootwatch.export.core import ExportOptions, export_bundle  # noqa: E402
from hootwatch.trainer import first_stage as trainer_fs  # noqa: E402
from test_export import SR, make_run, torch_probs, validation_windows  # noqa: E402


@pytest.fixture(scope="module")
def run_with_stage(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("cascade_export"))
    x = validation_windows(run)
    probs = torch_probs(run, x)
    report = trainer_fs.build(run, features(x, SR), probs, features(x, SR), probs, 0.5, SR, seed=0)
    assert report is not None and report["validation"]["positive_recall"] >= 0.995
    return run


def test_export_ships_the_first_stage_with_a_pass_threshold_checked_against_int8(run_with_stage, tmp_path):
    res = export_bundle(ExportOptions(source=run_with_stage, out=tmp_path / "b", target="x86", speed_repeats=0))
    fs = res.manifest.first_stage
    assert fs["file"] == FILE_NAME and FILE_NAME in res.manifest.files and (tmp_path / "b" / FILE_NAME).is_file()
    v = fs["validation"]
    assert v["judge"] == "int8 model" and v["parity_max_abs_diff"] <= 1e-4
    assert v["full_model_positives"] > 0 and v["positive_recall"] >= 0.995 and v["keep_target"] == 0.995
    assert fs["training"]["train_windows"] == len(validation_windows(run_with_stage))
    # what the manifest claims holds for the bundle as the edge runs it
    det = load_detector(tmp_path / "b", threads=1)
    assert isinstance(det, CascadeDetector)
    x = validation_windows(run_with_stage)
    full = Detector.load(tmp_path / "b", threads=1).score(x)
    positive = full >= res.manifest.threshold
    assert (~np.isnan(det.score(x)[positive])).mean() >= 0.995
    # --no-first-stage: a single-stage bundle
    plain = export_bundle(ExportOptions(source=run_with_stage, out=tmp_path / "p", target="x86", speed_repeats=0,
                                        first_stage=False))
    assert plain.manifest.first_stage == {} and not (tmp_path / "p" / FILE_NAME).exists()


def test_a_first_stage_the_edge_scores_differently_is_refused(run_with_stage, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(run_with_stage, run)
    rec = run / trainer_fs.DIR_NAME / trainer_fs.VALIDATION_FILE
    with np.load(rec) as z:
        d = {k: z[k] for k in z.files}
    d["first_stage"] = d["first_stage"] + 0.1
    np.savez(rec, **d)
    with pytest.raises(ConfigError, match="first stage scores the validation clips"):
        export_bundle(ExportOptions(source=run, out=tmp_path / "b", target="x86", speed_repeats=0))
    assert not (tmp_path / "b" / "manifest.json").exists()
    assert json.loads((run / trainer_fs.DIR_NAME / trainer_fs.REPORT_FILE).read_text())["hidden"] == list(trainer_fs.HIDDEN)


def _with_pass_threshold(bundle, t):
    from dataclasses import replace

    from hootwatch.edge.contract.bundle import load_bundle, write_manifest
    m = load_bundle(bundle).manifest
    write_manifest(bundle, replace(m, first_stage=dict(m.first_stage) | {"pass_threshold": t}))


def test_a_pass_threshold_that_loses_detections_on_recordings_is_lowered_until_none_is_lost(tmp_path):
    """Clips under-sample what a night holds (calls cut by window edges, faint calls): checked on recordings, the
    pass threshold comes down until the cascade makes every detection the exhaustive scan makes there."""
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.scan.cascade_check import check_on_recordings
    from tiny_bundles import add_first_stage, tone_bundle, write_tone

    bundle = add_first_stage(tone_bundle(tmp_path / "bundle", sample_rate=8000))
    night = tmp_path / "night"
    tones = [(12.0, 15.0), (40.0, 44.0), (70.0, 72.5), (101.0, 106.0)]
    write_tone(night / "20240101_220000.wav", 120.0, 8000, tones, seed=5)
    _with_pass_threshold(bundle, 0.999999)   # far too high: the cascade would lose calls
    lost_before = _rows(bundle, night, tmp_path / "before")
    assert len(lost_before) < len(tones)

    report = check_on_recordings(bundle, night, threads=1, chosen_on="a test night")
    m = load_bundle(bundle).manifest
    assert m.first_stage["pass_threshold"] == report["pass_threshold"] < 0.999999
    assert m.first_stage["recordings_check"]["chosen_on"] == "a test night"
    assert report["positives_kept"] >= 0.995 * report["full_model_positives"]
    assert report["cascade_detections"] == report["exhaustive_detections"] == len(tones)
    assert len(_rows(bundle, night, tmp_path / "after")) == len(tones)
    # a threshold that is already safe is never raised
    again = check_on_recordings(bundle, night, threads=1)
    assert again["pass_threshold"] == report["pass_threshold"]


def _rows(bundle, folder, out):
    from hootwatch.edge.contract.cascade import load_detector
    from hootwatch.edge.scan.engine import ScanSettings, scan_into
    from hootwatch.edge.store.database import STORE_NAME, DetectionStore
    scan_into([folder], load_detector(bundle, threads=1), out, ScanSettings(tz="UTC"))
    with DetectionStore(out / STORE_NAME) as store:
        return store.detections()


def test_cascade_check_command_lowers_the_pass_threshold_of_a_field_bundle_and_dry_run_changes_nothing(tmp_path,
                                                                                                        capsys):
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.commands.main import main
    from tiny_bundles import add_first_stage, tone_bundle, write_tone

    bundle = add_first_stage(tone_bundle(tmp_path / "bundle", sample_rate=8000))
    write_tone(tmp_path / "card" / "20240101_220000.wav", 120.0, 8000, [(12.0, 15.0), (40.0, 44.0)], seed=5)
    _with_pass_threshold(bundle, 0.999999)
    before = (bundle / "manifest.json").read_bytes()
    assert main(["cascade-check", str(tmp_path / "card"), "--bundle", str(bundle), "--threads", "1",
                 "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out and (bundle / "manifest.json").read_bytes() == before
    assert main(["cascade-check", str(tmp_path / "card"), "--bundle", str(bundle), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "pass threshold 1 ->" in out and "the cascade makes 2 detections" in out
    assert load_bundle(bundle).manifest.first_stage["pass_threshold"] < 0.999999
    # a folder that is not there: the message names it, no traceback
    assert main(["cascade-check", str(tmp_path / "nowhere"), "--bundle", str(bundle)]) != 0
    assert "nowhere: no such folder" in capsys.readouterr().err


def _scores(full, first, sr=10, win=50, hop=25):
    from types import SimpleNamespace

    from hootwatch.edge.scan.offline import FileScores
    n = len(full)
    starts = np.arange(n) * hop
    files = [FileScores("night.wav", starts, np.asarray(full, np.float32), int(starts[-1] + win))]
    m = SimpleNamespace(window_spec=SimpleNamespace(window_samples=win), sample_rate=sr, threshold=0.7, min_hits=1,
                        positive_label="owl")
    return files, [np.asarray(first, np.float32)], m


def test_the_checked_pass_threshold_rebuilds_a_detection_the_99_5_percent_allowance_would_split():
    """200 positive windows in one long detection, one of them scored low by the first stage: the 0.5 % window
    allowance alone would drop it and split the detection in two; the check passes it, and the rows are exhaustive's."""
    from hootwatch.edge.scan.cascade_check import checked_pass_threshold
    from hootwatch.edge.scan.pass_rule import cascade_rows as _rows

    full = np.full(400, 0.1)
    full[10:210] = 0.9
    first = np.full(400, 0.05)
    first[10:210] = 0.9
    first[100] = 0.3           # a positive window the first stage finds dull
    files, stages, m = _scores(full, first)
    c = checked_pass_threshold(files, stages, start=0.95, manifest=m)
    assert c.pass_threshold == pytest.approx(0.3) and c.kept == c.positives == 200
    assert c.exhaustive_detections == c.cascade_detections == 1
    assert [(d.start_s, d.end_s) for d in _rows(files, stages, c.pass_threshold, m)] == [(25.0, 527.5)]
    assert c.passed == 200      # no negative window is passed at 0.3 here: the threshold went no lower than needed


def test_a_positive_window_without_a_first_stage_score_is_refused_not_passed_silently():
    from hootwatch.edge.scan.cascade_check import checked_pass_threshold
    from hootwatch.edge.core.errors import BundleError

    full = np.full(400, 0.1)
    full[300] = 0.9
    full[10:210] = 0.9
    first = np.full(400, 0.05)
    first[10:210] = 0.9
    first[300] = np.nan
    files, stages, m = _scores(full, first)
    with pytest.raises(BundleError, match="night.wav at 750.0 s"):
        checked_pass_threshold(files, stages, start=0.95, manifest=m)
