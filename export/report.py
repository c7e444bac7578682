"""Size and speed report (ms per window at batch 1 and 8, file sizes) and the rich tables the export prints.

Speeds are measured on the exporting machine with a fixed thread count (default 2, like a Raspberry Pi's
share of a busy box); they show the relative cost of PyTorch, fp32 ONNX and int8 ONNX, not field numbers.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .parity import ParityReport, ort_session

BATCHES = (1, 8)


@dataclass(frozen=True)
class SpeedReport:
    window_s: float
    threads: int
    repeats: int
    ms_per_window: dict = field(default_factory=dict)   # {engine: {"batch1": ms, "batch8": ms}}
    file_mb: dict = field(default_factory=dict)         # {file: MB}
    machine: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def machine_info() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def _best_ms_per_window(engines: dict, x: np.ndarray, repeats: int) -> dict[str, float]:
    """Best-of-N ms per window for each engine. Engines take turns within each repeat, so a burst of load from
    other processes on a shared machine hits them all alike instead of skewing whichever ran then."""
    best = {name: float("inf") for name in engines}
    for run in engines.values():
        run(x)  # warm-up
    for _ in range(repeats):
        for name, run in engines.items():
            t = time.perf_counter()
            run(x)
            best[name] = min(best[name], time.perf_counter() - t)
    return {name: round(1000.0 * b / len(x), 2) for name, b in best.items()}


def measure_speed(model, onnx_paths: dict[str, Path], window_samples: int, window_s: float, threads: int = 2,
                  repeats: int = 3) -> SpeedReport:
    """ms per window for PyTorch eager (when `model` is given) and each ONNX file, at batch 1 and 8."""
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, window_samples)).astype(np.float32) for b in BATCHES}
    engines = {}
    if model is not None:
        import torch

        def run_torch(x):
            with torch.inference_mode():
                model(torch.from_numpy(x))
        engines["pytorch"] = run_torch
    for name, path in onnx_paths.items():
        try:
            sess = ort_session(path, threads)
        except Exception:
            continue  # e.g. fp16 on a CPU; parity already reports it
        in_name = sess.get_inputs()[0].name
        engines[f"onnx_{name}"] = lambda x, s=sess, n=in_name: s.run(None, {n: x})
    out: dict[str, dict] = {name: {} for name in engines}
    before = None
    if model is not None:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        for b in BATCHES:
            for name, ms in _best_ms_per_window(engines, inputs[b], repeats).items():
                out[name][f"batch{b}"] = ms
    finally:
        if before is not None:
            torch.set_num_threads(before)
    sizes = {name: round(Path(p).stat().st_size / 1e6, 2) for name, p in onnx_paths.items()}
    return SpeedReport(window_s, threads, repeats, out, sizes, machine_info())


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or x != x else format(x, spec)


def parity_table(report: ParityReport):
    from rich.table import Table

    kind = f"{report.positive_label} F1" if report.labelled else "F1 (unlabelled)"
    t = Table(title=f"Parity on {report.n_clips} clips (threshold {report.threshold:.2f})")
    for col in ("model", "max |logit diff|", "max |prob diff|", "decision agreement", kind, "note"):
        t.add_column(col, justify="left" if col in ("model", "note") else "right")
    for v in report.variants:
        t.add_row(v.name, _fmt(v.max_abs_logit_diff, ".4f"), _fmt(v.max_abs_prob_diff, ".4f"),
                  _fmt(v.agreement, ".1%"), _fmt(v.f1, ".3f"), v.error)
    return t


def speed_table(speed: SpeedReport):
    from rich.table import Table

    t = Table(title=f"Speed: ms per {speed.window_s:g} s window on {speed.threads} threads "
                    f"({speed.machine.get('machine')}, {speed.machine.get('cpu_count')} CPUs)")
    for col in ("engine", "batch 1", "batch 8", "file MB"):
        t.add_column(col, justify="left" if col == "engine" else "right")
    for name, ms in speed.ms_per_window.items():
        size = speed.file_mb.get(name.removeprefix("onnx_"))
        t.add_row(name, _fmt(ms.get("batch1"), ".1f"), _fmt(ms.get("batch8"), ".1f"), _fmt(size, ".1f"))
    return t
