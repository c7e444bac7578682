"""Normalisation of model input, identical in training (trainer) and in the field (edge).

It reproduces the transformers Wav2Vec2FeatureExtractor in numpy: with do_normalize, each window is scaled to
zero mean and unit variance, `(x - mean) / sqrt(var + 1e-7)`. Per-window normalisation also removes the DC
offsets that real recorders show. The exact parameters travel in the bundle manifest.

An optional band limit (`highpass_hz`, `lowpass_hz`) is applied to each window before scaling. Field audio is
often dominated by sound far from the call: wind and handling rumble below 200 Hz, insect choruses above
3 kHz. Scaled to unit variance, such a window leaves the call a fraction of a percent of its energy (measured
on the synthetic nights over real backgrounds: owl calls at 10-20 dB SNR in their own band held under 1 % of
the window's energy). The filter is a zero-phase Butterworth magnitude response (order 4) applied in the
frequency domain of the window, in numpy only, so the edge needs no scipy. The window is extended by 0.1 s
on each side first, by odd reflection (as scipy's filtfilt does: value and slope stay continuous): the FFT treats a
window as periodic, and without it the jump between its end and its start (wind never ends where it began) would
ring at both edges.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

KINDS = ("zero_mean_unit_var", "none")
# key under which the trainer stamps the normalisation into a checkpoint's preprocessor_config.json
FEATURE_EXTRACTOR_KEY = "hootwatch_normalisation"
FILTER_ORDER = 4
EDGE_PAD_S = 0.1


@dataclass(frozen=True)
class Normalisation:
    kind: str = "zero_mean_unit_var"
    eps: float = 1e-7
    highpass_hz: float | None = None
    lowpass_hz: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown normalisation {self.kind!r}; expected one of {KINDS}")
        for name in ("highpass_hz", "lowpass_hz"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive or None, got {v}")
        if self.highpass_hz and self.lowpass_hz and self.highpass_hz >= self.lowpass_hz:
            raise ValueError(f"highpass_hz ({self.highpass_hz}) must be below lowpass_hz ({self.lowpass_hz})")

    @property
    def band_limited(self) -> bool:
        return bool(self.highpass_hz or self.lowpass_hz)

    @classmethod
    def from_feature_extractor(cls, do_normalize: bool, highpass_hz: float | None = None,
                               lowpass_hz: float | None = None) -> "Normalisation":
        return cls("zero_mean_unit_var" if do_normalize else "none", highpass_hz=highpass_hz, lowpass_hz=lowpass_hz)

    @classmethod
    def from_dict(cls, d: dict) -> "Normalisation":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:  # a newer format: silently dropping a step would change every score
            raise ValueError(f"unknown normalisation field(s) {sorted(unknown)}")
        band = {k: (float(d[k]) if d.get(k) is not None else None) for k in ("highpass_hz", "lowpass_hz")}
        return cls(kind=str(d["kind"]), eps=float(d.get("eps", 1e-7)), **band)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "eps": self.eps}
        if self.band_limited:  # bundles without a band keep their earlier form
            d.update(highpass_hz=self.highpass_hz, lowpass_hz=self.lowpass_hz)
        return d

    def apply(self, windows: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """windows: (n_samples,) or (batch, n_samples) float -> float32 of the same shape. `sample_rate` is
        needed when the normalisation has a band limit."""
        x = np.asarray(windows, dtype=np.float32)
        if self.band_limited:
            if not sample_rate:
                raise ValueError("a band-limited normalisation needs the sample rate")
            if self.highpass_hz and self.highpass_hz >= sample_rate / 2:
                raise ValueError(f"highpass_hz {self.highpass_hz:g} is not below half the sample rate "
                                 f"({sample_rate / 2:g} Hz): nothing would be left")
            x = band_limit(x, sample_rate, self.highpass_hz, self.lowpass_hz)
        if self.kind == "none":
            return x
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        return ((x - mean) / np.sqrt(var + self.eps)).astype(np.float32)


def band_gain(freqs: np.ndarray, highpass_hz: float | None, lowpass_hz: float | None,
              order: int = FILTER_ORDER) -> np.ndarray:
    """Butterworth magnitude response of the band at `freqs` (Hz)."""
    g = np.ones_like(freqs, dtype=np.float64)
    if highpass_hz:
        with np.errstate(divide="ignore"):
            g = g / np.sqrt(1.0 + (highpass_hz / np.maximum(freqs, 1e-9)) ** (2 * order))
    if lowpass_hz:
        g = g / np.sqrt(1.0 + (freqs / lowpass_hz) ** (2 * order))
    return g


def band_limit(x: np.ndarray, sample_rate: int, highpass_hz: float | None, lowpass_hz: float | None) -> np.ndarray:
    """Zero-phase band limit of each window (last axis), float32 out.

    In float32 (numpy >= 2 transforms float32 as float32): 1.7x faster than in float64, within 2e-7 of it relative to
    the window's peak; every window of a scan pays it, the cascade's rejected ones too (bench/scan_throughput.py)."""
    n = x.shape[-1]
    if n < 2:
        return np.asarray(x, np.float32)
    pad = min(n - 1, int(round(EDGE_PAD_S * sample_rate)))
    padded = np.pad(np.asarray(x, np.float32), [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect",
                    reflect_type="odd")
    m = padded.shape[-1]
    spectrum = np.fft.rfft(padded, axis=-1)
    spectrum *= band_gain(np.fft.rfftfreq(m, 1.0 / sample_rate), highpass_hz, lowpass_hz).astype(np.float32)
    return np.fft.irfft(spectrum, n=m, axis=-1)[..., pad:pad + n].astype(np.float32)
