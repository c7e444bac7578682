"""One rule for which label speaks for which span (labels.speaks_for): fit's windows, the uncertain queue's
exclusion, dataset's conflicts and the app's verdicts all use it; verdicts asked in bulk agree with one by one."""

import numpy as np
import pytest

from hootwatch.edge.review.dataset import assign_groups
from hootwatch.edge.review.fit import labelled_windows
from hootwatch.edge.review.queues import Queues
from hootwatch.edge.review.search import EmbeddingIndex
from hootwatch.edge.store.database import DetectionStore
from hootwatch.edge.store.labels import LabelBook, label_conflicts

from review_helpers import scanned_store

SR, KEY = 1000, "k" * 64


@pytest.fixture()
def book(tmp_path):
    with DetectionStore(tmp_path / "detections.sqlite") as s:
        yield LabelBook(s)


def _index(seconds=100.0):
    """Windows of 5 s every 2.5 s over one recording, each embedding its own start (to tell them apart)."""
    starts = np.arange(0, int((seconds - 5) * SR) + 1, int(2.5 * SR), dtype=np.int64)
    vectors = np.c_[starts / SR, np.ones(len(starts))].astype(np.float16)
    return EmbeddingIndex("m", "", SR, 5 * SR, [KEY], np.zeros(len(starts), np.int32), starts, vectors)


def _fit_windows(book):
    data = labelled_windows(book.store, _index())
    return {float(t): int(y) for t, y in zip(data.x[:, 0], data.y)}, data


def test_fit_labels_a_window_only_where_the_app_would_give_it_a_verdict(book):
    book.add(KEY, "a.wav", 45.0, 50.0, "not_owl")        # the near-miss window
    book.add(KEY, "a.wav", 50.8, 52.8, "owl")            # the owl call, marked in a table
    windows, data = _fit_windows(book)
    assert windows == {45.0: 0, 50.0: 1}                 # not 42.5 or 47.5 (47.5-52.5 is not the 45-50 s stretch)
    for t, y in windows.items():
        assert book.verdict(KEY, t, t + 5.0).label == ("owl" if y else "not_owl")
    assert book.verdict(KEY, 47.5, 52.5).label == ""     # and the app agrees 47.5 is unreviewed
    s = data.summary()
    assert s["label_ids"] == sorted(x.id for x in book.current()) and s["max_label_id"] == max(s["label_ids"])
    assert len(s["labels_sha256"]) == 64


def test_an_owl_label_on_a_long_detection_makes_no_neighbouring_window_owl(book):
    book.add(KEY, "a.wav", 47.5, 57.5, "owl")
    windows, _ = _fit_windows(book)
    assert 55.0 not in windows and 45.0 not in windows
    assert all(book.verdict(KEY, t, t + 5.0).label == "owl" for t in windows)


def test_a_not_owl_detection_gives_fit_every_window_inside_it_as_a_negative_and_no_neighbour(book):
    book.add(KEY, "a.wav", 20.0, 30.0, "not_owl")        # a 10 s false detection, reviewed: no owl anywhere in it
    windows, _ = _fit_windows(book)
    assert windows == {20.0: 0, 22.5: 0, 25.0: 0}        # the windows it holds; not 17.5 or 27.5, which stick out
    assert all(book.verdict(KEY, t, t + 5.0).label == "not_owl" for t in windows)
    assert book.verdict(KEY, 27.5, 32.5).label == ""
    assert book.verdict(KEY, 15.0, 35.0).label == ""     # a span larger than the label is not spoken for


def test_fit_records_which_labels_it_rests_on(book):
    book.add(KEY, "a.wav", 10.0, 15.0, "owl")
    book.add(KEY, "a.wav", 20.0, 25.0, "not_owl")
    first = _fit_windows(book)[1].summary()
    book.add(KEY, "a.wav", 20.0, 25.0, "owl")            # relabelled: another set of labels
    second = _fit_windows(book)[1].summary()
    assert first["labels_sha256"] != second["labels_sha256"] and second["max_label_id"] > first["max_label_id"]


def test_an_owl_label_inside_a_not_owl_span_is_a_conflict_for_dataset_as_for_the_app(book):
    neg = book.add(KEY, "a.wav", 47.5, 57.5, "not_owl")
    owl = book.add(KEY, "a.wav", 50.8, 52.8, "owl")
    assert book.verdict(KEY, 47.5, 57.5).label == "conflict"
    assert [(o.id, n.id) for o, n in label_conflicts(book.current())] == [(owl.id, neg.id)]


def test_verdicts_loaded_once_agree_with_verdicts_asked_one_by_one(book):
    rng = np.random.default_rng(1)
    keys = [KEY, "j" * 64]
    for _ in range(150):
        a = float(rng.integers(0, 400)) * 0.5
        book.add(str(rng.choice(keys)), "a.wav", a, a + float(rng.choice([2.0, 5.0, 7.5, 10.0])),
                 str(rng.choice(["owl", "not_owl", "unsure", "", "boobook"])))
    bulk = book.verdicts()
    for key in keys:
        for a in np.arange(0, 200, 2.5):
            for length in (5.0, 7.5, 10.0):
                assert bulk.of(key, a, a + length) == book.verdict(key, a, a + length)


def test_the_uncertain_queue_leaves_out_windows_a_label_speaks_for(tmp_path):
    *_, out = scanned_store(tmp_path, seconds=30.0)
    with DetectionStore(out / "detections.sqlite") as s:
        q = Queues(s, s.latest_run())
        first = q.uncertain(n=1000)
        w = first[0]
        LabelBook(s).add(w.file_key, w.file, w.start_s + 1.0, w.start_s + 3.0, "owl")   # a call inside it
        after = q.uncertain(n=1000)
    assert (w.file_key, w.start_s) not in {(it.file_key, it.start_s) for it in after}
    assert len(after) == len(first) - 1


def _clip(site, rec, kind, start=0.0):
    return {"site": site, "recording": rec, "kind": kind, "group": "", "source_start_s": str(start)}


def test_three_recorders_with_owl_calls_on_one_split_it_by_recording_so_every_side_gets_owl_clips():
    clips = [_clip("A", f"A/r{i}", "owl") for i in range(4)] + [_clip(s, f"{s}/r0", "hard_negative") for s in "BC"]
    notes = assign_groups(clips, {})
    owl_groups = {c["group"] for c in clips if c["kind"] == "owl"}
    assert len(owl_groups) == 4                          # one per recording: enough to give each split owl clips
    assert {c["group"] for c in clips if c["site"] != "A"} == {"B", "C"}   # a recorder without calls stays whole
    assert notes and "optimistic" in notes[0]
    many = [_clip(s, f"{s}/r0", "owl") for s in "ABC"]
    assign_groups(many, {})
    assert {c["group"] for c in many} == {"A", "B", "C"}  # three recorders with calls: by recorder, as before


def test_fit_on_a_store_without_labels_says_to_review_and_how_many_labels_make_sense(tmp_path, capsys):
    from hootwatch.edge.commands.main import main
    bundle, _, out = scanned_store(tmp_path, seconds=20.0, embeddings=True)
    assert main(["fit", str(out), "--bundle", str(bundle), "--out", str(tmp_path / "b2")]) == 2
    err = capsys.readouterr().err
    assert f"hootwatch review {out}" in err and "0 owl and 0 not-owl" in err and "about 20 of each" in err
