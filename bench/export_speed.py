"""Sizes and speeds of a full-size wav2vec2-base classifier: PyTorch eager vs ONNX fp32 vs ONNX int8.

Random init (no download): speed and size do not depend on the weights. Besides the int8 model the export
ships (MatMul only, signed weights), alternatives are measured so the choice stays justified: the avx2 preset
(unsigned weights), MatMul+Conv dynamic (ConvInteger), the export's calibrated option (`quantize_int8(...,
calibration=...)`: feature-encoder convs static QDQ int8, run as QLinearConv) and ONNX Runtime's transformer
fusions (onnxruntime.transformers.optimizer, model type bert) before the shipped quantization. "max |logit diff|"
is against PyTorch on a few noise windows; "max |p(owl) diff|" on real 5 s windows (../shared/data/real, when
present; 1 in 4) and synthetic owl calls (hootwatch.trainer.synth), none of them used for calibration. With random init
the logits are small, so both are rough accuracy proxies only (the real gate is the parity check on labelled clips
at export time).

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


def owl_windows(n: int, seed: int) -> np.ndarray:
    """Synthetic powerful owl calls (1-2 per window) at 0-20 dB SNR in synthetic night noise."""
    from hootwatch.trainer.synth import calls
    from hootwatch.trainer.synth.backgrounds import synthetic_night
    from hootwatch.trainer.synth.mixing import mix_at_snr
    from hootwatch.trainer.synth.propagation import propagate

    rng, size = np.random.default_rng(seed), int(SR * WINDOW_S)
    out = []
    for _ in range(n):
        x = synthetic_night(rng, size, SR).astype(np.float32)
        dry, spans = calls.owl_bout(rng, SR, n_calls=int(rng.integers(1, 3)), gap_s=(1.5, 2.5))
        start = int(rng.uniform(0, 1.5) * SR)
        wet = propagate(dry, SR, rng)[: size - start]
        a, b = spans[0]
        mix_at_snr(x, wet, start, (0, min(len(wet), int((b - a) * SR))), SR, calls.OWL_BAND_HZ, float(rng.uniform(0, 20)))
        out.append(x)
    return np.stack(out)


def real_windows(every: int, offset: int) -> np.ndarray:
    """Consecutive 5 s windows of the real recordings, every `every`-th from `offset` (empty when absent)."""
    from hootwatch.edge.contract.audio import is_audio_file, load
    from hootwatch.trainer.synth.backgrounds import default_background_dir

    real = default_background_dir()   # ../shared/data/real beside the checkout (or a parent of it)
    size, out = int(SR * WINDOW_S), []
    for p in sorted(f for f in real.rglob("*") if is_audio_file(f)) if real else []:
        x = load(p, SR)
        x = np.pad(x, (0, max(0, size - len(x))))
        out += [x[s:s + size] for s in range(0, len(x) - size + 1, size)]
    return np.stack(out[offset::every]).astype(np.float32) if out else np.zeros((0, size), np.float32)


def fused(fp32: Path, out_dir: Path, heads: int, hidden: int) -> tuple[Path, dict]:
    """ONNX Runtime's transformer fusions (attention, GELU, LayerNorm, ...) on the fp32 graph; fusion counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    from hootwatch.export.onnx_export import quiet

    out_dir.mkdir()
    with quiet():
        m = optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    m.save_model_to_file(str(out_dir / fp32.name))
    (out_dir / "config.json").write_bytes((fp32.parent / "config.json").read_bytes())
    return out_dir / fp32.name, {k: v for k, v in m.get_fused_operator_statistics().items() if v}


def dynamic_matmul(src: Path, out: Path) -> Path:
    """The shipped avx512_vnni MatMul preset through onnxruntime directly (Optimum's shape inference refuses the
    fused graph's contrib ops)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from hootwatch.export.onnx_export import quiet

    with quiet():
        quantize_dynamic(str(src), str(out), op_types_to_quantize=["MatMul"], per_channel=False, reduce_range=False,
                         weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True,
                                                                     "DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def main() -> None:
    args = parse()
    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    from hootwatch.edge.contract.detector import softmax
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
        norm = Normalisation()
        if not args.skip_alternatives:
            paths["int8_u8w"] = quantize_alternative(fp32, tmp / "int8_u8w.onnx", "avx2", ["MatMul"])
            paths["int8_matmul_conv"] = quantize_alternative(fp32, tmp / "int8_mc.onnx", "avx512_vnni", ["MatMul", "Conv"])
            calibration = norm.apply(np.concatenate([real_windows(8, 3)[:24], owl_windows(8, seed=100)]), SR)
            t = time.perf_counter()
            paths["int8_static_conv"] = quantize_int8(fp32, tmp / "int8_sc.onnx", "x86", calibration=calibration)
            console.print(f"quantize int8, encoder convs static (QDQ) on {len(calibration)} windows: "
                          f"{time.perf_counter() - t:.1f} s")
            fused_fp32, counts = fused(fp32, tmp / "fused", model.config.num_attention_heads, model.config.hidden_size)
            console.print(f"ORT transformer fusions applied: {counts}")
            paths["int8_fused"] = dynamic_matmul(fused_fp32, tmp / "int8_fused.onnx")

        rng = np.random.default_rng(1)
        x = rng.standard_normal((4, int(SR * WINDOW_S))).astype(np.float32)
        reference = torch_logits(model, norm.apply(x, SR), args.threads)
        detectors = {name: edge_detector(p, SR, WINDOW_S, norm, ("not_owl", "owl"), "owl", 0.5, args.threads)
                     for name, p in paths.items()}
        diffs = {name: float(np.abs(d.logits(x) - reference).max()) for name, d in detectors.items()}
        audio = np.concatenate([real_windows(4, 0), owl_windows(16, seed=7)])   # not the calibration windows
        p_ref = softmax(torch_logits(model, norm.apply(audio, SR), args.threads).astype(np.float64))[:, 1]
        p_diffs = {name: float(np.abs(softmax(d.logits(audio).astype(np.float64))[:, 1] - p_ref).max())
                   for name, d in detectors.items()}

        speed = measure_speed(model, paths, int(SR * WINDOW_S), WINDOW_S, args.threads, args.repeats)

    table = Table(title=f"wav2vec2-base, ms per {WINDOW_S:g} s window, {args.threads} threads, best of {args.repeats}")
    for col in ("engine", "file MB", "batch 1", "batch 8", "max |logit diff| vs PyTorch",
                f"max |p(owl) diff|, {len(audio)} windows"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, ms in speed.ms_per_window.items():
        key = name.removeprefix("onnx_")
        size = speed.file_mb.get(key)
        table.add_row(name, "-" if size is None else f"{size:.1f}", f"{ms['batch1']:.0f}", f"{ms['batch8']:.0f}",
                      f"{diffs[key]:.4f}" if key in diffs else "-", f"{p_diffs[key]:.4f}" if key in p_diffs else "-")
    console.print(table)
    console.print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes compete for the CPU)")


if __name__ == "__main__":
    main()
