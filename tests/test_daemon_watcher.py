"""The watched folder with real watchdog observers on a real folder: complete files only, each exactly once."""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hootwatch.edge.daemon.config import FolderConfig
from hootwatch.edge.daemon.watcher import FolderWatcher


def _wav_bytes(tmp: Path, seconds: float = 1.0, sr: int = 8000, seed: int = 0) -> bytes:
    p = tmp / f".src{seed}.wav"
    sf.write(p, np.random.default_rng(seed).uniform(-0.1, 0.1, int(seconds * sr)).astype(np.float32), sr)
    data = p.read_bytes()
    p.unlink()
    return data


class Harness:
    """A watcher plus a consumer that records every job it is handed (and what the file looked like then)."""

    def __init__(self, folder: Path, done: set | None = None, **cfg) -> None:
        self.cfg = FolderConfig(path=folder, **{"settle_s": 0.6, "poll_interval_s": 0.5, **cfg})
        self.jobs: queue.Queue = queue.Queue(maxsize=4)
        self.stop = threading.Event()
        self.done = done if done is not None else set()
        self.seen: list = []  # (job, size on disk when handed over)
        self.watcher = FolderWatcher(self.cfg, self.jobs, self.needs_scan, self.stop)
        self._consumer = threading.Thread(target=self._consume, daemon=True)

    def needs_scan(self, path, size, mtime_ns) -> bool:
        return (str(path), size, mtime_ns) not in self.done

    def _consume(self) -> None:
        while not self.stop.is_set():
            try:
                job = self.jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append((job, job.path.stat().st_size))
            self.done.add((str(job.path), job.size, job.mtime_ns))
            self.watcher.done(job.path)

    def __enter__(self) -> "Harness":
        self.watcher.start()
        self._consumer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.watcher.join()
        self._consumer.join(2)

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while len(self.seen) < n and time.monotonic() < end:
            time.sleep(0.05)

    def quiet(self, seconds: float) -> None:
        """Let the watcher run long enough that a wrong extra hand-over would have happened."""
        time.sleep(seconds)


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])
def test_slow_copy_is_handed_over_once_and_only_when_complete(tmp_path, poll):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    data = _wav_bytes(tmp_path, seconds=4.0)
    target = incoming / "S4A1_20260621_203000.wav"
    with Harness(incoming, poll=poll) as h:
        with open(target, "wb") as f:  # one writer, 1.5 s, chunks every 0.1 s (shorter than settle_s)
            chunks = np.array_split(np.frombuffer(data, np.uint8), 15)
            for c in chunks:
                f.write(c.tobytes())
                f.flush()
                time.sleep(0.1)
                assert not h.seen, "handed over while still being written"
        h.wait_for(1)
        h.quiet(1.5)
    assert len(h.seen) == 1
    job, size_then = h.seen[0]
    assert job.path == target and job.size == len(data) == size_then


def test_growing_file_reopened_for_each_chunk_is_not_handed_over_until_stable(tmp_path):
    # a copier that opens, appends and closes per chunk produces close-write events mid-file
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    data = _wav_bytes(tmp_path, seconds=3.0, seed=1)
    target = incoming / "half.wav"
    with Harness(incoming, settle_s=0.8) as h:
        for c in np.array_split(np.frombuffer(data, np.uint8), 8):
            with open(target, "ab") as f:
                f.write(c.tobytes())
            time.sleep(0.25)
            if target.stat().st_size < len(data):
                assert not h.seen, "a half-written file was handed over"
        h.wait_for(1)
        h.quiet(1.5)
    assert [(j.path, j.size) for j, _ in h.seen] == [(target, len(data))]


def test_burst_of_files_each_handed_over_exactly_once(tmp_path):
    incoming = tmp_path / "incoming"
    (incoming / "card" / "DATA").mkdir(parents=True)
    data = _wav_bytes(tmp_path, seconds=0.5, seed=2)
    with Harness(incoming, settle_s=0.3) as h:  # queue of 4 < 30 files: the producer must wait, not drop
        for i in range(30):
            (incoming / "card" / "DATA" / f"f{i:02d}.wav").write_bytes(data)
        (incoming / "card" / "DATA" / "notes.txt").write_text("not audio")
        h.wait_for(30)
        h.quiet(1.0)
    names = sorted(j.path.name for j, _ in h.seen)
    assert names == [f"f{i:02d}.wav" for i in range(30)]


def test_backlog_at_start_skips_what_the_ledger_has_and_redoes_changed_files(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    data = _wav_bytes(tmp_path, seconds=0.5, seed=3)
    for name in ("old.wav", "new.wav", "changed.wav"):
        (incoming / name).write_bytes(data)
    old = 1_700_000_000
    for name in ("old.wav", "new.wav", "changed.wav"):
        os.utime(incoming / name, (old, old))
    ledger = {(str(incoming / n), len(data), old * 10**9) for n in ("old.wav", "changed.wav")}
    (incoming / "changed.wav").write_bytes(data + b"\0\0")  # appended since it was scanned
    os.utime(incoming / "changed.wav", (old, old))
    with Harness(incoming, done=ledger, settle_s=30.0) as h:  # old files need no settle wait
        h.wait_for(2)
        h.quiet(1.0)
    assert sorted(j.path.name for j, _ in h.seen) == ["changed.wav", "new.wav"]


def test_folder_moved_in_is_walked(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    staging = tmp_path / "staging" / "night1"
    staging.mkdir(parents=True)
    data = _wav_bytes(tmp_path, seconds=0.5, seed=4)
    for i in range(3):
        (staging / f"n{i}.wav").write_bytes(data)
    with Harness(incoming, settle_s=0.3) as h:
        time.sleep(0.3)
        shutil.move(str(staging), str(incoming / "night1"))
        h.wait_for(3)
        h.quiet(0.5)
    assert sorted(j.path.name for j, _ in h.seen) == ["n0.wav", "n1.wav", "n2.wav"]


def test_a_late_event_for_a_file_already_scanned_hands_nothing_over(tmp_path):
    """Events can re-notice a file after its hand-over (a folder moved in, a late close-write): the ledger decides."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    f = incoming / "a.wav"
    f.write_bytes(_wav_bytes(tmp_path, seconds=0.5))
    st = f.stat()
    h = Harness(incoming, done={(str(f), st.st_size, st.st_mtime_ns)})  # already in the ledger
    h.watcher.notice(f, closed=True, old_enough=True)
    assert h.watcher.ready_jobs() == []
    assert h.watcher.pending == 0
    h.done.clear()  # not in the ledger (e.g. the file changed): handed over once, then not again while queued
    h.watcher.notice(f, old_enough=True)
    assert [j.path for j in h.watcher.ready_jobs()] == [f]
    h.watcher.notice(f, old_enough=True)
    assert h.watcher.ready_jobs() == []
