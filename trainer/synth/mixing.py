"""Mixing a sound into a background at a chosen signal-to-noise ratio.

SNR definition used everywhere in hootwatch's synthetic data (and written to ground_truth.csv):

    snr_db = 10 log10( P_signal / P_background )

where both powers are mean power within the sound's band (confusers.BANDS, e.g. 250-1200 Hz for the owl,
measured with an FFT band mask) over the labelled span of the sound (first onset to last offset of the call,
without its reverb tail), P_signal of the propagated sound alone and P_background of the background alone over
the same samples. 0 dB therefore means the call carries as much in-band energy as the noise around it, which
in a spectrogram is a faint but visible call; -5 dB is hard to see.
"""

from __future__ import annotations

import numpy as np

from .propagation import next_fast_len


def draw_snr(rng: np.random.Generator, hard_share: float, hard_db: tuple[float, float],
             easy_db: tuple[float, float]) -> float:
    """The SNR (dB) to mix one sound at: uniform in the hard range for a share `hard_share` of sounds, else in the
    easy range. Two draws from `rng` each time, so a seed makes the same data."""
    lo, hi = hard_db if rng.random() < hard_share else easy_db
    return float(rng.uniform(lo, hi))


def band_power(x: np.ndarray, sample_rate: int, band: tuple[float, float]) -> float:
    """Mean power of x within band (Hz), per sample."""
    if len(x) == 0:
        return 0.0
    nfft = next_fast_len(len(x))   # zero-padded to a fast size; Parseval still holds with nfft below
    spec = np.fft.rfft(x, nfft)
    f = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    sel = (f >= band[0]) & (f <= min(band[1], sample_rate / 2))
    return float(2.0 * np.sum(np.abs(spec[sel]) ** 2) / (nfft * len(x)))


def snr_db(signal: np.ndarray, noise: np.ndarray, sample_rate: int, band: tuple[float, float]) -> float:
    return float(10 * np.log10(band_power(signal, sample_rate, band) / max(band_power(noise, sample_rate, band), 1e-20)))


def mix_at_snr(out: np.ndarray, sound: np.ndarray, start: int, span: tuple[int, int], sample_rate: int,
               band: tuple[float, float], target_db: float, noise_floor: float = 1e-10) -> float:
    """Add `sound` (its labelled samples are sound[span[0]:span[1]]) into `out` at sample `start` so that the
    in-band SNR against what `out` holds there equals target_db. Returns the gain applied.

    `out` must be the background alone over that span (mix events that overlap in an order that keeps it so,
    or accept that the reference then includes earlier events).
    """
    a, b = span
    noise = out[start + a: start + b]
    p_noise = max(band_power(noise, sample_rate, band), noise_floor)
    p_sig = band_power(sound[a:b], sample_rate, band)
    if p_sig <= 0:
        return 0.0
    gain = np.sqrt(p_noise / p_sig * 10 ** (target_db / 10))
    end = min(len(out), start + len(sound))
    out[start:end] += (gain * sound[: end - start]).astype(out.dtype)
    return float(gain)
