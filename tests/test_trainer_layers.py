"""`train --layers K`: the first K transformer layers of the backbone, and the model stays one model through the
run folder, export and scan (its config.json reloads with K layers, its name says so, the edge needs nothing)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hootwatch.edge.core.errors import ConfigError, HootwatchError  # noqa: E402
from hootwatch.trainer.args import make_args  # noqa: E402
from hootwatch.trainer.model import build_backbone  # noqa: E402
from test_data_fixtures import make_label_folders  # noqa: E402

LABELS = {"not_owl": 0, "owl": 1}
FAST = dict(tiny=True, sample_rate=8000, window_s=2.0, batch_size=8, progress=False, threads=1)


def small_checkpoint(path: Path, model_type: str = "wav2vec2", layers: int = 4) -> Path:
    """A random-init backbone with no head, saved as a pretrained checkpoint folder (what --base points at)."""
    kw = dict(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
              conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    config_cls, model_cls = {"wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
                             "hubert": (transformers.HubertConfig, transformers.HubertModel),
                             "wavlm": (transformers.WavLMConfig, transformers.WavLMModel)}[model_type]
    torch.manual_seed(0)
    model_cls(config_cls(**kw)).save_pretrained(path)
    transformers.Wav2Vec2FeatureExtractor().save_pretrained(path)
    return path


def test_layers_below_one_is_refused_naming_the_flag():
    with pytest.raises(ConfigError, match="--layers 0") as exc:
        make_args(data="D", out="R", layers=0)
    assert "between 1 and" in exc.value.hint
    assert make_args(data="D", out="R").layers is None   # the default: every layer
    with pytest.raises(ConfigError, match="--sample-rate -8000 is not a sample rate"):
        make_args(data="D", out="R", sample_rate=-8000)


def test_layers_above_the_backbones_count_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"--layers 3: --tiny has 2 transformer layer") as exc:
        build_backbone("", True, LABELS, layers=3)
    assert "between 1 and 2" in exc.value.hint
    base = small_checkpoint(tmp_path / "base")
    with pytest.raises(ConfigError, match=r"--layers 5: .*base has 4 transformer layer"):
        build_backbone(str(base), False, LABELS, layers=5)


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
def test_the_first_k_layers_of_a_checkpoint_are_loaded_and_saved_as_k(tmp_path, model_type):
    base = small_checkpoint(tmp_path / "base", model_type)
    full = transformers.AutoModel.from_pretrained(base)
    bb = build_backbone(str(base), False, LABELS, layers=2)
    enc = bb.model.base_model.encoder
    assert len(enc.layers) == bb.model.config.num_hidden_layers == 2
    assert bb.name == f"{base} (first 2 of 4 layers)"
    for mine, theirs in zip(enc.layers, full.encoder.layers[:2]):
        for (name, p), q in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(p, q), name
    bb.model.save_pretrained(tmp_path / "saved")
    again = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "saved")
    assert len(again.base_model.encoder.layers) == 2
    # all the layers: the default path, the plain name
    assert build_backbone(str(base), False, LABELS, layers=4).name == str(base)


def test_tiny_with_one_layer_has_one_layer_weight_per_hidden_state():
    bb = build_backbone("", True, LABELS, layers=1)
    assert bb.name == "tiny-wav2vec2 (first 1 of 2 layers)"
    assert len(bb.model.wav2vec2.encoder.layers) == 1
    assert bb.model.config.use_weighted_layer_sum and bb.model.layer_weights.shape == (2,)   # input + 1 layer
    out = bb.model(torch.zeros(2, 16000))
    assert out.logits.shape == (2, 2)


def test_init_from_keeps_the_earlier_models_layers(tmp_path):
    from hootwatch.trainer.init_from import check_layers

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_hidden_layers": 6}))
    check_layers(model, None)
    check_layers(model, 6)
    with pytest.raises(HootwatchError, match="keeps the earlier model's 6 transformer layer") as exc:
        check_layers(model, 4)
    assert "drop --layers" in exc.value.hint


def test_a_one_layer_tiny_model_trains_exports_and_scans_at_8_khz(tmp_path):
    pytest.importorskip("optimum.exporters.onnx")
    from hootwatch.edge.commands.main import main as edge_main
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.export.core import ExportOptions, export_bundle
    from hootwatch.trainer.train import run

    data = make_label_folders(tmp_path / "data", n_recordings=5, clips_per_recording=3, seed=2)
    res = run(make_args(data=str(data), out=str(tmp_path / "run"), epochs=2, layers=1, seed=0, **FAST))
    run_dir = res.run_dir
    assert json.loads((run_dir / "run_config.json").read_text())["args"]["layers"] == 1
    assert json.loads((run_dir / "model" / "config.json").read_text())["num_hidden_layers"] == 1
    meta = json.loads((run_dir / "model" / "hootwatch.json").read_text())
    assert meta["backbone"] == "tiny-wav2vec2 (first 1 of 2 layers)" and meta["sample_rate"] == 8000

    bundle = tmp_path / "bundle"
    export_bundle(ExportOptions(source=run_dir, out=bundle, force=True, speed_repeats=0, threads=1, max_clips=6))
    m = load_bundle(bundle).manifest
    assert m.backbone == "tiny-wav2vec2 (first 1 of 2 layers)" and m.sample_rate == 8000
    assert (m.embedding["layers"], m.embedding["layer"]) == (1, 1)   # its one layer, not the transformer's input
    assert m.first_stage   # the cascade, distilled at 8 kHz from the one-layer model, scans below

    rec = tmp_path / "rec"
    rec.mkdir()
    sf.write(rec / "SM4_A_20240101_220000.wav", (0.05 * np.random.default_rng(0).standard_normal(16000 * 12))
             .astype(np.float32), 16000)   # a 16 kHz recording: the scan resamples it to the bundle's 8 kHz
    out = tmp_path / "scan"
    assert edge_main(["scan", str(rec), "--model", str(bundle), "--out", str(out), "--threads", "1", "--quiet",
                      "--tz", "UTC"]) == 0
    assert (out / "detections.csv").is_file()
    with open(out / "detections.csv", newline="") as f:
        assert all(r["model_id"] == m.model_id for r in csv.DictReader(f))


@pytest.mark.slow
def test_a_wav2vec2_base_model_at_8_khz_exports_and_scans(tmp_path):
    """The full-size shape (random init: nothing downloads) at --sample-rate 8000, through the real export and
    scan: the feature encoder's strides and the band limit have nothing that needs 16 kHz."""
    pytest.importorskip("optimum.exporters.onnx")
    from hootwatch.edge.commands.main import main as edge_main
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.contract.clips import ClipRef, write_clip_csv
    from hootwatch.edge.contract.preprocess import FEATURE_EXTRACTOR_KEY, Normalisation
    from hootwatch.export.core import ExportOptions, export_bundle
    from hootwatch.trainer.run_folder import RunMeta

    base = tmp_path / "base"
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config()).save_pretrained(base)
    transformers.Wav2Vec2FeatureExtractor().save_pretrained(base)
    bb = build_backbone(str(base), False, LABELS, 8000, layers=6)
    norm = Normalisation(highpass_hz=150.0, lowpass_hz=3000.0)
    setattr(bb.feature_extractor, FEATURE_EXTRACTOR_KEY, norm.to_dict())
    run_dir = tmp_path / "run"
    bb.model.save_pretrained(run_dir / "model")
    bb.feature_extractor.save_pretrained(run_dir / "model")
    RunMeta(positive_label="owl", sample_rate=8000, window_s=5.0, hop_s=2.5, threshold=0.5, normalisation=norm,
            backbone=bb.name, labels=("not_owl", "owl")).write(run_dir / "model" / "hootwatch.json")
    rng = np.random.default_rng(0)
    clips = []
    for label in LABELS:
        p = tmp_path / "clips" / f"{label}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, (0.1 * rng.standard_normal(40000)).astype(np.float32), 8000)
        clips.append(ClipRef(str(p), 0.0, 5.0, label, label))
    (run_dir / "splits").mkdir()
    write_clip_csv(run_dir / "splits" / "validation.csv", clips)
    export_bundle(ExportOptions(source=run_dir, out=tmp_path / "bundle", force=True, speed_repeats=0, threads=2))
    m = load_bundle(tmp_path / "bundle").manifest
    assert (m.sample_rate, m.embedding["layers"], m.embedding["dim"]) == (8000, 6, 768)
    assert m.backbone.endswith("(first 6 of 12 layers)")
    rec = tmp_path / "rec"
    rec.mkdir()
    sf.write(rec / "SM4_A_20240101_220000.wav", (0.05 * rng.standard_normal(22050 * 12)).astype(np.float32), 22050)
    assert edge_main(["scan", str(rec), "--model", str(tmp_path / "bundle"), "--out", str(tmp_path / "scan"),
                      "--threads", "2", "--quiet", "--tz", "UTC"]) == 0
