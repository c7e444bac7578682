"""`export_bundle`: training run or checkpoint -> verified model bundle, step by step.

    1. resolve the source (labels, audio contract, threshold, parity clips)
    2. load the PyTorch model and fold weight norm into plain weights
    3. export fp32 ONNX through Optimum; int8 with the target's preset; fp16 if asked
    4. parity: PyTorch vs ONNX fp32 vs ONNX int8 on the clips; refuse a degraded int8 unless forced
    5. the cascade's first stage, if the run has one: the student through the same ONNX/int8 path, its parity, a
       first pass threshold on the clips (student.py; feature-MLP first stages of older runs: first_stage.py)
    6. size and speed report
    7. write the bundle in a staging folder; with `first_stage_check`, choose the student's pass rule on those
       labelled recordings (every call the full model detects there kept), or without labels check (and lower) the
       pass threshold until the cascade makes an exhaustive scan's rows there; move it into place
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.bundle import Manifest, load_bundle
from hootwatch.edge.contract.operating_point import OperatingPoint, Wording
from hootwatch.edge.scan.cascade_check import check_on_recordings
from hootwatch.edge.core.errors import ConfigError

from . import bundle_writer, first_stage, onnx_export, quantize, student
from .parity import ParityError, ParityReport, check_parity
from .report import SpeedReport, measure_speed
from .source import ExportSource, resolve_source

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
VARIANT_FILES = {"fp32": "model_fp32.onnx", "fp16": "model_fp16.onnx"}
EMBEDDING_CHECK_CLIPS = 32   # parity clips the int8 embedding is compared with PyTorch's on (cosine)


@dataclass(frozen=True)
class ExportOptions:
    source: Path
    out: Path
    target: str = field(default_factory=quantize.default_target)   # "x86" (laptops) or "arm64" (Jetson, Pi)
    fp16: bool = False               # also ship an fp16 model for GPU targets
    keep_fp32: bool = False          # also ship the fp32 model
    tolerance: float = 0.02          # largest allowed int8 F1 drop and share of changed decisions
    force: bool = False              # write the bundle even when int8 fails the parity check
    overwrite: bool = False          # replace an existing non-empty bundle folder
    positive_label: str | None = None
    threshold: float | None = None
    min_hits: int = 1                # positive windows a detection needs, written into the bundle
    operating_point: dict | None = None   # how threshold and min_hits were chosen, recorded in the bundle
    audio_dir: Path | None = None    # parity clips for a bare checkpoint (or instead of the run's validation set)
    per_channel: bool = False
    # the feature encoder's convolutions in static int8 too, calibrated on the parity clips: 25-36 % less time a
    # window for wav2vec2-base, about twice the int8 error (bench/export_speed.py); the parity check still judges it
    static_conv: bool = False
    opset: int = onnx_export.DEFAULT_OPSET
    threads: int = 2                 # for parity and the speed report
    speed_repeats: int = 3           # 0 skips the speed measurement
    max_clips: int | None = None     # parity on an evenly spaced subset of the clips (default: all)
    first_stage: bool = True         # ship the run's cascade first stage (RUN/student) when it has one
    # recordings like those the bundle will scan: with labels (ground_truth.csv or annotation tables), the student's
    # pass rule is chosen there (hootwatch.edge.scan.pass_rule); without, the pass threshold comes down until the
    # cascade makes exactly the rows of an exhaustive scan there (hootwatch.edge.scan.cascade_check)
    first_stage_check: Path | None = None
    embedding: bool = True               # the graph also outputs each window's pooled embedding (search, fit)
    embedding_layer: int | None = None   # its transformer layer (None: the middle one, onnx_export.middle_layer)

    def __post_init__(self) -> None:
        if self.target not in quantize.TARGETS:
            raise ConfigError(f"--target {self.target!r} is unknown", f"use one of {', '.join(quantize.TARGETS)}")
        wording = Wording(fix_threshold="pass a probability such as 0.5",
                          fix_min_hits="pass e.g. --min-hits 2 (or leave it unset: 1)")
        OperatingPoint(self.threshold, self.min_hits, wording=wording)
        if self.max_clips is not None and self.max_clips < 1:
            raise ConfigError(f"--max-clips {self.max_clips} must be at least 1", "leave it unset to check every clip")
        if self.first_stage_check is not None:
            from hootwatch.edge.contract.audio import is_audio_file
            d = Path(self.first_stage_check)
            if not d.is_dir() or not any(is_audio_file(p) for p in d.rglob("*")):
                raise ConfigError(f"--first-stage-check {d}: " + ("no audio files in it" if d.is_dir()
                                                                  else "no such folder"),
                                  "give a folder of recordings like those the bundle will scan (a night or two)")
        if self.opset < 14:
            raise ConfigError(f"--opset {self.opset} is too old", "use opset 14 or newer (18 is the default)")


@dataclass(frozen=True)
class ExportResult:
    bundle: Path
    manifest: Manifest
    parity: ParityReport
    speed: SpeedReport | None
    forced: bool                     # int8 failed parity and was written anyway
    folded_weight_norm: tuple[str, ...]


def export_bundle(options: ExportOptions, on_parity=None, on_speed=None) -> ExportResult:
    """Export, check and write the bundle. `on_parity(report)` / `on_speed(report)` let a caller print tables
    as soon as they exist (the CLI does), including before a ParityError is raised."""
    out = Path(options.out)
    bundle_writer.check_destination(out, options.overwrite)
    source = resolve_source(options.source, options.positive_label, options.threshold, options.audio_dir)
    meta = source.meta
    model, folded = onnx_export.load_model(source.model_dir)
    with bundle_writer.staging(out) as (bundle_dir, work):
        layer = None
        if options.embedding:
            layer = onnx_export.middle_layer(model) if options.embedding_layer is None else options.embedding_layer
        fp32 = onnx_export.export_onnx(model, work / "onnx", options.opset, embedding_layer=layer)
        calibration = None
        if options.static_conv:
            from .parity import cut_windows
            few = source.clips[::max(1, len(source.clips) // quantize.MAX_CALIBRATION_WINDOWS)]
            calibration = meta.normalisation.apply(cut_windows(few, meta.sample_rate, meta.window_s), meta.sample_rate)
        int8 = quantize.quantize_int8(fp32.path, work / "model_int8.onnx", options.target, options.per_channel,
                                      calibration)
        quantization = quantize.read_scheme(int8) or {}
        paths = {"fp32": fp32.path, "int8": int8}
        if options.fp16:
            paths["fp16"] = onnx_export.convert_fp16(fp32.path, work / "model_fp16.onnx")

        clips = source.clips
        if options.max_clips and len(clips) > options.max_clips:
            clips = tuple(clips[i] for i in np.linspace(0, len(clips) - 1, options.max_clips).round().astype(int))
        parity = check_parity(model, paths, clips, meta.sample_rate, meta.window_s, meta.normalisation,
                              meta.labels, meta.positive_label, meta.threshold, options.tolerance, options.threads)
        if on_parity:
            on_parity(parity)
        forced = not parity.passed
        if forced and not options.force:
            raise ParityError(f"the int8 model fails the parity check: {parity.message}; no bundle written",
                              "export with --target matching the device or --per-channel; or accept the loss with --force")
        if forced:
            log.warning("WRITING A DEGRADED MODEL because of --force: %s", parity.message)

        embedding = _embedding_field(fp32, options)
        if embedding:   # int8 vs PyTorch on the embedding output too (search and fit rest on it)
            from .embedding_only import min_cosine
            from .parity import cut_windows
            probe = Manifest(labels=meta.labels, positive_label=meta.positive_label, sample_rate=meta.sample_rate,
                             window_s=meta.window_s, hop_s=meta.hop_s, normalisation=meta.normalisation,
                             threshold=meta.threshold, input_name=fp32.input_name, output_name=fp32.output_name,
                             embedding=embedding)
            windows = cut_windows(clips[:EMBEDDING_CHECK_CLIPS], meta.sample_rate, meta.window_s)
            embedding["int8_min_cosine"] = round(min_cosine(model, int8, probe, windows, options.threads), 5)

        cascade = {}
        if options.first_stage and student.run_student_dir(source) is not None:
            cascade = student.prepare(source, int8, clips, meta.threshold, bundle_dir, work, options.target,
                                      options.threads)
        elif options.first_stage:   # a run from before the student: its feature MLP
            cascade = first_stage.prepare(source, int8, clips, meta.threshold, bundle_dir, options.threads)

        speed = None
        if options.speed_repeats > 0:
            window_samples = int(round(meta.window_s * meta.sample_rate))
            speed = measure_speed(model, paths, window_samples, meta.window_s, options.threads, options.speed_repeats)
            if on_speed:
                on_speed(speed)

        shutil.move(str(int8), bundle_dir / MODEL_FILE)
        variants = {}
        if options.keep_fp32:
            shutil.move(str(fp32.path), bundle_dir / VARIANT_FILES["fp32"])
            variants["fp32"] = VARIANT_FILES["fp32"]
        if options.fp16:
            shutil.move(str(paths["fp16"]), bundle_dir / VARIANT_FILES["fp16"])
            variants["fp16"] = VARIANT_FILES["fp16"]

        report = _report(source, options, parity, speed, forced, folded)
        report["quantization"] |= quantization
        report["file_mb"] = {p.name: round(p.stat().st_size / 1e6, 3) for p in sorted(bundle_dir.glob("*.onnx"))}
        manifest = Manifest(
            labels=meta.labels, positive_label=meta.positive_label, sample_rate=meta.sample_rate,
            window_s=meta.window_s, hop_s=meta.hop_s, normalisation=meta.normalisation,
            threshold=meta.threshold, min_hits=int(options.min_hits), input_name=fp32.input_name,
            output_name=fp32.output_name,
            model_file=MODEL_FILE, variants=variants, backbone=meta.backbone, first_stage=cascade,
            embedding=embedding,
            metrics={"run": source.run_metrics, **report},
        )
        manifest = bundle_writer.write_bundle(bundle_dir, manifest, report)
        if cascade and options.first_stage_check is not None:
            check_on_recordings(bundle_dir, options.first_stage_check, options.threads,
                                chosen_on=str(options.first_stage_check))
            manifest = load_bundle(bundle_dir).manifest
        elif options.first_stage_check is not None:
            log.warning("--first-stage-check %s: the bundle has no first stage, so there is nothing to check",
                        options.first_stage_check)
        bundle_writer.publish(bundle_dir, out, options.overwrite)
    return ExportResult(out, manifest, parity, speed, forced, tuple(folded))


def _embedding_field(graph: onnx_export.ExportedGraph, options: ExportOptions) -> dict:
    if not graph.embedding:
        return {}
    chosen = onnx_export.EMBEDDING_CHOICE if options.embedding_layer is None else "given (--embedding-layer)"
    return graph.embedding | {"chosen": chosen}


def _report(source: ExportSource, options: ExportOptions, parity: ParityReport, speed: SpeedReport | None,
            forced: bool, folded: list[str]) -> dict:
    report = {
        "source": {"path": str(options.source), "kind": source.kind, "clips": source.clips_origin},
        "quantization": {"target": options.target, "operators": list(quantize.OPERATORS), "weights": "int8 (signed)",
                         "per_channel": options.per_channel, "mode": "dynamic", "opset": options.opset,
                         "weight_norm_folded": list(folded)},
        "parity": parity.to_dict(),
        "speed": speed.to_dict() if speed else None,
    }
    if options.operating_point:
        report["operating_point"] = dict(options.operating_point)
    if forced:
        report["warning"] = f"FORCED: int8 failed the parity check and was written anyway (--force): {parity.message}"
    return report
