"""The microphone path: a real PortAudio input stream (PulseAudio null sink monitor fed by paplay) when the
machine has PulseAudio, and always a stand-in stream driven at real-time pace through the same callback."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from hootwatch.edge.daemon.config import MicrophoneConfig, config_from_dict
from hootwatch.edge.daemon.live import LiveSource
from hootwatch.edge.daemon.microphone import Microphone, RawRecorder, RingBuffer
from hootwatch.edge.daemon.service import Daemon
from daemon_helpers import kept, run_daemon_until
from tiny_bundles import tone_bundle, tone_signal

SR_MODEL = 8000


class PacedStream:
    """Stands in for sounddevice.InputStream: a thread delivers `signal` to the callback block by block at
    real-time pace, with PortAudio's (indata, frames, time, status) arguments; `lose_after` blocks it stops as a
    device that was unplugged does (finished_callback, inactive)."""

    opened: list["PacedStream"] = []
    fail_opens = 0

    def __init__(self, signal: np.ndarray, *, device, samplerate, channels, dtype, blocksize, callback,
                 finished_callback, lose_after: int | None = None) -> None:
        if PacedStream.fail_opens > 0:
            PacedStream.fail_opens -= 1
            raise OSError("Error querying device -1")  # what PortAudio says without a device
        self.signal, self.sr, self.channels, self.blocksize = signal, samplerate, channels, blocksize
        self.callback, self.finished = callback, finished_callback
        self.lose_after = lose_after
        self.active = False
        self._stop = threading.Event()
        PacedStream.opened.append(self)

    def start(self) -> None:
        self.active = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        t0 = time.monotonic()
        for i, start in enumerate(range(0, len(self.signal), self.blocksize)):
            if self._stop.is_set():
                return
            if self.lose_after is not None and i >= self.lose_after:
                self.active = False
                self.finished()
                return
            block = self.signal[start:start + self.blocksize]
            indata = np.repeat(block[:, None], self.channels, axis=1).astype(np.float32)
            self.callback(indata, len(block), None, None)
            delay = t0 + (start + len(block)) / self.sr - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while not self._stop.wait(0.05):  # silence after the signal, like a quiet room
            self.callback(np.zeros((self.blocksize, self.channels), np.float32), self.blocksize, None, None)

    def stop(self) -> None:
        self._stop.set()
        self.active = False

    def close(self) -> None:
        self.stop()


def _factory(signal, **extra):
    return lambda **kw: PacedStream(signal, **kw, **extra)


def _mic(**kw) -> MicrophoneConfig:
    # model_construct: tests may go below the config's floors (a 0.25 s ring to force overruns)
    return MicrophoneConfig.model_construct(**{**MicrophoneConfig().model_dump(), "sample_rate": 16000,
                                               "block_s": 0.05, "ring_s": 5.0, "reopen_max_s": 1.0, **kw})


def test_ring_buffer_wraps_and_refuses_what_does_not_fit():
    r = RingBuffer(10)
    assert r.write(np.arange(6, dtype=np.float32))
    assert list(r.read(0)) == list(range(6))
    assert r.write(np.arange(8, dtype=np.float32))  # wraps around the end
    assert not r.write(np.ones(3, np.float32))      # 8 + 3 > 10: dropped, not blocking
    assert list(r.read(0)) == list(range(8))


def test_capture_is_resampled_without_gaps_at_real_time_pace(tmp_path):
    rng = np.random.default_rng(0)
    signal = rng.uniform(-0.3, 0.3, 16000).astype(np.float32)  # 1 s at 16 kHz
    got, restarts, stop = [], [], threading.Event()
    mic = Microphone(_mic(channels=2), SR_MODEL, lambda b, t: got.append(b), lambda: restarts.append(1), stop,
                     stream_factory=_factory(signal))
    mic.start()
    deadline = time.monotonic() + 10
    while sum(map(len, got)) < SR_MODEL and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    mic.join()
    audio = np.concatenate(got)[:SR_MODEL]
    expected = soxr.resample(signal, 16000, SR_MODEL, quality="HQ")
    # the streaming resampler over blocks gives the one-shot result: no sample lost or repeated at block edges
    np.testing.assert_allclose(audio[100:-100], expected[100:-100], atol=2e-3)
    assert mic.overruns == 0 and mic.state == "closed"


def test_slow_consumer_overruns_are_counted_and_restart_the_session():
    signal = np.zeros(16000 * 2, np.float32)
    restarts, stop = [], threading.Event()

    def slow(block, t):
        time.sleep(0.3)  # the model cannot keep up; the ring (0.2 s) overflows

    mic = Microphone(_mic(ring_s=1.0), SR_MODEL, slow, lambda: restarts.append(1), stop,
                     stream_factory=_factory(signal))
    mic.ring = RingBuffer(int(0.2 * 16000))
    mic.start()
    deadline = time.monotonic() + 10
    while mic.overruns < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    mic.join()
    assert mic.overruns >= 3 and restarts


def test_lost_device_is_reopened_with_backoff():
    PacedStream.opened.clear()
    PacedStream.fail_opens = 1  # the first open fails (device not there yet)
    signal = np.zeros(16000, np.float32)
    stop, got, restarts = threading.Event(), [], []
    mic = Microphone(_mic(), SR_MODEL, lambda b, t: got.append(len(b)), lambda: restarts.append(1), stop,
                     stream_factory=_factory(signal, lose_after=4))
    mic.start()
    deadline = time.monotonic() + 15
    while len(PacedStream.opened) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    mic.join()
    assert len(PacedStream.opened) >= 3  # failed once, then opened, lost, reopened, lost, reopened...
    assert len(restarts) >= 2 and got


def test_raw_recording_keeps_within_its_budget_oldest_first(tmp_path):
    allowed = [True]
    rec = RawRecorder(tmp_path / "raw", 8000, 1, "wav", segment_s=1.0, budget_mb=0.05,
                      allowed=lambda: allowed[0])  # 16 kB per 1 s segment: 3 segments fit
    t = dt.datetime(2026, 6, 21, 10, 0, tzinfo=dt.timezone.utc)
    for i in range(6):
        rec.write(np.zeros((8000, 1), np.float32), t + dt.timedelta(seconds=i))
    names = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert names == [f"20260621T10000{i}_000Z.wav" for i in (3, 4, 5)]
    allowed[0] = False  # disk low: nothing more is written
    rec.write(np.zeros((8000, 1), np.float32), t + dt.timedelta(seconds=9))
    assert len(list((tmp_path / "raw").iterdir())) == 3 and rec.paused


def _daemon_config(tmp_path: Path, bundle: Path, **mic) -> object:
    return config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1},
        "sources": {"microphone": {"sample_rate": 48000, "block_s": 0.1, "ring_s": 10.0, **mic}},
        "output": {"dir": str(tmp_path / "out"), "timezone": "Australia/Sydney"},
        "health": {"status_every_s": 0.5, "watchdog": False},
    })


def _live_detections(db: Path) -> list[tuple]:
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT file, start_s, end_s, begin_utc FROM detections WHERE file_key LIKE 'live:%'"
                         ).fetchall()
    finally:
        c.close()


def test_daemon_detects_a_tone_from_the_stand_in_stream(tmp_path):
    bundle = tone_bundle(tmp_path / "bundle", sample_rate=SR_MODEL)
    tone = tone_signal(6.0, 48000, tones=[(0.5, 5.5)])
    live = kept(LiveSource)
    daemon = Daemon(_daemon_config(tmp_path, bundle), stream_factory=_factory(tone), live=live)
    db = tmp_path / "out" / "detections.sqlite"
    # stopping closes the live session: the detection still open at the end is written (drained, not lost)
    run_daemon_until(daemon, lambda: bool(live.made) and live.made[0].mic.samples_captured >= 6 * 48000, 30)
    rows = _live_detections(db)
    assert len(rows) == 1 and rows[0][0] == "mic:default"
    assert rows[0][1] < 1.0 and rows[0][2] > 5.0  # windows covering the tone, in capture-clock seconds
    assert daemon.health.overruns == 0


# ---------------------------------------------------------------- a real PortAudio stream through PulseAudio

@pytest.fixture()
def pulse_null_sink():
    """A PulseAudio null sink whose monitor is the default input; skips where PulseAudio or PortAudio is absent."""
    if not (shutil.which("pulseaudio") and shutil.which("pactl") and shutil.which("paplay")):
        pytest.skip("PulseAudio (pulseaudio, pactl, paplay) not installed")
    try:
        import sounddevice  # noqa: F401  (raises OSError without libportaudio2)
    except OSError as exc:
        pytest.skip(f"PortAudio not available: {exc}")
    started = False
    if subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        r = subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1", "--disallow-exit", "-n",
                            "--load=module-native-protocol-unix"], capture_output=True, text=True)
        started = True
        for _ in range(50):
            if subprocess.run(["pactl", "info"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.skip(f"cannot start a PulseAudio server: {r.stderr.strip()}")
    module = subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=hootwatch_test"],
                            capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["pactl", "set-default-sink", "hootwatch_test"], check=True)
    subprocess.run(["pactl", "set-default-source", "hootwatch_test.monitor"], check=True)
    # PortAudio lists devices once at initialisation: re-initialise now that the server is up
    sounddevice._terminate()
    sounddevice._initialize()
    yield "hootwatch_test"
    subprocess.run(["pactl", "unload-module", module])
    if started:
        subprocess.run(["pulseaudio", "-k"])


def test_daemon_detects_a_tone_played_into_a_real_portaudio_input(tmp_path, pulse_null_sink):
    import sounddevice as sd

    devices = [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]
    device = "pulse" if "pulse" in devices else None
    if device is None:
        pytest.skip(f"PortAudio has no ALSA 'pulse' device (inputs: {devices}); install libasound2-plugins")
    bundle = tone_bundle(tmp_path / "bundle", sample_rate=SR_MODEL)
    wav = tmp_path / "call.wav"
    sf.write(wav, tone_signal(9.0, 44100, tones=[(2.0, 7.0)]), 44100, subtype="PCM_16")
    live = kept(LiveSource)
    daemon = Daemon(_daemon_config(tmp_path, bundle, device=device), live=live)
    db = tmp_path / "out" / "detections.sqlite"
    player: list[subprocess.Popen] = []

    def until() -> bool:
        if not player and live.made and live.made[0].mic.state == "listening":
            player.append(subprocess.Popen(["paplay", "--device", pulse_null_sink, str(wav)]))
        return bool(player) and player[0].poll() is not None and daemon.health.detections >= 1

    try:
        run_daemon_until(daemon, until, 40)
    finally:
        for p in player:
            p.kill()
    rows = _live_detections(db)
    assert len(rows) == 1, rows
    assert rows[0][2] - rows[0][1] >= 5.0  # a 5 s tone: at least one full window
    assert live.made[0].mic.samples_captured > 8 * 48000  # a real stream delivered the whole playback


def test_ring_buffer_knows_when_its_samples_were_captured_and_where_some_were_lost():
    r = RingBuffer(10, rate=10)
    assert r.write(np.zeros(4, np.float32), t_capture=100.0) and r.write(np.ones(4, np.float32), t_capture=100.4)
    block, t, gap = r.read_stamped(0)
    assert len(block) == 8 and t == 100.0 and not gap
    assert r.write(np.zeros(6, np.float32), t_capture=101.0)
    assert not r.write(np.zeros(6, np.float32), t_capture=101.6)  # full: dropped, a gap follows sample 14
    block, t, gap = r.read_stamped(0)  # read long after capture: stamped with its capture time, not "now"
    assert len(block) == 6 and t == 101.0 and not gap
    assert r.write(np.full(3, 5, np.float32), t_capture=103.0)
    block, t, gap = r.read_stamped(0)  # what follows the lost samples says so, with its own capture time
    assert gap and t == 103.0 and list(block) == [5, 5, 5]


def test_after_an_overrun_the_new_session_starts_at_the_capture_time_of_its_first_sample():
    signal = np.zeros(16000 * 3, np.float32)
    calls, restarts, stop = [], [], threading.Event()

    def slow(block, t):
        calls.append((t.timestamp(), time.time(), len(block) / SR_MODEL, len(restarts)))
        time.sleep(0.3)  # the ring (0.25 s) fills while the model works: overrun, backlog, restart

    mic = Microphone(_mic(ring_s=0.25), SR_MODEL, slow, lambda: restarts.append(1), stop,
                     stream_factory=_factory(signal))
    mic.start()
    deadline = time.monotonic() + 10
    while (mic.overruns < 2 or len(calls) < 6) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    mic.join()
    firsts = {}  # the first block of each session after a restart: the session's start time (LiveSession)
    for c in calls:
        if c[3] > 0:
            firsts.setdefault(c[3], c)
    assert mic.overruns >= 2 and firsts
    for t_block, t_read, duration, _ in firsts.values():
        # its samples were captured before they reached the model (a session stamped when the backlog was read
        # would end ~0.25 s in the future), and not before the ring could have held them
        assert t_block + duration <= t_read + 0.05, (t_block + duration - t_read, duration)
        assert t_block >= t_read - 0.25 - 0.3 - 0.1
