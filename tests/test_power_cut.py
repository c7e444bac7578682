"""Power cuts under the daemon: its watched folder, output folder and archive on a LazyFS-style FUSE disk that
keeps every write in memory until it is fsynced (tests/lazyfs.py). The power goes at a random moment, the disk
comes back with only what was fsynced, the daemon starts again, and the result is compared with an
uninterrupted run: no detection lost, no recording deleted or archived whose detections are not in the store.

The microphone's side: a raw segment cut short is readable up to its last sync, and every live detection
committed before the cut is in the store.

Default run: a few trials (delete and archive modes, both disk orders). More (past pytest's per-test timeout):
HOOTWATCH_POWER_CUT_TRIALS=200 pytest tests/test_power_cut.py --timeout=0 -s
Skipped where FUSE cannot be mounted (the ordering itself is tested everywhere in test_durable_after.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import lazyfs
from daemon_helpers import write_daemon_config
from tiny_bundles import tone_bundle, write_tone

SR = 8000
N_FILES = 10
TRIALS = int(os.environ.get("HOOTWATCH_POWER_CUT_TRIALS", "4"))

pytestmark = pytest.mark.skipif(bool(lazyfs.available()), reason=f"no FUSE: {lazyfs.available()}")


def _name(i: int) -> str:
    return f"S4A00001_202506{i + 1:02d}_203000.wav"


def _config(tmp: Path, bundle: Path, incoming: Path, out: Path, after: str, archive: Path | None) -> Path:
    folder = {"after": after} | ({"archive_dir": str(archive)} if archive is not None else {})
    return write_daemon_config(tmp, bundle, incoming, out, settle_s=0.2,
                               health={"status_file": str(tmp / "status.json")}, **folder)


def _start(cfg: Path, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "hootwatch.edge.commands.main", "run", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            out.close()


def _scanned(log: Path) -> int:
    """Recordings the daemon has logged as scanned (committed)."""
    return log.read_text(errors="replace").count(" detection(s) in ")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _wavs(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.wav")} if folder.is_dir() else set()


def _store(db: Path) -> tuple[set[tuple], set[str]]:
    """(detections as (file name, start sample, score), names of files the ledger has as done)."""
    if not db.is_file():
        return set(), set()
    c = sqlite3.connect(db)
    try:
        dets = {(Path(f).name, s, round(sc, 5)) for f, s, sc in
                c.execute("SELECT file, start_sample, max_score FROM detections")}
        done = {Path(p).name for (p,) in c.execute("SELECT path FROM files WHERE status='done'")}
        return dets, done
    except sqlite3.DatabaseError:
        return set(), set()
    finally:
        c.close()


def _ready(tmp: Path) -> bool:
    """The daemon says it is running (it then scans the backlog at once)."""
    try:
        return json.loads((tmp / "status.json").read_text())["state"] == "running"
    except (OSError, ValueError, KeyError):
        return False


def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("recordings")
    for i in range(N_FILES):
        write_tone(src / _name(i), 60, SR, tones=[(3 + i % 4, 7 + i % 4), (40, 44)], seed=i)
    return src


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tone_bundle(tmp_path_factory.mktemp("bundle") / "tone", sample_rate=SR)


@dataclass
class Disk:
    """The FUSE disk of one trial (and, for a cross-disk archive, a second one on the same power)."""
    root: Path
    metadata_sync: bool
    other_disk: bool
    servers: list = field(default_factory=list)

    @property
    def mounts(self) -> list[tuple[Path, Path]]:
        m = [(self.root / "disk", self.root / "disk.img")]
        return m + [(self.root / "disk2", self.root / "disk2.img")] if self.other_disk else m

    def up(self) -> None:
        self.servers = [lazyfs.LazyFS.mount(mnt, img, metadata_sync=self.metadata_sync) for mnt, img in self.mounts]

    def cut(self) -> None:
        for s in self.servers:
            s.cut()

    def down(self) -> None:
        for s in self.servers:
            s.unmount()
        self.servers = []


@dataclass(frozen=True)
class Outcome:
    scanned_at_cut: int     # recordings the daemon had committed when the power went
    moved_at_cut: int       # recordings already deleted/archived (as the daemon saw it) then
    lost_detections: int
    lost_recordings: int    # deleted or archived (or half-archived) with detections missing from the store
    stuck: int              # still in the watched folder after the restart settled


def _trial(tmp: Path, bundle: Path, recordings: Path, reference: set, after: str, cut_at: float,
           metadata_sync: bool, other_disk: bool) -> Outcome:
    disk = Disk(tmp, metadata_sync, other_disk)
    disk.up()
    try:
        d = tmp / "disk"
        incoming, out = d / "in", d / "out"
        archive = ((tmp / "disk2" / "archive") if other_disk else d / "archive") if after == "archive" else None
        incoming.mkdir()
        for i in range(N_FILES):  # the recordings arrived safely before the run (fsynced, names too)
            data = (recordings / _name(i)).read_bytes()
            with open(incoming / _name(i), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        _fsync(incoming)
        _fsync(d)
        cfg = _config(tmp, bundle, incoming, out, after, archive)
        proc = _start(cfg, tmp / "daemon1.log")
        try:
            _wait(lambda: _ready(tmp), 60)
            time.sleep(cut_at)
            moved_at_cut = N_FILES - len(_wavs(incoming))
            disk.cut()
            scanned_at_cut = _scanned(tmp / "daemon1.log")
        finally:
            proc.kill()
            proc.wait(10)
        disk.down()

        disk.up()  # power is back
        proc = _start(cfg)
        try:
            _wait(lambda: not _wavs(incoming), 60)
            time.sleep(0.5)
        finally:
            _stop(proc)
        dets, done = _store(out / "detections.sqlite")
        lost = reference - dets
        by_file = {}
        for f, s, sc in reference:
            by_file.setdefault(f, set()).add((f, s, sc))
        lost_recordings = 0
        for i in range(N_FILES):
            name = _name(i)
            here = name in _wavs(incoming)
            kept = archive is not None and (archive / name).is_file() and \
                (archive / name).read_bytes() == (recordings / name).read_bytes()
            if not here and not kept and not by_file[name] <= dets:
                lost_recordings += 1
        return Outcome(scanned_at_cut, moved_at_cut, len(lost), lost_recordings, len(_wavs(incoming)))
    finally:
        disk.down()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, bundle, recordings) -> tuple[set, float]:
    """Detections of an uninterrupted run (on the same kind of disk), and how long after it said it was running
    its last recording was deleted: the power is cut at a random moment of that span (and a little after)."""
    tmp = tmp_path_factory.mktemp("reference")
    disk = Disk(tmp, metadata_sync=False, other_disk=False)
    disk.up()
    try:
        incoming, out = tmp / "disk" / "in", tmp / "disk" / "out"
        incoming.mkdir()
        for i in range(N_FILES):
            (incoming / _name(i)).write_bytes((recordings / _name(i)).read_bytes())
        proc = _start(_config(tmp, bundle, incoming, out, "delete", None))
        try:
            assert _wait(lambda: _ready(tmp), 90), "the reference run did not start"
            t0 = time.monotonic()
            assert _wait(lambda: not _wavs(incoming), 90), "the reference run did not finish"
            span = time.monotonic() - t0
        finally:
            _stop(proc)
        dets, done = _store(out / "detections.sqlite")
    finally:
        disk.down()
    assert len(dets) == 2 * N_FILES and len(done) == N_FILES
    return dets, span


def test_power_cut_at_random_moments_loses_no_detection_and_deletes_no_unrecorded_recording(
        tmp_path, bundle, recordings, reference):
    ref, span = reference
    rng = random.Random(int(os.environ.get("HOOTWATCH_POWER_CUT_SEED", "16")))
    results = []
    for k in range(TRIALS):
        after = ("delete", "archive")[k % 2]
        metadata_sync = (k // 2) % 2 == 0
        other_disk = after == "archive" and (k // 4) % 2 == 1
        cut_at = rng.uniform(0.0, 1.2 * span + 0.05)
        o = _trial(tmp_path / f"t{k}", bundle, recordings, ref, after, cut_at, metadata_sync, other_disk)
        results.append((after, "metadata_sync" if metadata_sync else "strict", other_disk, round(cut_at, 2), o))
    summary = {
        "trials": len(results),
        "lost_detections": sum(o.lost_detections for *_, o in results),
        "lost_recordings": sum(o.lost_recordings for *_, o in results),
        "trials_with_loss": sum(1 for *_, o in results if o.lost_detections or o.lost_recordings),
        "stuck": sum(o.stuck for *_, o in results),
        "cut_before_any_scan": sum(1 for *_, o in results if o.scanned_at_cut == 0),
        "cut_while_scanning": sum(1 for *_, o in results if 0 < o.scanned_at_cut < N_FILES),
        "cut_after_scanning_before_a_move": sum(1 for *_, o in results
                                                 if o.scanned_at_cut == N_FILES and o.moved_at_cut == 0),
        "cut_after_moves_began": sum(1 for *_, o in results if o.moved_at_cut > 0),
    }
    for mode in ("delete", "archive"):
        for order in ("metadata_sync", "strict"):
            rs = [o for a, m, _, _, o in results if (a, m) == (mode, order)]
            summary[f"{mode}/{order}"] = (f"{len(rs)} trials, {sum(o.lost_detections for o in rs)} detections and "
                                          f"{sum(o.lost_recordings for o in rs)} recordings lost")
    print("power cut:", json.dumps(summary, indent=1), f"(reference: backlog done {span:.2f} s after ready)")
    bad = [r for r in results if r[-1].lost_detections or r[-1].lost_recordings or r[-1].stuck]
    assert not bad, f"{summary}; trials with losses (mode, disk order, other disk, cut at s, outcome): {bad}"


@pytest.mark.parametrize("fmt", ["flac", "wav"])
@pytest.mark.parametrize("metadata_sync", [False, True], ids=["strict", "metadata_sync"])
def test_power_cut_while_the_microphone_records_keeps_raw_audio_to_the_last_sync_and_every_live_detection(
        tmp_path, fmt, metadata_sync):
    import datetime as dt

    import numpy as np
    import soundfile as sf

    from hootwatch.edge.daemon.microphone import RAW_SYNC_S, RawRecorder
    from hootwatch.edge.store.database import DetectionStore

    from test_store import RUN, det

    disk = lazyfs.LazyFS.mount(tmp_path / "disk", tmp_path / "disk.img", metadata_sync=metadata_sync)
    d = tmp_path / "disk"
    x = (0.1 * np.random.default_rng(2).standard_normal(16000 * 25)).astype(np.float32)
    t = dt.datetime(2026, 6, 21, 10, 0, tzinfo=dt.timezone.utc)
    try:
        rec = RawRecorder(d / "raw", 16000, 1, fmt, segment_s=600.0, budget_mb=100)
        store = DetectionStore(d / "out" / "detections.sqlite")
        committed = 0
        for i in range(25):
            rec.write(x[16000 * i:16000 * (i + 1), None], t + dt.timedelta(seconds=i))
            if i % 4 == 3:
                store.add_detections(RUN, [det(d / "live", 8000 * i)])
                committed += 1
        disk.cut()  # mid-segment, the store open
        rec.close()
        store.close()
    finally:
        disk.unmount()
    disk = lazyfs.LazyFS.mount(tmp_path / "disk", tmp_path / "disk.img", metadata_sync=metadata_sync)
    try:
        rec = RawRecorder(d / "raw", 16000, 1, fmt, segment_s=600.0, budget_mb=100)  # the daemon again
        [seg] = rec.recovered
        got, sr = sf.read(str(seg), dtype="float32")
        synced = int(25 // RAW_SYNC_S * RAW_SYNC_S) * 16000
        if fmt == "flac":  # libFLAC keeps the block it is filling (4096 samples) until it is full
            synced -= 4096
        assert synced <= len(got) <= len(x) and sr == 16000, (len(got), synced)
        np.testing.assert_allclose(got, x[:len(got)], atol=1e-4)
        with DetectionStore(d / "out" / "detections.sqlite") as store:
            assert store.count() == committed
    finally:
        disk.unmount()
