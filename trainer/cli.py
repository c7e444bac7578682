"""`hootwatch train`: fine-tune a wav2vec2 / HuBERT / WavLM backbone into an owl detector.

Examples:
  hootwatch train --data DATA --out RUN --tiny --epochs 8            # small model, CPU, minutes
  hootwatch train --data DATA --out RUN --base facebook/wav2vec2-base  # pretrained backbone (downloads once)
  hootwatch train --data DATA --out RUN --base ./wav2vec2-base         # local checkpoint (offline)
  hootwatch train --config train.toml --out RUN --resume               # continue an interrupted run
Several GPUs (batch size is per GPU):
  accelerate launch -m hootwatch.trainer.train --data DATA --out RUN --base facebook/wav2vec2-base
  torchrun --nproc_per_node 4 -m hootwatch.trainer.train --data DATA --out RUN ...
DATA is a folder per label (DATA/owl/*.wav, DATA/not_owl/*.wav, any format, rate, length), recordings with
Raven / Audacity / CSV annotation tables, an audiofolder, or a Hugging Face dataset id; optionally under
DATA/train, DATA/validation, DATA/test. A recordings.csv (file,recording[,site][,split]) names the recording of
each file so that splits never cut through a recording.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

# fields with their own flags (or none)
_SPECIAL = {"tiny", "resume", "overwrite", "augment", "progress", "unfreeze_feature_encoder", "precision",
            "gradient_checkpointing", "student"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .args import TrainArgs, field_help, option_type

    S = argparse.SUPPRESS
    p.add_argument("--config", default=None, help="JSON or TOML file with any of the options below "
                                                  "(command-line options win)")
    for f in fields(TrainArgs):
        if f.name in _SPECIAL:
            continue
        base = option_type(f.name)[0]
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=base if base in (int, float) else str,
                       default=S, help=field_help(f.name))
    p.add_argument("--tiny", action="store_true", default=S, help="small random-init wav2vec2 (fast on a CPU)")
    p.add_argument("--resume", action="store_true", default=S, help="continue the run in --out from its checkpoint")
    p.add_argument("--overwrite", action="store_true", default=S, help="delete a non-empty --out and start again")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=S, help="no augmentation")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=S, help="no progress bars")
    p.add_argument("--no-student", dest="student", action="store_false", default=S,
                   help="no student model: the bundle scores every window with the full model")
    p.add_argument("--unfreeze-feature-encoder", dest="unfreeze_feature_encoder", action="store_const", const=True,
                   default=S, help="train the convolutional feature encoder too (default for --tiny)")
    p.add_argument("--freeze-feature-encoder", dest="unfreeze_feature_encoder", action="store_const", const=False,
                   default=S, help="keep it frozen (default for pretrained backbones)")
    p.add_argument("--gradient-checkpointing", action="store_true", default=S, help="save GPU memory")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default=S,
                   help="default auto: bf16 (or fp16) on a GPU, fp32 on a CPU")
    for prec in ("fp16", "bf16", "fp32"):
        p.add_argument("--" + prec, dest="precision", action="store_const", const=prec, default=S,
                       help=f"same as --precision {prec}")


def run_from_namespace(ns: argparse.Namespace) -> int:
    from .args import make_args
    from .train import run

    given = {k: v for k, v in vars(ns).items() if k not in ("config", "func", "command", "verbose")}
    run(make_args(getattr(ns, "config", None), **given))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hootwatch train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune an owl detector", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_from_namespace)
