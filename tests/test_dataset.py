"""`hootwatch dataset`: reviewed labels -> a training set in the trainer's layout; --append keeps splits."""

import csv

import soundfile as sf

from hootwatch.edge.commands.main import main
from hootwatch.edge.review.dataset import assign_splits
from hootwatch.edge.store.labels import LabelBook
from hootwatch.edge.store.database import DetectionStore

from review_helpers import scanned_store


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_dataset_cuts_labelled_clips_and_random_negatives_and_append_keeps_the_split(tmp_path):
    _, _, out = scanned_store(tmp_path)
    with DetectionStore(out / "detections.sqlite") as s:
        book = LabelBook(s)
        dets = s.detections()
        book.add(dets[0]["file_key"], dets[0]["file"], dets[0]["start_s"], dets[0]["end_s"], "owl")
        book.add(dets[1]["file_key"], dets[1]["file"], dets[1]["start_s"], dets[1]["end_s"], "boobook")
        book.add(dets[2]["file_key"], dets[2]["file"], dets[2]["start_s"], dets[2]["end_s"], "unsure")
    data = tmp_path / "data"
    assert main(["dataset", str(out), "--out", str(data), "--negatives", "4"]) == 0
    clips = _rows(data / "clips.csv")
    kinds = [c["kind"] for c in clips]
    assert kinds.count("random_negative") == 4 and kinds.count("owl") >= 1 and kinds.count("hard_negative") >= 1
    owl = next(c for c in clips if c["kind"] == "owl")
    x, sr = sf.read(data / owl["file"])
    assert owl["file"].startswith("owl/") and sr == 8000
    # a detection longer than a window: its clips are the windows the model scored high in it, one window each
    assert abs(len(x) / sr - 5.0) < 1e-3
    assert dets[0]["start_s"] <= float(owl["source_start_s"]) and float(owl["source_end_s"]) <= dets[0]["end_s"]
    for c in clips:
        if c["kind"] == "random_negative":
            assert c["file"].startswith("not_owl/random_") and c["reviewed"] == "0" and float(c["score"]) < 0.2
            assert not any(d["file"] == c["source"] and d["start_s"] < float(c["source_end_s"])
                           and float(c["source_start_s"]) < d["end_s"] for d in dets)
    recs = _rows(data / "recordings.csv")
    assert {r["file"] for r in recs} == {c["file"] for c in clips} and {r["site"] for r in recs} == {"A", "B"}
    assert all(r["split"] in ("train", "validation", "test") for r in recs)
    before = {r["file"]: r["split"] for r in recs}
    assert main(["dataset", str(out), "--out", str(data)]) == 2  # not empty: needs --append
    with DetectionStore(out / "detections.sqlite") as s:  # relabel: the unsure one is an owl after all
        LabelBook(s).add(dets[2]["file_key"], dets[2]["file"], dets[2]["start_s"], dets[2]["end_s"], "owl")
    assert main(["dataset", str(out), "--out", str(data), "--append", "--negatives", "0"]) == 0
    clips2 = _rows(data / "clips.csv")
    assert len(clips2) > len(clips) and sum(c["kind"] == "owl" for c in clips2) > kinds.count("owl")
    after = {r["file"]: r["split"] for r in _rows(data / "recordings.csv")}
    assert all(after[f] == s for f, s in before.items())  # every clip keeps its side


def test_new_recordings_fill_every_split_owl_bearing_first_and_old_ones_stay():
    got = assign_splits([f"r{i}" for i in range(10)], {"r0", "r1", "r2"}, {"old": "test"})
    assert got["old"] == "test"
    assert sorted(got[r] for r in ("r0", "r1", "r2")) == ["test", "train", "validation"]
    assert sum(v == "train" for v in got.values()) >= 6


def test_a_short_labelled_call_gives_a_clip_at_least_a_window_long(tmp_path):
    _, _, out = scanned_store(tmp_path)
    with DetectionStore(out / "detections.sqlite") as s:
        d = s.detections()[0]
        LabelBook(s).add(d["file_key"], d["file"], 10.0, 11.0, "owl")  # a 1 s call, as a ground-truth table has it
    assert main(["dataset", str(out), "--out", str(tmp_path / "data"), "--negatives", "0"]) == 0
    [clip] = _rows(tmp_path / "data" / "clips.csv")
    x, sr = sf.read(tmp_path / "data" / clip["file"])
    assert abs(len(x) / sr - 5.0) < 1e-3 and float(clip["source_start_s"]) == 8.0


def test_a_recorders_recordings_all_go_to_one_side_of_the_split(tmp_path):
    """The trainer splits by site when recordings.csv names one: a recorder on two sides is refused there."""
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import ScanSettings, scan_into

    from tiny_bundles import tone_bundle, write_tone

    bundle = tone_bundle(tmp_path / "bundle", sample_rate=8000)
    for r in range(4):
        for h in range(3):
            write_tone(tmp_path / "rec" / f"R{r}" / f"20240101_{20 + h:02d}0000.WAV", 30, 8000, tones=[(10, 13)],
                       seed=10 * r + h)
    out = tmp_path / "out"
    scan_into([tmp_path / "rec"], Detector.load(bundle, threads=1), out, ScanSettings())
    with DetectionStore(out / "detections.sqlite") as s:
        for d in s.detections():
            LabelBook(s).add(d["file_key"], d["file"], d["start_s"], d["end_s"], "owl")
    assert main(["dataset", str(out), "--out", str(tmp_path / "data"), "--negatives", "12"]) == 0
    rows = _rows(tmp_path / "data" / "recordings.csv")
    sides = {}
    for r in rows:
        sides.setdefault(r["site"], set()).add(r["split"])
    assert sorted(sides) == ["R0", "R1", "R2", "R3"] and all(len(v) == 1 for v in sides.values())
    assert {next(iter(v)) for v in sides.values()} == {"train", "validation", "test"}
    assert len({r["recording"] for r in rows}) == 12


def test_windows_a_first_stage_left_unscored_are_low_score_negatives(tmp_path):
    """A cascade stores NaN for the windows its first stage rejected: they are the plainest negatives there
    are, and must stay in the random-negative pool (NaN < 0.2 is False)."""
    import zlib

    import numpy as np
    _, _, out = scanned_store(tmp_path)
    with DetectionStore(out / "detections.sqlite") as s:
        for key, run, n in s.conn.execute("SELECT file_key, run_key, n_windows FROM window_scores").fetchall():
            nan = zlib.compress(np.full(n, np.nan, np.float32).tobytes(), 6)
            s.conn.execute("UPDATE window_scores SET scores=? WHERE file_key=? AND run_key=?", (nan, key, run))
    data = tmp_path / "data"
    assert main(["dataset", str(out), "--out", str(data), "--negatives", "4"]) == 0
    assert sum(c["kind"] == "random_negative" for c in _rows(data / "clips.csv")) == 4


def test_a_long_label_gives_clips_at_the_windows_where_its_sound_is(tmp_path):
    _, _, out = scanned_store(tmp_path)       # recorder A: a call (tone) at 40-43 s
    with DetectionStore(out / "detections.sqlite") as s:
        key = next(d["file_key"] for d in s.detections() if "/A/" in d["file"])
        LabelBook(s).add(key, "A", 25.0, 55.0, "owl")   # a 30 s detection over a bout, heard as owl
    assert main(["dataset", str(out), "--out", str(tmp_path / "data"), "--negatives", "0"]) == 0
    owl = [c for c in _rows(tmp_path / "data" / "clips.csv") if c["kind"] == "owl"]
    assert owl and all(float(c["source_end_s"]) - float(c["source_start_s"]) < 10 for c in owl)
    assert all(float(c["source_start_s"]) < 43 and 40 < float(c["source_end_s"]) for c in owl)  # each holds the call
