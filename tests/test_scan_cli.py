import csv

from hootwatch.edge.cli import main

from tiny_bundles import tone_bundle, write_tone


def test_scan_command_writes_exports_and_clips(tmp_path, capsys):
    bundle = tone_bundle(tmp_path / "b")
    rec = tmp_path / "rec"
    write_tone(rec / "SM4_A_20240101_220000.wav", 30, 8000, tones=[(10, 13)])
    (rec / "bad.wav").write_bytes(b"nope")
    out = tmp_path / "out"
    args = ["scan", str(rec), "--model", str(bundle), "--out", str(out), "--threads", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "SM4_A_20240101_220000.wav" in err and "--tz" in err and "Traceback" not in err
    assert main(args + ["--tz", "Australia/Hobart", "--clips", "--quiet"]) == 0
    report = capsys.readouterr().out
    assert "files failed" in report and "bad.wav" in report and "detections.csv" in report
    assert "threshold 0.500 (bundle), min_hits 1 (bundle)" in report
    assert "exports hold run" in report and "t=0.5" in report
    [row] = list(csv.DictReader(open(out / "detections.csv")))
    assert (row["begin_utc"], row["begin_local"], row["recorder_id"]) == (
        "2024-01-01T11:00:07.500+00:00", "2024-01-01T22:00:07.500+11:00", "SM4")
    pngs = list((out / "clips").glob("*.png"))
    wavs = list((out / "clips").glob("*.wav"))
    assert len(pngs) == len(wavs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import soundfile as sf
    assert sf.info(str(wavs[0])).duration == 9.5  # 7.5..15 s padded by 1 s each side
    assert (out / "raven" / "SM4_A_20240101_220000.Table.1.selections.txt").is_file()
    assert (out / "labels" / "SM4_A_20240101_220000.txt").is_file()
    # again: nothing new
    assert main(args + ["--tz", "Australia/Hobart", "--quiet"]) == 0
    assert "min_hits 1 (bundle)" in capsys.readouterr().out
    assert main(args + ["--tz", "Australia/Hobart", "--quiet", "--min-hits", "2", "--out", str(tmp_path / "o2")]) == 0
    assert "threshold 0.500 (bundle), min_hits 2 (given)" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(out / "detections.csv")))) == 1


def test_bad_options_are_clear_errors(tmp_path, capsys):
    bundle = tone_bundle(tmp_path / "b")
    assert main(["scan", str(tmp_path / "nowhere"), "--model", str(bundle), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["scan", str(tmp_path), "--model", str(bundle), "--out", str(tmp_path / "o"), "--threshold", "2"]) == 2
    assert "threshold" in capsys.readouterr().err


def test_hop_longer_than_the_window_is_a_clear_error(tmp_path, capsys):
    bundle = tone_bundle(tmp_path / "b")  # 5 s windows
    write_tone(tmp_path / "rec" / "20240101_100000.wav", 6, 8000)
    args = ["scan", str(tmp_path / "rec"), "--model", str(bundle), "--out", str(tmp_path / "o"), "--hop", "10"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "hop 10 s" in err and "window (5 s)" in err and "Traceback" not in err
