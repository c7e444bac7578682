"""Cluster scans (edge/cluster/) on a LocalCluster of 2 worker processes: the same rows as a local scan, and
nothing lost or doubled when a worker or the driver is killed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from hootwatch.edge.contract.audio import iter_blocks
from hootwatch.edge.cluster import ClusterSettings, scan_on_cluster
from hootwatch.edge.cluster.units import Span, chunk_samples, chunk_spans, merge_chunks
from hootwatch.edge.cluster.worker import chunk_blocks, score_chunk
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.contract.recorder_time import file_time
from hootwatch.edge.scan.engine import Scanner, ScanSettings
from hootwatch.edge.store.database import DetectionStore
from hootwatch.edge.contract.windows import WindowSpec, window_starts

from tiny_bundles import tone_bundle, write_tone

SR = 8000
CHUNK_S = 60.0
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tone_bundle(tmp_path_factory.mktemp("bundle"), sample_rate=SR)


def make_dump(root: Path) -> Path:
    """Contiguous files with calls across their boundaries, two long files with calls across chunk edges (one
    resampled from 16 kHz and followed by a contiguous file, one at the model's rate), a corrupt file and a long
    file truncated by a bad copy."""
    write_tone(root / "A" / "20240101_220000.WAV", 60, 16000, tones=[(10, 13), (57, 62)], seed=1)
    write_tone(root / "A" / "20240101_220100.WAV", 60, 16000, tones=[(0, 2), (30, 33)], seed=2)
    write_tone(root / "A" / "20240101_220200.WAV", 30, 16000, tones=[(28, 30)], seed=3)
    write_tone(root / "B" / "20240101_230000.WAV", 400, 16000, tones=[(58, 63), (119, 121), (170, 185), (396, 400)],
               seed=4)
    write_tone(root / "B" / "20240101_230640.WAV", 60, 16000, tones=[(0, 3)], seed=5)
    write_tone(root / "C" / "20240101_230000.WAV", 400, SR, tones=[(58, 63), (239, 242), (395, 400)], seed=6)
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    long = write_tone(root / "D" / "20240101_230000.WAV", 400, SR, seed=7)   # long, but cut short by a bad copy
    long.write_bytes(long.read_bytes()[:3_000_000])
    return root


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    return make_dump(tmp_path_factory.mktemp("dump"))


def local_scan(bundle, paths, out: Path, settings=ScanSettings()):
    with DetectionStore(out / "detections.sqlite") as store:
        return Scanner(Detector.load(bundle, threads=1), store, settings, out).scan_paths(paths)


def store_rows(path: Path, skip=("id", "created_utc", "processed_at")):
    """Detections, ledger rows and the kept window scores, in a fixed order, without the columns that record when
    they were written."""
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                  if t in ("detections", "files", "window_scores")]
        assert {"detections", "files"} <= set(tables)
        return {table: sorted(tuple((k, r[k]) for k in r.keys() if k not in skip)
                              for r in con.execute(f"SELECT * FROM {table}"))
                for table in tables}
    finally:
        con.close()


def cluster_settings(**kw):
    return ClusterSettings("local:2", threads=1, chunk_s=CHUNK_S, dashboard_address=":0", **kw)


# units (pure)

def test_chunks_sit_on_the_hop_grid_hold_whole_batches_and_cover_every_window():
    spec = WindowSpec(SR, 5.0, 2.5)
    size = chunk_samples(spec, CHUNK_S, batch_size=8)
    assert size % (spec.hop_samples * 8) == 0 and size >= 2 * spec.window_samples
    assert chunk_spans(int(1.5 * size), spec, CHUNK_S, 8) == (Span(0, None),)
    for n in (int(1.5 * size) + 1, 3 * size, 7 * size + 12345, 7 * size - 1):
        spans = chunk_spans(n, spec, CHUNK_S, 8)
        assert spans[0].start == 0 and spans[-1].stop is None and len(spans) > 1
        assert all(a.stop == b.start for a, b in zip(spans, spans[1:]))
        assert size // 2 <= n - spans[-1].start < size + size // 2
        grid = window_starts(n, spec)
        for s in spans[:-1]:  # every window of a chunk fits in the file: the tail is the last chunk's
            inside = grid[(grid >= s.start) & (grid < s.stop)]
            assert len(inside) == size // spec.hop_samples
            assert inside[-1] + spec.window_samples == s.start + s.samples_needed(spec) <= n


@pytest.mark.parametrize("rate", [16000, SR])
def test_a_chunk_decodes_bit_for_bit_the_samples_of_a_whole_decode(tmp_path, rate):
    # 16 kHz is resampled (decoded from the start, head dropped); 8 kHz is read from the chunk's first sample
    p = write_tone(tmp_path / "x.wav", 70, rate, tones=[(3, 9)])
    whole = np.concatenate(list(iter_blocks(p, SR, block_s=30)))
    for start, count in ((0, 80000), (160000, 200000), (400000, None), (123456, 7)):
        part = np.concatenate(list(chunk_blocks(p, SR, start, count, block_s=7)))
        expect = whole[start:] if count is None else whole[start:start + count]
        assert part.dtype == np.float32 and np.array_equal(part, expect)


def test_chunk_scores_merged_are_the_window_scores_and_events_of_the_whole_file(bundle, dump, tmp_path):
    sc = Scanner(Detector.load(bundle, threads=1), None, ScanSettings(hop_s=1.0, min_hits=2))
    for name, nxt in (("B/20240101_230000.WAV", "B/20240101_230640.WAV"), ("C/20240101_230000.WAV", None)):
        path, next_path = dump / name, (dump / nxt if nxt else None)
        whole = sc.compute_file(path, next_path)
        spans = chunk_spans(int(400 * SR), sc.spec, CHUNK_S, 8)
        chunks = [score_chunk(sc, path, str(next_path) if next_path else None, s) for s in reversed(spans)]
        merged = merge_chunks(chunks, sc.spec, sc.run.threshold, sc.run.min_hits)
        assert len(spans) == 6 and merged.linked == (nxt is not None)   # 64 s chunks: whole batches of 1 s hops
        assert np.array_equal(merged.starts, whole.starts) and np.array_equal(merged.scores, whole.scores)
        assert [sc._detection(path, file_time(path, sc.tz), e) for e in merged.events] == list(whole.detections)
        assert merged.n_samples / SR == whole.audio_s == 400.0


def test_a_student_chunk_decides_its_edge_windows_as_the_whole_file_does(tmp_path):
    """The student passes each window's neighbours: a window at a chunk's edge whose neighbour lies in the next
    chunk must be passed (and scored) as in a scan of the whole file. Tones every 9 s put passed windows at many
    edges of 10-window chunks."""
    from hootwatch.edge.contract.cascade import load_detector

    from tiny_bundles import add_student

    bundle = add_student(tone_bundle(tmp_path / "bundle", sample_rate=SR), neighbours=1)
    path = write_tone(tmp_path / "x.wav", 200, SR, tones=[(t, t + 1.5) for t in range(4, 195, 9)])
    sc = Scanner(load_detector(bundle, threads=1), None, ScanSettings(hop_s=1.0, min_hits=1, batch_size=4))
    whole = sc.compute_file(path, None)
    spans = chunk_spans(int(200 * SR), sc.spec, 10.0, 1)
    chunks = [score_chunk(sc, path, None, s) for s in spans]
    merged = merge_chunks(chunks, sc.spec, sc.run.threshold, sc.run.min_hits)
    assert len(spans) > 10 and np.array_equal(merged.starts, whole.starts)
    assert 0.1 < np.isfinite(whole.scores).mean() < 0.9          # the student passes some windows, not all
    assert np.array_equal(np.isnan(merged.scores), np.isnan(whole.scores))
    assert np.allclose(merged.scores, whole.scores, equal_nan=True)


def test_cluster_settings_come_from_the_flag_then_the_dask_config_and_bad_ones_say_what_to_do():
    import dask

    from hootwatch.edge.cluster.connect import connect
    from hootwatch.edge.core.errors import ConfigError

    with dask.config.set({"hootwatch.cluster.address": "tcp://10.0.0.5:8786", "hootwatch.cluster.chunk-s": 600,
                          "hootwatch.cluster.threads": 3}):
        assert ClusterSettings.from_config() == ClusterSettings("tcp://10.0.0.5:8786", 3, 600.0)
        assert ClusterSettings.from_config("local:2", threads=1).address == "local:2"
    with pytest.raises(ConfigError, match="without an address") as e:
        ClusterSettings.from_config()
    assert "--cluster local:4" in e.value.hint
    with pytest.raises(ConfigError, match="chunk-s 10 must be at least 60"):
        ClusterSettings("local:2", chunk_s=10)
    for bad in ("local:0", "local:two", "no-such-scheduler.json"):
        with pytest.raises(ConfigError) as e, connect(ClusterSettings(bad)):
            pass
        assert "pass e.g. --cluster local:4" in e.value.hint


# on a LocalCluster

def test_a_cluster_scan_gives_the_rows_of_a_local_scan(bundle, dump, tmp_path, monkeypatch):
    settings = ScanSettings(hop_s=1.0, min_hits=2)
    monkeypatch.chdir(dump.parent)  # a relative path, as typed: rows and reasons name files as given
    given = Path(dump.name)
    local = local_scan(bundle, [given], tmp_path / "local", settings)
    summary, exports, report = scan_on_cluster([given], bundle, tmp_path / "cluster", settings, cluster_settings())
    # 400 s files in 64 s chunks, the 187.5 s that the truncated D holds in 3
    assert (report.chunked_files, report.units) == (3, 2 * 6 + 3 + 5)
    assert [(o.path, o.status, o.reason, o.n_detections, o.audio_s) for o in summary.outcomes] == [
        (o.path, o.status, o.reason, o.n_detections, o.audio_s) for o in local.outcomes]
    assert [o.path.name for o in summary.failed] == ["corrupt.wav"]
    [cut] = [o for o in summary.done if o.path == given / "D" / "20240101_230000.WAV"]
    assert cut.reason.startswith(f"{cut.path}: truncated: 187.5 s of 400.0 s are in the file")
    ours, theirs = store_rows(tmp_path / "cluster" / "detections.sqlite"), store_rows(tmp_path / "local" / "detections.sqlite")
    assert len(theirs["detections"]) >= 6 and len(theirs["window_scores"]) == 7 and ours == theirs
    assert (tmp_path / "cluster" / "detections.csv").read_text().count("\n") == len(theirs["detections"]) + 1
    # a call across a chunk edge is one row, as locally
    spans = {(r["start_s"], r["end_s"]) for r in map(dict, theirs["detections"]) if "C/" in r["file"]}
    assert any(s < 60 < e for s, e in spans)
    # a rerun sends nothing that is committed (the corrupt file is retried, as by a local scan)
    again, _, report = scan_on_cluster([given], bundle, tmp_path / "cluster", settings, cluster_settings())
    assert (len(again.skipped), len(again.failed), report.units) == (7, 1, 1)
    assert store_rows(tmp_path / "cluster" / "detections.sqlite", skip=("id", "created_utc", "processed_at",
                                                                        "attempts")) == \
        store_rows(tmp_path / "local" / "detections.sqlite", skip=("id", "created_utc", "processed_at", "attempts"))


def test_a_worker_killed_mid_file_loses_and_doubles_nothing(bundle, dump, tmp_path):
    from cluster_helpers import KillOn

    marker = tmp_path / "killed"
    local_scan(bundle, [dump], tmp_path / "local")
    kill_once = lambda conn: conn.client.register_plugin(KillOn("20240101_220100", str(marker)))  # noqa: E731
    summary, _, _ = scan_on_cluster([dump], bundle, tmp_path / "cluster", ScanSettings(), cluster_settings(),
                                    on_connect=kill_once)
    assert marker.exists()  # a worker died in the middle of a file; the scheduler ran that file again elsewhere
    assert (len(summary.done), len(summary.failed)) == (7, 1)
    assert store_rows(tmp_path / "cluster" / "detections.sqlite") == store_rows(tmp_path / "local" / "detections.sqlite")


def test_a_file_that_keeps_killing_workers_fails_alone_with_the_reason(bundle, dump, tmp_path):
    from cluster_helpers import KillOn

    poison = tmp_path / "P" / "poison.wav"
    poison.parent.mkdir()
    poison.write_bytes((dump / "C" / "20240101_230000.WAV").read_bytes())  # long: its other chunks are called off
    local_scan(bundle, [dump], tmp_path / "local")
    always = lambda conn: conn.client.register_plugin(KillOn("poison"))  # noqa: E731
    summary, _, _ = scan_on_cluster([dump, poison.parent], bundle, tmp_path / "cluster", ScanSettings(),
                                    cluster_settings(allowed_failures=1), on_connect=always)
    assert sorted(o.path.name for o in summary.failed) == ["corrupt.wav", "poison.wav"]
    [reason] = [o.reason for o in summary.failed if o.path == poison]
    assert "2 Dask workers died while scanning it" in reason and str(poison) in reason
    ours = store_rows(tmp_path / "cluster" / "detections.sqlite")
    [row] = [r for r in ours["files"] if dict(r)["path"] == str(poison.resolve())]
    assert (dict(row)["status"], dict(row)["reason"]) == ("failed", reason)
    ours["files"].remove(row)
    assert ours == store_rows(tmp_path / "local" / "detections.sqlite")


def test_the_driver_killed_mid_run_then_rerun_gives_the_store_of_an_uninterrupted_run(bundle, dump, tmp_path):
    psutil = pytest.importorskip("psutil")  # a dependency of distributed
    local_scan(bundle, [dump], tmp_path / "local")
    out = tmp_path / "cluster"
    cmd = [sys.executable, "-m", "hootwatch.edge.commands.main", "scan", str(dump), "--model", str(bundle),
           "--out", str(out), "--cluster", "local:2", "--threads", "1", "--quiet"]
    env = {**os.environ, "DASK_HOOTWATCH__CLUSTER__CHUNK_S": "60",     # the config key: long files in chunks
           "DASK_HOOTWATCH__CLUSTER__DASHBOARD_ADDRESS": ":0"}
    slow = {**env, "DASK_DISTRIBUTED__WORKER__PRELOAD": f'["{TESTS / "cluster_helpers.py"}"]',
            "HOOTWATCH_TEST_SLOW_S": "0.4"}
    driver = subprocess.Popen(cmd, env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None and done_files(out) < 2:
            time.sleep(0.05)
        assert driver.poll() is None, "the scan ended before it could be killed"
        children = psutil.Process(driver.pid).children(recursive=True)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    for child in children:  # the LocalCluster's nannies and workers: they were the driver's
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=30)
    assert 2 <= done_files(out) < 6
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 1, rerun.stderr[-2000:]   # finished; a file failed (the corrupt one)
    assert "long files cut into chunks of 60 s" in rerun.stderr   # the config key took
    no_attempts = ("id", "created_utc", "processed_at", "attempts")  # the corrupt file was tried by both runs
    assert store_rows(out / "detections.sqlite", no_attempts) == store_rows(tmp_path / "local" / "detections.sqlite",
                                                                             no_attempts)


def done_files(out: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{out / 'detections.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM files WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet
        return 0


def test_a_worker_without_the_bundle_stops_the_run_and_fails_no_file(bundle, dump, tmp_path):
    import shutil

    from hootwatch.edge.cluster.worker import WorkerSetupError

    copy = shutil.copytree(bundle, tmp_path / "bundle")

    def lose_the_bundle(conn):  # as a node that does not mount the shared filesystem
        shutil.rmtree(copy)
        conn.client.restart()   # the workers come back and cannot load it

    with pytest.raises(WorkerSetupError, match="has not loaded the model bundle") as e:
        scan_on_cluster([dump / "A"], copy, tmp_path / "out", ScanSettings(), cluster_settings(),
                        on_connect=lose_the_bundle)
    assert "shared filesystem" in e.value.hint
    with DetectionStore(tmp_path / "out" / "detections.sqlite") as store:
        assert store.ledger_rows() == []


def test_without_the_cluster_extra_the_scan_says_what_to_install(bundle, dump):
    code = ("import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None\n"
            "from hootwatch.edge.commands.main import main\n"
            f"sys.exit(main(['scan', {str(dump / 'A')!r}, '--model', {str(bundle)!r}, '--out', "
            f"{str(dump.parent / 'no-extra')!r}, '--cluster', 'local:2']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "needs 'dask distributed'" in done.stderr and "pip install 'hootwatch[cluster]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_scheduler_killed_mid_run_then_restarted_and_rerun_gives_the_store_of_a_local_scan(bundle, dump, tmp_path):
    psutil = pytest.importorskip("psutil")
    local_scan(bundle, [dump], tmp_path / "local")
    sched_file, out = tmp_path / "scheduler.json", tmp_path / "cluster"
    started = []

    def start(slow: float):
        sched_file.unlink(missing_ok=True)
        env = {**os.environ, "HOOTWATCH_TEST_SLOW_S": str(slow)}
        started.append(subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--port", "0", "--dashboard-address",
                                         ":0", "--scheduler-file", str(sched_file)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        started.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", "--scheduler-file", str(sched_file),
                                         "--nthreads", "1", "--nworkers", "2", "--preload",
                                         str(TESTS / "cluster_helpers.py")], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return started[-2]

    cmd = [sys.executable, "-m", "hootwatch.edge.commands.main", "scan", str(dump), "--model", str(bundle),
           "--out", str(out), "--cluster", str(sched_file), "--threads", "1", "--quiet"]
    try:
        scheduler = start(slow=0.4)
        driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None and done_files(out) < 2:
            time.sleep(0.05)
        scheduler.kill()
        _, err = driver.communicate(timeout=120)
        assert driver.returncode == 130 and "lost the connection to the Dask scheduler" in err
        assert "Traceback" not in err, err
        assert 2 <= done_files(out) < 7
        start(slow=0)
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert rerun.returncode == 1, rerun.stderr[-2000:]   # finished; the corrupt file failed
    finally:
        for proc in started:
            try:
                family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in family:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(family, timeout=30)
    no_attempts = ("id", "created_utc", "processed_at", "attempts")
    assert store_rows(out / "detections.sqlite", no_attempts) == store_rows(tmp_path / "local" / "detections.sqlite",
                                                                             no_attempts)


@pytest.mark.parametrize("first_stage", ["feature MLP", "student with neighbours"])
def test_a_cascade_bundle_on_the_cluster_gives_the_rows_of_a_local_scan(dump, tmp_path, first_stage):
    """The student passes each window's neighbours too: a chunk gets the windows beside it as context, so a window
    at a chunk edge is decided as in a scan of the whole file."""
    from hootwatch.edge.contract.cascade import load_detector

    from tiny_bundles import add_first_stage, add_student

    add = add_first_stage if first_stage == "feature MLP" else add_student
    cascade = add(tone_bundle(tmp_path / "bundle", sample_rate=SR))
    settings = ScanSettings(hop_s=1.0)  # chunks of whole first-stage batches: 128 windows, 128 s
    with DetectionStore(tmp_path / "local" / "detections.sqlite") as store:
        Scanner(load_detector(cascade, threads=1), store, settings, tmp_path / "local").scan_paths([dump / "C"])
    _, _, report = scan_on_cluster([dump / "C"], cascade, tmp_path / "cluster", settings, cluster_settings())
    assert (report.chunked_files, report.units) == (1, 3)
    ours, theirs = store_rows(tmp_path / "cluster" / "detections.sqlite"), store_rows(tmp_path / "local" / "detections.sqlite")
    assert len(theirs["detections"]) >= 2 and ours == theirs
