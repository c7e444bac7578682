"""Odd folder entries, impossible time metadata, damaged samples and a full disk in the scan engine (issue 12
items 3, 4, 5 and 10): each fails or skips that path alone, with the reason, and the rest goes on."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest
import soundfile as sf

from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.core.errors import ConfigError, DiskFullError
from hootwatch.edge.scan.engine import ScanSettings, Scanner, collect_audio
from hootwatch.edge.store.database import DetectionStore

from tiny_bundles import tone_bundle, tone_signal, write_tone

SR = 8000


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return Detector.load(tone_bundle(tmp_path_factory.mktemp("bundle"), sample_rate=SR), threads=1)


def scanner(detector, tmp_path, **kw):
    return Scanner(detector, DetectionStore(tmp_path / "out" / "detections.sqlite"), ScanSettings(**kw),
                   tmp_path / "out")


def _odd_folder(rec):
    write_tone(rec / "20240101_220000.wav", 20, SR, tones=[(10, 13)])
    write_tone(rec / "sub" / "20240101_230000.wav", 20, SR, tones=[(10, 13)], seed=1)
    bad_name = os.fsdecode(b"20240102_\xff\xfe.wav")     # not valid UTF-8 (a card written by another system)
    os.rename(write_tone(rec / "tmp.wav", 20, SR, seed=2), rec / bad_name)
    os.symlink("loop.wav", rec / "loop.wav")             # a symlink loop
    os.symlink("gone.wav", rec / "dangling.wav")         # a dangling symlink
    os.symlink("/dev/zero", rec / "device.wav")          # a link to a device
    os.mkfifo(rec / "pipe.wav")                          # a FIFO: opening it blocks for ever
    return rec, bad_name


@pytest.mark.timeout(60)
def test_odd_entries_in_a_folder_are_skipped_once_with_the_reason_and_the_rest_is_scanned(detector, tmp_path):
    rec, bad_name = _odd_folder(tmp_path / "rec")
    assert sorted(p.name for p in collect_audio([rec])) == ["20240101_220000.wav", "20240101_230000.wav"]
    sc = scanner(detector, tmp_path)
    summary = sc.scan_paths([rec])
    assert sorted(o.path.name for o in summary.done) == ["20240101_220000.wav", "20240101_230000.wav"]
    assert summary.failed == [] and sc.store.count() == 2
    assert summary.skipped == []                                # "already done": none of them
    reasons = {o.path.name: o.reason for o in summary.odd}
    assert sorted(reasons) == sorted([bad_name, "loop.wav", "dangling.wav", "device.wav", "pipe.wav"])
    assert "UTF-8" in reasons[bad_name] and "loop" in reasons["loop.wav"]
    assert "dangling" in reasons["dangling.wav"] and "device" in reasons["device.wav"]
    assert "FIFO" in reasons["pipe.wav"]
    assert all("\\xff" in o.reason for o in summary.odd if o.path.name == bad_name)  # printable
    assert {r.path for r in sc.store.ledger_rows()} == {str((rec / "20240101_220000.wav").resolve()),
                                                         str((rec / "sub" / "20240101_230000.wav").resolve())}


@pytest.mark.timeout(60)
def test_an_odd_path_given_as_an_argument_fails_that_path_not_the_run(detector, tmp_path):
    rec, bad_name = _odd_folder(tmp_path / "rec")
    given = [rec / "pipe.wav", rec / "dangling.wav", rec / "loop.wav", rec / "device.wav", rec / bad_name,
             rec / "20240101_220000.wav"]
    sc = scanner(detector, tmp_path)
    summary = sc.scan_paths(given)
    assert [o.path.name for o in summary.done] == ["20240101_220000.wav"]
    assert sorted(o.path.name for o in summary.failed) == sorted(p.name for p in given[:-1])
    # scan_file itself (the daemon's entry) never opens a FIFO either
    assert sc.scan_file(rec / "pipe.wav").status == "failed"


def _audiomoth_comment(path, comment, seconds=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as f:
        f.comment = comment
        f.write(tone_signal(seconds, SR, tones=[(10, 13)]))
    return path


def test_impossible_time_metadata_fails_that_file_alone(detector, tmp_path):
    rec = tmp_path / "rec"
    _audiomoth_comment(rec / "a.wav", "Recorded at 22:00:00 41/01/2024 (UTC+10) by AudioMoth 24526B065D325963")
    _audiomoth_comment(rec / "b.wav", "Recorded at 22:00:00 01/13/2024 (UTC) by AudioMoth 24526B065D325963")
    _audiomoth_comment(rec / "c.wav", "Recorded at 22:00:00 01/01/2024 (UTC+25) by AudioMoth 24526B065D325963")
    write_tone(rec / "20240101_220000.wav", 20, SR, tones=[(10, 13)])
    sc = scanner(detector, tmp_path)
    summary = sc.scan_paths([rec])
    assert [o.path.name for o in summary.done] == ["20240101_220000.wav"] and sc.store.count() == 1
    assert sorted(o.path.name for o in summary.failed) == ["a.wav", "b.wav", "c.wav"]
    assert all(str(o.path) in o.reason and "time" in o.reason for o in summary.failed)
    assert {r.status for r in sc.store.ledger_rows(status="failed")} == {"failed"}
    # a missing timezone is still the whole run's problem (every local-time file needs it), not a file's
    write_tone(rec / "SM4A_20240101_220000.wav", 20, SR)
    with pytest.raises(ConfigError, match="--tz"):
        scanner(detector, tmp_path / "again").scan_paths([rec])


@pytest.mark.parametrize("value,word", [(np.nan, "NaN"), (np.inf, "infinite"), (1e30, "huge")])
def test_damaged_float_samples_fail_the_file_with_the_reason(detector, tmp_path, value, word):
    x = tone_signal(20, SR, tones=[(10, 13)])
    x[5 * SR:5 * SR + 100] = value
    p = tmp_path / "rec" / "20240101_220000.wav"
    p.parent.mkdir(parents=True)
    sf.write(p, x, SR, subtype="FLOAT")
    sc = scanner(detector, tmp_path)
    out = sc.scan_file(p)
    assert out.status == "failed" and word in out.reason and str(p) in out.reason
    assert "5.0 s" in out.reason                                 # where the damage starts
    assert sc.store.ledger(p, sc.run.run_key).status == "failed"


def test_a_truncated_wav_is_scanned_as_far_as_it_goes_and_says_so(detector, tmp_path):
    full = write_tone(tmp_path / "full" / "20240101_220000.wav", 40, SR, tones=[(10, 13)])
    p = tmp_path / "rec" / "20240101_220000.wav"
    p.parent.mkdir(parents=True)
    p.write_bytes(full.read_bytes()[:44 + 2 * 20 * SR])          # header (40 s promised) + 20 s of PCM_16 samples
    sc = scanner(detector, tmp_path)
    out = sc.scan_file(p)
    assert (out.status, out.n_detections, out.audio_s) == ("done", 1, 20.0)
    assert "truncated" in out.reason and "20.0 s of 40.0 s" in out.reason
    row = sc.store.ledger(p, sc.run.run_key)
    assert row.status == "done" and row.reason == out.reason      # the note is kept with the results
    [row] = sc.store.detections()
    assert (row["start_s"], row["end_s"]) == (7.5, 15.0)


def _full(*args, **kw):
    raise sqlite3.OperationalError("database or disk is full")


def test_a_full_disk_while_committing_is_raised_never_counted_against_the_recording(detector, tmp_path,
                                                                                    monkeypatch):
    a = write_tone(tmp_path / "rec" / "20240101_220000.wav", 20, SR, tones=[(10, 13)])
    b = write_tone(tmp_path / "rec" / "20240101_230000.wav", 20, SR, tones=[(10, 13)], seed=1)
    sc = scanner(detector, tmp_path)
    monkeypatch.setattr(sc.store, "commit_file", _full)
    with pytest.raises(DiskFullError) as exc:
        sc.scan_file(a)
    assert "full" in exc.value.message and exc.value.hint
    with pytest.raises(DiskFullError):
        sc.scan_paths([a, b])                                   # the run stops: the CLI / daemon pause
    assert sc.store.ledger_rows() == []                         # no failure, no attempt recorded
    # a failure that cannot be recorded because the disk is full is the disk's problem too
    (tmp_path / "rec" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    monkeypatch.setattr(sc.store, "record_failure", _full)
    with pytest.raises(DiskFullError):
        sc.scan_file(tmp_path / "rec" / "corrupt.wav")
    monkeypatch.undo()
    assert [o.status for o in sc.scan_paths([a, b]).outcomes] == ["done", "done"]
    assert [r.attempts for r in sc.store.ledger_rows()] == [1, 1]



@pytest.mark.timeout(60)
def test_window_scores_leave_odd_entries_out_unopened(detector, tmp_path):
    from hootwatch.edge.scan.offline import score_windows

    rec, _ = _odd_folder(tmp_path / "rec")
    assert [f.file for f in score_windows(detector, rec)] == ["20240101_220000.wav", "sub/20240101_230000.wav"]
