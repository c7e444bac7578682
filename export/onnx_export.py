"""PyTorch -> ONNX through Optimum, with the weight-norm fix that makes int8 quantization work.

wav2vec2, HuBERT and WavLM wrap their positional convolution in weight norm (a torch parametrization, or the
legacy `weight_g`/`weight_v` hook). Exported as is, the conv weight is computed at run time (`g * v / ||v||`), so
the quantizer finds no initializer for it and fails ("Expected .../pos_conv_embed/... to be an initializer").
Folding the parametrization into a plain weight before export fixes this at the root and changes no output.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.core.errors import ConfigError, MissingExtraError

TASK = "audio-classification"
DEFAULT_OPSET = 18  # Optimum's recommended minimum for wav2vec2


def require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise MissingExtraError("export", module.split(".")[0]) from None


def load_model(model_dir: Path):
    """(model, folded module names): the classifier in eval mode, every weight norm folded into a plain weight."""
    require("torch")
    transformers = require("transformers")
    try:
        model = transformers.AutoModelForAudioClassification.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{model_dir}: cannot load an audio-classification model ({exc})",
                          "pass a folder saved with save_pretrained (config.json + weights)") from None
    model.eval()
    return model, fold_weight_norm(model)


def fold_weight_norm(model) -> list[str]:
    """Remove weight-norm (and any other) parametrizations, keeping their current value. Returns module names."""
    import torch
    from torch.nn.utils import parametrize

    folded = []
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for tensor_name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
            folded.append(name)
        elif any(type(h).__name__ == "WeightNorm" for h in module._forward_pre_hooks.values()):
            torch.nn.utils.remove_weight_norm(module)
            folded.append(name)
    return folded


@contextlib.contextmanager
def quiet():
    """Hide the tracer warnings and per-tensor INFO lines of export and quantization (they are not actionable)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # onnxruntime.quantization logs through the root logger
    try:
        import transformers

        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
    except ImportError:
        verbosity = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        if verbosity is not None:
            transformers.logging.set_verbosity(verbosity)


@dataclass(frozen=True)
class ExportedGraph:
    path: Path
    input_name: str
    output_name: str
    opset: int


def export_onnx(model, out_dir: Path, opset: int = DEFAULT_OPSET) -> ExportedGraph:
    """fp32 ONNX with dynamic batch and length axes (Optimum's audio-classification config)."""
    require("optimum.exporters.onnx")
    onnx = require("onnx")
    from optimum.exporters.onnx import onnx_export_from_model

    out_dir.mkdir(parents=True, exist_ok=True)
    # Optimum's own validation is skipped: parity.py checks the export more thoroughly, on real clips.
    with quiet():
        onnx_export_from_model(model, str(out_dir), task=TASK, opset=opset, do_validation=False)
    path = out_dir / "model.onnx"
    graph = onnx.load(str(path), load_external_data=False).graph
    return ExportedGraph(path, graph.input[0].name, graph.output[0].name, opset)


def convert_fp16(fp32_path: Path, out_path: Path) -> Path:
    """fp16 weights and compute for GPU targets; inputs and outputs stay float32 so the edge code is unchanged."""
    onnx = require("onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet():
        model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    onnx.save(model, str(out_path))
    return out_path


def initializer_names(path: Path) -> set[str]:
    onnx = require("onnx")
    return {i.name for i in onnx.load(str(path), load_external_data=False).graph.initializer}
