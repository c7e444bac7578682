"""Event-level evaluation on hand-made cases where a wrong counting rule gives a different answer."""

from __future__ import annotations

import pytest

from hootwatch.edge.tables.evaluate import Detection, TruthEvent, event_metrics, load_detections
from hootwatch.edge.tables.label_tables import read_truth_csv

TRUTH = [
    TruthEvent("AM01/20240501_190000.WAV", 10.0, 11.5, "owl"),
    TruthEvent("AM01/20240501_190000.WAV", 20.0, 21.5, "owl"),
    TruthEvent("AM01/20240501_190000.WAV", 30.0, 31.0, "boobook"),
    TruthEvent("SM4_SITE_A/SM4_SITE_A_20240501_190000.wav", 5.0, 6.5, "owl"),
    TruthEvent("SM4_SITE_A/SM4_SITE_A_20240501_190000.wav", 40.0, 60.0, "wind"),
]


def test_call_found_once_detection_over_two_calls_and_confusers():
    dets = [
        Detection("AM01/20240501_190000.WAV", 9.0, 14.0),       # owl 1
        Detection("AM01/20240501_190000.WAV", 11.0, 16.0),      # owl 1 again: still one call found
        Detection("AM01/20240501_190000.WAV", 28.0, 33.0),      # boobook: FP
        Detection("SM4_SITE_A/SM4_SITE_A_20240501_190000.wav", 45.0, 50.0),   # wind: FP
        Detection("SM4_SITE_A/SM4_SITE_A_20240501_190000.wav", 100.0, 105.0),  # nothing: FP
    ]
    m = event_metrics(dets, TRUTH, audio_hours=0.5)
    assert m.n_true == 3 and m.n_detections == 5
    assert m.recall == pytest.approx(1 / 3)
    assert m.precision == pytest.approx(2 / 5)
    assert m.f1 == pytest.approx(2 * (2 / 5) * (1 / 3) / (2 / 5 + 1 / 3))
    assert m.fp_per_hour == pytest.approx(6.0)
    assert m.by_confuser == {"boobook": 1, "none": 1, "wind": 1}


def test_one_detection_spanning_two_calls_finds_both_and_is_one_tp():
    dets = [Detection("AM01/20240501_190000.WAV", 11.0, 21.0)]
    m = event_metrics(dets, TRUTH, audio_hours=1.0)
    assert m.n_found == 2 and m.recall == pytest.approx(2 / 3)
    assert m.precision == 1.0 and m.fp_per_hour == 0.0


def test_touching_edges_do_not_overlap():
    dets = [Detection("AM01/20240501_190000.WAV", 5.0, 10.0),     # ends exactly at the call's start
            Detection("AM01/20240501_190000.WAV", 21.5, 26.5)]    # starts exactly at its end
    m = event_metrics(dets, TRUTH, audio_hours=1.0)
    assert m.recall == 0.0 and m.precision == 0.0 and m.by_confuser == {"none": 2}
    m2 = event_metrics([Detection("AM01/20240501_190000.WAV", 5.0, 10.01)], TRUTH, audio_hours=1.0)
    assert m2.n_found == 1


def test_same_times_in_another_file_do_not_count():
    m = event_metrics([Detection("SM4_SITE_A/SM4_SITE_A_20240501_190000.wav", 10.0, 11.0)], TRUTH, 1.0)
    assert m.recall == 0.0 and m.precision == 0.0


def test_csv_round_trip_matches_absolute_paths_and_basenames(tmp_path):
    truth_csv = tmp_path / "ground_truth.csv"
    truth_csv.write_text("file,start_s,end_s,label,snr_db\n"
                         "AM01/20240501_190000.WAV,10,11.5,owl,0.5\n"
                         "SM4_SITE_A/SM4_SITE_A_20240501_190000.wav,5,6.5,owl,\n")
    det_csv = tmp_path / "detections.csv"
    det_csv.write_text("file,start_s,end_s,label,score,extra\n"
                       f"{tmp_path}/AM01/20240501_190000.WAV,9,14,owl,0.9,x\n"
                       "SM4_SITE_A_20240501_190000.wav,4,9,owl,0.8,y\n"
                       "SM4_SITE_A_20240501_190000.wav,4,9,not_owl,0.1,y\n")
    truth = read_truth_csv(truth_csv)
    assert truth[0].snr_db == 0.5 and truth[1].snr_db is None
    dets = load_detections(det_csv)
    assert len(dets) == 2   # the not_owl row is not a detection
    m = event_metrics(dets, truth, audio_hours=1.0, root=tmp_path)
    assert m.recall == 1.0 and m.precision == 1.0


def test_no_detections():
    m = event_metrics([], TRUTH, audio_hours=1.0)
    assert m.precision == 0.0 and m.recall == 0.0 and m.f1 == 0.0 and m.fp_per_hour == 0.0


def test_evaluation_and_training_read_a_truth_csv_the_same_way(tmp_path):
    from hootwatch.edge.tables.label_tables import AnnotationError
    from hootwatch.trainer.data.annotations import Annotation, read_annotation_csv

    # a table both readers have always accepted: the same rows, the trainer's with each file beside the table
    csv_path = tmp_path / "truth.csv"
    csv_path.write_text("file,start_s,end_s,label,snr_db,note\n"
                        "AM01/a.wav,10,11.5, owl ,6.5,x\n"
                        f"{tmp_path}/b.wav,2.25,3,boobook,,\n")
    truth = read_truth_csv(csv_path)
    assert truth == [TruthEvent("AM01/a.wav", 10.0, 11.5, "owl", 6.5),
                     TruthEvent(f"{tmp_path}/b.wav", 2.25, 3.0, "boobook", None)]
    assert read_annotation_csv(csv_path) == [Annotation(str(tmp_path / "AM01/a.wav"), 10.0, 11.5, "owl"),
                                             Annotation(f"{tmp_path}/b.wav", 2.25, 3.0, "boobook")]
    # what only the trainer's reader took, evaluation takes too: a byte-order mark (Excel's "CSV UTF-8")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    assert read_truth_csv(bom) == truth
    # and a table neither could use is the same clear error from both
    bad = tmp_path / "bad.csv"
    bad.write_text("file,begin,end,label\nx.wav,1,2,owl\n")
    for read in (read_truth_csv, read_annotation_csv):
        with pytest.raises(AnnotationError, match=r"missing columns \['start_s', 'end_s'\]"):
            read(bad)
    bad.write_text("file,start_s,end_s,label\nx.wav,1,soon,owl\n")
    for read in (read_truth_csv, read_annotation_csv):
        with pytest.raises(AnnotationError, match="line 2: bad time"):
            read(bad)
