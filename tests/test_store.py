import sqlite3

import pytest

from hootwatch.edge.store.database import Detection, DetectionStore, RunInfo, file_key

RUN = RunInfo("abc123", "abc123" + "0" * 58, 0.5, 2.5, 1, "owl")


def det(path, start_sample, score=0.9):
    s = start_sample / 8000
    return Detection(file_key(path), str(path), start_sample, s, s + 5, "2024-01-01T00:00:00.000+00:00",
                     "2024-01-01T00:00:05.000+00:00", "2024-01-01T10:00:00.000+10:00",
                     "2024-01-01T10:00:05.000+10:00", "owl", score, score, 1, "filename_audiomoth", "")


def test_wal_and_every_row_carries_model_and_threshold(tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")
    with DetectionStore(tmp_path / "d.sqlite") as st:
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        st.commit_file(audio, RUN, [det(audio, 0), det(audio, 20000)], audio_s=30.0)
        rows = st.detections()
    assert [(r["model_id"], r["threshold"], r["model_sha256"]) for r in rows] == [("abc123", 0.5, RUN.model_sha256)] * 2


def test_recommit_is_idempotent_and_ledger_skips_unchanged_files(tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")
    with DetectionStore(tmp_path / "d.sqlite") as st:
        assert st.needs_processing(audio, RUN.run_key)
        st.commit_file(audio, RUN, [det(audio, 0)], audio_s=30.0)
        assert not st.needs_processing(audio, RUN.run_key)
        st.commit_file(audio, RUN, [det(audio, 0)], audio_s=30.0)
        assert st.count() == 1 and st.ledger(audio, RUN.run_key).attempts == 2
        other = RunInfo("abc123", RUN.model_sha256, 0.8, 2.5, 1, "owl")
        assert st.needs_processing(audio, other.run_key)
        audio.write_bytes(b"changed")  # a file rewritten since: processed again, old rows replaced
        assert st.needs_processing(audio, RUN.run_key)
        st.commit_file(audio, RUN, [det(audio, 8000)], audio_s=30.0)
        assert [r["start_sample"] for r in st.detections()] == [8000]


def test_failure_is_recorded_and_retried(tmp_path):
    audio = tmp_path / "bad.wav"
    audio.write_bytes(b"")
    with DetectionStore(tmp_path / "d.sqlite") as st:
        st.record_failure(audio, RUN, "empty file")
        st.record_failure(audio, RUN, "empty file")
        row = st.ledger(audio, RUN.run_key)
        assert (row.status, row.reason, row.attempts) == ("failed", "empty file", 2)
        assert st.needs_processing(audio, RUN.run_key)


def test_interrupted_commit_leaves_nothing(tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")

    bad = [det(audio, 0), None]  # the second row breaks mid-transaction
    with DetectionStore(tmp_path / "d.sqlite") as st:
        with pytest.raises(Exception):
            st.commit_file(audio, RUN, bad, audio_s=30.0)
        assert st.count() == 0 and st.ledger(audio, RUN.run_key) is None
    # another connection sees a consistent database
    con = sqlite3.connect(tmp_path / "d.sqlite")
    assert con.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0


def test_the_store_and_the_trainer_key_content_the_same_way_as_before(tmp_path):
    import hashlib

    from hootwatch.edge.core.content_key import content_key
    from hootwatch.trainer.data import sources

    mib = 1 << 20
    for i, size in enumerate((10, mib + 7, 2 * mib, 3 * mib + 5)):
        p = tmp_path / f"r{i}.wav"
        p.write_bytes(bytes(range(256)) * (size // 256) + b"z" * (size % 256))
        data = p.read_bytes()
        digest = hashlib.sha256(data[:mib] + (data[-mib:] if size > 2 * mib else b"")).hexdigest()
        assert content_key(p) == sources.content_key(p) == f"{size}|{digest}"  # the trainer's key, as before
        assert file_key(p) == f"{p.name}|{size}|{digest}"                       # the store's: the name too
    assert file_key(tmp_path / "gone.wav") == f"path:{(tmp_path / 'gone.wav').resolve()}"


def test_newest_detection_of_a_run_and_of_one_recording(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    with DetectionStore(tmp_path / "d.sqlite") as st:
        assert st.newest_detection_utc(RUN.run_key) is None
        late = Detection(**{**det(b, 0).__dict__, "begin_utc": "2024-01-02T00:00:00.000+00:00"})
        st.commit_file(a, RUN, [det(a, 0)], audio_s=10.0)
        st.commit_file(b, RUN, [late], audio_s=10.0)
        assert st.newest_detection_utc(RUN.run_key) == "2024-01-02T00:00:00.000+00:00"
        assert st.newest_detection_utc(RUN.run_key, file_key(a)) == "2024-01-01T00:00:00.000+00:00"
        assert st.newest_detection_utc("other", file_key(a)) is None
