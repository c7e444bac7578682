"""A label means what the reviewer saw: a detection's verdict comes only from labels covering it, the same in the
review app, `calibrate`, `dataset` and the exports; disagreeing labels on one stretch are a conflict, shown."""

import csv

import pytest

from hootwatch.edge.commands.main import main
from hootwatch.edge.review.calibrate import reviewed_detections
from hootwatch.edge.review.queues import Queues, progress
from hootwatch.edge.store.database import DetectionStore
from hootwatch.edge.store.exports import write_exports
from hootwatch.edge.store.labels import LabelBook

from review_helpers import scanned_store


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    return scanned_store(tmp_path_factory.mktemp("verdicts"))


@pytest.fixture()
def store(scanned, tmp_path):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(scanned[2], out)  # each test labels its own copy
    with DetectionStore(out / "detections.sqlite") as s:
        yield s


def _dets(s):
    return sorted(s.detections(), key=lambda d: (d["file"], d["start_s"]))


def _queue(s):
    return {(it.file_key, it.start_s): it for it in Queues(s, s.latest_run()).detections()}


def test_covering_means_most_of_the_span_and_the_label_mostly_inside_it():
    from hootwatch.edge.store.labels import covers
    assert not covers(45.0, 50.0, 47.5, 57.5)      # the near-miss window: a quarter of the detection
    assert covers(47.5, 57.5, 47.5, 57.5)          # its own span
    assert covers(50.0, 55.0, 47.5, 55.0)          # a window inside a two-window detection, most of it
    assert not covers(50.0, 55.0, 52.5, 57.5)      # neighbouring windows, half a window apart: two stretches
    assert covers(47.0, 57.0, 47.5, 57.5)          # a detection-sized label shifted a little
    assert not covers(0.0, 600.0, 47.5, 57.5)      # a label over the whole file is not what was shown here


def test_a_near_miss_window_label_does_not_judge_the_detection_it_overlaps(store, tmp_path):
    book = LabelBook(store)
    d = _dets(store)[1]                            # A 37.5-45 s, a true tone at 40-43 s
    book.add(d["file_key"], d["file"], d["start_s"] - 2.5, d["start_s"] + 2.5, "not_owl")  # the window before
    item = _queue(store)[(d["file_key"], d["start_s"])]
    assert item.label == "" and item.conflict == ()
    scores, truth = reviewed_detections(store, store.latest_run())
    assert len(scores) == 0                        # not a reviewed false positive in calibrate / the panel
    paths = write_exports(store, store.latest_run(), tmp_path / "exp", 4000.0)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [r["review"] for r in rows] == ["", "", ""]
    # a window inside the detection, covering most of it, is a verdict for it
    book.add(d["file_key"], d["file"], d["end_s"] - 5.0, d["end_s"], "owl")
    assert _queue(store)[(d["file_key"], d["start_s"])].label == "owl"
    scores, truth = reviewed_detections(store, store.latest_run())
    assert list(truth) == [1.0]


def test_twenty_labels_on_nearby_windows_review_no_detection(store):
    book = LabelBook(store)
    for d in _dets(store):
        for k in range(7):   # windows ending inside the detection or starting near its end, each < half of it
            a = d["start_s"] - 4.0 + k * 0.25 if k < 4 else d["end_s"] - 2.0 + (k - 4) * 0.5
            book.add(d["file_key"], d["file"], a, a + 5.0, "not_owl")
    assert book.count() >= 20
    items = list(_queue(store).values())
    assert progress(items)["reviewed"] == 0 and all(it.label == "" for it in items)
    assert len(reviewed_detections(store, store.latest_run())[0]) == 0


def test_disagreeing_labels_on_one_stretch_are_a_conflict_everywhere(store, tmp_path, capsys):
    book = LabelBook(store)
    d = _dets(store)[0]                            # A 7.5-15 s
    book.add(d["file_key"], d["file"], d["start_s"], d["end_s"], "owl")
    book.add(d["file_key"], d["file"], d["start_s"] + 2.5, d["start_s"] + 7.5, "not_owl")  # a window covering most
    item = _queue(store)[(d["file_key"], d["start_s"])]
    assert item.label == "conflict"
    assert sorted(x["label"] for x in item.conflict) == ["not_owl", "owl"]
    p = progress(list(_queue(store).values()))
    assert p["conflict"] == 1 and p["reviewed"] == 0 and p["not_owl"] == 0
    assert len(reviewed_detections(store, store.latest_run())[0]) == 0
    rows = list(csv.DictReader(open(write_exports(store, store.latest_run(), tmp_path / "exp", 4000.0)["csv"])))
    assert "conflict" in [r["review"] for r in rows]
    b = _dets(store)[2]
    book.add(b["file_key"], b["file"], b["start_s"], b["end_s"], "owl")
    assert main(["dataset", str(store.path.parent), "--out", str(tmp_path / "data"), "--negatives", "0"]) == 0
    assert "conflict" in capsys.readouterr().out   # said, and both disputed labels left out
    clips = list(csv.DictReader(open(tmp_path / "data" / "clips.csv")))
    assert clips and all(c["kind"] == "owl" and b["start_s"] <= float(c["source_start_s"]) < b["end_s"] for c in clips)
    assert all("/B/" in c["source"] for c in clips)


def test_a_not_owl_clip_keeps_its_context_out_of_an_owl_label(store, tmp_path):
    from hootwatch.edge.review.dataset import DatasetOptions, write_dataset
    book = LabelBook(store)
    d = _dets(store)[1]                                                              # A 37.5-45 s
    book.add(d["file_key"], d["file"], d["start_s"], d["end_s"], "owl")
    book.add(d["file_key"], d["file"], d["start_s"] - 5.0, d["start_s"], "not_owl")  # the window just before
    write_dataset(store, store.latest_run(), tmp_path / "data", options=DatasetOptions(negatives=0))
    rows = list(csv.DictReader(open(tmp_path / "data" / "clips.csv")))
    [neg] = [r for r in rows if r["kind"] == "hard_negative"]
    assert float(neg["source_end_s"]) <= d["start_s"] + 1e-6


def test_an_owl_call_marked_inside_a_detection_makes_it_an_owl(store):
    d = _dets(store)[1]                            # A 37.5-45 s
    LabelBook(store).add(d["file_key"], d["file"], 40.0, 42.0, "owl")   # the call, as an imported table marks it
    assert _queue(store)[(d["file_key"], d["start_s"])].label == "owl"
