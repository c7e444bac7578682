"""End-to-end export of a tiny wav2vec2 classifier: ONNX, int8, parity, bundle, and the edge loading it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")
onnx = pytest.importorskip("onnx")
sf = pytest.importorskip("soundfile")

from hootwatch.edge.contract.bundle import MANIFEST_NAME, load_bundle  # noqa: E402
from hootwatch.edge.contract.clips import ClipRef, read_clip_csv, write_clip_csv  # noqa: E402
from hootwatch.edge.contract.detector import Detector, softmax  # noqa: E402
from hootwatch.edge.core.errors import BundleError, ConfigError  # noqa: E402
from hootwatch.edge.contract.preprocess import FEATURE_EXTRACTOR_KEY, Normalisation  # noqa: E402
from hootwatch.export import onnx_export  # noqa: E402
from hootwatch.export.core import ExportOptions, export_bundle  # noqa: E402
from hootwatch.export.parity import ParityError  # noqa: E402

SR = 16000
WINDOW_S = 1.0  # short windows keep the tiny model fast; the export does not care about the length
LABELS = ("not_owl", "owl")


def tiny_config(model_type: str = "wav2vec2"):
    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
              conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_labels=2,
              id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
              classifier_proj_size=16, mask_time_prob=0.0)
    if model_type == "hubert":
        return transformers.HubertConfig(**kw)
    return transformers.Wav2Vec2Config(**kw)


# band-limited like a default training run: the edge must apply the same filter as the trainer
NORM = Normalisation(highpass_hz=150.0, lowpass_hz=3000.0)


def synth_clip(label: str, rng: np.random.Generator, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    noise = 0.3 * rng.standard_normal(len(t))
    if label == "owl":  # a low hoot: 400 Hz tone bursts
        return (noise + np.sin(2 * np.pi * 400 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    return noise.astype(np.float32)


def write_clips(folder: Path, n_per_label: int, seed: int) -> list[ClipRef]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for label in LABELS:
        for i in range(n_per_label):
            path = folder / f"{label}_{i}.wav"
            x = synth_clip(label, rng)
            sf.write(path, x, SR)
            clips.append(ClipRef(path.name, 0.0, len(x) / SR, label, f"rec{i}"))
    return clips


def quick_train(model, clips: list[ClipRef], folder: Path, steps: int = 200) -> None:
    """Fit the classification head on frozen random features, so the tiny model separates the classes
    (a random head sits at p=0.5, where parity would be meaningless); cheap because the encoder runs once."""
    x = torch.from_numpy(NORM.apply(np.stack([ClipRef(str(folder / c.source), c.region_start_s, c.region_end_s, c.label,
                                                      c.recording).cut(SR, WINDOW_S) for c in clips]), SR))
    y = torch.tensor([LABELS.index(c.label) for c in clips])
    model.eval()
    with torch.no_grad():
        pooled = model.base_model(x).last_hidden_state.mean(dim=1)  # mean pooling commutes with the linear projector
    head = torch.nn.Sequential(model.projector, model.classifier)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(pooled), y).backward()
        opt.step()


def make_run(root: Path, model_type: str = "wav2vec2") -> Path:
    torch.manual_seed(0)
    run = root / "run"
    clips = write_clips(run / "audio", 6, seed=1)
    cls = transformers.HubertForSequenceClassification if model_type == "hubert" else transformers.Wav2Vec2ForSequenceClassification
    model = cls(tiny_config(model_type))
    quick_train(model, clips, run / "audio")
    model.save_pretrained(run / "model")
    fe = transformers.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True)
    setattr(fe, FEATURE_EXTRACTOR_KEY, NORM.to_dict())   # as the trainer stamps every checkpoint it saves
    fe.save_pretrained(run / "model")
    (run / "model" / "hootwatch.json").write_text(json.dumps({
        "positive_label": "owl", "sample_rate": SR, "window_s": WINDOW_S, "hop_s": WINDOW_S / 2, "threshold": 0.5,
        "normalisation": NORM.to_dict(), "backbone": f"tiny-{model_type}"}))
    (run / "metrics.json").write_text(json.dumps({"test": {"f1": 0.9}, "validation": {"f1": 0.95}, "threshold": 0.5,
                                                  "positive_label": "owl"}))
    (run / "splits").mkdir()
    write_clip_csv(run / "splits" / "validation.csv", [ClipRef(f"../audio/{c.source}", c.region_start_s, c.region_end_s,
                                                                c.label, c.recording) for c in clips])
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(run_dir):
    out = run_dir.parent / "bundle"
    result = export_bundle(ExportOptions(source=run_dir, out=out, target="x86", keep_fp32=True, fp16=True,
                                         speed_repeats=1, min_hits=2))
    return result


def torch_probs(run_dir: Path, windows: np.ndarray) -> np.ndarray:
    model = transformers.AutoModelForAudioClassification.from_pretrained(run_dir / "model").eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(NORM.apply(windows, SR))).logits.numpy()
    return softmax(logits.astype(np.float64))[:, LABELS.index("owl")]


def validation_windows(run_dir: Path) -> np.ndarray:
    return np.stack([c.cut(SR, WINDOW_S) for c in read_clip_csv(run_dir / "splits" / "validation.csv")])


def test_weight_norm_is_folded_into_an_initializer(tmp_path):
    model = transformers.Wav2Vec2ForSequenceClassification(tiny_config()).eval()
    conv = model.wav2vec2.encoder.pos_conv_embed.conv
    x = torch.randn(1, SR)
    with torch.inference_mode():
        before = model(x).logits
    folded = onnx_export.fold_weight_norm(model)
    assert "wav2vec2.encoder.pos_conv_embed.conv" in folded
    assert "weight" in dict(conv.named_parameters())
    with torch.inference_mode():
        torch.testing.assert_close(model(x).logits, before)  # folding changes no output
    graph = onnx_export.export_onnx(model, tmp_path / "onnx")
    assert "wav2vec2.encoder.pos_conv_embed.conv.weight" in onnx_export.initializer_names(graph.path)


def test_export_writes_a_bundle_the_edge_trusts(exported, run_dir):
    bundle = load_bundle(exported.bundle)
    m = bundle.manifest
    assert m.labels == LABELS and m.positive_label == "owl" and m.sample_rate == SR and m.window_s == WINDOW_S
    assert m.input_name == "input_values" and m.output_name == "logits"
    assert set(m.files) == {"model.onnx", "model_fp32.onnx", "model_fp16.onnx", "report.json"}
    assert m.variants == {"fp32": "model_fp32.onnx", "fp16": "model_fp16.onnx"}
    assert m.metrics["run"]["validation"] == {"f1": 0.95}
    assert m.metrics["parity"]["passed"] and not exported.forced
    assert set(m.metrics["speed"]["ms_per_window"]) >= {"pytorch", "onnx_fp32", "onnx_int8"}
    assert m.metrics["file_mb"]["model.onnx"] < m.metrics["file_mb"]["model_fp32.onnx"]
    assert m.versions["onnxruntime"] != "not installed"
    assert not any(p.name.startswith(".") for p in exported.bundle.parent.iterdir())  # staging cleaned up
    props = {p.key: p.value for p in onnx.load(str(bundle.model_path)).metadata_props}
    assert json.loads(props["hootwatch.labels"]) == list(LABELS) and props["hootwatch.positive_label"] == "owl"
    # the operating point is the bundle's (manifest), not the graph's: changing it keeps the model id
    assert "hootwatch.threshold" not in props and "hootwatch.min_hits" not in props and m.min_hits == 2
    assert m.normalisation == NORM and json.loads(props["hootwatch.normalisation"])["highpass_hz"] == 150.0
    # int8 really is quantized: it has integer MatMuls and is smaller than fp32
    ops = {n.op_type for n in onnx.load(str(bundle.model_path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops


def test_parity_report_compares_all_three(exported):
    p = exported.parity
    assert p.labelled and p.n_clips == 12
    assert [v.name for v in p.variants] == ["pytorch", "fp32", "int8", "fp16"]
    assert p.get("fp32").max_abs_logit_diff < 1e-3
    assert p.get("int8").f1 >= p.get("pytorch").f1 - 0.02
    assert p.get("pytorch").f1 > 0.5  # the tiny model did learn something, so F1 is a real check


def test_detector_scores_match_pytorch(exported, run_dir):
    windows = validation_windows(run_dir)
    expected = torch_probs(run_dir, windows)
    fp32 = Detector.load(exported.bundle, threads=1, variant="fp32").score(windows)
    np.testing.assert_allclose(fp32, expected, atol=1e-4)
    int8 = Detector.load(exported.bundle, threads=1).score(windows)
    np.testing.assert_allclose(int8, expected, atol=0.05)
    fp16 = Detector.load(exported.bundle, threads=1, variant="fp16").score(windows)
    np.testing.assert_allclose(fp16, expected, atol=0.02)


def copy_bundle(exported, tmp_path) -> Path:
    return Path(shutil.copytree(exported.bundle, tmp_path / "copy"))


def test_tampered_model_is_refused(exported, tmp_path):
    b = copy_bundle(exported, tmp_path)
    data = bytearray((b / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(b)


def test_missing_file_is_refused(exported, tmp_path):
    b = copy_bundle(exported, tmp_path)
    (b / "model_fp32.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(b)


def test_other_format_version_is_refused(exported, tmp_path):
    b = copy_bundle(exported, tmp_path)
    raw = json.loads((b / MANIFEST_NAME).read_text())
    raw["format_version"] = 99
    (b / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="format version"):
        load_bundle(b)


def test_existing_bundle_is_not_overwritten(exported, run_dir):
    with pytest.raises(ConfigError, match="--overwrite"):
        export_bundle(ExportOptions(source=run_dir, out=exported.bundle, speed_repeats=0))


def test_parity_failure_writes_nothing_unless_forced(run_dir, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ParityError, match="parity"):
        export_bundle(ExportOptions(source=run_dir, out=out, tolerance=-1.0, speed_repeats=0))
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half bundle, no staging left behind
    result = export_bundle(ExportOptions(source=run_dir, out=out, tolerance=-1.0, force=True, speed_repeats=0))
    assert result.forced
    m = load_bundle(out).manifest
    assert "FORCED" in m.metrics["warning"] and not m.metrics["parity"]["passed"]
    replaced = export_bundle(ExportOptions(source=run_dir, out=out, overwrite=True, speed_repeats=0))
    assert not replaced.forced and "warning" not in load_bundle(out).manifest.metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # the old bundle is gone, nothing left over


def test_run_model_folder_is_accepted_as_the_run(run_dir):
    from hootwatch.export.source import resolve_source

    src = resolve_source(run_dir / "model")
    assert src.kind == "run" and src.labelled and len(src.clips) == 12 and src.meta.threshold == 0.5


def test_cli_exit_codes(run_dir, tmp_path, capsys):
    from hootwatch.edge.commands.main import main

    assert main(["export", str(run_dir), "--out", str(tmp_path / "b"), "--tolerance", "-1", "--speed-repeats", "0"]) == 2
    assert "parity" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "not a training run" in capsys.readouterr().err


def test_bare_checkpoint_needs_audio_and_a_positive_label(run_dir, tmp_path):
    ckpt = run_dir / "model"
    bare = Path(shutil.copytree(ckpt, tmp_path / "ckpt"))
    (bare / "hootwatch.json").unlink()
    with pytest.raises(ConfigError, match="--audio"):
        export_bundle(ExportOptions(source=bare, out=tmp_path / "x", speed_repeats=0))
    cfg = json.loads((bare / "config.json").read_text())
    cfg["id2label"] = {"0": "noise", "1": "hoot"}
    cfg["label2id"] = {"noise": 0, "hoot": 1}
    (bare / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="--positive-label"):
        export_bundle(ExportOptions(source=bare, out=tmp_path / "x", audio_dir=run_dir / "audio", speed_repeats=0))


def test_bare_checkpoint_with_unlabelled_audio(run_dir, tmp_path):
    bare = Path(shutil.copytree(run_dir / "model", tmp_path / "ckpt"))
    (bare / "hootwatch.json").unlink()
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("owl_0.wav", "not_owl_0.wav", "owl_1.wav"):
        shutil.copy(run_dir / "audio" / name, audio / name)
    result = export_bundle(ExportOptions(source=bare, out=tmp_path / "b", audio_dir=audio, speed_repeats=0))
    assert not result.parity.labelled and result.parity.n_clips == 3 and result.parity.get("int8").f1 is None
    assert result.parity.get("int8").agreement >= 0.98
    m = load_bundle(result.bundle).manifest
    assert m.positive_label == "owl" and m.window_s == 5.0 and m.threshold == 0.5
    assert m.normalisation == NORM   # RUN/model without hootwatch.json (an interrupted run) keeps its band limit
    # a checkpoint from elsewhere has plain wav2vec2 input (the source's normalisation is what the manifest gets,
    # as above: checked on the source, without a second export)
    from hootwatch.export.source import resolve_source
    pre = json.loads((bare / "preprocessor_config.json").read_text())
    del pre[FEATURE_EXTRACTOR_KEY]
    (bare / "preprocessor_config.json").write_text(json.dumps(pre))
    assert not resolve_source(bare, audio_dir=audio).meta.normalisation.band_limited


def test_a_normalisation_this_version_does_not_know_is_a_clear_error(run_dir, tmp_path):
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    meta = json.loads((run / "model" / "hootwatch.json").read_text())
    meta["normalisation"]["pre_emphasis"] = 0.97
    (run / "model" / "hootwatch.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError) as exc:
        export_bundle(ExportOptions(source=run, out=tmp_path / "b", speed_repeats=0))
    assert "hootwatch.json" in exc.value.message and "pre_emphasis" in exc.value.message


def test_hubert_exports_too(tmp_path):
    run = make_run(tmp_path, "hubert")
    result = export_bundle(ExportOptions(source=run, out=tmp_path / "b", speed_repeats=0))
    assert "hubert.encoder.pos_conv_embed.conv" in result.folded_weight_norm
    assert load_bundle(result.bundle).manifest.backbone == "tiny-hubert"


def test_without_the_fold_conv_quantization_fails_and_with_it_succeeds(tmp_path):
    """The root cause, pinned: an unfolded weight norm leaves the pos-conv weight computed at run time."""
    model = transformers.Wav2Vec2ForSequenceClassification(tiny_config()).eval()
    raw = onnx_export.export_onnx(model, tmp_path / "raw").path
    with pytest.raises(ValueError, match="initializer"):
        quantize_conv(raw, tmp_path / "raw_q")
    onnx_export.fold_weight_norm(model)
    folded = onnx_export.export_onnx(model, tmp_path / "folded").path
    quantize_conv(folded, tmp_path / "folded_q")
    assert any((tmp_path / "folded_q").glob("*.onnx"))


def quantize_conv(fp32: Path, out: Path) -> None:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False, operators_to_quantize=["MatMul", "Conv"])
    ORTQuantizer.from_pretrained(str(fp32.parent), file_name=fp32.name).quantize(save_dir=out, quantization_config=config)


def test_missing_extra_is_named(monkeypatch):
    from hootwatch.edge.core.errors import MissingExtraError

    monkeypatch.setitem(__import__("sys").modules, "optimum.exporters.onnx", None)
    with pytest.raises(MissingExtraError, match=r"hootwatch\[export\]"):
        onnx_export.require("optimum.exporters.onnx")


def test_max_clips_checks_an_evenly_spaced_subset(run_dir, tmp_path):
    result = export_bundle(ExportOptions(source=run_dir, out=tmp_path / "b", max_clips=4, speed_repeats=0))
    assert result.parity.n_clips == 4 and result.parity.labelled
    assert result.parity.get("pytorch").f1 is not None  # both labels are in the subset (first and last clip)


def logits_for(p_owl: list[float]) -> np.ndarray:
    p = np.asarray(p_owl, dtype=np.float64)
    return np.stack([np.zeros_like(p), np.log(p / (1 - p))], axis=1)  # softmax(.)[:, 1] == p


def test_compare_gates_on_f1_drop():
    from hootwatch.export.parity import compare

    ref = logits_for([0.9, 0.8, 0.2, 0.1])
    truth = np.array([True, True, False, False])
    same = compare(ref, {"int8": ref + 1e-3}, 1, "owl", 0.5, 0.02, truth)
    assert same.passed and same.get("int8").f1 == 1.0 and same.get("int8").agreement == 1.0
    worse = compare(ref, {"int8": logits_for([0.9, 0.3, 0.2, 0.1])}, 1, "owl", 0.5, 0.02, truth)
    assert not worse.passed and worse.get("int8").f1 < 0.7 and worse.get("int8").agreement == 0.75
    assert "F1" in worse.message


def test_compare_unlabelled_ignores_borderline_flips():
    from hootwatch.export.parity import compare

    ref = logits_for([0.501, 0.9, 0.1, 0.2])
    borderline = compare(ref, {"int8": logits_for([0.499, 0.9, 0.1, 0.2])}, 1, "owl", 0.5, 0.02, None)
    assert borderline.passed and borderline.get("int8").agreement == 0.75 and borderline.get("int8").f1 is None
    real = compare(ref, {"int8": logits_for([0.501, 0.4, 0.1, 0.2])}, 1, "owl", 0.5, 0.02, None)
    assert not real.passed


def test_run_without_validation_clips_asks_for_audio(run_dir, tmp_path):
    from hootwatch.export.source import resolve_source

    run = Path(shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("audio")))
    (run / "splits" / "validation.csv").unlink()
    with pytest.raises(ConfigError, match="--audio"):
        resolve_source(run)
    src = resolve_source(run, audio_dir=run_dir / "audio")  # the folder of loose files: unlabelled
    assert src.kind == "run" and not src.labelled and len(src.clips) == 12


def test_the_graph_also_outputs_the_pooled_embedding_of_a_middle_layer(exported, run_dir):
    m = exported.manifest
    assert m.embedding["output"] == "embedding" and m.embedding["layer"] == 1 and m.embedding["dim"] == 32
    assert m.embedding["int8_min_cosine"] > 0.95   # checked at export, on the parity clips
    windows = validation_windows(run_dir)[:4]
    model = transformers.AutoModelForAudioClassification.from_pretrained(run_dir / "model").eval()
    with torch.no_grad():
        hidden = model(torch.from_numpy(NORM.apply(windows, SR)), output_hidden_states=True).hidden_states
    want = hidden[1].mean(dim=1).numpy()
    got = Detector.load(exported.bundle, variant="fp32", threads=1).embed(windows)
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max() + 1e-4
    int8 = Detector.load(exported.bundle, threads=1)
    s, e = int8.score_and_embed(windows)
    assert np.allclose(s, int8.score(windows)) and e.shape == (4, 32)


def test_export_with_static_conv_quantizes_the_encoder_convs_and_says_so(run_dir, tmp_path):
    res = export_bundle(ExportOptions(source=run_dir, out=tmp_path / "b", target="x86", static_conv=True,
                                      speed_repeats=0, first_stage=False))
    q = res.manifest.metrics["quantization"]
    assert "static Conv" in q["mode"] and q["conv"]["nodes"] >= 1 and q["conv"]["calibration_windows"] >= 1
    assert res.parity.passed
