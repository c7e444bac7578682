"""int8 dynamic quantization with Optimum's ORTQuantizer and the preset for the target CPU.

Only MatMul is quantized, with signed (QInt8) weights: on this project's x86 CPU that was the fastest accurate
choice (about 0.24 s per 5 s window for wav2vec2-base on 2 threads, against 0.38 s for fp32 ONNX Runtime and
0.47 s for PyTorch); bench/export_speed.py measures it again. Dynamic quantization needs no calibration data, so any checkpoint can be quantized. The parity check after
quantization is the guard against a preset that saturates on some model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .onnx_export import quiet, require

TARGETS = ("x86", "arm64")
OPERATORS = ("MatMul",)


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


def quantize_int8(fp32_path: Path, out_path: Path, target: str, per_channel: bool = False) -> Path:
    """Write the int8 model for `target` to `out_path`. `fp32_path`'s folder must hold Optimum's config.json."""
    require("optimum.onnxruntime")
    from optimum.onnxruntime import ORTQuantizer

    quantizer = ORTQuantizer.from_pretrained(str(fp32_path.parent), file_name=fp32_path.name)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp, quiet():
        quantizer.quantize(save_dir=tmp, quantization_config=quantization_config(target, per_channel))
        produced = next(p for p in Path(tmp).glob("*.onnx"))
        shutil.move(str(produced), out_path)
    return out_path
