"""Window scores are kept with each scanned file, and `hootwatch detections` rebuilds any operating point."""

import sqlite3

import numpy as np
import pytest

from hootwatch.edge.commands.main import main
from hootwatch.edge.store.database import DetectionStore

from review_helpers import scanned_store

KEYS = ("file_key", "start_sample", "start_s", "end_s", "begin_utc", "end_utc", "begin_local", "max_score",
        "mean_score", "n_windows", "threshold", "min_hits", "model_id")


def _rows(store, run_key):
    return sorted(tuple(r[k] for k in KEYS) for r in store.detections(run_key))


def test_scan_keeps_every_window_score_in_the_same_commit(tmp_path):
    _, _, out = scanned_store(tmp_path)
    with DetectionStore(out / "detections.sqlite") as s:
        [run] = s.runs()
        files = s.window_scores(run["run_key"])
        [windows] = s.conn.execute("SELECT SUM(n_windows) FROM window_scores WHERE run_key=?", (run["run_key"],))
        assert len(files) == 2 and windows[0] == sum(len(f.scores) for f in files)
        for f in files:  # 60 s, window 5 s, hop 2.5 s: starts 0, 2.5 .. 55 s
            assert list(f.starts) == [int(i * 2.5 * 8000) for i in range(23)]
            assert f.scores.dtype == np.float32 and ((f.scores >= 0) & (f.scores <= 1)).all()
        ledger_keys = {r.file_key for r in s.ledger_rows(run["run_key"])}
        assert {f.file_key for f in files} == ledger_keys


def test_rebuild_at_the_scans_own_point_equals_the_scan_and_another_point_equals_a_rescan(tmp_path):
    _, _, out = scanned_store(tmp_path / "a")  # threshold 0.5, min_hits 1 (the bundle's)
    with DetectionStore(out / "detections.sqlite") as s:
        [scan_run] = [r["run_key"] for r in s.runs()]
        scanned = _rows(s, scan_run)
    assert main(["detections", str(out), "--threshold", "0.5", "--min-hits", "1"]) == 0
    _, _, strict = scanned_store(tmp_path / "b", threshold=0.9, min_hits=2)
    with DetectionStore(out / "detections.sqlite") as s, DetectionStore(strict / "detections.sqlite") as t:
        assert _rows(s, scan_run) == scanned and len(scanned) == 3 and len(s.runs()) == 1
        assert main(["detections", str(out), "--threshold", "0.9", "--min-hits", "2"]) == 0
        [rescan_run] = [r["run_key"] for r in t.runs()]
        rebuilt = _rows(s, rescan_run)
        assert rebuilt == _rows(t, rescan_run) and rebuilt != _rows(s, scan_run)
    csv = (out / "detections.csv").read_text().splitlines()
    assert len(csv) == 1 + len(rebuilt) and ",0.9," in csv[1]


def test_detections_without_stored_scores_says_what_to_do(tmp_path, capsys):
    DetectionStore(tmp_path / "detections.sqlite").close()
    assert main(["detections", str(tmp_path), "--threshold", "0.5"]) == 2
    assert "scan the recordings again" in capsys.readouterr().err
    assert main(["detections", str(tmp_path / "none"), "--threshold", "0.5"]) == 2
    assert "no detections.sqlite" in capsys.readouterr().err


def test_window_scores_and_detections_are_one_transaction(tmp_path, monkeypatch):
    """A failure while writing the scores leaves neither the file's detections nor its ledger row behind."""
    from hootwatch.edge.store.window_scores import WindowScores

    def broken(self, cur, file_key, run_key):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(WindowScores, "write", broken)
    scanned_store(tmp_path)  # each file fails (and is retried next time): the scan goes on
    con = sqlite3.connect(tmp_path / "out" / "detections.sqlite")
    assert con.execute("SELECT COUNT(*) FROM detections").fetchone()[0] == 0
    assert con.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall() == [("failed", 2)]


def test_detections_without_min_hits_keeps_the_runs_own(tmp_path):
    """`hootwatch detections OUT --threshold T` changes the threshold only: a run scanned with min_hits 2 is not
    quietly rebuilt at min_hits 1 (which would give more detections than a scan at T)."""
    _, _, out = scanned_store(tmp_path, min_hits=2)
    assert main(["detections", str(out), "--threshold", "0.6"]) == 0
    with DetectionStore(out / "detections.sqlite") as s:
        rows = s.conn.execute("SELECT DISTINCT threshold, min_hits FROM detections WHERE threshold=0.6").fetchall()
    assert [tuple(r) for r in rows] == [(0.6, 2)]


def test_every_command_means_the_same_run_and_checks_the_one_it_is_given(tmp_path, capsys):
    """Without --run, detections, dataset, calibrate and the review app all take the latest run (here the one
    `detections` just rebuilt); a --run the store does not have is refused, naming the store and its runs."""
    from hootwatch.edge.review.app import create_app
    from review_server import review_client

    bundle, _, out = scanned_store(tmp_path)
    assert main(["detections", str(out), "--threshold", "0.9", "--min-hits", "2"]) == 0
    with DetectionStore(out / "detections.sqlite") as s:
        scan_run, rebuilt = [r["run_key"] for r in reversed(s.runs())]
        assert "t=0.9" in rebuilt and s.latest_run() == s.resolve_run(None) == s.scored_run(None) == rebuilt
    capsys.readouterr()
    assert main(["calibrate", str(out), "--bundle", str(bundle), "--target-precision", "0.9", "--dry-run"]) == 2
    assert rebuilt in capsys.readouterr().out  # the title of its table names the run
    with review_client(create_app(out)) as c:
        assert c.get("/api/queue").json()["run"] == rebuilt
        assert c.get("/api/calibration").json()["run"] == rebuilt
        assert c.get("/api/queue", params={"run": scan_run}).json()["run"] == scan_run
        refused = c.get("/api/queue", params={"run": "nope"})
        assert refused.status_code == 404 and "no run 'nope'" in refused.json()["error"]  # no such run: not found
    for args in (["detections", str(out), "--threshold", "0.5"], ["dataset", str(out), "--out", str(tmp_path / "d")],
                 ["calibrate", str(out), "--bundle", str(bundle), "--target-precision", "0.9"]):
        assert main(args + ["--run", "nope"]) == 2
        err = capsys.readouterr().err
        assert "no run 'nope'" in err and str(out / "detections.sqlite") in err
        assert scan_run in err and rebuilt in err and "--run" in err


def test_the_latest_run_is_the_newest_that_kept_window_scores(tmp_path, capsys):
    """Where the newest run kept no window scores (an older hootwatch scanned it), the latest is the newest run
    that did, as `detections` always chose; a store that kept none at all takes its newest run."""
    _, _, out = scanned_store(tmp_path)
    assert main(["detections", str(out), "--threshold", "0.9"]) == 0
    with DetectionStore(out / "detections.sqlite") as s:
        scan_run, newest = [r["run_key"] for r in reversed(s.runs())]
        s.conn.execute("DELETE FROM window_scores WHERE run_key=?", (newest,))
        assert s.latest_run() == scan_run == s.scored_run(None)
        s.conn.execute("DELETE FROM window_scores")
        assert s.latest_run() == newest == s.resolve_run(None)
    assert main(["detections", str(out), "--threshold", "0.5"]) == 2
    assert f"no window scores are stored for run {newest!r}" in capsys.readouterr().err
