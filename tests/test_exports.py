import csv
import json

from hootwatch.edge.store.exports import WRITTEN_LIST, exports_note, label_file_names, write_exports
from hootwatch.edge.store.database import DetectionStore, RunInfo

from test_store import det

RUN = RunInfo("m1", "m1" + "0" * 62, 0.5, 2.5, 1, "owl")


def test_exports_csv_raven_audacity(tmp_path):
    a, b = tmp_path / "a" / "20240101_000000.wav", tmp_path / "b" / "20240101_000100.wav"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"x")
    with DetectionStore(tmp_path / "d.sqlite") as st:
        st.commit_file(a, RUN, [det(a, 8000 * 10)], audio_s=60.0)
        st.commit_file(b, RUN, [det(b, 8000 * 2), det(b, 8000 * 30)], audio_s=60.0)
        paths = write_exports(st, RUN.run_key, tmp_path / "out", high_freq_hz=4000)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [(r["file"], r["start_s"], r["end_s"]) for r in rows] == [
        (str(a), "10.0", "15.0"), (str(b), "2.0", "7.0"), (str(b), "30.0", "35.0")]
    assert {"begin_utc", "end_utc", "label", "score", "begin_local", "time_source", "model_id", "threshold"} <= set(rows[0])
    # a Raven table per recording, times in that recording (a 10 s offset is 10 s, whatever came before)
    tables = sorted(p.name for p in paths["raven"].glob("*.selections.txt"))
    assert tables == ["20240101_000000.Table.1.selections.txt", "20240101_000100.Table.1.selections.txt"]
    raven = list(csv.DictReader(open(paths["raven"] / tables[1]), delimiter="\t"))
    assert [r["Begin Time (s)"] for r in raven] == ["2.000", "30.000"]
    assert [r["File Offset (s)"] for r in raven] == ["2.000", "30.000"]
    assert [r["Selection"] for r in raven] == ["1", "2"]
    assert raven[0]["Begin File"] == b.name and raven[0]["Begin Path"] == str(b)
    first = list(csv.DictReader(open(paths["raven"] / tables[0]), delimiter="\t"))
    assert first[0]["Begin Time (s)"] == "10.000" and first[0]["Begin Clock Time"] == "10:00:00.000"
    lab = (tmp_path / "out" / "labels" / "20240101_000100.txt").read_text().splitlines()
    assert [line.split("\t")[:2] for line in lab] == [["2.000", "7.000"], ["30.000", "35.000"]]
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_label_names_unique_across_folders():
    assert sorted(label_file_names(["x/a.wav", "y/a.wav"]).values()) == ["a.txt", "a_2.txt"]


def test_rescan_with_another_threshold_keeps_the_earlier_run_and_says_which_run_the_exports_hold(tmp_path):
    a = tmp_path / "20240101_000000.wav"
    a.write_bytes(b"x")
    strict = RunInfo("m1", "m1" + "0" * 62, 0.9, 2.5, 1, "owl")
    out = tmp_path / "out"
    with DetectionStore(tmp_path / "d.sqlite") as st:
        st.commit_file(a, RUN, [det(a, 8000 * 10), det(a, 8000 * 40)], audio_s=60.0)
        first = write_exports(st, RUN.run_key, out, high_freq_hz=4000)
        st.commit_file(a, strict, [det(a, 8000 * 40)], audio_s=60.0)
        second = write_exports(st, strict.run_key, out, high_freq_hz=4000)
    assert len(list(csv.DictReader(open(out / "detections.csv")))) == 1        # the latest run at the top
    assert len(list(csv.DictReader(open(first["run"] / "detections.csv")))) == 2  # the earlier run kept whole
    assert first["run"] != second["run"] and (second["run"] / "raven").is_dir()
    index = json.loads((out / "exports.json").read_text())
    assert index["latest"] == strict.run_key and set(index["runs"]) == {RUN.run_key, strict.run_key}
    assert index["runs"][RUN.run_key]["detections"] == 2
    note = exports_note(second)
    assert strict.run_key in note and "1 earlier run" in note


def test_a_rescan_leaves_no_stale_per_file_tables(tmp_path):
    a, b = tmp_path / "20240101_000000.wav", tmp_path / "20240101_000100.wav"
    for p in (a, b):
        p.write_bytes(b"x")
    strict = RunInfo("m1", "m1" + "0" * 62, 0.9, 2.5, 1, "owl")
    with DetectionStore(tmp_path / "d.sqlite") as st:
        st.commit_file(a, RUN, [det(a, 0)], audio_s=60.0)
        st.commit_file(b, RUN, [det(b, 0)], audio_s=60.0)
        write_exports(st, RUN.run_key, tmp_path / "out", high_freq_hz=4000)
        (tmp_path / "out" / "labels" / "mine.txt").write_text("1\t2\towl\n")  # a user's own track, kept there
        st.commit_file(a, strict, [], audio_s=60.0)
        st.commit_file(b, strict, [det(b, 0)], audio_s=60.0)
        paths = write_exports(st, strict.run_key, tmp_path / "out", high_freq_hz=4000)
    listed = lambda d: sorted(p.name for p in d.iterdir() if p.name != WRITTEN_LIST)  # noqa: E731
    assert listed(paths["labels"]) == ["20240101_000100.txt", "mine.txt"]
    assert listed(paths["raven"]) == ["20240101_000100.Table.1.selections.txt"]
