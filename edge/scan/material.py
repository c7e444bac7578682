"""Review material for each detection (`hootwatch scan --clips`): a padded audio clip and a spectrogram image.

    OUTDIR/clips/<recorder>_<file stem>_<start>s_<id>.wav   the detection +- pad seconds, at the file's own rate
    OUTDIR/clips/<recorder>_<file stem>_<start>s_<id>.png   its spectrogram, 0 .. max_hz, time left to right

<recorder> is the recorder id (or the recording's folder name), <id> 6 hex digits of its content key: two
AudioMoths both writing 20240101_100000.WAV get separate clips.

matplotlib is not an edge dependency (it is large and slow to import on a Raspberry Pi), so the spectrogram is
computed with numpy and written by a minimal PNG writer (zlib + struct): no extra dependency.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from hootwatch.edge.contract.audio import load, probe

# a dark-to-bright ramp (black, purple, orange, pale yellow), like the usual "magma" look
_ANCHORS = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], np.float64)


def colormap(v: np.ndarray) -> np.ndarray:
    """v in [0, 1] -> uint8 RGB."""
    x = np.clip(v, 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(x.astype(int), len(_ANCHORS) - 2)
    f = (x - i)[..., None]
    return (_ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f).round().astype(np.uint8)


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """(height, width, 3) uint8 -> 8-bit RGB PNG."""
    Path(path).write_bytes(png_bytes(rgb))
    return Path(path)


def png_bytes(rgb: np.ndarray) -> bytes:
    rgb = np.ascontiguousarray(rgb, np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def spectrogram_db(x: np.ndarray, sample_rate: int, max_hz: float = 4000.0,
                   window_ms: float = 64.0) -> np.ndarray:
    """Magnitude spectrogram in dB, (freq bins up to max_hz, frames), Hann window, 75% overlap."""
    n_fft = int(2 ** np.ceil(np.log2(max(16, sample_rate * window_ms / 1000))))
    hop = n_fft // 4
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    keep = np.fft.rfftfreq(n_fft, 1 / sample_rate) <= max_hz
    return 20 * np.log10(mag[keep] + 1e-10)


def spectrogram_png(path: str | Path, x: np.ndarray, sample_rate: int, max_hz: float = 4000.0,
                    dynamic_range_db: float = 70.0) -> Path:
    return write_png(path, spectrogram_image(x, sample_rate, max_hz, dynamic_range_db))


def spectrogram_image(x: np.ndarray, sample_rate: int, max_hz: float = 4000.0,
                      dynamic_range_db: float = 70.0) -> np.ndarray:
    """(height, width, 3) uint8 spectrogram, low frequencies at the bottom."""
    db = spectrogram_db(x, sample_rate, max_hz)
    top = db.max()
    v = (db - (top - dynamic_range_db)) / dynamic_range_db
    img = colormap(v[::-1])
    return np.repeat(np.repeat(img, 2, axis=0), 2, axis=1) if img.shape[0] < 150 else img


def clip_stem(path: Path, detection) -> str:
    """`<recorder>_<file stem>_<start>s_<id>`: recorder id (or the folder's name) for people, and 6 hex digits
    of the recording's content key so two recorders' `20240101_100000.WAV` never overwrite each other's clips."""
    prefix = getattr(detection, "recorder_id", "") or path.resolve().parent.name
    name = path.stem if not prefix or path.stem.startswith(prefix) else f"{prefix}_{path.stem}"
    ident = hashlib.sha256(str(getattr(detection, "file_key", "") or path.resolve()).encode()).hexdigest()[:6]
    return f"{name}_{detection.start_s:08.2f}s_{ident}"


def write_review(path: str | Path, detections, clips_dir: str | Path, pad_s: float = 1.0,
                 max_hz: float = 4000.0, room: Callable[[int], bool] | None = None) -> tuple[list[Path], str]:
    """Clip + spectrogram for each detection of one file: the files written, and why they stopped short ('' when
    every clip was written). `room(nbytes)` is asked before each clip (its audio and, as much again, its
    picture): clips stop when it says no, so they never take the space the store needs. A clip that cannot be
    written (a full disk: libsndfile's error or an OSError) is removed, never left half-written, and stops them."""
    path, clips_dir = Path(path), Path(clips_dir)
    clips_dir.mkdir(parents=True, exist_ok=True)
    sr = probe(path).sample_rate
    written: list[Path] = []
    for d in detections:
        start = max(0.0, d.start_s - pad_s)
        x = load(path, sr, start_s=start, duration_s=(d.end_s + pad_s) - start)
        if room is not None and not room(2 * (44 + 2 * x.size)):  # 16-bit WAV, and its picture
            return written, "the disk is low: the next clip would leave less free than the floor"
        stem = clip_stem(path, d)
        wav, png = clips_dir / (stem + ".wav"), clips_dir / (stem + ".png")
        try:
            sf.write(str(wav), x, sr)
            spectrogram_png(png, x, sr, max_hz)
        except (OSError, sf.SoundFileError) as exc:
            for f in (wav, png):
                f.unlink(missing_ok=True)
            return written, f"writing {wav.name} failed: {exc}"
        written += [wav, png]
    return written, ""
