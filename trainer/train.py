"""Fine-tune an audio-classification backbone into an owl / not-owl classifier of fixed-length clips.

`run(args)` reads top to bottom like HF's run_audio_classification.py: prepare the run folder, load and split the
data by recording, build the model, train with a plain torch loop driven by `accelerate` (device placement,
bf16/fp16 autocast, gradient accumulation, multi-GPU, checkpoint state), keep the best epoch by the owl
metric on validation, choose the threshold on validation, report on test, build the cascade's first stage, and
write the run folder:

    RUN/model/                 save_pretrained of the best model + feature extractor, hootwatch.json
    RUN/metrics.json           validation and test metrics of the owl class, threshold, per-epoch history
    RUN/pr_curve.png           precision-recall curves (validation, test) with the operating point
    RUN/splits/{train,validation,test}.csv
    RUN/data_summary.json      clips and recordings per class and split
    RUN/run_config.json        arguments, seed, device, precision, package versions
    RUN/student/               the cascade's first stage, a small model distilled from the best (trainer/student.py)
    RUN/checkpoints/           accelerate state (model, optimizer, scheduler, RNG) + trainer_state.json

Several GPUs: `accelerate launch -m hootwatch.trainer.train --data DATA --out RUN ...` (or
`torchrun --nproc_per_node N -m hootwatch.trainer.train ...`); batch_size is per GPU.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.clips import ClipRef, read_clip_csv, write_clip_csv
from hootwatch.edge.core import versions
from hootwatch.edge.core.errors import ConfigError, HootwatchError
from hootwatch.edge.contract.preprocess import FEATURE_EXTRACTOR_KEY, Normalisation

from .args import RESUMABLE, RUN_CONFIG, TrainArgs, resume_args
from .augment import AugmentOptions
from . import init_from, student
from .data import splits as split_mod
from .data.sources import HarvestOptions, load_clips
from .metrics import best_f1, binary_metrics, choose_threshold, positive_scores, pr_curve_png
from .run_folder import META_FILE, MODEL_DIR, RunMeta

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
LOG_EVERY = 20  # batches between progress updates (each reads the loss back from the device)
TRAINER_STATE = "trainer_state.json"
PACKAGES = ("hootwatch", "torch", "transformers", "accelerate", "datasets", "numpy", "scikit-learn", "soundfile",
            "soxr", "crowsetta")   # their versions go into run_config.json


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metrics: dict             # the content of RUN/metrics.json
    threshold: float
    labels: list[str]
    optimizer_steps: int      # optimizer steps taken in this call (resumed runs: since the resume)
    epochs_run: int
    elapsed_s: float


# ---------------------------------------------------------------------------------------------------- run folder
RUN_MARKERS = ("run_config.json", CHECKPOINTS, f"{MODEL_DIR}/{META_FILE}")
RUN_CONTENTS = {"run_config.json", CHECKPOINTS, MODEL_DIR, "metrics.json", "pr_curve.png", "splits",
                "data_summary.json", "data_cache", student.DIR_NAME, "first_stage"}


def check_overwrite(out: Path, data: str) -> None:
    """--overwrite deletes only a hootwatch run folder: never home, /, the current folder, the data or other files."""
    target = out.expanduser().resolve()
    for place, what in ((Path.home(), "your home folder"), (Path("/"), "the root folder /"),
                        (Path.cwd(), "the current folder")):
        if target == place.resolve():
            raise ConfigError(f"--overwrite: {out} is {what}; refusing to delete it",
                              "give --out a folder of its own, e.g. --out runs/owl1")
    if data and Path(data).expanduser().exists():
        src = Path(data).expanduser().resolve()
        if src == target or target in src.parents:
            raise ConfigError(f"--overwrite: {out} holds the training data {data}; refusing to delete it",
                              "choose an --out outside the data folder")
    if not any((target / m).exists() for m in RUN_MARKERS):
        raise ConfigError(f"--overwrite: {out} is not a hootwatch run folder (no {', '.join(RUN_MARKERS)}); "
                          "refusing to delete it", "choose a new --out, or empty that folder yourself")
    others = sorted(p.name for p in target.iterdir() if p.name not in RUN_CONTENTS)
    if others:
        raise ConfigError(f"--overwrite: {out} holds files that are not part of a run: {others[:5]}",
                          "move them elsewhere first, or choose a new --out")


def prepare_run_dir(args: TrainArgs, console) -> bool:
    """Refuse a non-empty run folder unless --resume (returns True) or --overwrite (wipes a run folder only)."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder", "choose another --out")
    non_empty = out.is_dir() and any(out.iterdir())
    if args.resume:
        if not (out / CHECKPOINTS / TRAINER_STATE).is_file():
            raise ConfigError(f"{out}: nothing to resume (no {CHECKPOINTS}/{TRAINER_STATE})",
                              "drop --resume to start a new run, or point --out at an interrupted run")
        return True
    if non_empty:
        if not args.overwrite:
            raise ConfigError(f"{out}: the run folder is not empty",
                              "pass --resume to continue that run, --overwrite to delete it and start again, "
                              "or choose a new --out")
        check_overwrite(out, args.data)
        console.print(f"[bold yellow]--overwrite: deleting the run in {out}[/]")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return False


def write_run_config(run_dir: Path, args: TrainArgs, resuming: bool, record: dict) -> None:
    """A new run writes RUN/run_config.json; a resume keeps it and appends what changed and when."""
    path = run_dir / RUN_CONFIG
    if resuming and path.is_file():
        rc = json.loads(path.read_text())
        before = dict(rc["args"])
        for r in rc.get("resumes", []):
            before.update(r.get("changed", {}))
        changed = {k: getattr(args, k) for k in RESUMABLE if before.get(k) != getattr(args, k)}
        rc.setdefault("resumes", []).append({"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                             "changed": changed, "command": sys.argv,
                                             "device": record["device"], "precision": record["precision"],
                                             "num_processes": record["num_processes"]})
    else:
        rc = record
    path.write_text(json.dumps(rc, indent=2))


# ---------------------------------------------------------------------------------------------------- hardware
def native_bf16() -> bool:
    """bf16 in hardware (Ampere and later): is_bf16_supported() alone also says yes on GPUs that only emulate it
    (slower than fp16 there)."""
    import torch

    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no including_emulation (and counts no emulation)
        return torch.cuda.get_device_capability() >= (8, 0)


def default_workers(on_gpu: bool) -> int:
    """Data loading processes: decoding and resampling keep a GPU waiting when done in the training process."""
    import os

    return max(0, min(4, (os.cpu_count() or 1) - 1)) if on_gpu else 0


def on_main(accelerator, fn):
    """fn() on the main process only; an error there is raised on every process (the others would otherwise wait
    at the next barrier for ever)."""
    result, failure = None, None
    if accelerator.is_main_process:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - passed on to the other processes, then re-raised
            failure = exc
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        flag = [None if failure is None else (getattr(failure, "message", str(failure)),
                                              getattr(failure, "hint", ""))]
        broadcast_object_list(flag)
        if flag[0] is not None and failure is None:
            raise HootwatchError(f"stopped: the main process failed: {flag[0][0]}", flag[0][1])
    if failure is not None:
        raise failure
    return result


def configure_model(model, args: TrainArgs) -> None:
    if not args.train_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    if args.gradient_checkpointing:
        # non-reentrant: with a frozen feature encoder the inputs of the checkpointed layers need no grad, and
        # the reentrant variant then gives those layers no gradients at all
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def make_accelerator(args: TrainArgs):
    import torch
    from accelerate import Accelerator

    has_gpu = torch.cuda.is_available()
    if args.device == "cuda" and not has_gpu:
        raise ConfigError("--device cuda, but torch sees no GPU", "use --device cpu (or auto), or install a CUDA "
                                                                 "build of torch")
    on_gpu = has_gpu and args.device != "cpu"
    precision = args.precision
    if precision in ("fp16", "bf16") and not on_gpu:
        raise ConfigError(f"--{precision} needs a GPU, and none is in use here",
                          "drop --fp16/--bf16 (training on the CPU runs in fp32), or train on a machine with a GPU")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--bf16: this GPU does not support bfloat16", "use --fp16 or leave precision on auto")
    if precision == "auto":
        precision = ("bf16" if native_bf16() else "fp16") if on_gpu else "fp32"
    acc = Accelerator(cpu=not on_gpu, mixed_precision={"fp32": "no"}.get(precision, precision),
                      gradient_accumulation_steps=args.grad_accum)
    return acc, precision


# ---------------------------------------------------------------------------------------------------- data
def load_splits(args: TrainArgs, sample_rate: int, run_dir: Path, resuming: bool, console) -> split_mod.Splits:
    split_dir = run_dir / "splits"
    if resuming and all((split_dir / f"{s}.csv").is_file() for s in split_mod.SPLITS):
        parts = {s: read_clip_csv(split_dir / f"{s}.csv") for s in split_mod.SPLITS}
        return split_mod.Splits(parts["train"], parts["validation"], parts["test"])
    opts = HarvestOptions(window_s=args.window_s, negative_margin_s=args.negative_margin_s,
                          max_negatives_per_recording=args.max_negatives_per_recording,
                          background_label=args.background_label, positive_label=args.positive_label,
                          label_column=args.label_column,
                          default_label=args.default_label, seed=args.seed)
    earlier = init_from.earlier_splits(args.init_from) if args.init_from else None
    for note in earlier.notes if earlier else ():   # said first: a RUN copied without its data replays nothing
        console.print(note, style="bold yellow" if earlier.missing else None, markup=False)
    loaded = load_clips(args.data, opts, sample_rate, run_dir / "data_cache", args.data_format)
    if earlier is not None:  # a round: the new data beside the earlier run's own clips (trainer/init_from.py)
        init_from.check_new_data(loaded.clips, args.positive_label, args.data)
        try:
            new = split_new(loaded, args)
        except split_mod.SplitLeakError:
            raise
        except split_mod.SplitError as exc:
            if earlier.missing:
                raise earlier.refusal(args.data, f"the new data cannot be split on its own ({exc.message})") from exc
            new = init_from.as_given(loaded.clips, loaded.explicit_split)
        try:
            splits = init_from.with_earlier(new, earlier.splits, list(earlier.notes))
        except split_mod.SplitError as exc:
            if earlier.missing:
                raise earlier.refusal(args.data, exc.message) from exc
            raise
    else:
        splits = split_new(loaded, args)
    if args.positive_label not in splits.labels:
        raise HootwatchError(f"the data has no class {args.positive_label!r} (classes: {splits.labels})",
                             "name the owl class with --positive-label, or put owl clips in DATA/owl/")
    split_dir.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        write_clip_csv(split_dir / f"{name}.csv", part)
    summ = split_mod.summary(splits, loaded.skipped, loaded.notes, args.window_s, args.positive_label)
    split_mod.save_summary(summ, run_dir / "data_summary.json")
    split_mod.print_summary(summ, console)
    return splits


def data_notes(run_dir: Path) -> list[str]:
    path = run_dir / "data_summary.json"
    return json.loads(path.read_text()).get("notes", []) if path.is_file() else []


def split_new(loaded, args: TrainArgs) -> split_mod.Splits:
    """The data's own split (explicit, or by recording)."""
    if loaded.explicit_split is not None:
        return split_mod.apply_explicit_split(loaded.clips, loaded.explicit_split, args.validation_fraction,
                                              args.test_fraction, args.seed)
    return split_mod.split_by_recording(loaded.clips, args.validation_fraction, args.test_fraction, args.seed)


# ---------------------------------------------------------------------------------------------------- loops
def evaluate(model, loader, accelerator) -> tuple[np.ndarray, np.ndarray, float]:
    """(logits, labels, mean loss) over a loader, gathered from every process."""
    import torch

    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in loader:
            with accelerator.autocast():
                out = model(input_values=batch["input_values"])
            lg, lb = accelerator.gather_for_metrics((out.logits.float(), batch["labels"]))
            logits.append(lg.cpu())
            labels.append(lb.cpu())
    logits_t, labels_t = torch.cat(logits), torch.cat(labels)
    loss = torch.nn.functional.cross_entropy(logits_t, labels_t).item() if len(labels_t) else float("nan")
    return logits_t.numpy(), labels_t.numpy(), loss


def selection_key(m: dict, metric: str) -> tuple:
    """Order of epochs: the select metric, then the other, then the lower validation loss. "f1" is the best F1
    over thresholds (the threshold is chosen on validation later), not the F1 at 0.5."""
    f1 = m.get("best_f1", m["f1"])
    first, second = (m["pr_auc"], f1) if metric == "pr_auc" else (f1, m["pr_auc"])
    return (round(first, 6), round(second, 6), -m["loss"])


def accumulation_group_size(batch_index: int, n_batches: int, grad_accum: int) -> int:
    """Batches in the accumulation group of this batch (the last group of an epoch may be short)."""
    start = batch_index - batch_index % grad_accum
    return min(grad_accum, n_batches - start)


def progress_bar(enabled: bool, console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                    console=console, disable=not enabled, transient=False)


# ---------------------------------------------------------------------------------------------------- main
def run(args: TrainArgs) -> TrainResult:
    """Train (see the module docstring). A run that fails before its first checkpoint leaves no run folder
    behind (one that a rerun would refuse as not empty, or --resume as having nothing to resume)."""
    prepared: list[bool] = []  # [existed before] once prepare_run_dir has accepted --out
    try:
        return _run(args, prepared)
    except BaseException:
        if prepared and not args.resume:
            remove_unfinished_run(Path(args.out), existed=prepared[0])
        raise


def remove_unfinished_run(out: Path, existed: bool) -> None:
    """Remove what a failed run wrote in `out` unless it got as far as a checkpoint (then --resume can use it).
    Only this process's own run: the main process, and only the run's own files."""
    import os

    if os.environ.get("RANK", "0") != "0" or (out / CHECKPOINTS / TRAINER_STATE).is_file() or not out.is_dir():
        return
    for p in out.iterdir():
        if p.name in RUN_CONTENTS:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    if not existed and not any(out.iterdir()):
        out.rmdir()


def _run(args: TrainArgs, prepared: list[bool]) -> TrainResult:
    import torch
    from accelerate.utils import set_seed
    from rich.console import Console
    from transformers import get_linear_schedule_with_warmup

    from .data.dataset import ClipDataset, EpochShuffle, class_weights
    from .model import backbone_rate, build_backbone

    args = args.validate()
    if args.resume:  # the same run: its own arguments from RUN/run_config.json (refuses changed ones by name)
        args = resume_args({k: v for k, v in args.to_dict().items() if v != getattr(TrainArgs(), k)})
    t0 = time.perf_counter()
    console = Console(stderr=True)
    if args.threads:
        torch.set_num_threads(args.threads)

    # 1. hardware, backbone rate (fails early when offline), run folder, seed
    accelerator, precision = make_accelerator(args)
    init = init_from.model_dir(args.init_from) if args.init_from else None  # fine-tune on from an earlier model
    sample_rate = backbone_rate(str(init), False, args.sample_rate) if init else backbone_rate(
        args.base, args.tiny, args.sample_rate)
    if args.highpass_hz and args.highpass_hz >= sample_rate / 2:
        raise ConfigError(f"--highpass-hz {args.highpass_hz:g} is not below half the analysis rate ({sample_rate} Hz)",
                          "lower --highpass-hz (150 suits the powerful owl), or pass 0 for no filter")
    main_proc = accelerator.is_main_process
    run_dir = Path(args.out)
    existed = run_dir.exists()
    resuming = on_main(accelerator, lambda: prepare_run_dir(args, console))  # None on the other processes
    prepared.append(existed)
    resuming = args.resume if resuming is None else resuming
    set_seed(args.seed)

    # 2. data, split by recording (a resumed run keeps its saved splits)
    splits = on_main(accelerator, lambda: load_splits(args, sample_rate, run_dir, resuming, console))
    if splits is None:
        parts = {s: read_clip_csv(run_dir / "splits" / f"{s}.csv") for s in split_mod.SPLITS}
        splits = split_mod.Splits(parts["train"], parts["validation"], parts["test"])
    labels = splits.labels
    label2id = {lab: i for i, lab in enumerate(labels)}
    pos = label2id[args.positive_label]

    # 3. model and feature extractor; the normalisation is the edge's, derived from the feature extractor
    with accelerator.main_process_first():  # one download into the cache, not one per GPU
        if init:
            init_from.check_labels(init, label2id)
            init_from.check_layers(init, args.layers)
        bb = build_backbone(str(init), False, label2id, sample_rate) if init else build_backbone(
            args.base, args.tiny, label2id, sample_rate, layers=args.layers)
    model, fe = bb.model, bb.feature_extractor
    norm = Normalisation.from_feature_extractor(bool(getattr(fe, "do_normalize", True)), args.highpass_hz or None,
                                                args.lowpass_hz or None)
    # every checkpoint saved in RUN/model carries the band, so exporting an interrupted run keeps it
    setattr(fe, FEATURE_EXTRACTOR_KEY, norm.to_dict())
    configure_model(model, args)
    if main_proc:
        write_run_config(run_dir, args, resuming, {
            "args": args.to_dict(), "seed": args.seed, "sample_rate": sample_rate, "labels": labels,
            "backbone": bb.name, "device": str(accelerator.device), "precision": precision,
            "num_processes": accelerator.num_processes, "learning_rate": args.lr,
            "train_feature_encoder": args.train_feature_encoder,
            "versions": {"python": platform.python_version(), **versions.package_versions(PACKAGES)},
            "command": sys.argv})

    # 4. datasets: random crop + augmentation in training, centred crops for evaluation
    backgrounds = [c for c in splits.train if c.label != args.positive_label]
    aug = AugmentOptions(args.gain_db if args.augment else 0.0, args.mix_probability if args.augment else 0.0,
                         (args.snr_min_db, args.snr_max_db))
    train_ds = ClipDataset(splits.train, label2id, sample_rate, args.window_s, norm, train=True, augment_opts=aug,
                           backgrounds=backgrounds, seed=args.seed)
    val_ds = ClipDataset(splits.validation, label2id, sample_rate, args.window_s, norm)
    test_ds = ClipDataset(splits.test, label2id, sample_rate, args.window_s, norm)
    sampler = EpochShuffle(len(train_ds), args.seed)
    on_gpu = accelerator.device.type == "cuda"
    workers = args.num_workers if args.num_workers is not None else default_workers(on_gpu)
    loader_kw = {"batch_size": args.batch_size, "num_workers": workers, "pin_memory": on_gpu}
    train_dl = torch.utils.data.DataLoader(train_ds, sampler=sampler, **loader_kw)
    val_dl = torch.utils.data.DataLoader(val_ds, shuffle=False, **loader_kw)
    test_dl = torch.utils.data.DataLoader(test_ds, shuffle=False, **loader_kw)

    # 5. optimisation: class-weighted loss (a model must not learn "never an owl"), AdamW, linear warm-up
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(splits.train, label2id).to(accelerator.device))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    model, optimizer, train_dl, val_dl, test_dl = accelerator.prepare(model, optimizer, train_dl, val_dl, test_dl)
    steps_per_epoch = math.ceil(len(train_dl) / args.grad_accum)
    total_steps = steps_per_epoch * args.epochs
    # accelerate steps a prepared scheduler once per process, so it is sized in steps x processes
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps) *
                                                accelerator.num_processes, total_steps * accelerator.num_processes)
    scheduler = accelerator.prepare(scheduler)

    ckpt_dir = run_dir / CHECKPOINTS
    state = {"epoch": 0, "best": None, "best_epoch": None, "history": [], "optimizer_steps": 0}
    if resuming:
        state = json.loads((ckpt_dir / TRAINER_STATE).read_text())
        accelerator.load_state(str(ckpt_dir / "state"))  # model, optimizer, scheduler, RNG
        if main_proc:
            console.print(f"[bold yellow]RESUMING the run in {run_dir} after epoch {state['epoch']} of "
                          f"{args.epochs}, with its own settings from {RUN_CONFIG} (best so far: epoch "
                          f"{state['best_epoch']})[/]")
    steps_before = state["optimizer_steps"]

    # 6. train; evaluate on validation each epoch; keep the best epoch in RUN/model
    progress = progress_bar(args.progress and main_proc, console)
    with progress:
        task = progress.add_task("training", total=(args.epochs - state["epoch"]) * len(train_dl), info="")
        done_before = 0
        for epoch in range(state["epoch"], args.epochs):
            train_ds.set_epoch(epoch)
            train_dl.set_epoch(epoch)  # accelerate passes it on to EpochShuffle (its own counter restarts on resume)
            model.train()
            running, seen = torch.zeros((), device=accelerator.device), 0  # summed on the device: no sync a batch
            n_batches = len(train_dl)
            for b, batch in enumerate(train_dl):
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        logits = model(input_values=batch["input_values"]).logits
                    loss = loss_fn(logits.float(), batch["labels"])
                    # accelerate divides by grad_accum; a short last group is divided by its own size instead
                    accelerator.backward(loss * (args.grad_accum / accumulation_group_size(b, n_batches,
                                                                                        args.grad_accum)))
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                    if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                        state["optimizer_steps"] += 1  # fp16 skips steps whose gradients overflowed
                running += loss.detach() * len(batch["labels"])
                seen += len(batch["labels"])
                if (b + 1) % LOG_EVERY == 0 or b + 1 == n_batches:
                    progress.update(task, completed=done_before + b + 1,
                                    info=f"epoch {epoch + 1}/{args.epochs} loss {running.item() / seen:.3f}")
            done_before += n_batches
            running = running.item()
            v_logits, v_labels, v_loss = evaluate(model, val_dl, accelerator)
            v_y, v_s = v_labels == pos, positive_scores(v_logits, pos)
            m = binary_metrics(v_y, v_s)
            m.update(best_f1=best_f1(v_y, v_s), loss=v_loss, train_loss=running / max(seen, 1), epoch=epoch + 1)
            state["history"].append(m)
            improved = state["best"] is None or selection_key(m, args.select_metric) > tuple(state["best"])
            if improved:
                state["best"], state["best_epoch"] = list(selection_key(m, args.select_metric)), epoch + 1
                if main_proc:
                    accelerator.unwrap_model(model).save_pretrained(run_dir / MODEL_DIR)
                    fe.save_pretrained(run_dir / MODEL_DIR)
            if main_proc:
                progress.console.print(
                    f"epoch {epoch + 1}: train loss {m['train_loss']:.3f}  val loss {v_loss:.3f}  "
                    f"{args.positive_label} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} "
                    f"PR-AUC {m['pr_auc']:.3f}{'  (best)' if improved else ''}")
            state["epoch"] = epoch + 1
            accelerator.save_state(str(ckpt_dir / "state"))
            if main_proc:
                (ckpt_dir / TRAINER_STATE).write_text(json.dumps(state, indent=2))
            accelerator.wait_for_everyone()

    # 7. best model: threshold on validation, final report on test
    from transformers import AutoModelForAudioClassification

    best = AutoModelForAudioClassification.from_pretrained(run_dir / MODEL_DIR)
    best = accelerator.prepare(best)
    v_logits, v_labels, _ = evaluate(best, val_dl, accelerator)
    t_logits, t_labels, _ = evaluate(best, test_dl, accelerator)
    v_y, v_s = v_labels == pos, positive_scores(v_logits, pos)
    t_y, t_s = t_labels == pos, positive_scores(t_logits, pos)
    threshold = choose_threshold(v_y, v_s, args.target_recall)
    metrics = {
        "positive_label": args.positive_label, "labels": labels, "threshold": threshold,
        "threshold_rule": f"recall >= {args.target_recall}" if args.target_recall else "max F1 on validation",
        "validation": binary_metrics(v_y, v_s, threshold), "test": binary_metrics(t_y, t_s, threshold),
        "best_epoch": state["best_epoch"], "select_metric": args.select_metric, "history": state["history"],
        "confusion_matrix_layout": "rows true [not owl, owl], columns predicted [not owl, owl]",
        "data_notes": data_notes(run_dir),   # how the data was split (e.g. one recorder: optimistic figures)
    }
    if main_proc:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        pr_curve_png(run_dir / "pr_curve.png", {"validation": (v_y, v_s), "test": (t_y, t_s)}, threshold,
                     args.positive_label)
        RunMeta(positive_label=args.positive_label, sample_rate=sample_rate, window_s=args.window_s,
                hop_s=args.hop, threshold=threshold, normalisation=norm, backbone=bb.name,
                labels=tuple(labels)).write(run_dir / MODEL_DIR / META_FILE)
        tm = metrics["test"]
        console.print(f"[bold]test ({args.positive_label}, threshold {threshold:.3f}):[/] precision "
                      f"{tm['precision']:.3f}  recall {tm['recall']:.3f}  F1 {tm['f1']:.3f}  PR-AUC "
                      f"{tm['pr_auc']:.3f}  confusion {tm['confusion_matrix']}  -> {run_dir}")
    accelerator.wait_for_everyone()
    # 8. the cascade's first stage: a student distilled from this model (hootwatch.trainer.student), on the main
    # process after the others are done (decoding SD cards can take longer than a collective's timeout); the model
    # is trained and saved by now, so a failure here costs the cascade, never the run
    if main_proc and args.student:
        try:
            student.build(run_dir, accelerator.unwrap_model(best), splits, sample_rate, args.window_s, args.hop,
                          norm, label2id, args.positive_label, threshold, accelerator.device, args.distil_audio,
                          args.distil_max_windows, args.student_epochs, args.seed, say=console.print)
        except (HootwatchError, OSError, MemoryError, ValueError, RuntimeError) as exc:
            console.print(f"[yellow]no student (the cascade's first stage) for this run: {exc}. The model is "
                          f"saved in {run_dir / MODEL_DIR}; its bundle will score every window (slower, same "
                          "detections). Lower --distil-max-windows, or fix the file named above, and train "
                          "again to get one.[/]")
    return TrainResult(run_dir, metrics, threshold, labels, state["optimizer_steps"] - steps_before,
                       state["epoch"], time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m hootwatch.trainer.train` (and `accelerate launch -m ...`)."""
    from .cli import build_parser, run_from_namespace

    parser = build_parser()
    try:
        return run_from_namespace(parser.parse_args(argv))
    except HootwatchError as exc:
        print(f"hootwatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
