"""bench/accuracy.py reads every annotation format the trainer reads, through the same reader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tiny_bundles import tone_bundle, write_tone

BENCH = Path(__file__).resolve().parents[1] / "bench" / "accuracy.py"
RAVEN_HEADER = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\n"


@pytest.fixture(scope="module")
def accuracy():
    spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _raven(path: Path, rows: list[tuple[float, float, str]]) -> None:
    path.write_text(RAVEN_HEADER + "".join(f"{i}\t{v}\t1\t{b}\t{e}\t300\t900\t{lab}\n" for i, (b, e, lab) in
                                           enumerate(rows, 1) for v in ("Waveform 1", "Spectrogram 1")))


def test_a_folder_of_raven_tables_and_audacity_tracks_is_scored(accuracy, tmp_path):
    survey = tmp_path / "survey"
    write_tone(survey / "a.wav", 30, 8000, tones=[(10, 13)])
    _raven(survey / "a.Table.1.selections.txt", [(10.0, 13.0, "owl")])
    write_tone(survey / "b.wav", 30, 8000, tones=[(20, 23)], seed=1)
    (survey / "b.txt").write_text("3.0\t4.0\tboobook\n")              # an Audacity track: the tone is unlabelled
    write_tone(survey / "untabled.wav", 30, 8000, tones=[(5, 8)], seed=2)  # no table: not scored
    truth, files = accuracy.ground_truth(survey)
    assert sorted((t.file, t.start_s, t.label) for t in truth) == [("a.wav", 10.0, "owl"), ("b.wav", 3.0, "boobook")]
    assert [f.name for f in files] == ["a.wav", "b.wav"]
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import ScanSettings

    detector = Detector.load(tone_bundle(tmp_path / "bundle"), threads=1)
    m, hours, _ = accuracy.score(detector, survey, ScanSettings(tz="UTC"), tmp_path / "w")
    # 1 owl call, found; 2 detections (the unlabelled tone in b.wav is a false positive); untabled.wav not scanned
    assert (m.n_true, m.n_found, m.n_detections, m.precision, m.recall) == (1, 1, 2, 0.5, 1.0)
    assert hours == pytest.approx(60 / 3600)


def test_ground_truth_csv_scans_the_whole_folder(accuracy, tmp_path):
    write_tone(tmp_path / "x" / "20240101_000000.wav", 10, 8000)
    write_tone(tmp_path / "y" / "20240101_001000.wav", 10, 8000)
    (tmp_path / "ground_truth.csv").write_text("file,start_s,end_s,label,snr_db\nx/20240101_000000.wav,1,2,owl,5\n")
    truth, files = accuracy.ground_truth(tmp_path)
    assert [(t.file, t.label) for t in truth] == [("x/20240101_000000.wav", "owl")]
    assert len(files) == 2  # a file without rows holds no owl


def test_a_folder_without_tables_is_a_clear_error(accuracy, tmp_path):
    from hootwatch.edge.core.errors import HootwatchError
    write_tone(tmp_path / "a.wav", 5, 8000)
    with pytest.raises(HootwatchError, match="no annotation table"):
        accuracy.ground_truth(tmp_path)


def test_real_raven_tables(accuracy, shared_real):
    truth, files = accuracy.ground_truth(shared_real / "boobook" / "positive", default_label="boobook")
    assert len(files) == 8 and len(truth) >= 15 and {t.label for t in truth} == {"boobook"}


def test_false_positives_are_measured_on_evaluation_only_recordings(accuracy, shared_real, monkeypatch):
    from argparse import Namespace
    monkeypatch.setattr(accuracy, "REAL", shared_real)
    groups = dict(accuracy.negatives(Namespace(negatives=None)))
    assert "boobook/positive" in groups and "soundscape_sm4" in groups
    from hootwatch.trainer.synth.backgrounds import find_background_files
    heard = {p.resolve() for p in find_background_files(shared_real)}
    assert not heard & {p.resolve() for files in groups.values() for p in files}
