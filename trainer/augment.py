"""Training-time augmentation in numpy, applied to raw audio before the shared normalisation.

Random crop position comes from `ClipRef.cut(rng)`; here: a random gain and mixing with a background clip (drawn
from the negative training clips) at a random signal-to-noise ratio, so calls are learnt at field SNRs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentOptions:
    gain_db: float = 6.0              # uniform in [-gain_db, +gain_db]
    mix_probability: float = 0.5      # chance of mixing in a background clip
    snr_db: tuple[float, float] = (0.0, 20.0)

    @property
    def enabled(self) -> bool:
        return self.gain_db > 0 or self.mix_probability > 0


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def mix_at_snr(signal: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + background scaled so that power(signal) / power(scaled background) = snr_db."""
    ps, pb = _power(signal), _power(background)
    if pb <= 1e-20 or ps <= 1e-20:
        return signal.astype(np.float32)
    scale = np.sqrt(ps / (pb * 10 ** (snr_db / 10)))
    return (signal + scale * background).astype(np.float32)


def augment(x: np.ndarray, rng: np.random.Generator, opts: AugmentOptions,
            background: np.ndarray | None = None) -> np.ndarray:
    y = np.asarray(x, np.float32)
    if background is not None and rng.random() < opts.mix_probability:
        y = mix_at_snr(y, background[: len(y)], float(rng.uniform(*opts.snr_db)))
    if opts.gain_db > 0:
        y = y * np.float32(10 ** (rng.uniform(-opts.gain_db, opts.gain_db) / 20))
    return np.clip(y, -1.0, 1.0).astype(np.float32)
