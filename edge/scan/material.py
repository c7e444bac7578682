"""Review material for each detection (`hootwatch scan --clips`): a padded audio clip and a spectrogram image.

    OUTDIR/clips/<recorder>_<file stem>_<start>s_<id>.wav   the detection +- pad seconds, at the file's own rate
    OUTDIR/clips/<recorder>_<file stem>_<start>s_<id>.png   its spectrogram (the species' display range, 80 px/s)

<recorder> is the recorder id (or the recording's folder name), <id> 6 hex digits of its content key: two
AudioMoths both writing 20240101_100000.WAV get separate clips.

matplotlib is not an edge dependency (it is large and slow to import on a Raspberry Pi), so the spectrogram is
computed with numpy and written by a minimal PNG writer (zlib + struct): no extra dependency. The image has no
axes: the review page draws them in HTML around it from `FreqAxis.ticks()` and PX_PER_S.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from hootwatch.edge.contract.audio import load, probe
from hootwatch.edge.contract.bundle import DEFAULT_DISPLAY, Display

# a dark-to-bright ramp (black, purple, orange, pale yellow), like the usual "magma" look
_ANCHORS = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], np.float64)


def colormap(v: np.ndarray) -> np.ndarray:
    """v in [0, 1] -> uint8 RGB."""
    x = np.clip(v, 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(x.astype(int), len(_ANCHORS) - 2)
    f = (x - i)[..., None]
    return (_ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f).round().astype(np.uint8)


# 256 colours of the ramp: a spectrogram is written as an 8-bit palette PNG, a third of the bytes of RGB and
# quicker to compress (the review page waits for it)
PALETTE = colormap(np.linspace(0, 1, 256))


def png_bytes(pixels: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """(height, width, 3) uint8 RGB, or (height, width) uint8 indices into `palette` ((n, 3) uint8) -> PNG."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    h, w = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    kind, plte = (2, b"") if palette is None else (3, chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes()))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, kind, 0, 0, 0)) + plte
            + chunk(b"IDAT", zlib.compress(raw, 3)) + chunk(b"IEND", b""))


PX_PER_S = 80       # one time scale on every image: a 25 s detection is drawn 3.3 times as wide as a 7.5 s one
IMAGE_ROWS = 256    # the frequency range, whatever it is, gets this many rows
_TICK_STEPS_HZ = (50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000)


def _mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@dataclass(frozen=True)
class FreqAxis:
    """The frequency range of a spectrogram image and how rows map to frequencies (the page draws its ticks from
    `ticks()`, so the image and its axis share this one mapping)."""
    min_hz: float = DEFAULT_DISPLAY.min_hz
    max_hz: float = DEFAULT_DISPLAY.max_hz
    scale: str = DEFAULT_DISPLAY.scale     # linear | mel

    def _warp(self, hz):
        return _mel(hz) if self.scale == "mel" else np.asarray(hz, np.float64)

    def position(self, hz) -> np.ndarray:
        """Fraction of the image height from the top (0 = max_hz, 1 = min_hz)."""
        lo, hi = self._warp(self.min_hz), self._warp(self.max_hz)
        return (hi - self._warp(hz)) / (hi - lo)

    def row_hz(self, rows: int = IMAGE_ROWS) -> np.ndarray:
        """The frequency at the centre of each row, top row first."""
        lo, hi = self._warp(self.min_hz), self._warp(self.max_hz)
        w = hi - (np.arange(rows) + 0.5) / rows * (hi - lo)
        return _hz(w) if self.scale == "mel" else w

    def ticks(self, most: int = 8) -> list[dict]:
        step = next((s for s in _TICK_STEPS_HZ if (self.max_hz - self.min_hz) / s <= most), _TICK_STEPS_HZ[-1])
        hz = np.arange(np.ceil(self.min_hz / step) * step, self.max_hz + 1e-6, step)
        return [{"hz": float(f), "y": round(float(self.position(f)), 4)} for f in hz]

    def to_dict(self) -> dict:
        return {"min_hz": self.min_hz, "max_hz": self.max_hz, "scale": self.scale, "ticks": self.ticks()}


VIEWS = ("full", "band")


def view_axis(display: Display, view: str = "full") -> FreqAxis:
    """`full`: the species' display range; `band`: the call's band alone (a tenth of its width either side)."""
    if view == "band":
        lo, hi = display.band_hz
        margin = 0.1 * (hi - lo)
        return FreqAxis(max(0.0, lo - margin), hi + margin, "linear")
    return FreqAxis(display.min_hz, display.max_hz, display.scale)


def axis_geometry(display: Display, view: str = "full") -> dict:
    """What the page needs to draw a view's frequency axis: its range, ticks, and where the call's band lies
    (band_y: the fractions from the top of its high and low edge)."""
    axis = view_axis(display, view)
    return axis.to_dict() | {"band_y": [round(float(axis.position(hz)), 4) for hz in display.band_hz[::-1]]}


def display_rate(sample_rate: int, max_hz: float) -> int:
    """The rate the spectrogram is computed at: enough for max_hz (a multiple of 4 kHz, at least 2.5 x max_hz), never
    above the file's own. A 250 kHz AudioMoth file is not transformed at full rate to draw 0-2 kHz."""
    return int(min(sample_rate, 4000 * np.ceil(2.5 * max_hz / 4000)))


def spectrogram_db(x: np.ndarray, sample_rate: int, axis: FreqAxis = FreqAxis(), px_per_s: float = PX_PER_S,
                   rows: int = IMAGE_ROWS, window_ms: float = 64.0) -> np.ndarray:
    """Magnitude in dB, (rows, columns): row r at axis.row_hz()[r] (top first; -inf above the Nyquist frequency),
    column i centred on (i + 0.5) / px_per_s seconds into x (Hann window of window_ms), so a time t is at
    x = t * px_per_s pixels exactly, whatever the rate."""
    import soxr

    rate = display_rate(sample_rate, axis.max_hz)
    x = np.asarray(x, np.float32)
    if rate < sample_rate:
        x = soxr.resample(x, sample_rate, rate)
    n_fft = int(2 ** np.ceil(np.log2(max(16, rate * window_ms / 1000))))
    cols = max(1, int(round(len(x) / rate * px_per_s)))
    centres = ((np.arange(cols) + 0.5) * rate / px_per_s).astype(np.int64)
    padded = np.pad(x, (n_fft // 2, n_fft // 2 + 1))
    window, offsets = np.hanning(n_fft).astype(np.float32), np.arange(n_fft)
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    f = np.clip(axis.row_hz(rows) / bins[1], 0, len(bins) - 1.001)
    i0, frac = f.astype(int), (f - f.astype(int))[:, None]
    hop = rate / px_per_s
    strided = hop == int(hop) and centres[-1] + n_fft <= len(padded)  # the usual case: a view, no gather
    view = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[centres[0]::int(hop)] if strided else None
    out = np.empty((rows, cols), np.float64)
    for a in range(0, cols, 1024):  # bounded memory for a long clip
        frames = (view[a:min(cols, a + 1024)] if strided
                  else padded[np.minimum(centres[a:a + 1024, None] + offsets, len(padded) - 1)]) * window
        spec = np.fft.rfft(frames, axis=1).T
        power = spec.real ** 2 + spec.imag ** 2
        out[:, a:a + 1024] = power[i0] * (1 - frac) + power[i0 + 1] * frac
    out = 10 * np.log10(out + 1e-20)
    out[axis.row_hz(rows) > rate / 2] = -np.inf
    return out


def spectrogram_levels(x: np.ndarray, sample_rate: int, axis: FreqAxis = FreqAxis(), px_per_s: float = PX_PER_S,
                       rows: int = IMAGE_ROWS, floor_db: float = 2.0, range_db: float = 20.0) -> np.ndarray:
    """(rows, columns) uint8 levels into PALETTE, axis.max_hz at the top, px_per_s columns per second, no axes drawn
    (the review page draws them in HTML beside the image: crisp text, and the ticks stay in the page where a test
    can read them).

    Each frequency row is shown relative to its own noise floor (its median over the clip), from floor_db above
    it (black) to floor_db + range_db (pale yellow), as bioacoustic viewers' noise reduction does: wind and
    handling rumble below 200 Hz, usually the loudest sound of a night recording, would otherwise set the scale
    and leave a call 20 dB quieter in the dark."""
    db = spectrogram_db(x, sample_rate, axis, px_per_s, rows)
    with np.errstate(invalid="ignore"):
        above = db - np.median(db, axis=1, keepdims=True)
    v = np.clip((np.nan_to_num(above, nan=0.0, neginf=0.0) - floor_db) / range_db, 0, 1)
    return np.round(v * 255).astype(np.uint8)


def spectrogram_png_bytes(x: np.ndarray, sample_rate: int, axis: FreqAxis = FreqAxis()) -> bytes:
    return png_bytes(spectrogram_levels(x, sample_rate, axis), PALETTE)


def spectrogram_png(path: str | Path, x: np.ndarray, sample_rate: int, axis: FreqAxis = FreqAxis()) -> Path:
    Path(path).write_bytes(spectrogram_png_bytes(x, sample_rate, axis))
    return Path(path)


def clip_stem(path: Path, detection) -> str:
    """`<recorder>_<file stem>_<start>s_<id>`: recorder id (or the folder's name) for people, and 6 hex digits
    of the recording's content key so two recorders' `20240101_100000.WAV` never overwrite each other's clips."""
    prefix = getattr(detection, "recorder_id", "") or path.resolve().parent.name
    name = path.stem if not prefix or path.stem.startswith(prefix) else f"{prefix}_{path.stem}"
    ident = hashlib.sha256(str(getattr(detection, "file_key", "") or path.resolve()).encode()).hexdigest()[:6]
    return f"{name}_{detection.start_s:08.2f}s_{ident}"


def write_review(path: str | Path, detections, clips_dir: str | Path, pad_s: float = 1.0,
                 axis: FreqAxis = FreqAxis(), room: Callable[[int], bool] | None = None) -> tuple[list[Path], str]:
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
            spectrogram_png(png, x, sr, axis)
        except (OSError, sf.SoundFileError) as exc:
            for f in (wav, png):
                f.unlink(missing_ok=True)
            return written, f"writing {wav.name} failed: {exc}"
        written += [wav, png]
    return written, ""
