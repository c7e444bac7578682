import csv

from hootwatch.edge.exports import label_file_names, raven_text, write_exports
from hootwatch.edge.store import DetectionStore, RunInfo

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
    raven = list(csv.DictReader(open(paths["raven"]), delimiter="\t"))
    # Begin Time runs on across the files in order: b starts after a's 60 s
    assert [r["Begin Time (s)"] for r in raven] == ["10.000", "62.000", "90.000"]
    assert [r["File Offset (s)"] for r in raven] == ["10.000", "2.000", "30.000"]
    assert [r["Selection"] for r in raven] == ["1", "2", "3"]
    assert raven[1]["Begin File"] == b.name and raven[0]["Begin Clock Time"] == "10:00:00.000"
    lab = (tmp_path / "out" / "labels" / "20240101_000100.txt").read_text().splitlines()
    assert [line.split("\t")[:2] for line in lab] == [["2.000", "7.000"], ["30.000", "35.000"]]
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_label_names_unique_across_folders():
    assert sorted(label_file_names(["x/a.wav", "y/a.wav"]).values()) == ["a.txt", "a_2.txt"]
