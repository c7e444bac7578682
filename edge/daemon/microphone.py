"""Live microphone: PortAudio capture -> bounded ring buffer -> resample -> the same windowing as files.

The PortAudio callback (its own real-time thread) only copies the block into a numpy ring buffer: no model, no
disk, no allocation beyond the copy, so capture never waits on inference. A consumer thread drains the ring,
averages channels, resamples with soxr's streaming resampler to the model's rate and pushes to a LiveSession,
whose WindowStream slides windows across blocks with no gap. When the consumer falls behind and the ring is
full, the newest block is dropped and counted as an overrun (as is any PortAudio input overflow) and logged.
The ring remembers where samples were lost and when each block was captured: the session is closed at the
gap and a new one starts at the capture time of the first sample after it, however long that sample waited
in the ring, so window times stay true to the capture clock.

A device that disappears (USB unplugged, PortAudio error) is reopened with exponential back-off up to
`reopen_max_s`. Optional raw recording writes rolling FLAC/WAV segments named by the capture time of their first
sample, starts a new one after lost audio, deletes the oldest beyond the budget, stops while the disk guard says
the disk is low, and survives a power cut (RawRecorder).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from hootwatch.edge.core import fsio
from hootwatch.edge.contract.audio import StreamResampler
from .config import MicrophoneConfig
from .threads import Worker

log = logging.getLogger(__name__)


class RingBuffer:
    """Single-producer single-consumer float32 ring of mono samples; `write` never blocks.

    With a `rate`, each write may carry the wall-clock capture time of its first sample, so a reader learns
    when the samples it reads were captured (`read_stamped`), however long they waited in the ring."""

    def __init__(self, capacity: int, rate: float | None = None) -> None:
        self.buf = np.zeros(int(capacity), np.float32)
        self.capacity = int(capacity)
        self.rate = rate
        self._w = 0  # total samples written
        self._r = 0  # total samples read
        self._marks: collections.deque = collections.deque()  # (sample index, capture time) per stamped write
        self._gaps: collections.deque = collections.deque()   # sample indices that follow lost samples
        self._lock = threading.Lock()
        self._data = threading.Condition(self._lock)

    @property
    def level(self) -> int:
        with self._lock:
            return self._w - self._r

    def write(self, x: np.ndarray, t_capture: float | None = None) -> bool:
        """Append `x` (first sample captured at `t_capture`, seconds since the epoch); False (nothing written)
        if it does not fit."""
        n = len(x)
        with self._lock:
            if self._w - self._r + n > self.capacity:
                self._mark_gap()
                return False
            i = self._w % self.capacity
            first = min(n, self.capacity - i)
            self.buf[i:i + first] = x[:first]
            self.buf[:n - first] = x[first:]
            if t_capture is not None and self.rate:
                self._marks.append((self._w, t_capture))
            self._w += n
            self._data.notify()
        return True

    def mark_gap(self) -> None:
        """Samples were lost before the next write (e.g. PortAudio input overflow)."""
        with self._lock:
            self._mark_gap()

    def _mark_gap(self) -> None:
        if not self._gaps or self._gaps[-1] != self._w:
            self._gaps.append(self._w)

    def read(self, timeout: float) -> np.ndarray:
        """Everything buffered up to the next gap (waiting up to `timeout` for something)."""
        return self.read_stamped(timeout)[0]

    def read_stamped(self, timeout: float) -> tuple[np.ndarray, float | None, bool]:
        """Everything buffered up to the next gap, the capture time of its first sample (None when unknown),
        and whether samples were lost just before it (the reader's stream is not continuous there)."""
        with self._lock:
            if self._w == self._r:
                self._data.wait(timeout)
            after_gap = False
            while self._gaps and self._gaps[0] <= self._r:
                self._gaps.popleft()
                after_gap = True
            end = min(self._w, self._gaps[0]) if self._gaps else self._w
            n = end - self._r
            i = self._r % self.capacity
            first = min(n, self.capacity - i)
            out = np.concatenate([self.buf[i:i + first], self.buf[:n - first]])
            t = None
            while len(self._marks) > 1 and self._marks[1][0] <= self._r:  # marks before the block holding _r
                self._marks.popleft()
            if n and self._marks and self._marks[0][0] <= self._r:
                idx, t0 = self._marks[0]
                t = t0 + (self._r - idx) / self.rate
            self._r += n
        return out, t, after_gap


RAW_SYNC_S = 10.0          # a raw segment is flushed and fsynced every this many seconds of audio
OPEN_MARK = ".recording"   # in the raw folder while a segment is being written: its name


class RawRecorder:
    """Rolling raw-audio segments (FLAC or WAV) within a disk budget, each named by the UTC capture time of its
    first sample (`20260621T100000_250Z.flac`, read back as UTC by recorder_time). Audio after lost samples
    starts a new segment, so a segment never spans a gap.

    Power cuts: the segment being written is named in OPEN_MARK (written durably) and flushed + fsynced every
    RAW_SYNC_S; a new recorder (the daemon starting again) repairs a segment that was never closed, so it is
    readable up to the cut (a WAV header is fixed to the data on disk; a FLAC file, whose sample count is only
    written at close, is re-encoded from the frames that decode)."""

    def __init__(self, folder: Path, sample_rate: int, channels: int, fmt: str, segment_s: float,
                 budget_mb: float, allowed: Callable[[], bool] = lambda: True) -> None:
        self.folder, self.sample_rate, self.channels = Path(folder), int(sample_rate), int(channels)
        self.fmt, self.segment_frames = fmt, int(segment_s * sample_rate)
        self.budget_bytes = int(budget_mb * 1e6)
        self.allowed = allowed
        self._file = None
        self._frames = 0
        self._synced = 0
        self.paused = False
        self.recovered = self.recover()

    def write(self, block: np.ndarray, t_utc: dt.datetime | None, after_gap: bool = False) -> None:
        """Append `block` (frames x channels) whose first sample was captured at `t_utc`; `after_gap`: samples
        were lost just before it."""
        if not self.allowed():
            if not self.paused:
                log.warning("raw recording paused: disk low")
            self.paused = True
            self.close()
            return
        self.paused = False
        import soundfile as sf

        if after_gap:
            self.close()
        if self._file is None:
            if t_utc is None:
                t_utc = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=len(block) / self.sample_rate)
            fsio.makedirs(self.folder)
            t_utc = t_utc.astimezone(dt.timezone.utc)
            name = t_utc.strftime("%Y%m%dT%H%M%S") + f"_{t_utc.microsecond // 1000:03d}Z.{self.fmt}"
            fsio.write_atomic(self.folder / OPEN_MARK, name)
            self._file = sf.SoundFile(str(self.folder / name), "w", self.sample_rate, self.channels,
                                      subtype="PCM_16", format=self.fmt.upper())
            self._frames = self._synced = 0
            self.enforce_budget()
        self._file.write(block)
        self._frames += len(block)
        if self._frames >= self.segment_frames:
            self.close()
        elif self._frames - self._synced >= RAW_SYNC_S * self.sample_rate:
            self._sync()

    def _sync(self) -> None:
        self._file.flush()  # libsndfile writes what it holds (and a WAV header that covers it)
        fsio.fsync_file(self._file.name)
        if self._synced == 0:
            fsio.fsync_dir(self.folder)
        self._synced = self._frames

    def close(self) -> None:
        if self._file is not None:
            name = self._file.name
            self._file.close()
            self._file = None
            fsio.fsync_file(name)
            fsio.fsync_dir(self.folder)
            fsio.remove(self.folder / OPEN_MARK)
            self.enforce_budget()

    def recover(self) -> list[Path]:
        """Repair the segment a power cut (or kill -9) left open; returns it ([] when there was none)."""
        mark = self.folder / OPEN_MARK
        try:
            name = mark.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return []
        path = self.folder / Path(name).name
        done = []
        try:
            if path.is_file():
                seconds = _repair_segment(path, self.sample_rate, self.channels)
                log.warning("%s: raw recording cut short (power cut or kill); %.1f s recovered", path, seconds)
                done.append(path)
        except Exception as exc:  # a segment that cannot be repaired is kept as it is; recording goes on
            log.warning("%s: raw recording cut short and cannot be repaired (%s); kept as it is", path, exc)
        fsio.remove(mark)
        return done

    def enforce_budget(self) -> list[Path]:
        """Delete the oldest segments until the folder is within budget; returns what was deleted."""
        files = sorted(p for p in self.folder.glob(f"*.{self.fmt}") if p.is_file())
        current = Path(self._file.name) if self._file is not None else None
        sizes = {p: p.stat().st_size for p in files}
        total, deleted = sum(sizes.values()), []
        for p in files:
            if total <= self.budget_bytes or p == current:
                break
            p.unlink(missing_ok=True)
            total -= sizes[p]
            deleted.append(p)
        return deleted


def _repair_segment(path: Path, sample_rate: int, channels: int) -> float:
    """Make a segment that was never closed readable up to its last bytes; returns its duration in seconds."""
    import soundfile as sf

    if path.suffix.lower() == ".wav":
        _fix_wav_sizes(path)
        fsio.fsync_file(path)
        return sf.info(str(path)).duration
    # FLAC: STREAMINFO says 0 samples until close. Read the frames that decode, write them as a whole file.
    data = bytearray(path.read_bytes())
    if data[:4] != b"fLaC" or len(data) < 26:
        raise ValueError("no FLAC stream header")
    head = int.from_bytes(data[18:26], "big")
    data[18:26] = (head | ((1 << 36) - 1)).to_bytes(8, "big")  # "as many samples as there are"
    probe = path.with_name(f".{path.name}.probe")
    blocks = []
    try:
        probe.write_bytes(bytes(data))
        with sf.SoundFile(str(probe)) as f:
            while True:
                try:
                    b = f.read(1024, dtype="float32", always_2d=True)
                except RuntimeError:  # the cut: the rest does not decode
                    break
                if not len(b):
                    break
                blocks.append(b)
    finally:
        probe.unlink(missing_ok=True)
    audio = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    tmp = path.with_name(f".{path.name}.repair")
    sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="FLAC")
    fsio.durable_move(tmp, path)
    return len(audio) / sample_rate


def _fix_wav_sizes(path: Path) -> None:
    """Set the RIFF and data chunk sizes from the file's length (libsndfile writes them at flush and close)."""
    import struct

    with open(path, "r+b") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError("no RIFF/WAVE header")
        size = os.fstat(f.fileno()).st_size
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                f.seek(pos + 4)
                f.write(struct.pack("<I", size - pos - 8))
                f.seek(4)
                f.write(struct.pack("<I", size - 8))
                return
            pos += 8 + n + (n & 1)
        raise ValueError("no data chunk")


def sounddevice_stream(**kw):
    import sounddevice as sd

    return sd.InputStream(**kw)


class Microphone:
    """Capture + consumer. `on_audio(block_at_model_rate, block_start_utc)` gets resampled mono blocks;
    `on_restart()` is called when continuity breaks (overrun, reopen) so the caller starts a new session.
    `stream_factory(**kw)` builds the PortAudio stream (sounddevice.InputStream; tests may pass another)."""

    def __init__(self, cfg: MicrophoneConfig, model_rate: int, on_audio, on_restart, stop: threading.Event,
                 health=None, raw: RawRecorder | None = None, stream_factory=sounddevice_stream,
                 active: Callable[[], bool] = lambda: True, beat: Callable[[], None] = lambda: None) -> None:
        self.cfg, self.model_rate, self.beat = cfg, int(model_rate), beat
        self.on_audio, self.on_restart, self.stop = on_audio, on_restart, stop
        self.health, self.raw, self.stream_factory, self.active = health, raw, stream_factory, active
        self.ring = RingBuffer(int(cfg.ring_s * cfg.sample_rate), rate=cfg.sample_rate)
        raw_ring = int(cfg.ring_s * cfg.sample_rate) * cfg.channels if raw is not None else 1
        # interleaved frames: `rate` in samples per second of all channels, for the capture times
        self.raw_ring = RingBuffer(raw_ring, rate=cfg.sample_rate * cfg.channels) if raw is not None else None
        self._raw_gap = False
        self.overruns = 0
        self._failed = threading.Event()   # the stream reported an error / finished unexpectedly
        self.state = "closed"
        self.samples_captured = 0
        self._consumer = Worker(self.run, "hootwatch-mic", "microphone thread", log)

    # ---- PortAudio thread: copy only
    def _capture_time(self, frames: int, time_info) -> float:
        """Wall-clock time of the block's first sample: PortAudio's ADC time of the buffer mapped onto the wall
        clock when it gives one, else now minus the block's duration (the callback comes once it is full)."""
        now = time.time()
        try:
            adc, current = float(time_info.inputBufferAdcTime), float(time_info.currentTime)
        except (AttributeError, TypeError, ValueError):
            adc = current = 0.0
        if adc > 0 and current > 0 and 0 <= current - adc < 10:
            return now - (current - adc)
        return now - frames / self.cfg.sample_rate

    def _callback(self, indata, frames, time_info, status) -> None:
        if status and status.input_overflow:
            self.ring.mark_gap()
            if self.raw_ring is not None:
                self.raw_ring.mark_gap()
            self._overrun("PortAudio input overflow")
        mono = indata.mean(axis=1) if indata.ndim == 2 and indata.shape[1] > 1 else indata.reshape(-1)
        t_capture = self._capture_time(frames, time_info)
        if not self.ring.write(mono.astype(np.float32, copy=False), t_capture):
            self._overrun("ring buffer full (processing too slow)")
            if self.raw_ring is not None:  # the raw segment must not run on over the block dropped here
                self.raw_ring.mark_gap()
            return
        if self.raw_ring is not None:
            self.raw_ring.write(np.asarray(indata, np.float32).reshape(-1), t_capture)

    def _overrun(self, why: str) -> None:
        self.overruns += 1
        if self.health is not None:
            self.health.add(overruns=1)
        if self.overruns == 1 or self.overruns % 100 == 0:
            log.warning("microphone overrun #%d: %s", self.overruns, why)

    # ---- consumer thread
    def _open(self):
        cfg = self.cfg
        device = int(cfg.device) if cfg.device is not None and cfg.device.isdigit() else cfg.device
        stream = self.stream_factory(device=device, samplerate=cfg.sample_rate, channels=cfg.channels,
                                     dtype="float32", blocksize=max(1, int(cfg.block_s * cfg.sample_rate)),
                                     callback=self._callback, finished_callback=self._failed.set)
        stream.start()
        return stream

    def _set_state(self, state: str) -> None:
        if state != self.state:  # a lost device is worth a warning; the back-off makes it rare
            log.log(logging.WARNING if state.startswith(("unavailable", "lost")) else logging.INFO,
                    "microphone: %s", state)
        self.state = state
        if self.health is not None:
            self.health.update(mic_state=state)

    def run(self) -> None:
        """Open, capture, reopen on loss with back-off, until `stop`; closed outside the schedule."""
        backoff = 1.0
        while not self.stop.is_set():
            self.beat()
            if not self.active():
                self._set_state("idle (outside schedule)")
                self.stop.wait(1.0)
                continue
            try:
                stream = self._open()
            except Exception as exc:  # PortAudioError, device gone, busy...
                self._set_state(f"unavailable ({exc}); retrying in {backoff:.0f} s")
                self._wait(backoff)
                backoff = min(backoff * 2, self.cfg.reopen_max_s)
                continue
            backoff = 1.0
            self._set_state("listening")
            try:
                self._consume(stream)
            finally:
                try:
                    stream.stop(ignore_errors=True) if _takes_ignore(stream) else stream.stop()
                    stream.close()
                except Exception:
                    pass
                if self.raw is not None:
                    self.raw.close()
                self.on_restart()
        self._set_state("closed")

    def _consume(self, stream) -> None:
        resampler = StreamResampler(self.cfg.sample_rate, self.model_rate)
        t_start, captured = None, 0  # a session starts at the capture time of its first sample
        self._failed.clear()
        while True:
            self.beat()
            last = self.stop.is_set() or self._failed.is_set() or not self.active()
            block, t_first, after_gap = self.ring.read_stamped(timeout=0 if last else 0.2)
            if after_gap and t_start is not None:  # samples were lost: a window must not straddle the gap
                self.on_restart()
                resampler = StreamResampler(self.cfg.sample_rate, self.model_rate)
                t_start, captured = None, 0
            final = last and self.ring.level == 0  # at the end: drain what is buffered first
            if t_start is None and len(block):  # not "now": the block may have waited in the ring
                t_start = (dt.datetime.fromtimestamp(t_first, dt.timezone.utc) if t_first is not None else
                           dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=len(block) / self.cfg.sample_rate))
            if len(block) or final:
                t_start = t_start or dt.datetime.now(dt.timezone.utc)
                t_block = t_start + dt.timedelta(seconds=captured / self.cfg.sample_rate)
                captured += len(block)
                self.samples_captured += len(block)
                out = resampler.push(block, last=final)
                if len(out):
                    self.on_audio(out, t_block)
            if self.raw_ring is not None:
                self._drain_raw()
            if final:
                if self._failed.is_set() and not self.stop.is_set():
                    self._set_state("lost; reopening")
                return
            if not getattr(stream, "active", True):
                self._failed.set()

    def _drain_raw(self) -> None:
        """Everything in the raw ring to the raw recorder, a read per stretch between gaps, each stamped with
        the capture time of its first sample."""
        while True:
            raw, t_first, after_gap = self.raw_ring.read_stamped(timeout=0)
            self._raw_gap = self._raw_gap or after_gap  # a gap read with nothing after it yet still counts
            if not len(raw):
                return
            t = dt.datetime.fromtimestamp(t_first, dt.timezone.utc) if t_first is not None else None
            self.raw.write(raw.reshape(-1, self.cfg.channels), t, after_gap=self._raw_gap)
            self._raw_gap = False

    def _wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end:
            self.beat()  # waiting for a device is not a stall
            self.stop.wait(min(1.0, end - time.monotonic()))

    def start(self) -> None:
        self._consumer.start()

    def join(self, timeout: float = 10.0) -> None:
        self._consumer.join(timeout)

    def is_alive(self) -> bool:
        return self._consumer.is_alive()

    @property
    def error(self) -> BaseException | None:
        """What killed the consumer thread, if anything did."""
        return self._consumer.error


def _takes_ignore(stream) -> bool:
    import inspect

    try:
        return "ignore_errors" in inspect.signature(stream.stop).parameters
    except (TypeError, ValueError):
        return False
