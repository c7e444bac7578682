"""Training cuts its random windows from short files decoded once (trainer.data.dataset.DecodedFiles)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")

from hootwatch.edge.contract.clips import ClipRef  # noqa: E402
from hootwatch.trainer.data.dataset import DecodedFiles  # noqa: E402


@pytest.mark.parametrize("file_rate", [16000, 22050])
def test_a_cached_cut_is_the_window_a_decode_gives_and_augmenting_it_leaves_the_cache_alone(tmp_path, file_rate):
    rng = np.random.default_rng(0)
    path = tmp_path / "clip.wav"
    t = np.arange(int(9.0 * file_rate)) / file_rate     # an owl's band: a sub-sample offset moves little
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (330.0, 470.0, 940.0, 1410.0))
    sf.write(path, (0.05 * x).astype(np.float32), file_rate)
    clip = ClipRef(str(path), 1.0, 8.5, "owl", "r1")
    files = DecodedFiles(16000)
    for seed in range(5):
        cached = files.cut(clip, 5.0, np.random.default_rng(seed))
        direct = clip.cut(16000, 5.0, np.random.default_rng(seed))
        assert cached.shape == direct.shape == (80000,)
        # same position from the same draw: exactly, at the file's own rate; within one sample (62 us) where the
        # file is resampled (a segment decode starts the resampler on the file's own grid)
        if file_rate == 16000:
            assert np.array_equal(cached, direct)
        else:
            best = min(np.abs(cached[100 + k:-100 + k] - direct[100:-100]).max() for k in (-1, 0, 1))
            assert best < 0.1 * np.abs(direct).max()
        cached *= 0.0                                      # what an in-place augmentation would do
    assert files.bytes > 0 and np.abs(files.cut(clip, 5.0, np.random.default_rng(0))).max() > 0


def test_long_recordings_and_a_full_cache_are_cut_from_disk(tmp_path):
    path = tmp_path / "night.wav"
    sf.write(path, np.zeros(16000 * 70, np.float32), 16000)
    files = DecodedFiles(16000, max_s=60.0)
    files.cut(ClipRef(str(path), 10.0, 20.0, "not_owl", "r"), 5.0, np.random.default_rng(0))
    assert files.bytes == 0
    small = tmp_path / "small.wav"
    sf.write(small, np.zeros(16000 * 10, np.float32), 16000)
    tight = DecodedFiles(16000, max_bytes=1000)
    assert tight.cut(ClipRef(str(small), 0.0, 10.0, "owl", "r"), 5.0, np.random.default_rng(0)).shape == (80000,)
    assert tight.bytes == 0
