"""The daemon's own raw recordings: named from the capture time of their first sample (in UTC, and read back
as UTC), a new segment after lost audio, and a segment cut short by a power cut readable up to the cut."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from hootwatch.edge.daemon.microphone import Microphone, RawRecorder
from hootwatch.edge.contract.recorder_time import file_time

from test_daemon_microphone import SR_MODEL, _factory, _mic

UTC = dt.timezone.utc


def _segments(folder):
    """[(start from the name, duration s)] of the raw segments, in order."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        out.append((file_time(p, "Australia/Sydney").start_utc.timestamp(), sf.info(str(p)).duration))
    return out


def test_a_raw_segment_name_is_utc_and_read_back_as_utc(tmp_path):
    rec = RawRecorder(tmp_path / "raw", 8000, 1, "flac", segment_s=10.0, budget_mb=10)
    t = dt.datetime(2026, 6, 21, 10, 0, 0, 250000, tzinfo=UTC)
    rec.write(np.zeros((8000, 1), np.float32), t)
    rec.close()
    [p] = (tmp_path / "raw").iterdir()
    ft = file_time(p, "Australia/Sydney")  # a recorder zone given for the folder must not shift a UTC name
    assert ft.start_utc == t.replace(microsecond=250000)


def _run_mic(tmp_path, seconds, slow_s, ring_s, segment_s=60.0):
    signal = (0.1 * np.random.default_rng(0).standard_normal(16000 * 6)).astype(np.float32)
    stop = threading.Event()
    raw = RawRecorder(tmp_path / "raw", 16000, 1, "wav", segment_s=segment_s, budget_mb=100)

    def on_audio(block, t):
        time.sleep(slow_s)

    mic = Microphone(_mic(ring_s=ring_s), SR_MODEL, on_audio, lambda: None, stop, raw=raw,
                     stream_factory=_factory(signal))
    t0 = time.time()
    mic.start()
    time.sleep(seconds)
    stop.set()
    mic.join()
    return t0, mic


def test_a_raw_segment_is_named_from_the_capture_time_of_its_first_sample(tmp_path):
    t0, mic = _run_mic(tmp_path, 1.5, slow_s=0.5, ring_s=5.0)  # the ring is drained 0.5 s after capture
    (start, duration), *_ = _segments(tmp_path / "raw")
    assert t0 - 0.1 <= start <= t0 + 0.2, start - t0


def test_lost_audio_starts_a_new_raw_segment(tmp_path):
    t0, mic = _run_mic(tmp_path, 2.5, slow_s=0.3, ring_s=0.25)  # the ring fills while the model works
    segs = _segments(tmp_path / "raw")
    assert mic.overruns >= 1 and len(segs) >= 2, (mic.overruns, segs)
    for (a, da), (b, _) in zip(segs, segs[1:]):
        assert b >= a + da - 0.02, (a, da, b)  # no segment runs over audio that was lost
    recorded = sum(d for _, d in segs)
    assert recorded <= segs[-1][0] + segs[-1][1] - segs[0][0] - 0.05  # some audio was lost, between segments


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_segment_cut_short_by_a_power_cut_is_readable_up_to_the_cut(tmp_path, fmt):
    raw = tmp_path / "raw"
    rec = RawRecorder(raw, 16000, 1, fmt, segment_s=600.0, budget_mb=100)
    t = dt.datetime(2026, 6, 21, 10, 0, tzinfo=UTC)
    x = (0.1 * np.random.default_rng(1).standard_normal(16000 * 25)).astype(np.float32)
    for i in range(25):  # 25 s written; the recorder syncs every RAW_SYNC_S
        rec.write(x[16000 * i:16000 * (i + 1), None], t + dt.timedelta(seconds=i))
    # the power goes: the disk holds what was fsynced (the file as it is now is at least that)
    after_cut = tmp_path / "after_cut"
    shutil.copytree(raw, after_cut)
    rec._file = None  # the process is gone, nothing more is written or closed
    rec2 = RawRecorder(after_cut, 16000, 1, fmt, segment_s=600.0, budget_mb=100)  # the daemon starts again
    [p] = [q for q in after_cut.iterdir() if not q.name.startswith(".")]
    assert rec2.recovered == [p] and not list(after_cut.glob(".*"))
    got, sr = sf.read(str(p), dtype="float32")
    assert sr == 16000 and 16000 * 10 <= len(got) <= len(x)  # at least up to the last sync
    np.testing.assert_allclose(got, x[:len(got)], atol=1e-4)
