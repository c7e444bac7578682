"""Scan engine end to end with the deterministic tone bundle (tests/tiny_bundles.py)."""

from datetime import datetime, timezone

import numpy as np
import pytest
import soundfile as sf

from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.scan.engine import LiveSession, Progress, ScanSettings, Scanner
from hootwatch.edge.store.database import DetectionStore

from tiny_bundles import tone_bundle, tone_signal, write_tone

SR = 8000


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return Detector.load(tone_bundle(tmp_path_factory.mktemp("bundle"), sample_rate=SR), threads=1)


def scanner(detector, tmp_path, **kw):
    store = DetectionStore(tmp_path / "out" / "detections.sqlite")
    return Scanner(detector, store, ScanSettings(**kw), tmp_path / "out")


def test_tone_at_known_time_gives_detection_at_known_utc(detector, tmp_path):
    # 48 kHz stereo-free file, resampled to the bundle's 8 kHz: never a hard-coded rate
    p = write_tone(tmp_path / "rec" / "20240101_220000.WAV", 40, sample_rate=16000, tones=[(10, 13)])
    sc = scanner(detector, tmp_path)
    out = sc.scan_file(p)
    assert (out.status, out.n_detections, out.audio_s) == ("done", 1, 40.0)
    [row] = sc.store.detections()
    # windows [7.5,12.5] and [10,15] hold >30% tone; [5,10] and [12.5,17.5] do not
    assert (row["start_s"], row["end_s"], row["n_windows"]) == (7.5, 15.0, 2)
    assert (row["begin_utc"], row["end_utc"]) == ("2024-01-01T22:00:07.500+00:00", "2024-01-01T22:00:15.000+00:00")
    assert row["time_source"] == "filename_audiomoth" and row["threshold"] == 0.5
    assert row["max_score"] >= row["mean_score"] >= 0.5


def test_threshold_hop_and_min_hits_change_results(detector, tmp_path):
    p = write_tone(tmp_path / "20240101_220000.wav", 40, SR, tones=[(10, 13), (30, 31)])
    base = scanner(detector, tmp_path / "a")
    base.scan_file(p)
    assert [(r["start_s"], r["end_s"], r["n_windows"]) for r in base.store.detections()] == [(7.5, 15.0, 2)]
    # hop 1 s: windows starting at 7..11 s hold >1.5 s of the 3 s tone; the 1 s tone never fills 30%
    hop1 = scanner(detector, tmp_path / "b", hop_s=1.0)
    hop1.scan_file(p)
    assert [(r["start_s"], r["end_s"], r["n_windows"], r["hop_s"]) for r in hop1.store.detections()] == [
        (7.0, 16.0, 5, 1.0)]
    strict = scanner(detector, tmp_path / "c", threshold=0.999999)
    strict.scan_file(p)
    assert strict.store.detections() == []
    # min_hits counts windows at the bundle's hop (2.5 s): at hop 1 s, 2 of them are 5 windows (the tone gives 5)
    for k, expected in ((2, 1), (3, 0)):
        hits = scanner(detector, tmp_path / f"k{k}", hop_s=1.0, min_hits=k)
        hits.scan_file(p)
        assert len(hits.store.detections()) == expected


def test_the_bundles_min_hits_is_the_default_and_settings_override_it(tmp_path):
    two = Detector.load(tone_bundle(tmp_path / "bundle", sample_rate=SR, min_hits=2), threads=1)
    # hop 2.5 s: the short tone holds enough of one window only ([7.5, 12.5]), the long one of three in a row
    p = write_tone(tmp_path / "rec" / "20240101_220000.WAV", 60, sample_rate=SR, tones=[(9.0, 10.8), (35, 40)])
    by_bundle = scanner(two, tmp_path / "a")
    by_bundle.scan_file(p)
    assert [r["n_windows"] for r in by_bundle.store.detections()] == [3]
    assert {r["min_hits"] for r in by_bundle.store.detections()} == {2}
    overridden = scanner(two, tmp_path / "b", min_hits=1)
    overridden.scan_file(p)
    assert sorted(r["n_windows"] for r in overridden.store.detections()) == [1, 3]


def test_rescan_adds_no_duplicates_and_bad_files_are_listed(detector, tmp_path):
    rec = tmp_path / "rec"
    write_tone(rec / "20240101_220000.wav", 30, SR, tones=[(10, 13)])
    write_tone(rec / "sub" / "20240101_230000.flac", 30, SR, tones=[(20, 24)])
    (rec / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (rec / "empty.wav").write_bytes(b"")
    (rec / "notes.mp3").write_text("not audio at all")
    full = write_tone(tmp_path / "full.wav", 30, SR)
    (rec / "truncated.wav").write_bytes(full.read_bytes()[:100])
    sc = scanner(detector, tmp_path)
    first = sc.scan_paths([rec])
    assert len(first.done) == 3 and first.n_detections == 2
    assert sorted(o.path.name for o in first.failed) == ["corrupt.wav", "empty.wav", "notes.mp3"]
    reasons = {o.path.name: o.reason for o in first.outcomes}
    assert "empty" in reasons["empty.wav"]
    assert "truncated" in reasons["truncated.wav"]  # what is there is scanned, and the outcome says so
    assert {r.status for r in sc.store.ledger_rows(status="failed")} == {"failed"}
    second = sc.scan_paths([rec])
    assert len(second.skipped) == 3 and second.n_detections == 0
    assert sc.store.count() == 2


def test_contiguous_files_continue_the_window_stream(detector, tmp_path):
    rec = tmp_path / "rec"
    a = write_tone(rec / "20240101_220000.wav", 30, SR)
    b = write_tone(rec / "20240101_220030.wav", 30, SR, tones=[(0, 2.2)], seed=1)
    sc = scanner(detector, tmp_path)
    plan = sc.plan([rec])
    assert [f.next_path for f in plan] == [b, None]
    sc.scan_paths([rec])
    rows = {r["file"]: r for r in sc.store.detections()}
    # the window starting at 27.5 s in `a` runs 2.5 s into `b` and hears the tone: it belongs to `a`, and its
    # event ends where `a` ends
    assert (rows[str(a)]["start_s"], rows[str(a)]["end_s"]) == (27.5, 30.0)
    assert rows[str(a)]["begin_utc"] == "2024-01-01T22:00:27.500+00:00"
    assert rows[str(b)]["start_s"] == 0.0
    # alone, `a` ends with an end-aligned window [25, 30] that hears nothing
    alone = scanner(detector, tmp_path / "alone")
    assert alone.scan_file(a).n_detections == 0


def test_stop_leaves_store_consistent_then_rescan_completes(detector, tmp_path):
    rec = tmp_path / "rec"
    for i in range(3):
        write_tone(rec / f"2024010{i + 1}_220000.wav", 60, SR, tones=[(10, 13)])
    sc = scanner(detector, tmp_path, block_s=5.0)

    class StopInSecondFile(Progress):
        files = 0

        def file_started(self, path, duration_s):
            self.files += 1

        def advance(self, audio_s):
            if self.files == 2:
                sc.stop()

    summary = sc.scan_paths([rec], StopInSecondFile())
    assert summary.interrupted and len(summary.done) == 1
    assert sc.store.count() == 1 and len(sc.store.ledger_rows()) == 1
    again = scanner(detector, tmp_path)
    again.scan_paths([rec])
    assert again.store.count() == 3


def test_live_session_uses_capture_clock(detector, tmp_path):
    sc = scanner(detector, tmp_path)
    start = datetime(2024, 6, 1, 9, 30, tzinfo=timezone.utc)
    live = LiveSession(sc, "mic0", start)
    x = tone_signal(30, SR, tones=[(10, 13)])
    got = []
    for i in range(0, len(x), 2400):  # 0.3 s blocks, as a sound card delivers them
        got += live.push(x[i:i + 2400])
    got += live.close()
    assert [(d.start_s, d.end_s, d.begin_utc) for d in got] == [(7.5, 15.0, "2024-06-01T09:30:07.500+00:00")]
    assert got[0].time_source == "capture_clock" and sc.store.count() == 1


def test_real_audiomoth_file_scans_with_header_time(detector, tmp_path, shared_real):
    sc = scanner(detector, tmp_path)
    out = sc.scan_file(shared_real / "recorder_fixtures" / "metadata.wav")
    assert out.status == "done" and out.audio_s == pytest.approx(14.97, abs=0.01)
    row = sc.store.ledger(shared_real / "recorder_fixtures" / "metadata.wav", sc.run.run_key)
    assert (row.start_utc, row.time_source, row.recorder_id) == (
        "2020-04-04T10:25:00.000+00:00", "audiomoth_header", "24526B065D325963")


def test_review_clips_failing_to_write_do_not_stop_the_scan(detector, tmp_path, caplog):
    a = write_tone(tmp_path / "rec" / "20240101_220000.wav", 20, SR, tones=[(10, 13)])
    b = write_tone(tmp_path / "rec" / "20240101_230000.wav", 20, SR, tones=[(10, 13)])
    sc = scanner(detector, tmp_path, clips=True)
    (tmp_path / "out" / "clips").write_text("a file where the clips folder should be")  # mkdir -> OSError
    summary = sc.scan_paths([a, b])
    assert [o.status for o in summary.outcomes] == ["done", "done"]
    assert len(sc.store.detections()) == 2 and not sc.store.needs_processing(a, sc.run.run_key)
    assert "review clips not written" in caplog.text


def test_same_recordings_from_another_mount_point_add_no_detections(detector, tmp_path):
    import shutil

    card = tmp_path / "media" / "card1"
    write_tone(card / "20240101_220000.wav", 20, SR, tones=[(10, 13)])
    write_tone(card / "20240101_230000.wav", 20, SR, tones=[(2, 5)])
    sc = scanner(detector, tmp_path)
    assert sc.scan_paths([card]).n_detections == 2
    copy = shutil.copytree(card, tmp_path / "mnt" / "sdb1")  # the same card mounted elsewhere (new mtimes)
    again = sc.scan_paths([copy])
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"] and sc.store.count() == 2
    # a recording rewritten where it was scanned from is processed again, its old rows replaced
    write_tone(card / "20240101_230000.wav", 20, SR, tones=[(12, 15)])
    third = sc.scan_paths([card])
    assert [o.status for o in third.outcomes] == ["skipped", "done"]
    assert sorted(r["start_s"] for r in sc.store.detections()) == [7.5, 10.0]
    # and its window scores too: one row per file the ledger holds, none left of the old content
    scored = [r[0] for r in sc.store.conn.execute("SELECT file_key FROM window_scores")]
    assert sorted(scored) == sorted(r[0] for r in sc.store.conn.execute("SELECT file_key FROM files")) and scored


def test_review_clips_of_two_recorders_with_the_same_file_name_do_not_collide(detector, tmp_path):
    a = write_tone(tmp_path / "rec" / "moth_A" / "20240101_100000.WAV", 20, SR, tones=[(10, 13)])
    b = write_tone(tmp_path / "rec" / "moth_B" / "20240101_100000.WAV", 20, SR, tones=[(10, 13)], seed=1)
    sc = scanner(detector, tmp_path, clips=True)
    assert sc.scan_paths([a, b]).n_detections == 2
    wavs = sorted(p.name for p in (tmp_path / "out" / "clips").glob("*.wav"))
    assert len(wavs) == 2 and wavs[0].startswith("moth_A_20240101_100000_") and wavs[1].startswith("moth_B_")
    assert len(list((tmp_path / "out" / "clips").glob("*.png"))) == 2


def test_compute_file_touches_no_store_and_commit_records_it(detector, tmp_path):
    p = write_tone(tmp_path / "rec" / "20240101_220000.wav", 40, SR, tones=[(10, 13)])
    sc = scanner(detector, tmp_path)
    result = sc.compute_file(p)
    assert sc.store.count() == 0 and sc.store.ledger(p, sc.run.run_key) is None
    assert (result.audio_s, result.time_source, result.start_utc) == (40.0, "filename_audiomoth",
                                                                     "2024-01-01T22:00:00.000+00:00")
    # every window of the file, scored: regular hops of 2.5 s over 40 s
    assert list(result.starts) == [int(s * SR) for s in np.arange(0, 35.1, 2.5)]
    assert len(result.scores) == len(result.starts) and (result.scores >= 0.5).sum() == 2
    sc.commit(result)
    [row] = sc.store.detections()
    assert (row["start_s"], row["end_s"]) == (7.5, 15.0)
    assert sc.store.ledger(p, sc.run.run_key).status == "done"
    assert sc.scan_file(p).status == "skipped"


class CountingScorer:
    """Any scorer with .score/.manifest/.batch_size (a cascade, say) runs the scan: no ONNX internals assumed."""

    def __init__(self, inner, batch_size):
        self.inner, self.batch_size, self.calls = inner, batch_size, []

    @property
    def manifest(self):
        return self.inner.manifest

    def score(self, windows):
        self.calls.append(len(windows))
        return self.inner.score(windows)


def test_scan_live_audio_and_window_scores_run_one_loop_with_any_scorer(detector, tmp_path):
    from hootwatch.edge.scan.offline import detections_at, score_windows

    p = write_tone(tmp_path / "rec" / "20240101_220000.wav", 40, SR, tones=[(10, 13), (30, 34)])
    scorer = CountingScorer(detector, batch_size=4)
    sc = scanner(scorer, tmp_path)
    sc.scan_file(p)
    assert scorer.calls == [4, 4, 4, 3]            # 15 windows in batches of the scorer's size
    scanned = [(r["start_s"], r["end_s"]) for r in sc.store.detections()]
    live = LiveSession(scanner(detector, tmp_path / "live"), "mic0", datetime(2024, 1, 1, 22, tzinfo=timezone.utc))
    x = tone_signal(40, SR, tones=[(10, 13), (30, 34)])
    got = [d for i in range(0, len(x), 1000) for d in live.push(x[i:i + 1000])] + live.close()
    m = detector.manifest
    files = score_windows(detector, tmp_path / "rec")
    offline = [(d.start_s, d.end_s) for d in detections_at(files, m.window_spec.window_samples, SR, m.threshold, 1)]
    assert scanned == [(d.start_s, d.end_s) for d in got] == offline == [(7.5, 15.0), (27.5, 35.0)]


def _straddling_call(rec):
    """Two contiguous 30 s files of one recorder and a 6 s call from 27 s in `a` to 3 s in `b`."""
    x = tone_signal(60, SR, tones=[(27, 33)])
    a, b = rec / "20240101_220000.wav", rec / "20240101_220030.wav"
    rec.mkdir(parents=True)
    sf.write(a, x[:30 * SR], SR, subtype="FLOAT")
    sf.write(b, x[30 * SR:], SR, subtype="FLOAT")
    return a, b


def _abut(rows):
    """(file, begin_utc, end_utc) in time order, and whether each row ends where the next begins (no overlap)."""
    rows = sorted(rows, key=lambda r: r[1])
    return rows, all(r[2] <= n[1] for r, n in zip(rows, rows[1:]))


def test_a_call_across_a_file_boundary_gives_abutting_rows_not_overlapping_ones(detector, tmp_path):
    from hootwatch.edge.scan.offline import detections_at, score_windows

    a, b = _straddling_call(tmp_path / "rec")
    sc = scanner(detector, tmp_path)
    assert [f.next_path for f in sc.plan([tmp_path / "rec"])] == [b, None]
    assert [o.audio_s for o in sc.scan_paths([tmp_path / "rec"]).outcomes] == [30.0, 30.0]
    rows, abutting = _abut([(r["file"], r["begin_utc"], r["end_utc"]) for r in sc.store.detections()])
    assert abutting, rows
    # `a`: windows from 25 s (one runs into `b`) up to the end of `a`; `b`: from its first sample
    assert rows == [(str(a), "2024-01-01T22:00:25.000+00:00", "2024-01-01T22:00:30.000+00:00"),
                    (str(b), "2024-01-01T22:00:30.000+00:00", "2024-01-01T22:00:35.000+00:00")]
    # window_scores (the operating point, mining) links the files as the scan does and gives the same rows
    m = detector.manifest
    files = score_windows(detector, tmp_path / "rec")
    assert [f.next_file for f in files] == [b.name, ""]
    offline = [(d.file, d.start_s, d.end_s) for d in detections_at(files, m.window_spec.window_samples, SR,
                                                                    m.threshold, 1)]
    assert offline == [(a.name, 25.0, 30.0), (b.name, 0.0, 5.0)]


def test_next_contiguous_finds_the_file_that_continues_a_recording(detector, tmp_path):
    a, b = _straddling_call(tmp_path / "rec")
    write_tone(tmp_path / "rec" / "20240101_230000.wav", 30, SR)           # an hour later: not contiguous
    sc = scanner(detector, tmp_path)
    assert sc.next_contiguous(a) == b and sc.next_contiguous(b) is None
    assert sc.next_contiguous(tmp_path / "rec" / "20240101_230000.wav") is None


def test_min_hits_means_the_same_stretch_of_positive_windows_at_any_hop(tmp_path):
    from hootwatch.edge.scan.engine import detection_rule

    two = Detector.load(tone_bundle(tmp_path / "bundle", sample_rate=SR, min_hits=2), threads=1)
    # a 1.8 s blip fills one window at the bundle's hop (2.5 s): no detection with min_hits 2; at hop 1 s it fills
    # 4 windows, which must not pass for "2 windows in a row"; a 5 s call passes at both hops
    p = write_tone(tmp_path / "rec" / "20240101_220000.WAV", 60, sample_rate=SR, tones=[(9.0, 10.8), (35, 40)])
    rows = {}
    for hop in (None, 1.0, 1.25):
        sc = scanner(two, tmp_path / f"hop{hop}", hop_s=hop)
        sc.scan_file(p)
        rows[hop] = [(r["start_s"] > 30, r["min_hits"], r["hop_s"]) for r in sc.store.detections()]
    # 2 windows x 2.5 s = 5 s of positive windows: 5 windows at hop 1 s, 4 at hop 1.25 s
    assert rows == {None: [(True, 2, 2.5)], 1.0: [(True, 5, 1.0)], 1.25: [(True, 4, 1.25)]}
    rule = detection_rule(two.manifest, ScanSettings(hop_s=1.0))
    assert "min_hits 2 (bundle)" in rule and "5 windows at hop 1 s" in rule
    assert "windows at hop" not in detection_rule(two.manifest, ScanSettings())


def test_decoding_ahead_in_a_thread_gives_the_same_rows_and_leaves_no_thread(detector, tmp_path):
    import threading

    rec = tmp_path / "rec"
    for i in range(3):
        write_tone(rec / f"2024010{i + 1}_220000.wav", 47, 16000, tones=[(10, 13), (30 + i, 34 + i)], seed=i)
    runs = {}
    for depth in (0, 2):
        sc = scanner(detector, tmp_path / f"d{depth}", block_s=4.0, prefetch_blocks=depth)
        sc.scan_paths([rec])
        results = [sc.compute_file(p) for p in sorted(rec.iterdir())]
        runs[depth] = ([(r["file_key"], r["start_sample"], r["end_s"], r["max_score"]) for r in sc.store.detections()],
                       [(list(r.starts), list(r.scores)) for r in results])
    assert runs[0] == runs[2] and len(runs[0][0]) == 6
    # a stop in the middle of a file ends the decoding thread too
    sc = scanner(detector, tmp_path / "stop", block_s=1.0, prefetch_blocks=2)

    class StopSoon(Progress):
        def advance(self, audio_s):
            sc.stop()

    before = threading.active_count()
    assert sc.scan_paths([rec], StopSoon()).interrupted
    assert threading.active_count() == before and sc.store.count() == 0
