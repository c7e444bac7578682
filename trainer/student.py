"""The cascade's first stage: a small wav2vec2 (the student) distilled from the fine-tuned model's window scores.

`hootwatch train` does this at the end of every run (unless `--no-student`) and writes RUN/student/: a plain
transformers checkpoint (so export takes it through the same Optimum/ONNX/int8 path as the full model), the
validation clips' student scores (export's parity check compares with them) and report.json.

What it learns from: the full model's owl probability (a soft target) of
- the centred window of every training clip,
- windows at the run's hop over the training recordings (the scan's own windows: calls cut by window edges, quiet
  stretches, the model's own false alarms), and
- windows over any unlabelled recordings the user gives (`--distil-audio DIR`: SD cards are plentiful, and the
  student must learn what the full model says about the user's sites, not only about the clips),
at most `--distil-max-windows` in all (spread evenly over the recordings), held in memory as float16.

The loss weights the windows the full model calls an owl up to the classes' ratio (at most MAX_WEIGHT): the
student's job is to miss none of them. Its pass threshold is chosen at export, on labelled validation recordings,
by the rule about calls (hootwatch.edge.scan.pass_rule); here the validation clips give a first figure.

The architecture is the `--tiny` model's (a learnable Gabor filterbank, layer-normalised frames, one transformer
layer, weighted layer sum) at half its width and half its frame rate (25 ms filters every 20 ms, then 40 ms frames):
about 0.4-0.7 ms a window in ONNX Runtime on 2 threads, against ~1.4 ms for the tiny model and ~180-260 ms for
int8 wav2vec2-base (bench/scan_throughput.py), and a few ms a window to train on a CPU.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from hootwatch.edge.contract import audio
from hootwatch.edge.contract.student import PASS_MARGIN, with_margin
from hootwatch.edge.contract.windows import WindowSpec, fit_length, window_starts
from hootwatch.edge.core.errors import AudioReadError

log = logging.getLogger(__name__)

DIR_NAME = "student"
MODEL_SUBDIR = "model"
VALIDATION_FILE = "validation.npz"
REPORT_FILE = "report.json"
WIDTH = 48
LAYERS = 1
MAX_WEIGHT = 20.0
LEARNING_RATE = 2e-3
BATCH = 32
SCORE_BATCH = 64
MIN_POSITIVES = 5


def student_config(label2id: dict[str, int]):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=2 * WIDTH,
        conv_dim=(WIDTH,) * 2, conv_kernel=(400, 3), conv_stride=(320, 2), num_feat_extract_layers=2,
        feat_extract_norm="layer", conv_bias=True, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0, classifier_proj_size=WIDTH,
        use_weighted_layer_sum=True, num_labels=len(label2id), label2id=dict(label2id),
        id2label={i: lab for lab, i in label2id.items()},
    )


def plan_windows(files: list[Path], sample_rate: int, window_s: float, hop_s: float, cap: int,
                 seed: int = 0) -> list[tuple[Path, np.ndarray]]:
    """Which windows (indices at the scan's hop) of each file to take: at most `cap` in all, spread evenly over
    the files. A file whose header cannot be read is left out with a warning (one bad file never stops the run)."""
    spec = WindowSpec(sample_rate, window_s, hop_s)
    counts = {}
    for f in files:
        try:
            counts[f] = len(window_starts(int(audio.probe(f).duration_s * sample_rate), spec))
        except AudioReadError as exc:
            log.warning("%s (left out of the student's audio)", exc)
    total = sum(counts.values())
    if total == 0 or cap <= 0:
        return []
    stride = max(1, math.ceil(total / cap))
    rng = np.random.default_rng(seed)
    plan, left = [], cap
    for f, n in counts.items():
        keep = np.arange(int(rng.integers(stride)) if stride > 1 else 0, n, stride)[:left]
        if len(keep):
            plan.append((f, keep))
            left -= len(keep)
    return plan


def planned_windows(plan: list[tuple[Path, np.ndarray]], spec: WindowSpec):
    """The planned windows, one raw float32 copy at a time (a file is decoded once; a short one is reflection-
    padded as the scan pads it); a file that fails to decode is left out with a warning."""
    win = spec.window_samples
    for f, keep in plan:
        try:
            x = audio.load(f, spec.sample_rate)
        except AudioReadError as exc:
            log.warning("%s (left out of the student's audio)", exc)
            continue
        starts = window_starts(len(x), spec)
        for s in starts[keep[keep < len(starts)]]:
            yield np.array(fit_length(x[s:s + win], win), np.float32)


def clip_windows(clips, sample_rate: int, window_s: float):
    """The centred window of each clip (as evaluation cuts it); a clip that cannot be read is left out."""
    for c in clips:
        try:
            yield c.cut(sample_rate, window_s)
        except AudioReadError as exc:
            log.warning("%s (left out of the student's audio)", exc)


def normalised(windows, n: int, norm, sample_rate: int, window_samples: int) -> np.ndarray:
    """At most `n` raw windows from an iterator, as both models read them (the edge's normalisation), into one
    float16 array: the only copy of the student's audio in memory (6000 windows of 5 s at 16 kHz: 0.96 GB)."""
    out = np.empty((n, window_samples), np.float16)
    filled, batch = 0, []

    def flush():
        nonlocal filled, batch
        if batch:
            out[filled:filled + len(batch)] = norm.apply(np.stack(batch), sample_rate)
            filled, batch = filled + len(batch), []

    for w in windows:
        if filled + len(batch) >= n:
            break
        batch.append(w)
        if len(batch) == SCORE_BATCH:
            flush()
    flush()
    return out[:filled]


def probabilities(model, x: np.ndarray, pos: int, device, batch: int = SCORE_BATCH) -> np.ndarray:
    """Owl probability of each (normalised) window under a transformers audio classifier."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.asarray(x[i:i + batch], np.float32)).to(device)
            out.append(torch.softmax(model(input_values=xb).logits.float(), -1)[:, pos].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def fit(x: np.ndarray, targets: np.ndarray, label2id: dict[str, int], pos: int, level: float, sample_rate: int,
        epochs: int, device, seed: int = 0, on_epoch=None):
    """A student trained on normalised windows `x` towards the full model's probabilities `targets`."""
    import torch

    from .model import gabor_init

    y = np.asarray(targets, np.float32)
    n_pos = int((y >= level).sum())
    if n_pos < MIN_POSITIVES or len(y) - n_pos < MIN_POSITIVES:
        raise ValueError(f"the model calls {n_pos} of {len(y)} windows an owl (score >= {level:g}); a student needs "
                         f"at least {MIN_POSITIVES} of each kind")
    torch.manual_seed(seed)
    from transformers import Wav2Vec2ForSequenceClassification

    model = Wav2Vec2ForSequenceClassification(student_config(label2id))
    gabor_init(model.wav2vec2.feature_extractor.conv_layers[0].conv, sample_rate)
    model.to(device).train()
    weight = np.where(y >= level, min(MAX_WEIGHT, max(1.0, (len(y) - n_pos) / n_pos)), 1.0).astype(np.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    steps = epochs * math.ceil(len(y) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LEARNING_RATE, total_steps=max(steps, 1), pct_start=0.1)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(y))
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = np.sort(order[i:i + BATCH])
            xb = torch.from_numpy(x[idx].astype(np.float32)).to(device)
            t = torch.from_numpy(y[idx]).to(device)
            w = torch.from_numpy(weight[idx]).to(device)
            logp = torch.log_softmax(model(input_values=xb).logits.float(), -1)
            log_pos = logp[:, pos]
            log_neg = torch.logsumexp(torch.cat([logp[:, :pos], logp[:, pos + 1:]], 1), 1)
            loss = -(w * (t * log_pos + (1 - t) * log_neg)).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch:
            on_epoch(epoch + 1, total / len(y))
    return model.eval()


def clip_rule(student: np.ndarray, full: np.ndarray, is_owl: np.ndarray, threshold: float) -> dict:
    """On clips (one window, one call each): the highest pass threshold that keeps every owl clip the full model
    detects, and what it passes."""
    student, full, is_owl = np.asarray(student), np.asarray(full), np.asarray(is_owl, bool)
    detected = is_owl & (full >= threshold)
    t = with_margin(float(student[detected].min()) * (1.0 - PASS_MARGIN)) if detected.any() else 0.0
    return {"rule": "every owl clip the full model detects is kept", "pass_threshold": t,
            "clips": int(len(student)), "owl_clips": int(is_owl.sum()), "owl_clips_detected": int(detected.sum()),
            "pass_rate": round(float((student >= t).mean()) if len(student) else 1.0, 4),
            "other_clips_passed": int(((student >= t) & ~is_owl).sum()), "full_threshold": float(threshold)}


def build(run_dir: Path, teacher, splits, sample_rate: int, window_s: float, hop_s: float, norm, label2id: dict,
          positive_label: str, threshold: float, device, distil_audio: str | None, max_windows: int, epochs: int,
          seed: int = 0, say=print) -> dict | None:
    """Distil RUN/student/ from `teacher` (the best model); returns the report (None: no student, with a warning)."""
    pos = label2id[positive_label]
    t0 = time.perf_counter()
    spec = WindowSpec(sample_rate, window_s, hop_s)
    clips = list(splits.train)
    if len(clips) > max_windows // 2:      # the clips count in the cap too: a spread of them
        clips = [clips[i] for i in np.linspace(0, len(clips) - 1, max_windows // 2).round().astype(int)]
    room = max_windows - len(clips)
    sources = sorted({Path(c.source) for c in splits.train})
    extra = []
    if distil_audio:
        from hootwatch.edge.scan.planning import collect_audio
        extra = collect_audio([distil_audio])
    train_plan = plan_windows(sources, sample_rate, window_s, hop_s, room // 2 if extra else room, seed)
    n_train = sum(len(k) for _, k in train_plan)
    distil_plan = plan_windows(extra, sample_rate, window_s, hop_s, room - n_train, seed + 1) if extra else []
    n_distil = sum(len(k) for _, k in distil_plan)
    x = normalised(itertools.chain(clip_windows(clips, sample_rate, window_s), planned_windows(train_plan, spec),
                                   planned_windows(distil_plan, spec)),
                   len(clips) + n_train + n_distil, norm, sample_rate, spec.window_samples)
    targets = probabilities(teacher, x, pos, device)
    level = min(float(threshold), 0.5)   # an operating point chosen later below the run's is still learnt
    try:
        student = fit(x, targets, label2id, pos, level, sample_rate, epochs, device, seed,
                      on_epoch=lambda e, loss: log.info("student epoch %d: loss %.4f", e, loss))
    except ValueError as exc:
        log.warning("no student (cascade first stage) for this run (%s): its bundle will score every window", exc)
        return None
    val_x = normalised(clip_windows(splits.validation, sample_rate, window_s), len(splits.validation), norm,
                       sample_rate, spec.window_samples)
    val_student, val_full = probabilities(student, val_x, pos, device), probabilities(teacher, val_x, pos, device)
    is_owl = np.array([c.label == positive_label for c in splits.validation], bool)
    if len(is_owl) != len(val_x):     # a validation clip could not be read (warned above): no clip figures
        is_owl, val_student, val_full = is_owl[:0], val_student[:0], val_full[:0]
    out = Path(run_dir) / DIR_NAME
    student.cpu().save_pretrained(out / MODEL_SUBDIR)
    np.savez(out / VALIDATION_FILE, student=val_student, full=val_full, owl=is_owl)
    report = {"architecture": {"width": WIDTH, "layers": LAYERS,
                               "parameters": int(sum(p.numel() for p in student.parameters()))},
              "windows": {"training_clips": len(clips), "training_recordings": n_train, "distil_audio": n_distil,
                          "distil_audio_dir": distil_audio or None, "in_all": int(len(x))},
              "target_level": level, "teacher_positives": int((targets >= level).sum()), "epochs": epochs,
              "validation_clips": clip_rule(val_student, val_full, is_owl, threshold),
              "seconds": round(time.perf_counter() - t0, 1)}
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2))
    v = report["validation_clips"]
    say(f"student (cascade first stage): distilled from {len(x)} windows ({n_distil} from --distil-audio) in "
        f"{report['seconds']:.0f} s; on the validation clips it keeps all {v['owl_clips_detected']} owl clips the "
        f"model detects at pass threshold {v['pass_threshold']:.3g}, passing {v['pass_rate']:.1%} of the clips")
    return report
