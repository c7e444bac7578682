"""Label-folder and audiofolder loading, recording ids, and splits that cannot leak."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hootwatch.edge.contract.clips import ClipRef
from hootwatch.edge.core.errors import HootwatchError
from hootwatch.trainer.data.sources import HarvestOptions, load_clips, recording_from_name, split_long
from hootwatch.trainer.data.splits import (Splits, SplitError, apply_explicit_split, split_by_recording,
                                           summary)
from test_data_fixtures import make_label_folders


def clips_of(label: str, recordings: int, per: int) -> list[ClipRef]:
    return [ClipRef(f"/x/{label}{r}_{k}.wav", 0, 5, label, f"{label}rec{r}") for r in range(recordings)
            for k in range(per)]


def test_recording_from_name():
    assert recording_from_name(Path("site3_rec12_003.wav")) == "site3_rec12"
    assert recording_from_name(Path("clip-7.flac")) == "clip"
    assert recording_from_name(Path("S4A03895_20200101_120000.wav")) == "S4A03895_20200101_120000"
    assert recording_from_name(Path("20240101_230000.WAV")) == "20240101_230000"


def test_long_files_give_non_overlapping_regions():
    regs = split_long(0.0, 23.0, 5.0, 20)
    assert len(regs) == 4 and regs[0][0] == 0.0 and regs[-1][1] == 23.0
    assert all(b - a >= 5.0 for a, b in regs) and all(regs[i][1] <= regs[i + 1][0] for i in range(3))
    assert split_long(0.0, 3.0, 5.0, 20) == [(0.0, 3.0)]


def test_label_folders_any_rate_and_unreadable_skipped(tmp_path, caplog):
    make_label_folders(tmp_path, n_recordings=3, clips_per_recording=2)
    (tmp_path / "owl" / "broken_001.wav").write_bytes(b"RIFF....not audio")
    sf.write(tmp_path / "owl" / "long_000.flac", np.zeros(16000 * 12, np.float32), 16000)
    quiet = np.random.default_rng(0).normal(0, 0.01, 16000 * 12).astype(np.float32)  # not a copy of long_000
    sf.write(tmp_path / "not_owl" / "longneg_000.flac", quiet, 16000)
    with caplog.at_level(logging.WARNING):
        loaded = load_clips(str(tmp_path), HarvestOptions(window_s=5.0), 16000, tmp_path / "cache")
    assert any("broken_001.wav" in s for s in loaded.skipped)
    assert "broken_001.wav" in caplog.text
    long_regions = [c for c in loaded.clips if c.source.endswith("long_000.flac")]
    assert len(long_regions) == 1 and long_regions[0].region_end_s == 12.0  # the call is somewhere in it
    long_negatives = [c for c in loaded.clips if c.source.endswith("longneg_000.flac")]
    assert len(long_negatives) == 2 and {c.recording for c in long_negatives} == {"longneg"}
    assert {c.label for c in loaded.clips} == {"owl", "not_owl"}
    assert {c.recording for c in loaded.clips if c.label == "owl"} == {"rec00owl", "rec01owl", "rec02owl", "long"}
    for c in loaded.clips[:6]:
        assert c.cut(16000, 5.0, np.random.default_rng(1)).shape == (80000,)


def test_recordings_csv_names_groups(tmp_path):
    make_label_folders(tmp_path, n_recordings=2, clips_per_recording=2)
    rows = ["file,recording,site"] + [f"{p.relative_to(tmp_path)},R{p.stem},SITE{i % 2}"
                                      for i, p in enumerate(sorted(tmp_path.rglob("*.wav")))]
    (tmp_path / "recordings.csv").write_text("\n".join(rows) + "\n")
    loaded = load_clips(str(tmp_path), HarvestOptions(), 16000, tmp_path / "cache")
    assert {c.recording for c in loaded.clips} == {"SITE0", "SITE1"}  # site wins over recording


def test_split_by_recording_never_leaks_and_has_both_classes():
    clips = clips_of("owl", 7, 3) + clips_of("not_owl", 20, 5)
    for seed in range(5):
        s = split_by_recording(clips, 0.15, 0.15, seed)
        sides = {}
        for name, part in s.items():
            assert {c.label for c in part} == {"owl", "not_owl"}
            for c in part:
                assert sides.setdefault(c.recording, name) == name
        assert sum(len(p) for _, p in s.items()) == len(clips)  # nothing dropped, nothing duplicated
        summ = summary(s)
        assert summ["splits"]["train"]["owl"]["recordings"] >= 4
        assert sum(summ["splits"][n]["_total"]["clips"] for n in ("train", "validation", "test")) == len(clips)


def test_recordings_holding_both_classes_stay_together():
    clips = [ClipRef(f"/r{r}.wav", t, t + 6, lab, f"r{r}") for r in range(8)
             for t, lab in ((0, "owl"), (10, "not_owl"), (20, "not_owl"))]
    s = split_by_recording(clips, 0.2, 0.2, 0)
    groups = [{c.recording for c in part} for _, part in s.items()]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])


def test_class_too_small_is_refused_with_its_name():
    with pytest.raises(SplitError) as exc:
        split_by_recording(clips_of("owl", 2, 5) + clips_of("not_owl", 10, 5))
    assert "'owl'" in str(exc.value) and "2 recordings" in str(exc.value) and "fix:" in str(exc.value)
    with pytest.raises(SplitError, match="'owl' has too few examples: 3 clips"):
        split_by_recording(clips_of("owl", 3, 1) + clips_of("not_owl", 10, 5))
    with pytest.raises(SplitError, match="only one class"):
        split_by_recording(clips_of("not_owl", 10, 5))


def test_explicit_split_folders_and_leak_refusal(tmp_path):
    for split, seed in (("train", 1), ("validation", 2), ("test", 3)):
        make_label_folders(tmp_path / split, n_recordings=2, clips_per_recording=2, seed=seed)
    # distinct recordings per split: rename files with the split in the name
    for p in list(tmp_path.rglob("*.wav")):
        split = p.relative_to(tmp_path).parts[0]
        p.rename(p.with_name(f"{split}{p.name}"))
    loaded = load_clips(str(tmp_path), HarvestOptions(), 16000, tmp_path / "cache")
    s = apply_explicit_split(loaded.clips, loaded.explicit_split)
    assert all(c.source.split("/")[-3] == "train" for c in s.train)
    assert all(c.source.split("/")[-3] == "test" for c in s.test)
    # now one recording appears in train and in test
    src = next((tmp_path / "train" / "owl").glob("*.wav"))
    (tmp_path / "test" / "owl" / src.name).write_bytes(src.read_bytes())
    loaded = load_clips(str(tmp_path), HarvestOptions(), 16000, tmp_path / "cache")
    with pytest.raises(SplitError) as exc:
        apply_explicit_split(loaded.clips, loaded.explicit_split)
    assert recording_from_name(src) in str(exc.value) and "test and train" in str(exc.value)


def test_split_column_in_recordings_csv(tmp_path):
    make_label_folders(tmp_path, n_recordings=3, clips_per_recording=2)
    files = sorted(tmp_path.rglob("*.wav"))
    split_of = {0: "train", 1: "validation", 2: "test"}
    rows = ["file,recording,split"]
    for p in files:
        r = int(p.name[3:5])
        rows.append(f"{p.relative_to(tmp_path)},{p.parent.name}{r},{split_of[r]}")
    (tmp_path / "recordings.csv").write_text("\n".join(rows) + "\n")
    loaded = load_clips(str(tmp_path), HarvestOptions(), 16000, tmp_path / "cache")
    s = apply_explicit_split(loaded.clips, loaded.explicit_split)
    assert {c.recording for c in s.validation} == {"owl1", "not_owl1"}
    rows[1] = rows[1].rsplit(",", 1)[0] + ",test"  # first clip of recording not_owl0 moved to test: a leak
    (tmp_path / "recordings.csv").write_text("\n".join(rows) + "\n")
    loaded = load_clips(str(tmp_path), HarvestOptions(), 16000, tmp_path / "cache")
    with pytest.raises(SplitError, match="not_owl0"):
        apply_explicit_split(loaded.clips, loaded.explicit_split)


def write_parquet_dataset(root: Path, splits: dict[str, int], seed: int = 0, length_s: float = 2.5) -> Path:
    """A Hugging Face audio dataset as the hub stores it (parquet with an Audio column and a ClassLabel)."""
    import io

    import datasets

    from test_data_fixtures import clip

    rng = np.random.default_rng(seed)
    feats = datasets.Features({"audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                               "label": datasets.ClassLabel(names=["not_owl", "owl"]),
                               "recording": datasets.Value("string")})
    (root / "data").mkdir(parents=True)
    for split, n in splits.items():
        rows = {"audio": [], "label": [], "recording": []}
        for i in range(n):
            lab = i % 2
            sr = (22050, 48000)[i % 2]
            buf = io.BytesIO()
            sf.write(buf, clip(("not_owl", "owl")[lab], sr, length_s, rng), sr, format="FLAC")
            rows["audio"].append({"bytes": buf.getvalue(), "path": f"{split}_{i}.flac"})
            rows["label"].append(lab)
            rows["recording"].append(f"{split}-rec{i // 2}")
        ds = datasets.Dataset.from_dict(rows, features=feats).cast_column("audio", datasets.Audio(decode=False))
        ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def test_hf_dataset_decoded_resampled_and_split(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    data = write_parquet_dataset(tmp_path / "ds", {"train": 8, "test": 4})
    loaded = load_clips(str(data), HarvestOptions(window_s=2.0), 8000, tmp_path / "cache", fmt="hf")
    assert len(loaded.clips) == 12
    assert {c.label for c in loaded.clips} == {"owl", "not_owl"}
    assert sorted(loaded.explicit_split.values()).count("test") == 4
    assert {c.recording for c in loaded.clips} >= {"train-rec0", "test-rec1"}
    for c in loaded.clips:
        assert sf.info(c.source).samplerate in (22050, 48000)  # stored as encoded; the edge decoder resamples
        assert c.region_end_s == pytest.approx(2.5, abs=1e-3)
        assert c.cut(8000, 2.0).shape == (16000,)


def test_hf_dataset_of_long_clips_is_harvested_like_label_folders(tmp_path, monkeypatch):
    """A long owl clip holds its call somewhere: it stays one region (the folder rule), never several "owl"
    regions of which some are call-free; long negatives give several regions. Cut by the edge decoder."""
    pytest.importorskip("datasets")
    from hootwatch.edge.contract import audio
    from hootwatch.trainer.data.sources import clips_from_label_folders

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    data = write_parquet_dataset(tmp_path / "ds", {"train": 4}, length_s=12.0)
    loaded = load_clips(str(data), HarvestOptions(window_s=2.0), 8000, tmp_path / "cache", fmt="hf")
    owl = [c for c in loaded.clips if c.label == "owl"]
    neg = [c for c in loaded.clips if c.label == "not_owl"]
    assert len(owl) == 2 and all((c.region_start_s, round(c.region_end_s, 3)) == (0.0, 12.0) for c in owl)
    assert len(neg) == 2 * 6
    # the same files in label folders give the same regions
    folders = clips_from_label_folders(tmp_path / "cache" / "train", HarvestOptions(window_s=2.0), [])
    assert sorted((c.label, c.region_start_s, c.region_end_s) for c in folders) == sorted(
        (c.label, c.region_start_s, c.region_end_s) for c in loaded.clips)
    c = owl[0]
    expected = audio.load(c.source, 8000, start_s=c.window_start(2.0), duration_s=2.0)
    assert np.array_equal(c.cut(8000, 2.0), expected)


def test_hf_hub_id_offline_says_to_pass_a_local_path(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 set before import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HootwatchError) as exc:
        load_clips("nobody/no-such-owls", HarvestOptions(), 16000, tmp_path / "cache")
    assert "no-such-owls" in str(exc.value) and "local folder" in str(exc.value)


def test_recording_ids_ignore_copy_and_time_offset_suffixes():
    for name in ("rec12_003.wav", " rec12_003 .wav", "rec12_003 (1).wav", "rec12_003 - Copy.wav",
                 "rec12_003 - Copy (2).wav", "rec12_003_copy.wav", "Copy of rec12_003.wav", "rec12_12.5s.wav",
                 "rec12_t30.wav", "rec12_10-15s.wav", "rec12_10.0-15.0.wav", "rec12 (1).wav", "rec12_copy.wav"):
        assert recording_from_name(Path(name)) == "rec12", name
    assert recording_from_name(Path("S4A03895_20200101_120000 (1).wav")) == "S4A03895_20200101_120000"


def test_duplicate_files_are_dropped_before_splitting(tmp_path, caplog):
    make_label_folders(tmp_path, n_recordings=3, clips_per_recording=2, seed=4)
    src = tmp_path / "owl" / "rec00owl_000.wav"
    (tmp_path / "owl" / "backup_of_that_night.wav").write_bytes(src.read_bytes())  # same owl, another name
    with caplog.at_level(logging.WARNING):
        loaded = load_clips(str(tmp_path), HarvestOptions(window_s=5.0), 16000, tmp_path / "cache")
    sources = {Path(c.source).name for c in loaded.clips}
    assert len({"rec00owl_000.wav", "backup_of_that_night.wav"} & sources) == 1 and len(sources) == 12
    assert "backup_of_that_night.wav" in caplog.text and "rec00owl_000.wav" in caplog.text
    assert any("duplicate" in n for n in loaded.notes)


def test_duplicate_on_both_sides_of_an_explicit_split_is_a_leak(tmp_path):
    for split, seed in (("train", 1), ("validation", 2), ("test", 3)):
        make_label_folders(tmp_path / split, n_recordings=2, clips_per_recording=2, seed=seed)
        for p in list((tmp_path / split).rglob("*.wav")):
            p.rename(p.with_name(f"{split}{p.name}"))
    src = next((tmp_path / "train" / "owl").glob("*.wav"))
    (tmp_path / "test" / "owl" / "renamed.wav").write_bytes(src.read_bytes())
    loaded = load_clips(str(tmp_path), HarvestOptions(), 16000, tmp_path / "cache")
    with pytest.raises(SplitError, match="test and train"):
        apply_explicit_split(loaded.clips, loaded.explicit_split)


def test_warns_when_every_file_is_its_own_recording(tmp_path):
    make_label_folders(tmp_path, n_recordings=6, clips_per_recording=1, seed=5)
    loaded = load_clips(str(tmp_path), HarvestOptions(window_s=5.0), 16000, tmp_path / "cache")
    assert any("its own recording" in n and "recordings.csv" in n for n in loaded.notes)
    make_label_folders(tmp_path / "x", n_recordings=5, clips_per_recording=2, seed=5)
    loaded = load_clips(str(tmp_path / "x"), HarvestOptions(window_s=5.0), 16000, tmp_path / "cache")
    assert not any("its own recording" in n for n in loaded.notes)


def _train_and_test_folders(root, train_recordings: int, train_clips: int):
    """root/train/ and root/test/ label folders (test files renamed so recordings differ), loaded."""
    make_label_folders(root / "train", n_recordings=train_recordings, clips_per_recording=train_clips, seed=1)
    make_label_folders(root / "test", n_recordings=max(1, train_recordings // 2), clips_per_recording=2, seed=2)
    for p in list((root / "test").rglob("*.wav")):
        p.rename(p.with_name(f"test{p.name}"))
    return load_clips(str(root), HarvestOptions(), 16000, root / "cache")


def test_train_and_test_folders_without_validation_carve_it_from_train(tmp_path):
    loaded = _train_and_test_folders(tmp_path, train_recordings=4, train_clips=2)
    s = apply_explicit_split(loaded.clips, loaded.explicit_split, 0.25, 0.25, seed=0)
    assert all("/train/" in c.source for c in s.train + s.validation)
    assert all("/test/" in c.source for c in s.test)
    assert {c.label for c in s.validation} == {"owl", "not_owl"}
    assert not {c.recording for c in s.train} & {c.recording for c in s.validation}
    summ = summary(s)
    assert any("validation" in n and "set aside" in n for n in summ["notes"])
    assert summ["splits"]["validation"]["_total"]["recordings"] == 2


def test_carving_validation_needs_two_train_recordings_per_class(tmp_path):
    loaded = _train_and_test_folders(tmp_path, train_recordings=1, train_clips=3)
    with pytest.raises(SplitError, match="validation/ folder"):
        apply_explicit_split(loaded.clips, loaded.explicit_split)


def test_summary_records_padding_per_class_and_warns_on_a_padding_cue():
    short_owls = [ClipRef(f"/x/o{r}.wav", 0, 2.0, "owl", f"o{r}") for r in range(4)]
    long_negs = [ClipRef(f"/x/n{r}.wav", 0, 6.0, "not_owl", f"n{r}") for r in range(4)]
    s = Splits(short_owls[:2] + long_negs[:2], short_owls[2:3] + long_negs[2:3], short_owls[3:] + long_negs[3:])
    summ = summary(s, window_s=5.0)
    assert summ["padded_share"] == {"not_owl": 0.0, "owl": 1.0}
    assert any("padded" in n and "owl 100%" in n for n in summ["notes"])
    even = Splits(long_negs[:2] + [ClipRef("/x/o.wav", 0, 5.5, "owl", "o")], long_negs[2:3], long_negs[3:])
    assert not any("padded" in n for n in summary(even, window_s=5.0)["notes"])


def test_summary_warns_about_owl_clips_much_longer_than_the_window():
    clips = [ClipRef("/x/dawn_chorus.wav", 0, 30.0, "owl", "a"), ClipRef("/x/n.wav", 0, 30.0, "not_owl", "b")]
    summ = summary(Splits(clips, [], []), window_s=5.0)
    assert any("dawn_chorus.wav" in n and "annotate" in n for n in summ["notes"])
