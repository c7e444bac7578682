"""A power cut (or a kill) during a backup leaves the earlier backups intact (issue 24, item 2): backups are taken
again and again onto the FUSE power-cut disk (tests/lazyfs.py: only what was fsynced survives), the power goes
at a random moment, and after it comes back every backup there is whole and sound, and there is at least one.
Both disk orders: bytes and names lost together (strict), and names kept with their bytes lost
(metadata_sync). Skipped where FUSE cannot be mounted."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time

import pytest

import lazyfs
from hootwatch.edge.core import fsio
from hootwatch.edge.store.backup import backup_store, backups
from hootwatch.edge.store.database import STORE_NAME, DetectionStore

TRIALS = int(os.environ.get("HOOTWATCH_POWER_CUT_TRIALS", "1"))  # more: HOOTWATCH_POWER_CUT_TRIALS=50
pytestmark = pytest.mark.skipif(bool(lazyfs.available()), reason=f"no FUSE: {lazyfs.available()}")

LOOP = """
import sys
from hootwatch.edge.store.backup import backup_store
print("started", flush=True)
while True:
    backup_store(sys.argv[1], sys.argv[2], keep=1)
"""


def _store(path) -> int:
    """A store of ~2 MB (so a backup takes a while on the FUSE disk); its number of detections."""
    with DetectionStore(path) as store, store.transaction() as cur:
        cur.executemany(
            "INSERT INTO detections (file_key, file, start_sample, start_s, end_s, begin_utc, end_utc, begin_local,"
            " end_local, label, max_score, mean_score, n_windows, time_source, model_id, model_sha256, threshold,"
            " hop_s, min_hits, run_key, created_utc) VALUES (?,?,?,0,1,'a','b','c','d','owl',1,1,1,'name','m','s',"
            " 0.5,2.5,1,'run',?)", [(f"k{i}", f"rec{i}.wav", i, "x" * 40) for i in range(8000)])
    with sqlite3.connect(path) as c:
        return c.execute("SELECT COUNT(*) FROM detections").fetchone()[0]


def _power_off(disk: lazyfs.LazyFS) -> None:
    """Save the disk as it is (after a cut: as the cut left it) and stop its server at once (LazyFS.unmount waits
    ~20 s for a server that has been written to)."""
    try:
        disk._ask("save")
    finally:
        disk.proc.kill()
        subprocess.run(["umount", "-l", str(disk.mountpoint)], capture_output=True)
        disk.proc.wait(10)


@pytest.mark.parametrize("metadata_sync", [False, True])
def test_a_power_cut_during_a_backup_leaves_the_previous_backup_intact(tmp_path, metadata_sync):
    store = tmp_path / "out" / STORE_NAME
    n = _store(store)
    rng = random.Random(metadata_sync)
    for trial in range(TRIALS):
        mnt, image = tmp_path / f"usb{trial}", tmp_path / f"usb{trial}.img"
        disk = lazyfs.LazyFS.mount(mnt, image, metadata_sync=metadata_sync)
        try:
            fsio.makedirs(mnt / "backups")  # made once by a person: backup_store never makes DEST
            first = backup_store(store, mnt / "backups", keep=1)  # whole: fsynced, renamed, folder fsynced
            proc = subprocess.Popen([sys.executable, "-c", LOOP, str(store), str(mnt / "backups")],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert proc.stdout.readline().strip() == b"started"
            time.sleep(rng.uniform(0.05, 0.6))  # somewhere inside a backup, a rename or a removal
            disk.cut()
            proc.kill()
            proc.wait(10)
        finally:
            _power_off(disk)
        disk = lazyfs.LazyFS.mount(mnt, image, metadata_sync=metadata_sync)  # the power is back
        try:
            found = backups(mnt / "backups")
            assert found, f"trial {trial}: no backup survived"
            for b in found:  # every backup there is whole: a sound store holding every row
                assert DetectionStore.quick_check(b) == [], b
                with sqlite3.connect(f"file:{b}?mode=ro", uri=True) as c:
                    assert c.execute("SELECT COUNT(*) FROM detections").fetchone()[0] == n
            assert found[-1].name >= first.path.name
            assert backup_store(store, mnt / "backups", keep=1).path.is_file()  # and the next one goes
            assert not [p for p in os.listdir(mnt / "backups") if p.endswith(".partial")]
        finally:
            _power_off(disk)
