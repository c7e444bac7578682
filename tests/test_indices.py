"""Acoustic indices per minute (edge/scan/indices.py) and their place in the store (edge/store/indices.py): what
each index does with a tone, calls, silence and noise; blocks of any size give the same minutes; the store keeps
them with the file's scores in one transaction, and a version-3 store gains the table and keeps its rows."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hootwatch.edge.scan.indices import (INDICES, MIN_S, MinuteIndices, bin_hz, false_colour, minute_indices,
                                         n_bins)
from hootwatch.edge.store.database import SCHEMA_VERSION, DetectionStore
from hootwatch.edge.store.indices import MinuteIndexRows, read_indices

from test_store import RUN, det
from test_store_safety import _recordings

SR = 8000
BGN, ENT, EVN = (INDICES.index(k) for k in ("BGN", "ENT", "EVN"))


def noise(seconds: float = 60.0, level: float = 0.01, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def tone(hz: float, seconds: float = 60.0, amp: float = 0.1, on=None) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = amp * np.sin(2 * np.pi * hz * t)
    return (x * on(t) if on is not None else x).astype(np.float32)


def hoots(t: np.ndarray) -> np.ndarray:
    """Two 0.6 s notes every 6 s, as an owl's slow series."""
    phase = t % 6.0
    return ((phase < 0.6) | ((phase >= 1.0) & (phase < 1.6))).astype(np.float64)


def band(hz: float) -> int:
    return int(hz // bin_hz(SR))


def test_a_steady_tone_raises_the_background_of_its_band_only():
    quiet, loud = minute_indices(noise(), SR), minute_indices(noise() + tone(1000), SR)
    rise = loud[BGN] - quiet[BGN]
    assert rise[band(1000)] > 20
    assert np.abs(np.delete(rise, range(band(1000) - 2, band(1000) + 3))).max() < 1.0
    assert loud[EVN, band(1000)] == 0 and loud[ENT, band(1000)] < quiet[ENT, band(1000)]  # steady: no events


def test_calls_in_one_band_raise_its_entropy_index_and_events_not_the_others():
    x = minute_indices(noise() + tone(450, on=hoots), SR)
    owl, elsewhere = band(450), [band(hz) for hz in (1500, 2500, 3500)]
    assert x[ENT, owl] > 2 * max(x[ENT, f] for f in elsewhere)
    assert x[EVN, owl] == pytest.approx(20 / 60, rel=0.25)  # 20 notes in the minute
    assert max(x[EVN, f] for f in elsewhere) < x[EVN, owl] / 2


def test_silence_is_zero_and_noise_is_steady_at_its_level():
    silent = minute_indices(np.zeros(60 * SR, np.float32), SR)
    assert (silent[ENT] == 0).all() and (silent[EVN] == 0).all() and (silent[BGN] < -150).all()
    soft, loud = minute_indices(noise(level=0.001), SR), minute_indices(noise(level=0.1), SR)
    assert np.median(loud[BGN] - soft[BGN]) == pytest.approx(40, abs=1)  # 100 x the amplitude: 40 dB
    for x in (soft, loud):
        assert np.median(x[ENT]) < 0.1 and np.median(x[EVN]) < 0.2
    assert np.allclose(soft[ENT], loud[ENT], atol=1e-3)  # entropy and events do not depend on the level


def test_blocks_of_any_size_give_the_same_minutes_and_a_short_tail_is_dropped():
    x = np.concatenate([noise(150, seed=1) + tone(450, 150, on=hoots)])
    whole = MinuteIndices(SR)
    whole.push(x)
    pieces = MinuteIndices(SR)
    for a, b in zip([0, 1, 4099, 77777, 480000], [1, 4099, 77777, 480000, len(x)]):
        pieces.push(x[a:b])
    w, p = whole.finish(), pieces.finish()
    assert w.shape == (3, len(INDICES), n_bins(SR)) and np.array_equal(w, p)  # 2 minutes and a 30 s tail
    assert np.allclose(w[0], minute_indices(x[:60 * SR], SR))
    short = MinuteIndices(SR)
    short.push(x[:int((60 + MIN_S - 1) * SR)])
    assert short.finish().shape[0] == 1


def test_false_colour_puts_high_frequencies_on_top_and_stays_in_range():
    x = MinuteIndices(SR)
    x.push(noise(120) + tone(3500, 120, amp=0.3))
    rgb = false_colour(x.finish())
    assert rgb.shape == (n_bins(SR), 2, 3) and rgb.dtype == np.uint8
    row = n_bins(SR) - 1 - band(3500)
    assert rgb[row, :, 0].min() > rgb[n_bins(SR) - 1 - band(1000), :, 0].max()  # the loud band is redder


def _rows(minutes: int = 3, seed: int = 0) -> MinuteIndexRows:
    v = np.random.default_rng(seed).uniform(-90, 1, (minutes, len(INDICES), n_bins(SR))).astype(np.float32)
    return MinuteIndexRows(v, INDICES, SR, bin_hz(SR))


def test_the_store_keeps_indices_with_the_files_scores(tmp_path):
    [a] = _recordings(tmp_path, 1)
    rows = _rows()
    with DetectionStore(tmp_path / "d.sqlite") as st:
        st.commit_file(a, RUN, [det(a, 0)], audio_s=180.0, indices=rows)
        key = st.ledger_rows()[0].file_key
        back = read_indices(st.conn, [key, "unknown"], RUN.run_key)
    assert list(back) == [key]
    got = back[key]
    assert got.names == INDICES and got.sample_rate == SR and got.bin_hz == bin_hz(SR)
    assert np.allclose(got.values, rows.values, atol=0.05, rtol=1e-3)  # float16


def test_indices_are_written_in_the_same_transaction_as_the_scores(tmp_path, monkeypatch):
    [a] = _recordings(tmp_path, 1)

    def broken(self, cur, file_key, run_key):
        raise sqlite3.OperationalError("disk I/O error")

    with DetectionStore(tmp_path / "d.sqlite") as st:
        monkeypatch.setattr(MinuteIndexRows, "write", broken)
        with pytest.raises(sqlite3.OperationalError):
            st.commit_file(a, RUN, [det(a, 0)], audio_s=180.0, indices=_rows())
        assert st.count() == 0 and st.ledger_rows() == []  # neither the detections nor the ledger row
        monkeypatch.undo()
        st.commit_file(a, RUN, [det(a, 0)], audio_s=180.0, indices=_rows())
        assert st.count() == 1 and len(read_indices(st.conn, [st.ledger_rows()[0].file_key], RUN.run_key)) == 1


def test_a_version_3_store_gains_the_table_and_keeps_its_rows(tmp_path):
    a, b = _recordings(tmp_path, 2)
    db, new = tmp_path / "d.sqlite", tmp_path / "new.sqlite"
    DetectionStore(new).close()
    with DetectionStore(db) as st:
        st.commit_file(a, RUN, [det(a, 0)], audio_s=10.0)
    c = sqlite3.connect(db)
    c.executescript("DROP TABLE minute_indices; PRAGMA user_version=3;")  # as hootwatch 3 left it
    c.close()
    with DetectionStore(db) as st:
        assert st.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert st.count() == 1
        st.commit_file(b, RUN, [det(b, 0)], audio_s=10.0, indices=_rows(1))
        assert len(read_indices(st.conn, [r.file_key for r in st.ledger_rows()], RUN.run_key)) == 1
    schema = lambda p: sorted(sqlite3.connect(p).execute("SELECT name, sql FROM sqlite_master").fetchall())  # noqa
    assert schema(db) == schema(new)
