"""The review spectrogram: one time scale whatever the rate, rows where the frequency axis says they are."""

import numpy as np
import pytest

from hootwatch.edge.contract.bundle import DEFAULT_DISPLAY
from hootwatch.edge.scan.material import IMAGE_ROWS, PX_PER_S, FreqAxis, spectrogram_levels, view_axis


def _tone(sr: int, seconds: float, hz: float, at: tuple[float, float]) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return (noise + 0.5 * np.sin(2 * np.pi * hz * t) * ((t >= at[0]) & (t < at[1]))).astype(np.float32)


@pytest.mark.parametrize("sr", [8000, 48000])
@pytest.mark.parametrize("axis", [FreqAxis(), FreqAxis(0, 2000, "mel"), view_axis(DEFAULT_DISPLAY, "band")])
def test_a_tone_is_drawn_where_the_axis_puts_it_at_80_px_a_second(sr, axis):
    img = spectrogram_levels(_tone(sr, 11.5, 450.0, (4.0, 7.0)), sr, axis)
    assert img.shape == (IMAGE_ROWS, round(11.5 * PX_PER_S))
    lit = img[:, 5 * PX_PER_S]  # 5 s in: inside the tone
    row = np.nonzero(lit == lit.max())[0].mean()  # the middle of the brightest rows
    assert abs(row + 0.5 - axis.position(450.0) * IMAGE_ROWS) <= 3
    cols = np.nonzero(img.max(axis=0) > 200)[0]  # the tone's columns: 4 s to 7 s at 80 px/s
    assert abs(cols.min() - 4 * PX_PER_S) <= 6 and abs(cols.max() - 7 * PX_PER_S) <= 6
    assert img[:, 2 * PX_PER_S].max() < 200  # before it: noise, not drawn bright
