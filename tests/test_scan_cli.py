import csv

from hootwatch.edge.commands.main import main

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
    assert not out.exists()  # no empty store and CSV that would read as "no detections"
    assert main(args + ["--tz", "Australia/Hobart", "--clips", "--quiet"]) == 1  # bad.wav failed
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
    # again: nothing new (bad.wav fails again)
    assert main(args + ["--tz", "Australia/Hobart", "--quiet"]) == 1
    assert "min_hits 1 (bundle)" in capsys.readouterr().out
    (rec / "bad.wav").unlink()
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


def test_exit_codes_and_no_output_before_the_arguments_are_valid(tmp_path, capsys):
    bundle = tone_bundle(tmp_path / "b")
    rec, out = tmp_path / "rec", tmp_path / "out"
    write_tone(rec / "20240101_100000.wav", 6, 8000)
    base = ["--model", str(bundle), "--out", str(out), "--quiet", "--threads", "1"]
    for tz in ("Mars/Olympus", "+25:00"):
        assert main(["scan", str(rec), *base, "--tz", tz]) == 2
        assert "timezone" in capsys.readouterr().err and not out.exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "field_notes.txt").write_text("owl at 22:10")
    for folder in ("empty", "notes"):
        assert main(["scan", str(tmp_path / folder), *base]) == 3
        assert "no audio files" in capsys.readouterr().err and not out.exists()
    assert main(["scan", str(rec), "--model", str(tmp_path / "nobundle"), "--out", str(out)]) == 2
    assert not out.exists()
    out.write_text("not a folder")
    assert main(["scan", str(rec), *base]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


def test_help_documents_the_exit_codes(capsys):
    import pytest
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130 "):
        assert f"\n  {code}" in text, code


def test_scan_on_a_full_disk_says_so_without_a_traceback(tmp_path, capsys, monkeypatch):
    import sqlite3

    from hootwatch.edge.store import database as store
    bundle = tone_bundle(tmp_path / "b")
    write_tone(tmp_path / "rec" / "20240101_100000.wav", 6, 8000)

    def full(self, path):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(store.DetectionStore, "__init__", full)
    assert main(["scan", str(tmp_path / "rec"), "--model", str(bundle), "--out", str(tmp_path / "o"), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert "disk" in err and "full" in err and "free" in err and "Traceback" not in err


def test_check_config_into_a_closed_pipe_is_no_traceback():
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "hootwatch.edge.commands.main", "check-config", "--example"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head -1` that has already exited
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_dangling_symlink_or_fifo_given_as_an_argument_fails_that_path_not_the_run(tmp_path, capsys):
    import os

    bundle = tone_bundle(tmp_path / "b")
    good = write_tone(tmp_path / "rec" / "20240101_220000.wav", 20, 8000, tones=[(10, 13)])
    os.symlink("nowhere.wav", tmp_path / "rec" / "dangling.wav")
    os.mkfifo(tmp_path / "rec" / "pipe.wav")
    args = ["scan", str(good), str(tmp_path / "rec" / "dangling.wav"), str(tmp_path / "rec" / "pipe.wav"),
            "--model", str(bundle), "--out", str(tmp_path / "out"), "--threads", "1", "--quiet"]
    assert main(args) == 1                        # a file failed; the good one is scanned
    report = capsys.readouterr().out
    assert "dangling symlink" in report and "FIFO" in report
    assert len(list(csv.DictReader(open(tmp_path / "out" / "detections.csv")))) == 1
