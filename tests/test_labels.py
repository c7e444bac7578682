"""Labels: kept with history on audio spans, in and out as CSV / Raven / Audacity tables."""

import sqlite3

import pytest

from hootwatch.edge.commands.main import main
from hootwatch.edge.review.label_io import read_rows
from hootwatch.edge.store.labels import LabelBook, LabelError
from hootwatch.edge.store.database import DetectionStore

from review_helpers import scanned_store


@pytest.fixture()
def scanned(tmp_path):
    return scanned_store(tmp_path)


def _keys(out):
    with DetectionStore(out / "detections.sqlite") as s:
        return {r["path"].split("/rec/")[1]: r["file_key"] for r in s.conn.execute("SELECT * FROM files")}


def test_relabelling_keeps_history_and_undo_clears(scanned):
    _, _, out = scanned
    key = _keys(out)["A/20240101_100000.WAV"]
    with DetectionStore(out / "detections.sqlite") as s:
        book = LabelBook(s)
        book.add(key, "A.wav", 7.5, 15.0, "owl", reviewer="kim")
        book.add(key, "A.wav", 7.5, 15.0, "not_owl", reviewer="lee")
        assert book.of_span(key, 7.5, 15.0).label == "not_owl"
        assert [(x.label, x.reviewer) for x in book.history(key, 7.5, 15.0)] == [("owl", "kim"), ("not_owl", "lee")]
        book.add(key, "A.wav", 7.5, 15.0, "")  # undo
        assert book.of_span(key, 7.5, 15.0) is None and book.current() == []
        assert len(book.history(key, 7.5, 15.0)) == 3
        with pytest.raises(LabelError, match="empty or negative"):
            book.add(key, "A.wav", 5, 5, "owl")


def test_import_csv_raven_audacity_then_export_roundtrip(scanned, tmp_path, capsys):
    _, rec, out = scanned
    (tmp_path / "t.csv").write_text("file,start_s,end_s,label\n"
                                    f"{rec}/A/20240101_100000.WAV,10,13,owl\n")
    (tmp_path / "B_calls.Table.1.selections.txt").write_text(
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tBegin File\tFile Offset (s)\tAnnotation\n"
        "1\tSpectrogram 1\t1\t100\t103\tB/20240101_100000.WAV\t20\towl\n")
    # both recorders hold a 20240101_100000.WAV: a bare name is ambiguous and refused
    assert main(["labels", str(out), "--import", str(tmp_path / "B_calls.Table.1.selections.txt")]) == 2
    assert "names 2 recordings" in capsys.readouterr().err
    (tmp_path / "B_calls.Table.1.selections.txt").write_text(
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tBegin File\tFile Offset (s)\tAnnotation\n"
        f"1\tSpectrogram 1\t1\t100\t103\t{rec}/B/20240101_100000.WAV\t20\towl\n")
    (tmp_path / "aud").mkdir()
    assert main(["labels", str(out), "--import", str(tmp_path / "t.csv"),
                 "--import", str(tmp_path / "B_calls.Table.1.selections.txt")]) == 0
    with DetectionStore(out / "detections.sqlite") as s:
        got = sorted((x.file.split("/rec/")[1], x.start_s, x.end_s, x.label) for x in LabelBook(s).current())
    assert got == [("A/20240101_100000.WAV", 10.0, 13.0, "owl"), ("B/20240101_100000.WAV", 20.0, 23.0, "owl")]
    # importing the same table twice adds nothing
    assert main(["labels", str(out), "--import", str(tmp_path / "t.csv")]) == 0
    with DetectionStore(out / "detections.sqlite") as s:
        assert len(s.conn.execute("SELECT * FROM labels").fetchall()) == 2
    for name in ("x.csv", "x.selections.txt"):
        assert main(["labels", str(out), "--export", str(tmp_path / name)]) == 0
        with DetectionStore(out / "detections.sqlite") as s:
            rows = sorted((r.audio.split("/")[-1], r.start_s, r.end_s, r.label)
                          for r in read_rows(LabelBook(s), tmp_path / name))
        assert rows == [("20240101_100000.WAV", 10.0, 13.0, "owl"), ("20240101_100000.WAV", 20.0, 23.0, "owl")]
    assert main(["labels", str(out), "--export", str(tmp_path / "aud")]) == 0
    tracks = sorted(p.name for p in (tmp_path / "aud").iterdir())
    assert tracks == ["20240101_100000.txt", "20240101_100000_2.txt"]
    assert (tmp_path / "aud" / tracks[0]).read_text().split("\t")[2].strip() == "owl"


def test_bad_tables_name_the_file_and_add_nothing(scanned, tmp_path, capsys):
    _, rec, out = scanned
    bad = tmp_path / "bad.csv"
    bad.write_text(f"file,start_s,end_s,label\n{rec}/A/20240101_100000.WAV,10,13,owl\nnot_here.wav,1,2,owl\n")
    assert main(["labels", str(out), "--import", str(bad)]) == 2
    assert "not_here.wav" in capsys.readouterr().err
    (tmp_path / "cols.csv").write_text("name,t\nx,1\n")
    assert main(["labels", str(out), "--import", str(tmp_path / "cols.csv")]) == 2
    assert "missing columns" in capsys.readouterr().err
    # an Audacity track is named after its recording: both recorders have a 20240101_100000.WAV
    (tmp_path / "20240101_100000.txt").write_text("10\t12\towl\n")
    assert main(["labels", str(out), "--import", str(tmp_path / "20240101_100000.txt")]) == 2
    assert "names 2 recordings" in capsys.readouterr().err
    (tmp_path / "elsewhere.txt").write_text("10\t12\towl\n")
    assert main(["labels", str(out), "--import", str(tmp_path / "elsewhere.txt")]) == 2
    assert "not a recording this store has scanned" in capsys.readouterr().err
    con = sqlite3.connect(out / "detections.sqlite")
    assert con.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 0


def test_labels_survive_a_rescan_at_another_threshold(tmp_path):
    _, rec, out = scanned_store(tmp_path)
    key = _keys(out)["A/20240101_100000.WAV"]
    with DetectionStore(out / "detections.sqlite") as s:
        LabelBook(s).add(key, "A", 10.0, 13.0, "owl")
    scanned_store(tmp_path, threshold=0.3)  # a new run: other threshold
    with DetectionStore(out / "detections.sqlite") as s:
        book = LabelBook(s)
        runs = [r[0] for r in s.conn.execute("SELECT DISTINCT run_key FROM detections ORDER BY run_key")]
        assert len(runs) == 2
        for run in runs:
            [det] = [d for d in s.detections(run) if d["file_key"] == key and d["start_s"] < 13 < d["end_s"]]
            assert book.verdict(key, det["start_s"], det["end_s"]).label == "owl"


def test_export_carries_clock_time_in_the_recorders_zone_and_the_reviewer(tmp_path):
    import csv

    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import ScanSettings, scan_into

    bundle, rec, _ = scanned_store(tmp_path)
    out = tmp_path / "out_syd"  # AudioMoth names are UTC; the recorder stood in Sydney (UTC+11 in January)
    scan_into([rec], Detector.load(bundle, threads=1), out, ScanSettings(tz="Australia/Sydney"))
    key = _keys(out)["A/20240101_100000.WAV"]
    with DetectionStore(out / "detections.sqlite") as s:
        book = LabelBook(s)
        book.add(key, f"{rec}/A/20240101_100000.WAV", 10.0, 13.5, "owl", reviewer="kim")
    assert main(["labels", str(out), "--export", str(tmp_path / "x.csv")]) == 0
    [row] = list(csv.DictReader(open(tmp_path / "x.csv")))
    assert (row["file"].endswith("A/20240101_100000.WAV"), row["start_s"], row["end_s"], row["label"]) == \
        (True, "10.000", "13.500", "owl")
    assert row["begin_local"] == "2024-01-01T21:00:10.000+11:00" and row["end_local"] == "2024-01-01T21:00:13.500+11:00"
    assert row["reviewer"] == "kim"
    assert main(["labels", str(out), "--export", str(tmp_path / "x.selections.txt")]) == 0
    lines = (tmp_path / "x.selections.txt").read_text().splitlines()
    got = dict(zip(lines[0].split("\t"), lines[1].split("\t")))
    assert (got["Begin Date"], got["Begin Clock Time"], got["Reviewer"]) == ("2024/01/01", "21:00:10.000", "kim")
