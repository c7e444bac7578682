"""Sizes and speeds of a full-size wav2vec2-base classifier: PyTorch eager vs ONNX fp32 vs ONNX int8.

Random init (no download): speed and size do not depend on the weights. Besides the int8 model the export
ships (MatMul only, signed weights), two alternatives are measured so the choice stays justified: the avx2
preset (unsigned weights) and MatMul+Conv. "max |logit diff|" is against PyTorch on a few noise windows, a
rough accuracy proxy only (the real gate is the parity check on labelled clips at export time).

    python bench/export_speed.py [--threads 2] [--repeats 3] [--skip-alternatives]

Timings are best-of-N wall time on whatever else the machine is doing; on a shared box they are upper bounds.
"""

from __future__ import annotations

import argparse
import platform
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000
WINDOW_S = 5.0


@dataclass(frozen=True)
class Args:
    threads: int = 2
    repeats: int = 3
    skip_alternatives: bool = False


def parse() -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-alternatives", action="store_true", help="only the int8 model the export ships")
    a = p.parse_args()
    return Args(a.threads, a.repeats, a.skip_alternatives)


def quantize_alternative(fp32: Path, out: Path, preset: str, operators: list[str]) -> Path:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    from hootwatch.export.onnx_export import quiet

    config = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=False, operators_to_quantize=operators)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, quiet():
        ORTQuantizer.from_pretrained(str(fp32.parent), file_name=fp32.name).quantize(save_dir=tmp, quantization_config=config)
        next(Path(tmp).glob("*.onnx")).rename(out)
    return out


def main() -> None:
    args = parse()
    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    from hootwatch.export.onnx_export import export_onnx, fold_weight_norm
    from hootwatch.edge.contract.preprocess import Normalisation
    from hootwatch.export.parity import edge_detector, torch_logits
    from hootwatch.export.quantize import quantize_int8
    from hootwatch.export.report import measure_speed

    console = Console()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = Wav2Vec2ForSequenceClassification(Wav2Vec2Config(num_labels=2)).eval()  # defaults = wav2vec2-base
    folded = fold_weight_norm(model)
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"wav2vec2-base classifier: {n_params / 1e6:.1f} M parameters; folded weight norm in {folded}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        fp32 = export_onnx(model, tmp / "onnx").path
        console.print(f"export fp32: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        paths = {"fp32": fp32, "int8": quantize_int8(fp32, tmp / "int8.onnx", "x86")}
        console.print(f"quantize int8 (MatMul, s8 weights): {time.perf_counter() - t:.1f} s")
        if not args.skip_alternatives:
            paths["int8_u8w"] = quantize_alternative(fp32, tmp / "int8_u8w.onnx", "avx2", ["MatMul"])
            paths["int8_matmul_conv"] = quantize_alternative(fp32, tmp / "int8_mc.onnx", "avx512_vnni", ["MatMul", "Conv"])

        rng = np.random.default_rng(1)
        x = rng.standard_normal((4, int(SR * WINDOW_S))).astype(np.float32)
        norm = Normalisation()
        reference = torch_logits(model, norm.apply(x, SR), args.threads)
        diffs = {name: float(np.abs(edge_detector(p, SR, WINDOW_S, norm, ("not_owl", "owl"), "owl", 0.5,
                                                  args.threads).logits(x) - reference).max())
                 for name, p in paths.items()}

        speed = measure_speed(model, paths, int(SR * WINDOW_S), WINDOW_S, args.threads, args.repeats)

    table = Table(title=f"wav2vec2-base, ms per {WINDOW_S:g} s window, {args.threads} threads, best of {args.repeats}")
    for col in ("engine", "file MB", "batch 1", "batch 8", "max |logit diff| vs PyTorch"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, ms in speed.ms_per_window.items():
        key = name.removeprefix("onnx_")
        size = speed.file_mb.get(key)
        table.add_row(name, "-" if size is None else f"{size:.1f}", f"{ms['batch1']:.0f}", f"{ms['batch8']:.0f}",
                      f"{diffs[key]:.4f}" if key in diffs else "-")
    console.print(table)
    console.print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes compete for the CPU)")


if __name__ == "__main__":
    main()
