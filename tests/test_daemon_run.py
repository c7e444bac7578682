"""`hootwatch run` as a real subprocess: sd_notify over a real socket, SIGTERM, and kill -9 + restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_helpers import write_daemon_config
from tiny_bundles import tone_bundle, write_tone

SR = 8000


def _start(cfg: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hootwatch.edge.commands.main", "run", "--config", str(cfg)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _rows(db: Path) -> list[tuple]:
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT file_key, start_sample, max_score FROM detections ORDER BY file_key, start_sample"
                         ).fetchall()
    finally:
        c.close()


def _ledger(db: Path) -> dict:
    if not db.is_file():
        return {}
    c = sqlite3.connect(db)
    try:
        return {k: s for k, s in c.execute("SELECT file_key, status FROM files")}
    except sqlite3.OperationalError:  # the daemon has not created its tables yet
        return {}
    finally:
        c.close()


def _wait(cond, timeout=60.0, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tone_bundle(tmp_path_factory.mktemp("bundle") / "tone", sample_rate=SR)


def test_notify_socket_gets_ready_watchdog_pings_and_stopping(tmp_path, bundle):
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    write_tone(incoming / "a.wav", 30, SR, tones=[(10, 14)])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    addr = f"@hootwatch-test-{os.getpid()}-{time.monotonic_ns()}"  # abstract, as systemd uses
    sock.bind("\0" + addr[1:])
    sock.settimeout(0.2)
    proc = _start(write_daemon_config(tmp_path, bundle, incoming, out),
                  {"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "2000000"})  # WatchdogSec=2 -> ping every 0.5 s
    messages: list[str] = []

    def receive(until, timeout=60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                messages.extend(sock.recv(4096).decode().split("\n"))
            except socket.timeout:
                pass
            if until():
                return True
        return False

    try:
        assert receive(lambda: "READY=1" in messages), messages
        ready_at = messages.index("READY=1")
        assert receive(lambda: messages[ready_at:].count("WATCHDOG=1") >= 3, timeout=20), messages
        assert _wait(lambda: (out / "status.json").is_file())
        proc.send_signal(signal.SIGTERM)
        assert receive(lambda: "STOPPING=1" in messages, timeout=20), messages
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped" and status["files_done"] == 1 and status["detections"] == 1
    assert any(m.startswith("STATUS=") for m in messages)
    assert (out / "detections.csv").read_text().count("\n") == 2  # header + the one detection, flushed at stop


def test_kill_9_mid_folder_then_restart_gives_every_detection_exactly_once(tmp_path, bundle):
    n_files = 12
    tones = [[(3 + i % 5, 7 + i % 5), (40, 44)] for i in range(n_files)]

    def write(folder: Path, i: int) -> None:
        write_tone(folder / f"S4A00001_202506{i + 1:02d}_203000.wav", 60, SR, tones=tones[i], seed=i)

    # reference: one uninterrupted run over the whole folder (the start-up backlog)
    ref_in, ref_out = tmp_path / "ref_in", tmp_path / "ref_out"
    ref_in.mkdir()
    for i in range(n_files):
        write(ref_in, i)
    proc = _start(write_daemon_config(tmp_path / "ref_in", bundle, ref_in, ref_out))
    try:
        assert _wait(lambda: (ref_out / "detections.sqlite").is_file()
                     and len(_ledger(ref_out / "detections.sqlite")) == n_files, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    reference = [(Path(k).name, s, sc) for k, s, sc in _rows(ref_out / "detections.sqlite")]
    assert len(reference) == 2 * n_files

    # interrupted: recordings arrive one by one; kill -9 once a few are committed, more arrive while the
    # daemon is dead, then it starts again
    run_in, run_out = tmp_path / "run_in", tmp_path / "run_out"
    run_in.mkdir()
    db = run_out / "detections.sqlite"
    proc = _start(write_daemon_config(tmp_path / "run_in", bundle, run_in, run_out))
    i = 0
    try:
        while i < n_files and len(_ledger(db)) < 3:
            write(run_in, i)
            i += 1
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    done_before = len(_ledger(db))
    assert 0 < done_before < n_files, "the daemon never got going, or finished before it could be killed"
    for j in range(i, n_files):
        write(run_in, j)
    proc = _start(write_daemon_config(tmp_path / "run_in", bundle, run_in, run_out))
    try:
        assert _wait(lambda: len(_ledger(db)) == n_files, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    got = [(Path(k).name, s, sc) for k, s, sc in _rows(db)]
    assert got == reference
    assert set(_ledger(db).values()) == {"done"}


def _catches_sigterm(pid: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_sigterm_right_after_start_stops_cleanly_before_the_model_is_loaded(tmp_path, bundle):
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    cfg = write_daemon_config(tmp_path, bundle, incoming, out)
    # at once (before the model), then at moments spread over start-up (model load, warm-up, sources starting)
    for trial, delay in enumerate([0.0] * 3 + [0.05, 0.1, 0.2, 0.3, 0.5]):
        proc = _start(cfg)
        try:
            assert _wait(lambda: _catches_sigterm(proc.pid), timeout=10, proc=proc)
            time.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
            log = proc.stdout.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert rc == 0 and "Traceback" not in log, (trial, delay, rc, log)
        if delay == 0.0:
            assert "loaded" not in log, log  # stopped before loading the model
