"""Synthetic SD-card dumps, training sets and confusers, checked from the files and audio they produce."""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hootwatch.edge.contract import audio
from hootwatch.trainer.synth import cli, confusers
from hootwatch.trainer.synth.backgrounds import find_background_files
from hootwatch.trainer.synth.dump import DumpConfig, write_dump
from hootwatch.trainer.synth.mixing import band_power, draw_snr
from hootwatch.trainer.synth.trainset import TrainSetConfig, write_trainset

AUDIOMOTH = re.compile(r"^(\d{8}_\d{6})\.WAV$")
SONGMETER = re.compile(r"^([A-Za-z0-9_]+)_(\d{8}_\d{6})\.wav$")


def _dump(tmp: Path, hours: float = 0.05, seed: int = 1, backgrounds=None) -> Path:
    write_dump(tmp, DumpConfig(hours=hours, seed=seed, backgrounds=backgrounds))
    return tmp


def _truth(root: Path) -> list[dict]:
    with open(root / "ground_truth.csv", newline="") as f:
        return list(csv.DictReader(f))


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def dump(tmp_path_factory) -> Path:
    return _dump(tmp_path_factory.mktemp("dump"), hours=0.08, seed=3)


def test_names_rates_contiguity(dump):
    files = sorted(p for p in dump.rglob("*") if p.is_file() and p.name != "ground_truth.csv")
    assert files
    kinds, by_rec = set(), {}
    for p in files:
        info = sf.info(str(p))
        assert info.samplerate in (48000, 32000, 24000, 22050) and info.subtype == "PCM_16"
        m_am, m_sm = AUDIOMOTH.match(p.name), SONGMETER.match(p.name)
        assert m_am or m_sm, p.name
        stamp = (m_am or m_sm).group(m_am and 1 or 2)
        kinds.add("am" if m_am else "sm")
        by_rec.setdefault(p.parent.name, []).append((datetime.strptime(stamp, "%Y%m%d_%H%M%S"), info))
    assert kinds == {"am", "sm"}
    assert any("_" in name for name in by_rec if not name.startswith("AM"))  # prefix with underscores
    for recs in by_rec.values():
        recs.sort(key=lambda r: r[0])
        assert len({i.samplerate for _, i in recs}) == 1
        for (t0, i0), (t1, _) in zip(recs, recs[1:]):
            assert t1 == t0 + timedelta(seconds=i0.frames / i0.samplerate)
    assert any(len(r) > 1 for r in by_rec.values())


def test_truth_rows_inside_files_and_owl_is_louder_in_its_band(dump):
    rows = _truth(dump)
    labels = {r["label"] for r in rows}
    assert "owl" in labels and labels <= {"owl", *confusers.CONFUSERS}
    checked = 0
    for r in rows:
        info = sf.info(str(dump / r["file"]))
        a, b = float(r["start_s"]), float(r["end_s"])
        assert 0 <= a < b <= info.frames / info.samplerate
        if r["label"] == "owl" and float(r["snr_db"]) > 3:
            x, sr = sf.read(str(dump / r["file"]), dtype="float32")
            call = x[int(a * sr): int(b * sr)]
            before = x[max(0, int((a - 3) * sr)): int((a - 1) * sr)]
            if len(before) < sr:
                continue
            assert band_power(call, sr, (300, 600)) > 1.5 * band_power(before, sr, (300, 600))
            checked += 1
    assert checked >= 2
    owl_snr = [float(r["snr_db"]) for r in rows if r["label"] == "owl"]
    assert min(owl_snr) > -10 and max(owl_snr) < 30


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _digest(_dump(tmp_path / "a", hours=0.01, seed=7))   # two recorders, each with an owl call
    b = _digest(_dump(tmp_path / "b", hours=0.01, seed=7))
    c = _digest(_dump(tmp_path / "c", hours=0.01, seed=8))
    assert a == b and a != c
    assert {r["label"] for r in _truth(tmp_path / "a")} >= {"owl"}


def _found_in(stretch: np.ndarray, sr: int, recordings: list[Path], cache: dict) -> bool:
    """Whether `stretch` is, up to a gain, a stretch of one of `recordings` (read as the pool reads them: the
    edge's decoder and resampler, mean removed): normalised cross-correlation above 0.95 at some offset."""
    n = len(stretch)
    s = stretch - stretch.mean()
    s /= np.linalg.norm(s)
    for i, path in enumerate(recordings):
        if (path, sr) not in cache:
            x = audio.load(path, sr).astype(np.float64)
            x -= x.mean()
            size = 1 << int(np.ceil(np.log2(len(x) + n)))
            cache[path, sr] = x, size, np.fft.rfft(x, size), np.concatenate([[0.0], np.cumsum(x * x)])
        x, size, spectrum, energy = cache[path, sr]
        if len(x) < n:
            continue
        dot = np.fft.irfft(spectrum * np.conj(np.fft.rfft(s, size)), size)[: len(x) - n + 1]
        if np.max(np.abs(dot) / np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-30))) > 0.95:
            recordings.insert(0, recordings.pop(i))  # the next stretch is likely of the same piece: try it first
            return True
    return False


def test_real_backgrounds(tmp_path, shared_real):
    """Between the calls, the dump is the real training recordings: its quiet half-seconds are found, sample for
    sample, in them (in synthetic night noise none is)."""
    summary = write_dump(tmp_path, DumpConfig(hours=0.02, seed=2, backgrounds=shared_real))
    assert summary.background == "real" and _truth(tmp_path)
    recordings, cache = find_background_files(shared_real), {}
    found = checked = 0
    for rel in summary.files:
        x, sr = sf.read(str(tmp_path / rel), dtype="float64")
        busy = [(float(r["start_s"]) - 2, float(r["end_s"]) + 2) for r in _truth(tmp_path) if r["file"] == rel]
        for a in np.arange(0.0, len(x) / sr - 0.5, 4.0):  # half-seconds 2 s clear of every call and texture
            if not any(a < end and a + 0.5 > begin for begin, end in busy):
                checked += 1
                found += _found_in(x[int(a * sr): int(a * sr) + sr // 2], sr, recordings, cache)
    # a stretch that falls on a crossfade between two pieces of background may match neither
    assert checked >= 4 and found >= 0.75 * checked, (found, checked)


def test_trainset_layout_balance_and_variety(tmp_path):
    summary = write_trainset(tmp_path, TrainSetConfig(clips=40, seed=5))
    with open(tmp_path / "recordings.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 == summary.n_clips
    owl = [r for r in rows if r["file"].startswith("owl/")]
    assert 0.15 <= len(owl) / len(rows) <= 0.55
    infos = [sf.info(str(tmp_path / r["file"])) for r in rows]
    lengths = [i.frames / i.samplerate for i in infos]
    assert min(lengths) >= 4.99 and max(lengths) <= 7.51 and np.std(lengths) > 0.3
    assert len({i.samplerate for i in infos}) >= 2
    for r in rows:
        assert Path(r["file"]).name.startswith(r["recording"] + "_")
    # both classes share recordings (split by recording keeps them together)
    recs_owl = {r["recording"] for r in owl}
    recs_neg = {r["recording"] for r in rows if r["file"].startswith("not_owl/")}
    assert recs_owl & recs_neg


def test_every_window_crop_of_an_owl_clip_holds_the_whole_call():
    """Measured from the waveform: the call's band energy lies inside [L - 5, 5] s, the stretch that every
    5 s crop of an L-second clip shares, so the trainer's random crops never make a call-free "owl" window."""
    from hootwatch.trainer.synth import calls
    from hootwatch.trainer.synth.trainset import Recording, make_clip

    cfg = TrainSetConfig(hard_share=0.0, easy_snr_db=(25.0, 25.0))
    rng = np.random.default_rng(11)
    sr, hop = 16000, 800
    for _ in range(8):
        rec = Recording(rid=1, sample_rate=sr, channels=1, ext="wav", individual=calls.sample_individual(rng),
                        sources=None)
        x, kind = make_clip(rng, rec, True, None, cfg)
        length = len(x) / sr
        spec = np.abs(np.fft.rfft(x[: len(x) // hop * hop].reshape(-1, hop) * np.hanning(hop), axis=1)) ** 2
        f = np.fft.rfftfreq(hop, 1 / sr)
        band = spec[:, (f >= 300) & (f <= 700)].sum(axis=1)
        loud = np.flatnonzero(band > 30 * np.median(band))
        assert kind == "owl" and len(loud)
        onset = loud[0] * hop / sr
        assert onset >= length - 5.0 - 0.1, (onset, length)
        assert onset + 1.2 <= 5.0 + 0.1, (onset, length)  # the double note lasts at least ~1.2 s


def test_boobook_matches_real_raven_tables(shared_real):
    spans = []
    for table in sorted((shared_real / "boobook" / "positive").glob("*.selections.txt")):
        with open(table, newline="") as f:
            for r in csv.DictReader(f, delimiter="\t"):
                dur = float(r["End Time (s)"]) - float(r["Begin Time (s)"])
                if dur > 0.2:
                    spans.append((dur, float(r["Low Freq (Hz)"]), float(r["High Freq (Hz)"])))
    real_dur = np.array([s[0] for s in spans])
    rng = np.random.default_rng(0)
    synth = []
    for _ in range(10):
        x, calls = confusers.boobook(rng, 24000)
        for a, b in calls:
            seg = x[int(a * 24000): int(b * 24000)]
            spec = np.abs(np.fft.rfft(seg, 1 << 15))
            f = np.fft.rfftfreq(1 << 15, 1 / 24000)
            synth.append((b - a, f[np.argmax(spec * (f > 100))]))
    durs = np.array([s[0] for s in synth])
    # a Raven box is drawn a little wider than the sound: synthetic spans sit at or below the real boxes
    assert np.percentile(real_dur, 10) - 0.25 < np.median(durs) <= np.percentile(real_dur, 90)
    lo, hi = min(s[1] for s in spans), max(s[2] for s in spans)
    assert all(lo <= p <= hi for _, p in synth)


@pytest.mark.parametrize("name", list(confusers.CONFUSERS))
def test_confusers_return_audio_and_spans(name):
    rng = np.random.default_rng(1)
    x, spans = confusers.CONFUSERS[name](rng, 22050)
    assert x.dtype == np.float32 and np.abs(x).max() == pytest.approx(1.0, abs=1e-3)
    assert spans and all(0 <= a < b <= (len(x) + 2) / 22050 for a, b in spans)
    lo, hi = confusers.BANDS[name]
    in_band = band_power(x, 22050, (lo, hi))
    assert in_band > 0.5 * band_power(x, 22050, (0, 11025))


def test_cli_registers_dump_and_train(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "dump", str(tmp_path / "d"), "--hours", "0.01", "--seed", "4",
                              "--synthetic-backgrounds"])
    assert args.func(args) == 0
    assert (tmp_path / "d" / "ground_truth.csv").is_file()
    args = parser.parse_args(["synth", "train", str(tmp_path / "t"), "--clips", "6", "--synthetic-backgrounds"])
    assert args.func(args) == 0
    assert "clips" in capsys.readouterr().out


def test_audiomoth_and_song_meter_names_give_one_timeline(tmp_path):
    """AudioMoth names are UTC, Song Meter names local time: read back, both recorders start the same evening."""
    from datetime import datetime, timezone

    from hootwatch.edge.contract.recorder_time import file_time

    root = _dump(tmp_path, hours=0.05, seed=4)
    starts = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() == ".wav":
            ft = file_time(p, "Australia/Sydney")
            starts.setdefault(ft.source, []).append(ft.start_utc)
    assert {"filename_audiomoth", "filename_songmeter"} <= set(starts)
    dusk_utc = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)  # 19:00 in Sydney (AEST, UTC+10)
    for source, times in starts.items():
        assert all(0 <= (t - dusk_utc).total_seconds() <= 3600 for t in times), (source, times)


def test_training_backgrounds_and_evaluation_recordings_are_disjoint(shared_real):
    """No false-positive figure is measured on a recording the model heard as a training background."""
    from hootwatch.trainer.synth.backgrounds import evaluation_files, find_background_files

    train = {p.resolve() for p in find_background_files(shared_real)}
    evaluation = {p.resolve() for files in evaluation_files(shared_real).values() for p in files}
    every = {p.resolve() for p in shared_real.rglob("*") if p.suffix.lower() in (".wav", ".ogg", ".flac")}
    assert train and evaluation
    assert not train & evaluation
    assert train | evaluation == every
    names = {p.name for p in evaluation}
    assert any(n.startswith("miles_") for n in names)            # a site the model never heard
    assert "S4A03895_20190522_000000.wav" in names and "S4A03895_20190522_190000.wav" not in names
    assert not any("positive" in p.parts or "misc" in p.parts for p in train)


def test_demo_says_which_backgrounds_it_uses_and_why(tmp_path, shared_real):
    from hootwatch.export.demo import DemoOptions, choose_backgrounds

    folder, why = choose_backgrounds(DemoOptions(backgrounds=None))
    assert folder == shared_real.resolve() or folder == shared_real
    assert why.startswith("real:") and "evaluation-only" in why
    assert choose_backgrounds(DemoOptions(synthetic_backgrounds=True)) == (
        None, "synthetic night noise (--synthetic-backgrounds)")


def test_demo_without_shared_recordings_says_it_uses_synthetic_noise(monkeypatch):
    from hootwatch.export import demo
    from hootwatch.trainer.synth import backgrounds

    monkeypatch.setattr(backgrounds, "default_background_dir", lambda: None)
    folder, why = demo.choose_backgrounds(demo.DemoOptions())
    assert folder is None and "synthetic" in why and "fresh clone" in why and "--backgrounds" in why


def test_the_snr_draw_is_one_draw_for_the_range_then_one_for_the_value():
    # the dump and the training set both draw this way: the same seed must keep making the same data
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    got = [draw_snr(a, 0.3, (-3.0, 3.0), (3.0, 20.0)) for _ in range(200)]
    want = [float(b.uniform(*((-3.0, 3.0) if b.random() < 0.3 else (3.0, 20.0)))) for _ in range(200)]
    assert got == want and a.random() == b.random()
    assert min(got) < 3.0 < max(got)
