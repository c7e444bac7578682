"""The trainer: a tiny model learns held-out recordings on a CPU; run-folder rules; exact step counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import pytest
from sklearn.metrics import average_precision_score

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hootwatch.edge.contract.clips import read_clip_csv  # noqa: E402
from hootwatch.edge.core.errors import ConfigError, HootwatchError  # noqa: E402
from hootwatch.edge.contract.preprocess import Normalisation  # noqa: E402
from hootwatch.trainer.args import make_args  # noqa: E402
from hootwatch.trainer.train import run, selection_key  # noqa: E402
from test_data_fixtures import make_label_folders  # noqa: E402

FAST = dict(tiny=True, sample_rate=8000, window_s=2.0, batch_size=8, progress=False, threads=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_label_folders(tmp_path_factory.mktemp("data"), n_recordings=10, clips_per_recording=5, seed=7)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    res = run(make_args(data=str(data), out=str(out), epochs=10, validation_fraction=0.2, test_fraction=0.3,
                        learning_rate=1e-3, seed=1, **FAST))
    return res


def test_tiny_model_beats_chance_on_held_out_recordings(trained):
    test = trained.metrics["test"]
    assert test["n"] == 30 and test["n_positive"] == 15  # 3 held-out recordings of each class
    # chance is 0.5 for both; over 6 data/model seeds this setting gave 0.83-0.97 and 0.94-1.0
    assert test["balanced_accuracy"] >= 0.7, test
    assert test["pr_auc"] >= 0.85, test


def test_run_folder_layout(trained):
    run_dir = trained.run_dir
    m = json.loads((run_dir / "metrics.json").read_text())
    for part in ("test", "validation"):
        assert {"precision", "recall", "f1", "pr_auc", "confusion_matrix"} <= set(m[part])
        assert np.sum(m[part]["confusion_matrix"]) == m[part]["n"]
    assert m["positive_label"] == "owl" and 0 < m["threshold"] < 1
    assert len(m["history"]) == 10
    assert (run_dir / "pr_curve.png").stat().st_size > 1000
    hw = json.loads((run_dir / "model" / "hootwatch.json").read_text())
    assert hw["sample_rate"] == 8000 and hw["window_s"] == 2.0 and hw["hop_s"] == 1.0
    assert hw["threshold"] == m["threshold"] and hw["positive_label"] == "owl"
    norm = Normalisation.from_dict(hw["normalisation"])
    assert (norm.kind, norm.highpass_hz, norm.lowpass_hz) == ("zero_mean_unit_var", 150.0, 3000.0)   # the default band
    cfg = json.loads((run_dir / "model" / "config.json").read_text())
    assert cfg["label2id"] == {"not_owl": 0, "owl": 1}
    pre = json.loads((run_dir / "model" / "preprocessor_config.json").read_text())
    assert pre["sampling_rate"] == 8000
    assert Normalisation.from_dict(pre["hootwatch_normalisation"]) == norm   # RUN/model alone carries the band
    rc = json.loads((run_dir / "run_config.json").read_text())
    assert rc["seed"] == 1 and rc["versions"]["torch"] and rc["args"]["epochs"] == 10
    summ = json.loads((run_dir / "data_summary.json").read_text())
    groups = {}
    for split in ("train", "validation", "test"):
        clips = read_clip_csv(run_dir / "splits" / f"{split}.csv")
        assert all(Path(c.source).is_absolute() for c in clips)
        assert len(clips) == summ["splits"][split]["_total"]["clips"]
        for c in clips:
            assert groups.setdefault(c.recording, split) == split  # no recording on two sides
    assert (run_dir / "checkpoints" / "trainer_state.json").is_file()


def test_run_distils_a_student_that_ranks_windows_as_its_model_does(trained):
    from sklearn.metrics import roc_auc_score
    from transformers import AutoConfig

    from hootwatch.trainer.student import DIR_NAME, MODEL_SUBDIR, REPORT_FILE, VALIDATION_FILE, WIDTH

    d = trained.run_dir / DIR_NAME
    report = json.loads((d / REPORT_FILE).read_text())
    cfg = AutoConfig.from_pretrained(d / MODEL_SUBDIR)
    assert cfg.hidden_size == WIDTH and cfg.label2id == {"not_owl": 0, "owl": 1}
    n_val = len(read_clip_csv(trained.run_dir / "splits" / "validation.csv"))
    n_train = len(read_clip_csv(trained.run_dir / "splits" / "train.csv"))
    assert report["windows"]["training_clips"] == n_train and report["windows"]["training_recordings"] > 0
    v = report["validation_clips"]
    assert v["clips"] == n_val and v["full_threshold"] == trained.threshold and v["owl_clips_detected"] > 0
    with np.load(d / VALIDATION_FILE) as z:   # what export checks the shipped file against
        student, full, owl = z["student"], z["full"], z["owl"]
    detected = owl & (full >= trained.threshold)
    assert (student[detected] >= v["pass_threshold"]).all()          # the clip rule keeps every detected owl clip
    # the student learnt the model's ranking on clips it never saw (not a constant, not "never an owl")
    assert roc_auc_score(full >= trained.threshold, student) >= 0.8
    assert v["pass_rate"] < 1.0


def test_export_ships_the_student_and_chooses_its_pass_rule_on_labelled_recordings(trained, tmp_path):
    """End to end: the run's student through ONNX/int8 into the bundle; its pass rule chosen on labelled recordings
    (the validation clips' files, each owl file labelled whole); the cascade scan then detects every labelled call
    the exhaustive scan detects."""
    import shutil

    from hootwatch.edge.contract.cascade import CascadeDetector, load_detector
    from hootwatch.edge.contract.student import FILE_NAME, Student
    from hootwatch.edge.scan.offline import score_windows
    from hootwatch.edge.scan.pass_rule import cascade_rows, read_labels
    from hootwatch.edge.tables.evaluate import calls_found
    from hootwatch.export.core import ExportOptions, export_bundle

    rec = tmp_path / "recordings"
    rec.mkdir()
    rows = ["file,start_s,end_s,label"]
    for c in {c.source: c for c in read_clip_csv(trained.run_dir / "splits" / "validation.csv")}.values():
        name = f"{c.label}_{Path(c.source).name}"
        shutil.copyfile(c.source, rec / name)
        if c.label == "owl":
            rows.append(f"{name},0.0,{sf.info(c.source).duration:.3f},owl")
    (rec / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    res = export_bundle(ExportOptions(source=trained.run_dir, out=tmp_path / "bundle", threads=1, speed_repeats=0,
                                      first_stage_check=rec))
    fs = res.manifest.first_stage
    assert fs["kind"] == "student" and (tmp_path / "bundle" / FILE_NAME).is_file()
    assert fs["parity_max_abs_prob_diff"][fs["quantization"]] <= 0.02
    r = fs["rule"]
    assert r["calls"] == len(rows) - 1 and r["calls_detected"] > 0 and r["calls_kept"] == r["calls_detected"]
    assert fs["pass_threshold"] == r["pass_threshold"] and fs["neighbours"] == r["neighbours"]
    cascade = load_detector(tmp_path / "bundle", threads=1)
    assert isinstance(cascade, CascadeDetector) and isinstance(cascade.first_stage, Student)
    m = cascade.manifest
    truth = read_labels(rec)
    found = {name: calls_found(cascade_rows(score_windows(det, rec), None, 0.0, m), truth, rec)
             for name, det in (("cascade", cascade), ("exhaustive", load_detector(tmp_path / "bundle", threads=1,
                                                                                    exhaustive=True)))}
    assert found["exhaustive"] and found["exhaustive"] <= found["cascade"]
    assert cascade.pass_rate < 1.0


def test_saved_model_reproduces_the_best_epoch(trained):
    m = trained.metrics
    y, s = owl_scores_from_saved_model(trained.run_dir, "validation")
    best = m["history"][m["best_epoch"] - 1]
    assert best["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-5)
    assert m["validation"]["pr_auc"] == pytest.approx(best["pr_auc"], abs=1e-5)


def test_refuses_non_empty_out_then_resumes_or_overwrites(trained, data):
    run_dir = trained.run_dir
    with pytest.raises(ConfigError, match="--resume.*--overwrite"):
        run(make_args(data=str(data), out=str(run_dir), epochs=10, **FAST))
    with pytest.raises(ConfigError, match=r"learning_rate \(run: 0.001, now: 0.003\)"):
        run(make_args(out=str(run_dir), epochs=11, resume=True, learning_rate=3e-3))
    before = json.loads((run_dir / "metrics.json").read_text())
    resumed = run(make_args(out=str(run_dir), epochs=11, resume=True, progress=False, threads=1))  # no --data
    n_train = json.loads((run_dir / "data_summary.json").read_text())["splits"]["train"]["_total"]["clips"]
    assert resumed.epochs_run == 11 and resumed.optimizer_steps == math.ceil(n_train / 8)  # one more epoch only
    assert resumed.metrics["history"][:10] == before["history"] and len(resumed.metrics["history"]) == 11
    hist, old_best = resumed.metrics["history"], before["best_epoch"]
    new_best = selection_key(hist[10], "pr_auc") > selection_key(hist[old_best - 1], "pr_auc")
    assert resumed.metrics["best_epoch"] == (11 if new_best else old_best)
    rc = json.loads((run_dir / "run_config.json").read_text())
    assert rc["args"]["epochs"] == 10 and rc["args"]["learning_rate"] == 1e-3  # the original record stays
    assert [r["changed"] for r in rc["resumes"]] == [{"epochs": 11}]
    (run_dir / "marker").write_text("x")
    with pytest.raises(ConfigError, match="marker"):  # not part of a run: --overwrite deletes nothing
        run(make_args(data=str(data), out=str(run_dir), epochs=1, overwrite=True, **FAST))
    assert (run_dir / "marker").exists()
    (run_dir / "marker").unlink()
    over = run(make_args(data=str(data), out=str(run_dir), epochs=1, overwrite=True, **FAST))
    assert len(over.metrics["history"]) == 1


def test_resume_without_checkpoint_is_refused(tmp_path, data):
    with pytest.raises(ConfigError, match="nothing to resume"):
        run(make_args(data=str(data), out=str(tmp_path / "new"), resume=True, **FAST))


@pytest.mark.parametrize("batch_size,grad_accum", [(3, 2)])
def test_grad_accum_optimizer_steps_and_owl_as_label_0(tmp_path, batch_size, grad_accum):
    # "owl" sorts before "wind": the owl is label 0 here, and the metrics must still count owls
    data = make_label_folders(tmp_path / "d", n_recordings=4, clips_per_recording=3, seed=3,
                              labels=("owl", "wind"), dur_range=(1.0, 1.5))
    args = make_args(data=str(data), out=str(tmp_path / "run"), epochs=2, background_label="wind",
                     **{**FAST, "window_s": 1.0, "batch_size": batch_size, "grad_accum": grad_accum})
    res = run(args)
    n_train = json.loads((tmp_path / "run" / "data_summary.json").read_text())["splits"]["train"]["_total"]["clips"]
    assert res.optimizer_steps == 2 * math.ceil(math.ceil(n_train / batch_size) / grad_accum)
    assert res.labels == ["owl", "wind"]
    test = res.metrics["test"]
    n_owl = sum(c.label == "owl" for c in read_clip_csv(tmp_path / "run" / "splits" / "test.csv"))
    assert test["n_positive"] == n_owl and sum(test["confusion_matrix"][1]) == n_owl
    # recomputed from RUN/model, reading the owl column by its name: a trainer that read the other column
    # (the not-owl probability) would report another PR-AUC
    y, s = owl_scores_from_saved_model(tmp_path / "run", "test")
    assert test["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-5)
    assert test["pr_auc"] != pytest.approx(average_precision_score(y, 1 - s), abs=1e-3)


def owl_scores_from_saved_model(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Owl labels and owl probabilities of a split, computed here from RUN/model alone (as the edge would)."""
    from transformers import AutoModelForAudioClassification

    hw = json.loads((run_dir / "model" / "hootwatch.json").read_text())
    model = AutoModelForAudioClassification.from_pretrained(run_dir / "model").eval()
    clips = read_clip_csv(run_dir / "splits" / f"{split}.csv")
    x = np.stack([c.cut(hw["sample_rate"], hw["window_s"]) for c in clips])
    x = Normalisation.from_dict(hw["normalisation"]).apply(x, hw["sample_rate"])
    with torch.no_grad():
        probs = torch.softmax(model(input_values=torch.from_numpy(x)).logits.double(), -1).numpy()
    owl = model.config.label2id[hw["positive_label"]]
    return np.array([c.label == hw["positive_label"] for c in clips]), probs[:, owl]



def test_edge_normalisation_equals_the_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    rng = np.random.default_rng(0)
    x = (rng.normal(0, 0.3, (3, 16000)) + rng.normal(0, 0.1, (3, 1))).astype(np.float32)
    for do_norm in (True, False):
        fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=do_norm)
        ref = fe(list(x), sampling_rate=16000, return_tensors="np").input_values
        ours = Normalisation.from_feature_extractor(fe.do_normalize).apply(x)
        assert np.allclose(ours, ref, atol=1e-5), do_norm


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_fp16_without_gpu_is_a_clear_error(tmp_path, data):
    from hootwatch.edge.commands.main import main

    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--tiny", "--fp16"])
    assert rc == 2
    with pytest.raises(ConfigError, match="needs a GPU"):
        run(make_args(data=str(data), out=str(tmp_path / "r2"), precision="bf16", **FAST))


def test_offline_hub_id_says_pass_a_local_path(monkeypatch):
    import huggingface_hub.constants

    from hootwatch.trainer.model import build_backbone

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HootwatchError) as exc:
        build_backbone("nobody/no-such-wav2vec2", False, {"not_owl": 0, "owl": 1})
    assert "cannot download nobody/no-such-wav2vec2" in str(exc.value) and "--tiny" in str(exc.value)


def test_local_checkpoint_path_works_as_base(trained, tmp_path):
    from hootwatch.trainer.model import build_backbone

    bb = build_backbone(str(trained.run_dir / "model"), False, {"not_owl": 0, "owl": 1, "wind": 2})
    assert bb.sample_rate == 8000 and bb.model.config.num_labels == 3


def test_config_file_toml_and_json(tmp_path):
    (tmp_path / "c.toml").write_text('data = "D"\nout = "R"\nepochs = 3\ntiny = true\n')
    args = make_args(str(tmp_path / "c.toml"), epochs=7)
    assert args.data == "D" and args.tiny and args.epochs == 7  # the command line wins
    (tmp_path / "c.json").write_text(json.dumps({"data": "D", "out": "R", "epcohs": 3}))
    with pytest.raises(ConfigError, match="epcohs"):
        make_args(str(tmp_path / "c.json"))
    with pytest.raises(ConfigError, match="--resume and --overwrite"):
        make_args(data="D", out="R", resume=True, overwrite=True)


def test_empty_class_is_refused(tmp_path):
    data = make_label_folders(tmp_path / "d", n_recordings=3, clips_per_recording=2)
    for p in (data / "owl").glob("*.wav"):
        p.write_bytes(b"")  # unreadable: skipped with a warning, and then the class is empty
    with pytest.raises(HootwatchError, match="only one class"):
        run(make_args(data=str(data), out=str(tmp_path / "r"), **FAST))
    assert not (tmp_path / "r").exists()  # a failed run leaves no run folder that --resume or a rerun trips on
    (tmp_path / "kept").mkdir()  # a folder the user made: kept (empty, as it was)
    with pytest.raises(HootwatchError, match="only one class"):
        run(make_args(data=str(data), out=str(tmp_path / "kept"), **FAST))
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


def test_offline_without_hf_hub_offline_is_detected_at_once_with_one_probe(monkeypatch):
    """No network and no HF_HUB_OFFLINE: one quick probe, then the message (no minute of hub retries)."""
    import huggingface_hub.constants
    import requests

    from hootwatch.trainer.model import backbone_rate, build_backbone

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    asked = []

    def no_network(self, method, url, *a, **kw):
        asked.append((method, url))
        raise requests.ConnectionError("Failed to resolve 'huggingface.co'")
    monkeypatch.setattr(requests.Session, "request", no_network)
    for attempt in (lambda: backbone_rate("nobody/no-such-wav2vec2", False, None),
                    lambda: build_backbone("nobody/no-such-wav2vec2", False, {"not_owl": 0, "owl": 1})):
        asked.clear()
        with pytest.raises(HootwatchError) as exc:
            attempt()
        assert "machine is offline" in exc.value.message and "--base" in exc.value.hint
        assert len(asked) == 1 and "no-such-wav2vec2" not in asked[0][1], asked  # the probe, nothing else

