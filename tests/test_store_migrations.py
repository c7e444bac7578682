"""Every table of the store comes from its one migration list: a store written before the window scores and the
labels tables joined that list (user_version 1 or 2, those tables made on first use, or not yet) opens, is
migrated and keeps its rows, and ends with the schema a new store has."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hootwatch.edge.store.database import SCHEMA_VERSION, DetectionStore
from hootwatch.edge.store.labels import LabelBook
from hootwatch.edge.store.window_scores import WindowScores

from test_store import RUN, det
from test_store_safety import OLD_SCHEMA, _recordings

# as hootwatch wrote them before this version: each module created its own table on first use
OLD_WINDOW_SCORES = """
CREATE TABLE IF NOT EXISTS window_scores (
    file_key TEXT NOT NULL, run_key TEXT NOT NULL, model_id TEXT NOT NULL, sample_rate INTEGER NOT NULL,
    window_samples INTEGER NOT NULL, n_windows INTEGER NOT NULL, starts BLOB NOT NULL, scores BLOB NOT NULL,
    local_tz TEXT NOT NULL DEFAULT '', clamp_end INTEGER NOT NULL DEFAULT 0, run TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (file_key, run_key));
"""
OLD_LABELS = """
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY, file_key TEXT NOT NULL, file TEXT NOT NULL, start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL, label TEXT NOT NULL, reviewer TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'review', created_utc TEXT NOT NULL, replaces INTEGER);
CREATE INDEX IF NOT EXISTS labels_span ON labels (file_key, start_ms, end_ms);
"""
SCORES = WindowScores(np.array([0, 20000, 40000]), np.array([0.1, 0.9, 0.2], np.float32), 8000, 40000, "m")


def _schema(db) -> dict:
    """Every table's columns (name, type, not null, default, primary key) and every index's columns."""
    c = sqlite3.connect(db)
    try:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: ([tuple(r)[1:] for r in c.execute(f"PRAGMA table_info({t})")],
                    sorted((ix[1], ix[2], tuple(col[2] for col in c.execute(f"PRAGMA index_info('{ix[1]}')")))
                           for ix in c.execute(f"PRAGMA index_list({t})")))
                for t in tables}
    finally:
        c.close()


def _old_store(db, version: int, with_tables: bool, path) -> None:
    """A store as an earlier hootwatch left it: one file scanned, and (with_tables) its window scores and a label."""
    c = sqlite3.connect(db)
    c.executescript(OLD_SCHEMA)
    if version >= 2:
        c.execute("ALTER TABLE files ADD COLUMN moved_to TEXT NOT NULL DEFAULT ''")
    c.execute("INSERT INTO files (file_key, run_key, path, size, mtime_ns, status, processed_at) VALUES"
              " ('k', ?, ?, 12, 1, 'done', '2024-01-01')", (RUN.run_key, str(path)))
    if with_tables:
        c.executescript(OLD_WINDOW_SCORES + OLD_LABELS)
        SCORES.write(c.cursor(), "k", RUN.run_key)
        c.execute("INSERT INTO labels (file_key, file, start_ms, end_ms, label, created_utc) VALUES"
                  " ('k', ?, 2500, 7500, 'owl', '2024-01-02')", (str(path),))
    c.execute(f"PRAGMA user_version={version}")
    c.commit()
    c.close()


def test_a_new_store_holds_every_table_from_the_migrations(tmp_path):
    DetectionStore(tmp_path / "d.sqlite").close()
    schema = _schema(tmp_path / "d.sqlite")
    assert sorted(schema) == ["detections", "files", "labels", "minute_indices", "window_embeddings",
                              "window_scores"]
    assert [ix for ix in schema["labels"][1] if ix[0] == "labels_span"] == [
        ("labels_span", 0, ("file_key", "start_ms", "end_ms"))]


def _old_and_new(tmp_path, version: int, with_tables: bool):
    """Two recordings, a store made at `version` by the old SQL (holding the first) and a new empty store."""
    a, b = _recordings(tmp_path, 2)
    new, db = tmp_path / "new.sqlite", tmp_path / "d.sqlite"
    DetectionStore(new).close()
    _old_store(db, version, with_tables, a)
    return a, b, new, db


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_with_window_scores_and_labels_keeps_their_rows(tmp_path, version):
    a, b, new, db = _old_and_new(tmp_path, version, with_tables=True)
    with DetectionStore(db) as st:
        assert st.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        [row] = st.ledger_rows()
        assert (row.file_key, row.path, row.moved_to) == ("k", str(a), "")
        [ws] = st.window_scores(RUN.run_key)
        assert ws.file_key == "k" and list(ws.starts) == [0, 20000, 40000] and np.allclose(ws.scores, SCORES.scores)
        [label] = LabelBook(st).current()
        assert (label.file_key, label.start_s, label.end_s, label.label) == ("k", 2.5, 7.5, "owl")
        st.commit_file(b, RUN, [det(b, 0)], audio_s=10.0, window_scores=SCORES)
        LabelBook(st).add("k", str(a), 2.5, 7.5, "not_owl")
    assert _schema(db) == _schema(new)
    with DetectionStore(db) as st:  # opening it again changes nothing
        assert len(st.ledger_rows()) == 2 and len(st.window_scores(RUN.run_key)) == 2
        assert [x.label for x in LabelBook(st).history("k", 2.5, 7.5)] == ["owl", "not_owl"]


@pytest.mark.parametrize("version", [0, 1, 2])
def test_an_older_store_without_those_tables_gets_them(tmp_path, version):
    a, b, new, db = _old_and_new(tmp_path, version, with_tables=False)
    with DetectionStore(db) as st:
        assert st.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [r.file_key for r in st.ledger_rows()] == ["k"]
        assert st.window_scores(RUN.run_key) == [] and LabelBook(st).current() == []
    assert _schema(db) == _schema(new)
    with DetectionStore(db) as st:
        st.commit_file(b, RUN, [det(b, 0)], audio_s=10.0, window_scores=SCORES)
        LabelBook(st).add("k", str(a), 2.5, 7.5, "owl")
        assert len(st.window_scores(RUN.run_key)) == 1 and LabelBook(st).count() == 1


def test_opening_a_store_does_not_write_when_it_is_current(tmp_path):
    DetectionStore(tmp_path / "d.sqlite").close()
    with DetectionStore(tmp_path / "d.sqlite") as st:
        sql: list[str] = []
        st.conn.set_trace_callback(sql.append)
        LabelBook(st)
        st.window_scores(RUN.run_key)
        st.conn.set_trace_callback(None)
    assert not [s for s in sql if s.lstrip().upper().startswith(("CREATE", "BEGIN"))]
