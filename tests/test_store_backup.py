"""The store's backups, its integrity check and what happens to a damaged one (issue 24, items 1 and 2)."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.scan.engine import Scanner, ScanSettings
from hootwatch.edge.store.backup import backup_store, backups, restore_store
from hootwatch.edge.store.database import DELETED, STORE_NAME, DetectionStore
from hootwatch.edge.store.integrity import check_store, recover
from hootwatch.edge.store.labels import LabelBook

from embed_bundles import embedding_bundle
from tiny_bundles import write_tone

SR = 8000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return embedding_bundle(tmp_path_factory.mktemp("bundle") / "b", sample_rate=SR)  # embeddings kept too


@pytest.fixture(scope="module")
def detector(bundle):
    return Detector.load(bundle, threads=1)


def _scan(detector, out: Path, files: list[Path]) -> Scanner:
    sc = Scanner(detector, DetectionStore(out / STORE_NAME), ScanSettings(), out)
    for f in files:
        assert sc.scan_file(f).status == "done"
    return sc


def _recordings(folder: Path, first: int, n: int) -> list[Path]:
    return [write_tone(folder / f"202401{d:02d}_220000.wav", 20, SR, tones=[(10, 13)], seed=d)
            for d in range(first, first + n)]


def _tables(path: Path) -> dict[str, list]:
    with sqlite3.connect(path) as c:
        return {t: sorted(c.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in ("detections", "files", "window_scores", "labels")}


def _corrupt(path: Path, index: str = "detections_time") -> None:
    """Garbage over an index (quick_check fails; the tables themselves stay readable)."""
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (index,)).fetchone()[0]
        size = c.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((root - 1) * size + 8)
        f.write(os.urandom(200))
    assert DetectionStore.quick_check(path)


def test_a_backup_is_a_whole_checked_copy_of_every_table_and_only_the_newest_are_kept(detector, tmp_path):
    out, dest = tmp_path / "out", tmp_path / "usb"
    sc = _scan(detector, out, _recordings(tmp_path / "rec", 1, 3))
    LabelBook(sc.store).add(sc.store.detections()[0]["file_key"], "a.wav", 7.5, 15.0, "owl", "ana")
    (dest / ".detections-20000101T000000.000000Z.sqlite.partial").parent.mkdir(parents=True)
    (dest / ".detections-20000101T000000.000000Z.sqlite.partial").write_bytes(b"cut short by a power cut")
    stop, written = threading.Event(), []

    more = _recordings(tmp_path / "more", 10, 4)

    def writer():  # the daemon goes on writing while the backup runs
        w = Scanner(detector, DetectionStore(out / STORE_NAME), ScanSettings(), out)
        for f in more:
            if stop.is_set():
                break
            w.scan_file(f)
            written.append(f)
    t = threading.Thread(target=writer)
    t.start()
    made = []
    while len(made) < 3 or (not written and len(made) < 500):  # until the writer has committed beside them
        made.append(backup_store(out / STORE_NAME, dest, keep=2))
    stop.set()
    t.join()
    assert [b.path for b in made[-2:]][::-1] == backups(dest)  # the oldest removed, newest first
    assert not list(dest.glob(".*")) and not list(dest.glob("*-wal"))  # one self-contained file each
    for b in made[-2:]:
        assert DetectionStore.quick_check(b.path) == [] and b.bytes == b.path.stat().st_size > 0
        tables = _tables(b.path)
        assert len(tables["labels"]) == 1 and len(tables["window_scores"]) == len(tables["files"]) >= 3
        assert len(tables["detections"]) == len(tables["files"])  # a consistent moment: one per recording
    sc.store.close()
    assert written  # the backups ran beside a writer
    final = backup_store(out / STORE_NAME, dest, keep=2)
    assert _tables(final.path) == _tables(out / STORE_NAME)  # nothing left out


def test_backup_and_restore_commands(detector, tmp_path, capsys):
    from hootwatch.edge.commands.main import main

    out, dest = tmp_path / "out", tmp_path / "usb"
    dest.mkdir()
    _scan(detector, out, _recordings(tmp_path / "rec", 1, 2)).store.close()
    before = _tables(out / STORE_NAME)
    assert main(["backup", str(out), str(dest), "--keep", "3"]) == 0
    assert "backed up" in capsys.readouterr().out
    _scan(detector, out, _recordings(tmp_path / "rec", 5, 1)).store.close()  # scanned after the backup
    assert main(["restore", str(dest), str(out)]) == 0  # a folder: its newest backup
    said = capsys.readouterr().out
    assert _tables(out / STORE_NAME) == before
    [kept] = out.glob("detections.replaced-*.sqlite")
    assert str(kept) in said and len(_tables(kept)["files"]) == 3
    # wrong input: a message naming the file, exit 2, no traceback
    assert main(["backup", str(tmp_path / "nowhere"), str(dest)]) == 2
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    assert main(["restore", str(tmp_path / "junk.sqlite"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "no detections.sqlite" in err and "junk.sqlite: this is not a hootwatch backup" in err and "Traceback" not in err
    assert _tables(out / STORE_NAME) == before


def test_a_damaged_store_is_set_aside_and_replaced_by_the_newest_sound_backup_knowing_what_to_scan_again(
        detector, tmp_path):
    out, dest, rec, archive = tmp_path / "out", tmp_path / "usb", tmp_path / "rec", tmp_path / "archive"
    dest.mkdir()
    sc = _scan(detector, out, _recordings(rec, 1, 2))
    backup_store(out / STORE_NAME, dest)
    later = _recordings(rec, 5, 3)  # scanned after the backup: one kept, one archived, one deleted
    _scan(detector, out, later).store.close()
    archive.mkdir()
    sc.store.record_moved(later[1], sc.run.run_key, str(archive / later[1].name))  # noted first, as the daemon does
    os.replace(later[1], archive / later[1].name)
    sc.store.record_moved(later[2], sc.run.run_key, DELETED)
    later[2].unlink()
    LabelBook(sc.store).add(sc.store.detections()[0]["file_key"], "x.wav", 7.5, 15.0, "owl", "ana")
    sc.store.close()
    _corrupt(out / STORE_NAME)
    check = check_store(out / STORE_NAME)
    assert not check.ok and check.problems
    r = recover(out / STORE_NAME, dest)
    assert r.backup == backups(dest)[0] and r.damaged.name.startswith("detections.damaged-") and r.damaged.is_file()
    assert check_store(out / STORE_NAME).ok
    assert r.rescan == (later[0], archive / later[1].name)  # still on disk: scanned again
    assert r.lost == ()
    t = _tables(out / STORE_NAME)
    assert len(t["files"]) == 3 and len(t["detections"]) == 3  # the backup's two + the deleted one, read back
    assert len(t["labels"]) == 1 and r.salvaged >= 3  # a person's label is never lost
    with sqlite3.connect(out / STORE_NAME) as c:  # the deleted recording's night overview and embeddings come back
        kept = {t: {r[0] for r in c.execute(f"SELECT file_key FROM {t}")}
                for t in ("minute_indices", "window_embeddings")}
    assert all(len(keys) == 3 for keys in kept.values()), kept
    assert "restored the backup" in r.summary() and "2 recording(s) still on disk" in r.summary()


def test_without_a_backup_a_damaged_store_gives_a_new_one_that_scans_everything_still_on_disk(detector, tmp_path):
    out, rec = tmp_path / "out", tmp_path / "rec"
    _scan(detector, out, _recordings(rec, 1, 2)).store.close()
    _corrupt(out / STORE_NAME)
    r = recover(out / STORE_NAME, tmp_path / "no-backups")
    assert r.backup is None and sorted(r.rescan) == sorted(rec.glob("*.wav"))
    assert _tables(out / STORE_NAME)["files"] == [] and "new, empty store" in r.summary()
