"""int8 quantization of a tiny wav2vec2: the default (MatMul dynamic) and the calibrated static-conv option."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.onnxruntime")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from hootwatch.edge.contract.detector import softmax  # noqa: E402
from hootwatch.export import onnx_export, quantize  # noqa: E402

SR = 16000
N = SR  # 1 s windows keep the tiny model fast


def tiny_model():
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        num_labels=2, classifier_proj_size=16)
    return transformers.Wav2Vec2ForSequenceClassification(config).eval()


def windows(n: int, seed: int) -> np.ndarray:
    """Normalised model-input windows: noise with 400 Hz tone bursts at random levels."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / SR
    x = rng.standard_normal((n, N)) * rng.uniform(0.1, 1.0, (n, 1))
    x += rng.uniform(0, 2, (n, 1)) * np.sin(2 * np.pi * 400 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    model = tiny_model()
    onnx_export.fold_weight_norm(model)
    return onnx_export.export_onnx(model, tmp_path_factory.mktemp("q") / "onnx").path


def run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def optimized_ops(path, tmp_path) -> set[str]:
    """The op types ONNX Runtime actually runs after its graph optimisations."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}


def test_default_is_matmul_dynamic_and_says_so(fp32, tmp_path):
    out = quantize.quantize_int8(fp32, tmp_path / "int8.onnx", "x86")   # the signature callers use
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "MatMulInteger" in ops and "QuantizeLinear" not in ops and "Conv" in ops
    assert quantize.read_scheme(out) == quantize.scheme("x86") and quantize.read_scheme(out)["mode"] == "dynamic"


def test_calibrated_static_conv_quantizes_the_encoder_convs_after_the_first(fp32, tmp_path):
    cal = windows(6, seed=1)
    out = quantize.quantize_int8(fp32, tmp_path / "int8.onnx", "x86", calibration=cal)
    graph = onnx.load(str(out)).graph
    dq_inputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    encoder = sorted(n for n in convs if "feature_extractor" in n)
    assert len(encoder) == 3
    # conv 0 stays fp32, convs 1 and 2 read quantized weights and activations
    assert not set(convs[encoder[0]].input) & dq_inputs
    assert all(set(convs[n].input[:2]) <= dq_inputs for n in encoder[1:])
    assert not set(convs["/wav2vec2/encoder/pos_conv_embed/conv/Conv"].input) & dq_inputs
    # ONNX Runtime runs them as int8 convolutions, and the MatMuls stay dynamic int8
    ops = optimized_ops(out, tmp_path)
    assert "QLinearConv" in ops and ({"DynamicQuantizeMatMul", "MatMulIntegerToFloat"} & ops)
    s = quantize.read_scheme(out)
    assert s["mode"] == "dynamic MatMul + static Conv" and s["conv"]["nodes"] == 2
    assert s["conv"]["calibration_windows"] == 6 and s["conv"]["weights"] == "int8 per channel"
    json.dumps(s)   # goes into the manifest as is


def test_calibrated_model_stays_close_to_fp32(fp32, tmp_path):
    x = windows(8, seed=2)   # not the calibration windows
    static = quantize.quantize_int8(fp32, tmp_path / "static.onnx", "x86", calibration=windows(8, seed=1))
    ref = softmax(run(fp32, x).astype(np.float64))[:, 1]
    got = softmax(run(static, x).astype(np.float64))[:, 1]
    assert np.abs(got - ref).max() < 0.05


def test_calibration_is_capped_to_an_evenly_spaced_subset():
    x = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    sub = quantize.calibration_subset(x, limit=5)
    assert sub[:, 0].tolist() == [0, 25, 50, 74, 99]
    assert quantize.calibration_subset(x[:3], limit=5).shape == (3, 4)


@pytest.mark.parametrize("bad", [np.zeros((0, 10)), np.zeros(10), np.zeros((2, 3, 4))])
def test_calibration_of_the_wrong_shape_is_refused(bad):
    with pytest.raises(ValueError, match="calibration must be"):
        quantize.calibration_subset(bad)


def test_a_graph_without_a_feature_encoder_has_no_convs_to_calibrate(tmp_path):
    """A model with no wav2vec2-style feature encoder (the tone test model): calibration finds nothing to do."""
    from tiny_bundles import tone_model

    fp32 = tmp_path / "m" / "model.onnx"
    fp32.parent.mkdir()
    tone_model(fp32)
    assert quantize.encoder_convs(fp32) == []
