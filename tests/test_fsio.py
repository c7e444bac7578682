"""Atomic and durable writes (edge/core/fsio.py) and the writers that use them: every atomic write fsyncs the file
before the rename and the folder after it; a move fsyncs the file and both folders before the source is gone."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from hootwatch.edge.core import fsio


@pytest.fixture
def syscalls(monkeypatch):
    """Records fsync (of a file or a folder, by path), rename/replace and unlink, in order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_rename, real_unlink = os.fsync, os.replace, os.rename, os.unlink

    def fsync(fd):
        kind = "fsync_dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync"
        events.append((kind, os.path.realpath(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b, **kw):
        events.append(("rename", f"{os.path.realpath(a)} -> {os.path.realpath(b)}"))
        return real_replace(a, b, **kw)

    def rename(a, b, **kw):
        events.append(("rename", f"{os.path.realpath(a)} -> {os.path.realpath(b)}"))
        return real_rename(a, b, **kw)

    def unlink(p, **kw):
        events.append(("unlink", os.path.realpath(p)))
        return real_unlink(p, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    return events


def _index(events, kind, contains) -> int:
    for i, (k, what) in enumerate(events):
        if k == kind and contains in what:
            return i
    raise AssertionError(f"no {kind} of {contains} in {events}")


def _last(events, kind, contains) -> int:
    return max(i for i, (k, what) in enumerate(events) if k == kind and contains in what)


def assert_atomic_write(events, target: Path) -> None:
    """The temporary file is fsynced, renamed onto target, then target's folder is fsynced."""
    target = Path(os.path.realpath(target))
    r = _last(events, "rename", f"-> {target}")
    tmp = events[r][1].split(" -> ")[0]
    assert _index(events, "fsync", tmp) < r, events
    assert any(k == "fsync_dir" and w == str(target.parent) for k, w in events[r + 1:]), events


def test_write_atomic_fsyncs_file_renames_then_fsyncs_the_folder(tmp_path, syscalls):
    target = tmp_path / "new" / "deeper" / "a.txt"
    fsio.write_atomic(target, "x\r\ny\n")
    assert target.read_bytes() == b"x\r\ny\n"  # newlines as given
    assert_atomic_write(syscalls, target)
    # the new folders are durable too: each one's parent fsynced after it was made
    assert ("fsync_dir", str(tmp_path)) in syscalls and ("fsync_dir", str(tmp_path / "new")) in syscalls
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]  # no temporary left


def test_write_atomic_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = fsio.write_atomic(tmp_path / "a.txt", "old")
    monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        fsio.write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_durable_move_on_one_disk_fsyncs_file_and_both_folders(tmp_path, syscalls):
    src = tmp_path / "in" / "r.wav"
    src.parent.mkdir()
    src.write_bytes(b"RIFF....")
    dst = tmp_path / "archive" / "night" / "r.wav"
    fsio.durable_move(src, dst)
    assert dst.read_bytes() == b"RIFF...." and not src.exists()
    r = _index(syscalls, "rename", f"{src} -> {dst}")
    assert _index(syscalls, "fsync", str(src)) < r
    after = syscalls[r + 1:]
    assert ("fsync_dir", str(dst.parent)) in after and ("fsync_dir", str(src.parent)) in after


def test_durable_move_across_disks_copies_fsyncs_and_only_then_removes_the_source(tmp_path, syscalls, monkeypatch):
    real_rename = os.rename

    def rename(a, b, **kw):  # another disk: rename fails with EXDEV
        if Path(a).name == "r.wav":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(a, b, **kw)

    monkeypatch.setattr(os, "rename", rename)
    src = tmp_path / "in" / "r.wav"
    src.parent.mkdir()
    src.write_bytes(b"x" * 3_000_000)
    dst = tmp_path / "archive" / "r.wav"
    fsio.durable_move(src, dst)
    assert dst.read_bytes() == b"x" * 3_000_000 and not src.exists()
    assert [p.name for p in dst.parent.iterdir()] == ["r.wav"]
    r = _index(syscalls, "rename", f"-> {dst}")
    partial = syscalls[r][1].split(" -> ")[0]
    assert Path(partial).parent == dst.parent and _index(syscalls, "fsync", partial) < r
    gone = _index(syscalls, "unlink", str(src))
    assert r < _index(syscalls, "fsync_dir", str(dst.parent)) < gone  # complete in the archive before removal
    assert ("fsync_dir", str(src.parent)) in syscalls[gone + 1:]


def test_remove_fsyncs_the_folder(tmp_path, syscalls):
    (tmp_path / "r.wav").write_bytes(b"x")
    fsio.remove(tmp_path / "r.wav")
    assert syscalls[-2:] == [("unlink", str(tmp_path / "r.wav")), ("fsync_dir", str(tmp_path))]


def test_exports_are_written_atomically_and_durably(tmp_path, syscalls):
    from hootwatch.edge.store.exports import write_exports
    from hootwatch.edge.store.database import Detection, DetectionStore, RunInfo

    rec = tmp_path / "rec.wav"
    rec.write_bytes(b"RIFF")
    run = RunInfo("m", "sha", 0.5, 2.5, 1, "owl")
    with DetectionStore(tmp_path / "out" / "detections.sqlite") as store:
        store.commit_file(rec, run, [Detection("k", str(rec), 0, 0.0, 5.0, "2024-01-01T00:00:00.000+00:00",
                                               "2024-01-01T00:00:05.000+00:00", "2024-01-01T10:00:00.000+10:00",
                                               "2024-01-01T10:00:05.000+10:00", "owl", 0.9, 0.8, 1, "filename")],
                          audio_s=10.0)
        paths = write_exports(store, run.run_key, tmp_path / "out", 4000.0)
    for target in (paths["csv"], paths["raven"], tmp_path / "out" / "labels" / "rec.txt"):
        assert_atomic_write(syscalls, target)


def test_status_file_is_written_atomically_and_durably(tmp_path, syscalls):
    from hootwatch.edge.daemon.health import write_json_atomic

    target = tmp_path / "status.json"
    write_json_atomic(target, {"state": "running"})
    assert json.loads(target.read_text()) == {"state": "running"}
    assert_atomic_write(syscalls, target)


def test_bundle_is_fsynced_before_it_is_published_and_its_folder_after(tmp_path, syscalls):
    from hootwatch.export.bundle_writer import publish, staging

    out = tmp_path / "bundles" / "tone"
    with staging(out) as (bundle_dir, _work):
        (bundle_dir / "model.onnx").write_bytes(b"onnx")
        (bundle_dir / "manifest.json").write_text("{}")
        (bundle_dir / "sub").mkdir()
        (bundle_dir / "sub" / "x.onnx").write_bytes(b"x")
        publish(bundle_dir, out, overwrite=False)
    r = _index(syscalls, "rename", f"-> {out}")
    staged = syscalls[r][1].split(" -> ")[0]
    for name in ("model.onnx", "manifest.json", "sub/x.onnx"):
        assert _index(syscalls, "fsync", f"{staged}/{name}") < r
    assert _index(syscalls, "fsync_dir", staged) < r
    assert ("fsync_dir", str(out.parent)) in syscalls[r + 1:]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "sub"]


def test_makedirs_fsyncs_the_parent_of_a_folder_someone_else_made(tmp_path, syscalls):
    (tmp_path / "out").mkdir()  # made without an fsync of tmp_path (the daemon's own mkdir, say)
    fsio.makedirs(tmp_path / "out")
    assert syscalls == [("fsync_dir", str(tmp_path))]


def test_a_move_that_fails_does_not_stop_the_others(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "good.wav").write_bytes(b"x")
    moves = [(tmp_path / "in" / "gone.wav", tmp_path / "archive" / "gone.wav"),
             (tmp_path / "in" / "good.wav", tmp_path / "archive" / "good.wav")]
    failed = fsio.durable_move_many(moves)
    assert [p.name for p, _ in failed] == ["gone.wav"] and isinstance(failed[0][1], FileNotFoundError)
    assert (tmp_path / "archive" / "good.wav").read_bytes() == b"x"
    assert [p.name for p, _ in fsio.remove_many([tmp_path / "archive" / "nope", tmp_path / "archive" / "good.wav"])] \
        == ["nope"]
    assert not (tmp_path / "archive" / "good.wav").exists()
