"""Audio decoding shared by training and the edge.

Any format libsndfile reads (WAV, FLAC, Ogg/Vorbis, MP3), any rate and channel count, read in blocks and
resampled with soxr's streaming resampler, so a 12-hour 48 kHz file never sits whole in memory. Channels are
averaged to mono. Training cuts clips with `load`; the edge streams with `iter_blocks`: both go through the
same decoder and resampler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from hootwatch.edge.core.errors import AudioReadError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
_RESAMPLE_QUALITY = "HQ"


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def is_audio_file(path: str | os.PathLike) -> bool:
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)


def _read_error(path: Path, exc: BaseException) -> AudioReadError:
    if not path.exists():
        return AudioReadError(f"{path}: no such file", "check the path (was the SD card unmounted?)")
    if path.is_dir():
        return AudioReadError(f"{path}: is a folder, not an audio file", "pass the audio files inside it")
    if not os.access(path, os.R_OK):
        return AudioReadError(f"{path}: permission denied", f"make it readable: chmod a+r '{path}'")
    size = path.stat().st_size
    if size == 0:
        return AudioReadError(f"{path}: the file is empty (0 bytes)",
                              "copy it again from the recorder's card; the recording may have failed")
    return AudioReadError(
        f"{path}: cannot be decoded as audio ({exc})",
        "the file is corrupt, truncated or not audio: copy it again from the card, or remove it",
    )


def probe(path: str | os.PathLike) -> AudioInfo:
    """Header information, or AudioReadError naming the file and the fix."""
    p = Path(path)
    try:
        info = sf.info(str(p))
    except Exception as exc:  # libsndfile raises several types for bad input
        raise _read_error(p, exc) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioReadError(f"{p}: the file holds no audio samples",
                             "the recording is empty or its header is damaged; copy it again or remove it")
    return AudioInfo(p, int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)


def to_mono(block: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) -> (frames,) float32, channels averaged."""
    if block.ndim == 2:
        block = block.mean(axis=1)
    return np.ascontiguousarray(block, dtype=np.float32)


class StreamResampler:
    """soxr.ResampleStream behind a pass-through when the rates already match."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self._stream = (
            None if self.in_rate == self.out_rate
            else soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=_RESAMPLE_QUALITY)
        )

    def push(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return mono
        return self._stream.resample_chunk(mono, last=last)


def wav_truncation(path: str | os.PathLike) -> float | None:
    """The seconds a truncated WAV's header promises (it holds fewer), or None for a complete file or another
    format. libsndfile quietly reads what is there, so a card pulled mid-copy would pass as a short recording:
    the scan reads the audio that is there and says the file was cut short."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        return None
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None  # RF64/W64 and friends: leave it to libsndfile
            pos, rate, align = 12, 0, 0
            while pos + 8 <= size:
                f.seek(pos)
                cid, n = f.read(4), int.from_bytes(f.read(4), "little")
                if cid == b"fmt ":
                    fmt = f.read(min(n, 16))
                    if len(fmt) >= 14:
                        rate, align = int.from_bytes(fmt[4:8], "little"), int.from_bytes(fmt[12:14], "little")
                elif cid == b"data":
                    if n == 0xFFFFFFFF or pos + 8 + n <= size or not rate or not align:
                        return None
                    return n / align / rate
                pos += 8 + n + (n & 1)
    except OSError:
        return None
    return None


# Decoded samples beyond this (60 dB over full scale) are no sound a microphone gave: a float WAV whose data is
# damaged, or was written unscaled. Integer PCM decodes within [-1, 1].
MAX_ABS_SAMPLE = 1000.0


def _check_samples(path: Path, data: np.ndarray, first_frame: int, rate: int) -> None:
    """AudioReadError naming the file and the time when a block holds NaN, infinite or huge samples: a model fed
    them scores NaN, which would pass silently as 'no detection'."""
    flat = data.reshape(-1)                      # frames x channels, row by row
    bad = ~(np.abs(flat) <= MAX_ABS_SAMPLE)      # NaN compares False: bad too
    if not bad.any():
        return
    j = int(np.argmax(bad))
    i, v = j // data.shape[1], flat[j]
    kind = "NaN" if np.isnan(v) else "infinite" if np.isinf(v) else f"huge ({float(v):.3g})"
    raise AudioReadError(f"{path}: the file holds {kind} samples from {(first_frame + i) / rate:.1f} s on; it is "
                         "damaged or not audio", "copy it again from the recorder's card, or remove it")


def iter_blocks(path: str | os.PathLike, sample_rate: int, block_s: float = 30.0,
                start_s: float = 0.0, duration_s: float | None = None) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks at `sample_rate`, decoded `block_s` seconds at a time.

    Raises AudioReadError (naming the file) if the file cannot be opened, breaks part-way through or holds NaN,
    infinite or huge samples; blocks already yielded stay valid.
    """
    info = probe(path)
    resampler = StreamResampler(info.sample_rate, sample_rate)
    start = int(round(start_s * info.sample_rate))
    stop = info.frames if duration_s is None else min(info.frames, start + int(round(duration_s * info.sample_rate)))
    block = max(1, int(block_s * info.sample_rate))
    try:
        with sf.SoundFile(str(info.path)) as f:
            if start:
                f.seek(start)
            pos, flushed = start, False
            while pos < stop:
                n = min(block, stop - pos)
                data = f.read(n, dtype="float32", always_2d=True)
                _check_samples(info.path, data, pos, info.sample_rate)
                pos += len(data)
                short = len(data) < n  # the header promised more than the file holds
                flushed = pos >= stop or short
                out = resampler.push(to_mono(data), last=flushed)
                if len(out):
                    yield out
                if short:
                    break
            if not flushed:
                tail = resampler.push(np.zeros(0, np.float32), last=True)
                if len(tail):
                    yield tail
    except AudioReadError:
        raise
    except Exception as exc:
        raise _read_error(info.path, exc) from None


def load(path: str | os.PathLike, sample_rate: int, start_s: float = 0.0,
         duration_s: float | None = None) -> np.ndarray:
    """The whole file (or a segment of it) as one mono float32 array at `sample_rate`."""
    blocks = list(iter_blocks(path, sample_rate, start_s=start_s, duration_s=duration_s))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
