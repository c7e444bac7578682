"""Export checks that need no torch: the parity gate (compare) and the export source's sample rate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hootwatch.edge.contract.clips import ClipRef
from hootwatch.edge.core.errors import ConfigError
from hootwatch.edge.contract.preprocess import Normalisation
from hootwatch.export.parity import check_parity, compare
from hootwatch.export.source import resolve_source

from tiny_bundles import tone_bundle, tone_signal


def logits_for(p_owl: list[float]) -> np.ndarray:
    p = np.asarray(p_owl, dtype=np.float64)
    return np.stack([np.zeros_like(p), np.log(p / (1 - p))], axis=1)  # softmax(.)[:, 1] == p


def test_labelled_parity_fails_when_decisions_flip_even_if_f1_is_unchanged():
    ref = logits_for([0.9, 0.2, 0.8, 0.1])
    truth = np.array([True, True, False, False])
    # every decision flipped, yet TP/FP/FN (and so F1 = 0.5) are the same for both models
    flipped = compare(ref, {"int8": logits_for([0.2, 0.9, 0.1, 0.8])}, 1, "owl", 0.5, 0.02, truth)
    assert flipped.get("int8").f1 == flipped.get("pytorch").f1
    assert not flipped.passed and "changes 100.0% of decisions" in flipped.message
    # a borderline flip (probability moved < BORDERLINE) is still not counted
    border = compare(logits_for([0.501, 0.2, 0.1]), {"int8": logits_for([0.499, 0.2, 0.1])}, 1, "owl", 0.5,
                     0.5, np.array([True, True, False]))
    assert border.get("int8").agreement < 1.0 and "1 borderline flips not counted" in border.message


def test_labelled_clips_without_a_positive_are_refused():
    ref = logits_for([0.9, 0.2])
    with pytest.raises(ConfigError, match="no 'owl' clip"):
        compare(ref, {"int8": logits_for([0.2, 0.9])}, 1, "owl", 0.5, 0.02, np.array([False, False]))
    clips = [ClipRef("a.wav", 0, 5, "not_owl", "a"), ClipRef("b.wav", 0, 5, "wind", "b")]
    with pytest.raises(ConfigError) as exc:
        check_parity(None, {}, clips, 16000, 5.0, Normalisation(), ("not_owl", "owl"), "owl", 0.5, 0.02)
    assert "not_owl, wind" in exc.value.message and "--audio" in exc.value.hint


def _checkpoint(d, fe: dict):
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"id2label": {"0": "not_owl", "1": "owl"}, "model_type": "wav2vec2"}))
    (d / "preprocessor_config.json").write_text(json.dumps(fe))
    return d


def test_checkpoint_without_sampling_rate_is_refused_not_guessed(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    d = _checkpoint(tmp_path / "ckpt", {"do_normalize": True})
    with pytest.raises(ConfigError) as exc:
        resolve_source(d, audio_dir=audio)
    assert "preprocessor_config.json" in exc.value.message and "sampling_rate is missing" in exc.value.message
    d2 = _checkpoint(tmp_path / "ckpt2", {"do_normalize": True, "sampling_rate": "16k"})
    with pytest.raises(ConfigError, match="not a sample rate"):
        resolve_source(d2, audio_dir=audio)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_min_hits_must_be_a_whole_number_of_at_least_one(tmp_path, bad):
    from hootwatch.export.core import ExportOptions

    with pytest.raises(ConfigError, match="--min-hits"):
        ExportOptions(source=tmp_path, out=tmp_path / "b", min_hits=bad)


def _run_folder(root, meta: dict):
    model = root / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"id2label": {"0": "not_owl", "1": "owl"}}))
    (model / "hootwatch.json").write_text(json.dumps(meta))
    (root / "splits").mkdir()
    (root / "splits" / "validation.csv").write_text("source,region_start_s,region_end_s,label,recording\n"
                                                    "a.wav,0,5,owl,a\n")
    return root


RUN_META = {"positive_label": "owl", "sample_rate": 16000, "window_s": 5.0, "hop_s": 2.5, "threshold": 0.7,
            "normalisation": {"kind": "zero_mean_unit_var", "highpass_hz": 150.0, "lowpass_hz": 3000.0},
            "backbone": "tiny-wav2vec2", "labels": ["not_owl", "owl"]}


def test_run_meta_is_read_strictly_and_an_old_run_folder_still_loads(tmp_path):
    src = resolve_source(_run_folder(tmp_path / "ok", RUN_META))
    m = src.meta
    assert (m.sample_rate, m.window_s, m.hop_s, m.threshold, m.backbone) == (16000, 5.0, 2.5, 0.7, "tiny-wav2vec2")
    # runs written before `labels` was stamped (the labels are in config.json too) still load
    old = {k: v for k, v in RUN_META.items() if k != "labels"}
    assert resolve_source(_run_folder(tmp_path / "old", old)).meta.labels == ("not_owl", "owl")
    for name, meta, words in (
            ("typo", RUN_META | {"treshold": 0.9}, ["unknown key", "treshold"]),
            ("nohop", {k: v for k, v in RUN_META.items() if k != "hop_s"}, ["missing", "hop_s"]),
            ("nothr", {k: v for k, v in RUN_META.items() if k != "threshold"}, ["missing", "threshold"]),
            ("badwin", RUN_META | {"window_s": "5 s"}, ["window_s"]),
            ("labels", RUN_META | {"labels": ["owl", "not_owl"]}, ["labels", "config.json"])):
        with pytest.raises(ConfigError) as exc:
            resolve_source(_run_folder(tmp_path / name, meta))
        assert "hootwatch.json" in exc.value.message and exc.value.hint, name
        assert all(w in exc.value.message for w in words), (name, exc.value.message)


def test_parity_scores_a_candidate_model_through_the_edge_detector(tmp_path):
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.export.parity import edge_detector

    bundle = Detector.load(tone_bundle(tmp_path / "b", sample_rate=8000), threads=1)
    m = bundle.manifest
    candidate = edge_detector(bundle.bundle.model_path, m.sample_rate, m.window_s, m.normalisation, m.labels,
                              m.positive_label, m.threshold, threads=1)
    x = np.stack([tone_signal(5, 8000, tones=t) for t in ([], [(1, 3)], [(0, 5)])]) * 7.0  # raw, unnormalised
    assert np.allclose(candidate.logits(x), bundle.logits(x), atol=1e-5)
    assert list(candidate.score(x) >= 0.5) == [False, True, True]


# the first round: 15 validation clips, 3 of them owl
_OWL = [0.9, 0.8, 0.505]
_NOT = [0.7, 0.6, 0.495] + [0.1] * 9
_TRUTH = np.array([True] * 3 + [False] * 12)


def test_borderline_flips_the_decision_rule_forgives_do_not_fail_f1_on_a_small_set():
    # two borderline flips (an owl just below the threshold, a not-owl just above): F1 0.750 -> 0.500 if counted
    int8 = logits_for([0.9, 0.8, 0.497] + [0.7, 0.6, 0.503] + [0.1] * 9)
    r = compare(logits_for(_OWL + _NOT), {"int8": int8}, 1, "owl", 0.5, 0.02, _TRUTH)
    assert r.get("int8").f1 < r.get("pytorch").f1 - 0.2     # the raw F1 of int8 is reported as it is
    assert r.passed, r.message
    assert "2 borderline flips not counted" in r.message and "15 clips (3 owl)" in r.message


def test_a_real_loss_on_a_small_set_still_fails():
    int8 = logits_for([0.3, 0.3, 0.505] + _NOT)                # two confident owl calls lost
    r = compare(logits_for(_OWL + _NOT), {"int8": int8}, 1, "owl", 0.5, 0.2, _TRUTH)  # decision share forgiven
    assert not r.passed and "F1" in r.message and "15 clips (3 owl)" in r.message
    one = compare(logits_for(_OWL + _NOT), {"int8": logits_for([0.9, 0.8, 0.3] + _NOT)}, 1, "owl", 0.5, 0.2, _TRUTH)
    assert one.passed, one.message  # one clip's flip is all 15 clips can tell apart from noise
