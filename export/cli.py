"""`hootwatch export SOURCE --out BUNDLE`: turn a trained model into a bundle the field devices can run.

Heavy imports (torch, transformers, optimum) happen inside `run`, so `hootwatch --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a trained model to a verified int8 ONNX bundle for the field"


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help=HELP, description=HELP + ". " + (
        "SOURCE is a training run folder (from `hootwatch train`) or a Hugging Face audio-classification "
        "checkpoint folder. The int8 model is checked against PyTorch on the validation clips (or --audio) "
        "before anything is written."))
    p.add_argument("source", type=Path, metavar="SOURCE",
                   help="training run folder or checkpoint folder (with --embedding-only: a pretrained backbone, as a "
                        "Hugging Face model id such as facebook/wav2vec2-base, downloaded once where there is "
                        "internet, or a local folder saved with save_pretrained)")
    p.add_argument("--out", type=Path, required=True, metavar="BUNDLE", help="bundle folder to create")
    p.add_argument("--target", choices=("x86", "arm64"), default=None,
                   help="CPU the bundle will run on: x86 (laptops) or arm64 (Jetson, Raspberry Pi); default: this machine")
    p.add_argument("--fp16", action="store_true", help="also include an fp16 model (for GPU devices)")
    p.add_argument("--keep-fp32", action="store_true", help="also include the fp32 model")
    p.add_argument("--tolerance", type=float, default=0.02, help="largest allowed int8 F1 drop, and share of changed decisions, vs PyTorch (default 0.02)")
    p.add_argument("--force", action="store_true", help="write the bundle even if int8 fails the parity check (recorded in the manifest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--positive-label", default=None, help="the owl label (needed for a checkpoint without an 'owl' label)")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the run's, else 0.5)")
    p.add_argument("--min-hits", type=int, default=1, metavar="K",
                   help="positive windows in a row a detection needs, saved in the bundle (default 1; 2 trades a "
                        "little recall for far fewer false positives: choose it on annotated audio)")
    p.add_argument("--audio", type=Path, default=None, metavar="DIR",
                   help="recordings to check the export on: a folder per label, or unlabelled files")
    p.add_argument("--max-clips", type=int, default=None, metavar="N",
                   help="check parity on N evenly spaced clips instead of all (faster on big validation sets)")
    p.add_argument("--per-channel", action="store_true", help="per-channel int8 weights (slower, sometimes more accurate)")
    p.add_argument("--static-conv", action="store_true",
                   help="the feature encoder's convolutions in static int8 too, calibrated on the parity clips "
                        "(wav2vec2-base: 25-36 %% less time a window, about twice the int8 error; parity still "
                        "judges it)")
    p.add_argument("--threads", type=int, default=2, help="threads for the parity check and speed report (default 2)")
    p.add_argument("--speed-repeats", type=int, default=3, help="timing repeats (0 skips the speed report)")
    p.add_argument("--no-first-stage", action="store_true",
                   help="leave out the run's cascade first stage: the bundle scores every window with the full model")
    p.add_argument("--first-stage-check", type=Path, default=None, metavar="DIR",
                   help="recordings like those the bundle will scan (a night or two; no labels needed): the cascade's "
                        "pass threshold comes down until there the cascade makes exactly the rows of an exhaustive scan")
    p.add_argument("--embedding-only", action="store_true",
                   help="SOURCE is a pretrained backbone with no owl head: a Hugging Face model id (e.g. "
                        "facebook/wav2vec2-base; needs internet the first time) or a local folder saved with "
                        "save_pretrained (works offline). Makes a bundle of embeddings only, for `embed`, `search` and "
                        "`fit` (it detects nothing until `fit` gives it a head)")
    p.add_argument("--embedding-layer", type=int, default=None, metavar="L",
                   help="transformer layer whose mean over frames is the embedding (default: the middle one)")
    p.add_argument("--no-embedding", action="store_true",
                   help="leave out the embedding output (no search or fit on what this bundle scans)")
    p.set_defaults(func=run)


def run_embedding_only(args: argparse.Namespace) -> int:
    from .embedding_only import export_embedding_bundle

    res = export_embedding_bundle(args.source, args.out, layer=args.embedding_layer, target=args.target,
                                  audio_dir=args.audio, force=args.force, overwrite=args.overwrite,
                                  threads=args.threads)
    e = res.manifest.embedding
    print(f"embedding bundle written: {res.bundle} (layer {e['layer']} of {e['layers']}, {e['dim']} dimensions; "
          f"int8 vs PyTorch: smallest cosine {res.min_cosine:.4f}). Next: hootwatch embed RECORDINGS --model "
          f"{res.bundle} --out RESULTS")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.embedding_only:
        return run_embedding_only(args)
    from rich.console import Console

    from . import student
    from .core import ExportOptions, export_bundle
    from .quantize import default_target
    from .report import parity_table, speed_table

    console = Console(stderr=False)
    options = ExportOptions(
        source=args.source, out=args.out, target=args.target or default_target(), fp16=args.fp16,
        keep_fp32=args.keep_fp32, tolerance=args.tolerance, force=args.force, overwrite=args.overwrite,
        positive_label=args.positive_label, threshold=args.threshold, min_hits=args.min_hits, audio_dir=args.audio,
        per_channel=args.per_channel, static_conv=args.static_conv, max_clips=args.max_clips, threads=args.threads, speed_repeats=args.speed_repeats,
        first_stage=not args.no_first_stage, first_stage_check=args.first_stage_check,
        embedding=not args.no_embedding, embedding_layer=args.embedding_layer,
    )
    with console.status("exporting (ONNX, int8, parity check)..."):
        result = export_bundle(options, on_parity=lambda r: console.print(parity_table(r)),
                               on_speed=lambda s: console.print(speed_table(s)))
    if result.forced:
        console.print(f"[bold red]WARNING: {result.parity.message}. The bundle was written only because of "
                      f"--force; this is recorded in its manifest.[/]")
    else:
        console.print(f"[green]parity ok:[/] {result.parity.message}")
    m = result.manifest
    sizes = ", ".join(f"{name} {mb:.1f} MB" for name, mb in m.metrics.get("file_mb", {}).items())
    console.print(f"files: {sizes}")
    for line in student.describe(m, result.bundle):
        console.print(line)
    console.print(f"bundle written: {result.bundle}  (model id {m.model_id}, labels {list(m.labels)}, "
                  f"positive {m.positive_label!r}, threshold {m.threshold:.2f}, min_hits {m.min_hits}, "
                  f"target {options.target})")
    return 0
