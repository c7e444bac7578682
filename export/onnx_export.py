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
    embedding: dict | None = None    # the manifest's `embedding` field when the graph outputs one


EMBEDDING_OUTPUT = "embedding"
# Which transformer layer's hidden states make the embedding, when not given: the middle one. Measured by
# `bench/search_round.py --layers --run RUN` (a `fit` head per layer: average precision on the validation split;
# search by 3 owl clips: precision at 20) on the demo's model (a tiny 2-layer wav2vec2 fine-tuned on owls,
# 2026-12-07): layer 1 (middle) AP 0.990, p@20 1.00; layer 2 (last) AP 0.991, p@20 1.00; layer 0 (the
# transformer's input) AP 0.835, p@20 0.20 (docs/benchmarks.md). The middle layer is as good as the last there. For
# a pretrained backbone with no owl head (wav2vec2-base, `export --embedding-only`) it rests on the literature, not
# measured here (no pretrained backbone offline): phonetic and general acoustic information peaks in the middle
# layers and the last ones specialise to the pre-training task (Pasad et al. 2021, "Layer-wise analysis of a
# self-supervised speech representation model"), and bioacoustic transfer from speech models does best from middle
# layers (Sarkar & Magimai-Doss 2023, "Can self-supervised neural representations pre-trained on human speech
# distinguish animal callers?").
EMBEDDING_CHOICE = ("middle layer (num_hidden_layers // 2): on the demo's model AP 0.990 / p@20 1.00 vs last layer "
                    "AP 0.991 / p@20 1.00 and layer 0 AP 0.835 / p@20 0.20 (bench/search_round.py --layers); on "
                    "wav2vec2-base from the literature, not measured here: no pretrained backbone offline")


def middle_layer(model) -> int:
    """num_hidden_layers // 2, but never layer 0 (the transformer's input, far worse above) when the model has a
    layer: a one-layer model (`train --layers 1`) embeds with that layer."""
    n = int(model.config.num_hidden_layers)
    return max(min(n, 1), n // 2)


def with_embedding(model, layer: int):
    """The model, its class swapped for a subclass whose forward returns a ModelOutput with `logits` (None for a
    backbone without a head) and `embedding`: the mean over frames of hidden_states[layer] (0 = the transformer's
    input, L = its last layer). Optimum exports the outputs its config lists, by name; parity reads `.logits`."""
    from dataclasses import dataclass as _dataclass

    from transformers.utils import ModelOutput

    @_dataclass
    class EmbeddingOutput(ModelOutput):
        logits: object = None
        embedding: object = None

    base = type(model)
    n = int(model.config.num_hidden_layers)
    if not 0 <= layer <= n:
        raise ConfigError(f"--embedding-layer {layer}: the model has layers 0..{n}", f"pick one, e.g. {n // 2}")

    class WithEmbedding(base):
        __module__ = base.__module__   # Optimum infers the library (transformers) from the module

        def forward(self, input_values, attention_mask=None):
            out = base.forward(self, input_values, attention_mask=attention_mask, output_hidden_states=True,
                               return_dict=True)
            return EmbeddingOutput(getattr(out, "logits", None), out.hidden_states[layer].mean(dim=1))

    WithEmbedding.__name__ = base.__name__
    model.__class__ = WithEmbedding
    return model


def _config_with_embedding(model, task: str, logits: bool):
    from optimum.exporters.tasks import TasksManager

    ctor = TasksManager.get_exporter_config_constructor("onnx", model, task=task, library_name="transformers")
    base = type(ctor(model.config, task=task))

    class EmbeddingConfig(base):
        @property
        def outputs(self):
            return {**(super().outputs if logits else {}), EMBEDDING_OUTPUT: {0: "batch_size"}}

    return EmbeddingConfig(model.config, task=task)


def export_onnx(model, out_dir: Path, opset: int = DEFAULT_OPSET, embedding_layer: int | None = None,
                task: str = TASK) -> ExportedGraph:
    """fp32 ONNX with dynamic batch and length axes (Optimum's audio-classification config); with
    `embedding_layer`, a second output `embedding` (batch, hidden_size): the mean over frames of that layer.
    `task` "feature-extraction" (a backbone with no head): the embedding is the only output."""
    require("optimum.exporters.onnx")
    onnx = require("onnx")
    from optimum.exporters.onnx import onnx_export_from_model

    out_dir.mkdir(parents=True, exist_ok=True)
    kw = {}
    if embedding_layer is not None:
        with_embedding(model, embedding_layer)
        kw["custom_onnx_configs"] = {"model": _config_with_embedding(model, task, logits=task == TASK)}
    # Optimum's own validation is skipped: parity.py checks the export more thoroughly, on real clips.
    with quiet():
        onnx_export_from_model(model, str(out_dir), task=task, opset=opset, do_validation=False, **kw)
    path = out_dir / "model.onnx"
    graph = onnx.load(str(path), load_external_data=False).graph
    outputs = [o.name for o in graph.output]
    embedding = None
    if embedding_layer is not None:
        embedding = {"output": EMBEDDING_OUTPUT, "layer": int(embedding_layer), "dim": int(model.config.hidden_size),
                     "pooling": "mean over frames", "layers": int(model.config.num_hidden_layers)}
    logits = next((n for n in outputs if n != EMBEDDING_OUTPUT), "")
    return ExportedGraph(path, graph.input[0].name, logits, opset, embedding)


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
