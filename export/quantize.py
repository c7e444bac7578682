"""int8 quantization: MatMul dynamic with Optimum's ORTQuantizer and the preset for the target CPU; optionally the
convolutional feature encoder static (QDQ), calibrated on audio windows.

The default quantizes only MatMul, with signed (QInt8) weights: on this project's x86 CPU that was the fastest
accurate choice (about 0.24 s per 5 s window for wav2vec2-base on 2 threads, against 0.38 s for fp32 ONNX Runtime
and 0.47 s for PyTorch); bench/export_speed.py measures it again. Dynamic quantization needs no calibration data, so
any checkpoint can be quantized. The parity check after quantization is the guard against a preset that saturates
on some model.

With `calibration` (model-input windows), the feature encoder's convolutions after the first also become int8:
static QDQ (u8 activations with ranges calibrated on the windows, s8 per-channel weights), which ONNX Runtime runs
as QLinearConv. Dynamic int8 of those convolutions (ConvInteger) is slower than fp32; static is faster (25-36 %
per window on wav2vec2-base, 2 threads) but its fixed activation ranges cost accuracy: on a random-init
wav2vec2-base against fp32 the logit error about doubles (median and 90th percentile) and one clipped real window
was off by 12x the dynamic model's worst (docs/benchmarks.md "Export: size and speed"). So it is not the
default: an option for whoever checks parity on their own clips.
The first convolution (one input channel, followed by the InstanceNormalization that rescales each channel) stays
fp32: it is cheap, and quantizing its output before the per-channel normalisation amplifies the error.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .onnx_export import quiet, require

TARGETS = ("x86", "arm64")
OPERATORS = ("MatMul",)
METADATA_KEY = "hootwatch.quantization"   # the scheme, as JSON, in the int8 file's metadata_props
MAX_CALIBRATION_WINDOWS = 32              # evenly spaced subset: calibration runs the model once per window
_ENCODER_CONV = re.compile(r"feature_extractor/conv_layers\.(\d+)/")


def default_target() -> str:
    import platform

    return "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86"


def quantization_config(target: str, per_channel: bool = False):
    require("optimum.onnxruntime")
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if target == "arm64":  # Jetson, Raspberry Pi
        return AutoQuantizationConfig.arm64(is_static=False, per_channel=per_channel, operators_to_quantize=list(OPERATORS))
    if target == "x86":
        # the avx512_vnni preset is u8 activations / s8 weights (the avx2 preset is u8/u8, which measured slower)
        return AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=per_channel, operators_to_quantize=list(OPERATORS))
    raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")


def scheme(target: str, per_channel: bool = False, calibration_windows: int = 0, static_convs: int = 0) -> dict:
    """What `quantize_int8` did, for the manifest's metrics and the int8 file's metadata."""
    d = {"target": target, "operators": list(OPERATORS), "weights": "int8 (signed)", "per_channel": per_channel,
         "mode": "dynamic"}
    if static_convs:
        d.update(operators=[*OPERATORS, "Conv"], mode="dynamic MatMul + static Conv",
                 conv={"format": "QDQ (QLinearConv)", "layers": "feature encoder, all but the first",
                       "nodes": static_convs, "activations": "uint8, MinMax ranges", "weights": "int8 per channel",
                       "calibration_windows": calibration_windows})
    return d


def read_scheme(path: Path) -> dict | None:
    """The scheme `quantize_int8` stamped into an int8 file, or None (an older file)."""
    onnx = require("onnx")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY]) if METADATA_KEY in props else None


def encoder_convs(path: Path) -> list[str]:
    """Names of the feature encoder's Conv nodes after the first (wav2vec2, HuBERT and WavLM name them alike)."""
    onnx = require("onnx")
    names = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        m = _ENCODER_CONV.search(node.name)
        if node.op_type == "Conv" and m and int(m.group(1)) > 0:
            names.append(node.name)
    return names


def calibration_subset(windows: np.ndarray, limit: int = MAX_CALIBRATION_WINDOWS) -> np.ndarray:
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim != 2 or not len(x):
        raise ValueError(f"calibration must be (windows, samples) with at least one window, got shape {x.shape}")
    if len(x) > limit:
        x = x[np.linspace(0, len(x) - 1, limit).round().astype(int)]
    return x


def quantize_int8(fp32_path: Path, out_path: Path, target: str, per_channel: bool = False,
                  calibration: np.ndarray | None = None) -> Path:
    """Write the int8 model for `target` to `out_path`. `fp32_path`'s folder must hold Optimum's config.json.

    `calibration`: model-input windows (n, samples), normalised as the bundle's audio contract normalises them
    (the ONNX graph's input), e.g. the parity clips. None (the default): MatMul dynamic only. Given: the feature
    encoder's convolutions (all but the first) also static int8, their activation ranges calibrated on these
    windows (at most MAX_CALIBRATION_WINDOWS of them, evenly spaced)."""
    require("optimum.onnxruntime")
    from optimum.onnxruntime import ORTQuantizer

    out_path = Path(out_path)
    quantizer = ORTQuantizer.from_pretrained(str(fp32_path.parent), file_name=fp32_path.name)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp, quiet():
        quantizer.quantize(save_dir=tmp, quantization_config=quantization_config(target, per_channel))
        produced = next(p for p in Path(tmp).glob("*.onnx"))
        convs = encoder_convs(produced) if calibration is not None else []
        windows = calibration_subset(calibration) if convs else np.zeros((0, 0), np.float32)
        if convs:
            _static_convs(produced, out_path, convs, windows)
        else:
            shutil.move(str(produced), out_path)
    _stamp(out_path, scheme(target, per_channel, len(windows), len(convs)))
    return out_path


def _static_convs(src: Path, dst: Path, nodes: list[str], windows: np.ndarray) -> None:
    """Static QDQ int8 for `nodes` (Conv), MinMax ranges from `windows` fed one at a time (batch 1, like the edge)."""
    onnx = require("onnx")
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    class Windows(CalibrationDataReader):
        def __init__(self):
            self._it = iter(windows[i:i + 1] for i in range(len(windows)))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    # u8 activations / s8 weights: what ONNX Runtime's x86 int8 kernels (VNNI) are fastest with; per-channel
    # weights; no CalibMaxIntermediateOutputs (in onnxruntime 1.32 it drops the ranges it has flushed)
    quantize_static(str(src), str(dst), Windows(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    nodes_to_quantize=nodes, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def _stamp(path: Path, d: dict) -> None:
    from .bundle_writer import stamp_metadata

    stamp_metadata(path, {METADATA_KEY: json.dumps(d, sort_keys=True)})
