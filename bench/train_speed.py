"""Benchmark: training throughput (samples per second) of the trainer's models, fp32 vs bf16/fp16 on a GPU.

Random 5 s clips at 16 kHz through the same model builders and optimizer the trainer uses: the `--tiny` model
(feature encoder trained) and a full-size wav2vec2-base built from its config with random weights (feature
encoder frozen, the trainer's default for a pretrained backbone). Prints samples/s and, on a GPU, peak memory.

    python bench/train_speed.py                        # CPU: tiny and base, fp32
    python bench/train_speed.py --batch-size 32        # on a GPU box: adds bf16 and fp16 rows
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from rich.console import Console
from rich.table import Table

from hootwatch.trainer.model import build_backbone

LABELS = {"not_owl": 0, "owl": 1}


def base_model():
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification
    cfg = Wav2Vec2Config(num_labels=2, label2id=LABELS, id2label={v: k for k, v in LABELS.items()})
    return Wav2Vec2ForSequenceClassification(cfg)   # wav2vec2-base architecture, random weights


def measure(model, device: str, precision: str, batch: int, steps: int, checkpointing: bool) -> tuple[float, float]:
    model = model.to(device).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    x = torch.randn(batch, 80000, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(input_values=x).logits.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up (kernels, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return batch * steps / elapsed, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=None, help="default 8 on CPU, 32 on GPU")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 3 on CPU, 20 on GPU)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default="tiny,base")
    p.add_argument("--gradient-checkpointing", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = args.batch_size or (32 if device == "cuda" else 8)
    steps = args.steps or (20 if device == "cuda" else 3)
    precisions = ["fp32"] + (["bf16", "fp16"] if device == "cuda" else [])

    table = Table(title=f"training throughput, 5 s clips at 16 kHz, batch {batch}, {device}")
    for col in ("model", "trainable params", "precision", "samples / s", "peak GPU GiB"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in args.models.split(","):
        for precision in precisions:
            torch.manual_seed(0)
            if name == "tiny":
                model = build_backbone("", True, LABELS).model
            else:
                model = base_model()
                model.freeze_feature_encoder()
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            sps, peak = measure(model, device, precision, batch, steps, args.gradient_checkpointing)
            table.add_row(name, f"{trainable / 1e6:.2f} M", precision, f"{sps:.1f}",
                          "-" if peak != peak else f"{peak:.2f}")
            del model
    console = Console(width=120)
    console.print(table)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "none"
    console.print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs ({args.threads} threads), GPU: {gpu}, "
                  f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
