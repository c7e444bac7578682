"""The audio contract shared by training and the edge: decoding, resampling, windows, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from hootwatch.edge.contract import audio
from hootwatch.edge.core.errors import AudioReadError
from hootwatch.edge.contract.preprocess import Normalisation
from hootwatch.edge.contract.windows import (WindowSpec, WindowStream, clip_times, fit_length, slice_windows,
                                             window_starts)


def tone(sr: float, seconds: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_decodes_formats_resampled_to_the_requested_rate(tmp_path, fmt, ext):
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(48000, 3.0, 440.0, channels=2), 48000, format=fmt)
    x = audio.load(path, 16000)
    assert x.ndim == 1 and x.dtype == np.float32
    assert abs(len(x) - 3 * 16000) < 16000 * 0.1  # MP3 adds encoder delay/padding
    assert abs(dominant_hz(x, 16000) - 440.0) < 5


def test_block_decoding_equals_whole_file_decoding(tmp_path):
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(path, rng.normal(0, 0.1, 22050 * 7).astype(np.float32), 22050, subtype="FLOAT")
    whole = audio.load(path, 16000)
    blocks = list(audio.iter_blocks(path, 16000, block_s=0.7))
    assert len(blocks) > 5
    assert np.allclose(np.concatenate(blocks), whole, atol=1e-6)
    assert abs(len(whole) - 7 * 16000) <= 1


def test_segment_load_matches_the_slice_of_the_file(tmp_path):
    path = tmp_path / "seg.wav"
    sf.write(path, tone(16000, 10.0, 300.0), 16000, subtype="FLOAT")
    seg = audio.load(path, 16000, start_s=2.0, duration_s=5.0)
    assert np.allclose(seg, tone(16000, 10.0, 300.0)[32000:112000], atol=1e-6)


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"this is not audio at all" * 10, "cannot be decoded"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cannot be decoded"),
])
def test_bad_files_raise_an_error_naming_the_file_and_the_fix(tmp_path, content, needle):
    path = tmp_path / "20240101_000000.WAV"
    path.write_bytes(content)
    with pytest.raises(AudioReadError) as err:
        audio.load(path, 16000)
    assert str(path) in str(err.value) and needle in str(err.value)
    assert err.value.hint


def test_missing_file_error(tmp_path):
    with pytest.raises(AudioReadError, match="no such file"):
        audio.probe(tmp_path / "nope.wav")


def test_window_starts_cover_the_tail_without_padding():
    spec = WindowSpec(1000, 5.0, 2.5)
    starts = window_starts(12_300, spec)
    assert list(starts) == [0, 2500, 5000, 7300]  # last window aligned to the end
    assert starts[-1] + spec.window_samples == 12_300
    assert list(window_starts(10_000, spec)) == [0, 2500, 5000]
    assert list(window_starts(3_000, spec)) == [0]
    assert len(window_starts(0, spec)) == 0
    assert clip_times(12.3, spec)[-1] == (7.3, 12.3)


def test_overlapping_hop_means_every_short_call_is_whole_in_some_window():
    spec = WindowSpec(100, 5.0, 2.5)
    n = 100 * 60
    starts = window_starts(n, spec)
    for call_start in np.arange(0, 59, 0.1):  # a 2 s call anywhere in a minute
        a, b = int(call_start * 100), int(min(call_start + 2.0, 60) * 100)
        assert any(s <= a and b <= s + spec.window_samples for s in starts), call_start


def test_stream_windows_equal_batch_windows_for_any_block_size():
    spec = WindowSpec(100, 5.0, 2.5)
    x = np.random.default_rng(1).normal(size=1234).astype(np.float32)
    ref_starts, ref = slice_windows(x, spec)
    for block in (1, 7, 100, 499, 5000):
        ws = WindowStream(spec)
        got = []
        for i in range(0, len(x), block):
            got += ws.push(x[i:i + block])
        got += ws.finish()
        assert [s for s, _ in got] == list(ref_starts)
        assert np.array_equal(np.stack([w for _, w in got]), ref)


def test_short_audio_is_reflection_padded_not_silence():
    x = np.random.default_rng(2).normal(size=300).astype(np.float32) + 0.1
    y = fit_length(x, 1000)
    assert len(y) == 1000
    assert not np.any(y == 0.0)
    assert np.array_equal(y[350:650], x)  # centred
    assert np.array_equal(fit_length(x, 100), x[:100])


def test_normalisation_zero_mean_unit_variance_per_window():
    rng = np.random.default_rng(3)
    w = rng.normal(0.03, 0.2, size=(4, 8000)).astype(np.float32)  # DC offset as on real recorders
    y = Normalisation().apply(w)
    assert np.allclose(y.mean(axis=1), 0, atol=1e-5)
    assert np.allclose(y.std(axis=1), 1, atol=1e-3)
    assert np.array_equal(Normalisation("none").apply(w), w)
    with pytest.raises(ValueError):
        Normalisation("minmax")


def _tone(freq: float, sr: int = 16000, n: int = 80000, amp: float = 1.0) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def test_band_limit_keeps_the_call_band_and_removes_rumble_and_insects():
    from hootwatch.edge.contract.preprocess import band_limit

    sr = 16000
    # order-4 Butterworth magnitude: -32 dB at 60 Hz, -24 dB at 6 kHz
    for freq, lo, hi in ((450.0, 0.99, 1.01), (60.0, 0.0, 0.03), (6000.0, 0.0, 0.07)):
        y = band_limit(_tone(freq)[None], sr, 150.0, 3000.0)[0]
        assert lo <= _rms(y) / _rms(_tone(freq)) <= hi, freq
    # zero phase: the owl-band tone comes out where it went in
    y = band_limit(_tone(450.0)[None], sr, 150.0, 3000.0)[0]
    assert np.corrcoef(y[1000:-1000], _tone(450.0)[1000:-1000])[0, 1] > 0.999


def test_band_limit_does_not_ring_at_the_window_edges():
    from hootwatch.edge.contract.preprocess import band_limit

    # rumble that does not fit the window a whole number of times, plus a drift: the window's end and start differ
    sr, t = 16000, np.arange(80000) / 16000
    call = 0.01 * np.sin(2 * np.pi * 450.3 * t)
    x = (0.5 * np.sin(2 * np.pi * 40.7 * t) + 0.06 * t + call).astype(np.float32)
    residual = band_limit(x[None], sr, 150.0, 3000.0)[0] - call
    edge = max(np.abs(residual[:320]).max(), np.abs(residual[-320:]).max())   # first and last 20 ms
    middle = np.abs(residual[30000:50000]).max()
    assert edge < 1.5 * middle + 1e-4 and edge < 0.003


def test_band_limited_normalisation_gives_a_call_under_wind_back_its_share():
    sr = 16000
    call, wind = _tone(450.0, amp=0.01), _tone(40.0, amp=0.2) + np.float32(0.03)   # 26 dB louder, DC offset too
    plain = Normalisation().apply(call + wind)
    banded = Normalisation(highpass_hz=150.0, lowpass_hz=3000.0).apply(call + wind, sr)
    assert np.allclose(banded.mean(), 0, atol=1e-4) and np.isclose(banded.std(), 1, atol=1e-3)
    # after scaling, the call is the window: correlation with it near 1 (near 0 without the band limit)
    assert np.corrcoef(banded, call)[0, 1] > 0.98
    assert abs(np.corrcoef(plain, call)[0, 1]) < 0.2
    with pytest.raises(ValueError, match="sample rate"):
        Normalisation(highpass_hz=150.0).apply(call)


def test_normalisation_round_trips_and_refuses_what_it_does_not_know():
    n = Normalisation(highpass_hz=150.0, lowpass_hz=3000.0)
    assert Normalisation.from_dict(n.to_dict()) == n
    assert Normalisation().to_dict() == {"kind": "zero_mean_unit_var", "eps": 1e-7}   # earlier bundles unchanged
    with pytest.raises(ValueError, match="unknown normalisation field"):
        Normalisation.from_dict({"kind": "zero_mean_unit_var", "eps": 1e-7, "pre_emphasis": 0.97})
    with pytest.raises(ValueError):
        Normalisation(highpass_hz=3000.0, lowpass_hz=150.0)
