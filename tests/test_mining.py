"""Hard-example mining with the deterministic tone bundle: which windows become which clips, and splits that keep
an earlier run's sides."""

import csv

import soundfile as sf

from hootwatch.edge.contract.clips import ClipRef, write_clip_csv
from hootwatch.edge.contract.detector import Detector
from hootwatch.trainer.mining import MiningConfig, keep_splits_and_split_the_rest, mine_hard_examples

from tiny_bundles import tone_bundle, write_tone

SR = 8000


def _night(root, owls, others):
    files = ["AM01/20240501_090000.WAV", "AM02/20240501_090000.WAV"]
    root.mkdir(parents=True)
    with open(root / "ground_truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "start_s", "end_s", "label", "snr_db"])
        for name in files:
            write_tone(root / name, 60, sample_rate=SR, tones=owls + [span for span, _ in others])
            w.writerows([[name, a, b, "owl", 10] for a, b in owls] + [[name, a, b, lab, 10] for (a, b), lab in others])
    return root


def test_hard_examples_are_the_windows_the_model_gets_wrong(tmp_path):
    det = Detector.load(tone_bundle(tmp_path / "bundle", sample_rate=SR), threads=1)
    # an owl call the tone model finds, and a "frogmouth" made of the same tone: the model fires on windows with
    # no owl in them (hard negatives); the rest is quiet noise
    night = _night(tmp_path / "night", owls=[(10.0, 12.0)], others=[((30.0, 35.0), "frogmouth")])
    data = tmp_path / "data"
    mined = mine_hard_examples(det, night, night / "ground_truth.csv", data,
                               MiningConfig(negative_score=0.5, max_positives=1, random_negatives=3))

    kinds = {k: [c for c in mined if c.kind == k] for k in ("hard_positive", "hard_negative", "random_negative")}
    assert len(kinds["hard_positive"]) == 1 and kinds["hard_positive"][0].label == "owl"
    # windows [27.5, 32.5], [30, 35], [32.5, 37.5] of each file hold the frogmouth tone: scored >= 0.5, no owl
    assert len(kinds["hard_negative"]) == 6 and all(c.score >= 0.5 for c in kinds["hard_negative"])
    assert len(kinds["random_negative"]) == 3 and all(c.score < 0.5 for c in kinds["random_negative"])
    capped = mine_hard_examples(det, night, night / "ground_truth.csv", tmp_path / "capped",
                                MiningConfig(negative_score=0.5, max_negatives=2, max_positives=0, random_negatives=0))
    assert [c.kind for c in capped] == ["hard_negative"] * 2
    assert min(c.score for c in capped) >= max(c.score for c in kinds["hard_negative"] if c not in capped) - 1e-6
    for c in mined:
        x, sr = sf.read(data / c.file)
        assert sr == SR and len(x) == 5 * SR and c.file.startswith(c.label + "/")
        assert c.recording in ("MINE_AM01_20240501_090000", "MINE_AM02_20240501_090000")
    # nothing within a second of the owl call is a negative (its reverb tail would be an owl labelled not-owl)
    assert not any(c.file.split("_")[-1] in ("00005.00.wav", "00007.50.wav", "00010.00.wav", "00012.50.wav")
                   for c in mined if c.label == "not_owl")
    positive = kinds["hard_positive"][0]
    start = float(positive.file.rsplit("_", 1)[1].removesuffix(".wav"))
    assert start <= 10.0 - 0.25 and start + 5.0 >= 12.0 + 0.25        # it holds the whole call


def test_an_earlier_runs_recordings_keep_their_side_and_mined_ones_are_split_by_recording(tmp_path):
    data, splits = tmp_path / "data", tmp_path / "splits"
    data.mkdir()
    splits.mkdir()
    old = {"train": ["R1", "R2", "R3"], "validation": ["R4"], "test": ["R5"]}
    with open(data / "recordings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "recording"])
        w.writerows([f"owl/{r}_{i}.wav", r] for side in old.values() for r in side for i in range(2))
    for side, recs in old.items():
        write_clip_csv(splits / f"{side}.csv", [ClipRef(f"/x/{r}.wav", 0, 5, "owl", r) for r in recs])
    from hootwatch.trainer.mining import MinedClip
    mined = [MinedClip(f"not_owl/M{i}_{k}.wav", f"M{i}", "not_owl", 0.9, "hard_negative")
             for i in range(20) for k in range(2)]

    keep_splits_and_split_the_rest(data, splits, mined, seed=3)

    with open(data / "recordings.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    side = {}
    for r in rows:
        assert side.setdefault(r["recording"], r["split"]) == r["split"]   # one side per recording
    assert all(side[r] == s for s, recs in old.items() for r in recs)
    new = [side[f"M{i}"] for i in range(20)]
    assert (new.count("validation"), new.count("test"), new.count("train")) == (3, 3, 14)
    assert len(rows) == 10 + 40


def test_a_window_running_into_the_next_file_is_never_mined(tmp_path):
    # two contiguous files of one recorder; the owl call is 0.5-2.5 s into `b`: `a`'s last windows hear it
    # through `b`'s head, but `a`'s truth has no owl, so they must not become "not owl" clips
    det = Detector.load(tone_bundle(tmp_path / "bundle", sample_rate=SR), threads=1)
    night = tmp_path / "night"
    write_tone(night / "AM01" / "20240501_090000.WAV", 30, sample_rate=SR)
    write_tone(night / "AM01" / "20240501_090030.WAV", 30, sample_rate=SR, tones=[(0.5, 2.5)], seed=1)
    with open(night / "ground_truth.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "start_s", "end_s", "label"], ["AM01/20240501_090030.WAV", 0.5, 2.5, "owl"]])
    mined = mine_hard_examples(det, night, night / "ground_truth.csv", tmp_path / "data",
                               MiningConfig(negative_score=0.5, random_negatives=0))
    assert [c.kind for c in mined] == ["hard_positive"]
    assert mined[0].recording == "MINE_AM01_20240501_090030"
