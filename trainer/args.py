"""Training options as one frozen pydantic dataclass (like HF run_audio_classification.py), from the CLI or a config
file.

A config file (`--config FILE`, JSON or TOML) holds the same field names; options given on the command line
override it; the dataclass defaults fill the rest. pydantic checks and converts each value to its option's type
("10" -> 10, "no" -> False, as a config file may write them); `convert_values` says what is wrong in words, naming
the key and where it came from. Checks between options are `TrainArgs.validate`'s.
"""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, asdict, field, fields, replace
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from hootwatch.edge.contract.operating_point import OperatingPoint, Wording
from hootwatch.edge.core.errors import ConfigError
from hootwatch.edge.core.validation import MUST_BE, must_be

DEFAULT_BASE = "facebook/wav2vec2-base"


OFF_WHEN_ZERO = ("highpass_hz", "lowpass_hz")   # 0 is how users say "no filter"; None is how it is stored
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def canonical(name: str, value):
    return None if name in OFF_WHEN_ZERO and value == 0 else value


def _switch(value):
    """true or false, or one of their words as text ("no", "On", "1"); never a number, which may be a typo."""
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if not isinstance(value, bool):
        raise ValueError("not true or false")
    return value


def _no_switch(value):
    """A number, never true or false (pydantic's lax mode would read true as 1)."""
    if isinstance(value, bool):
        raise ValueError("true or false is not a number")
    return value


Switch = Annotated[bool, BeforeValidator(_switch)]
Whole = Annotated[int, BeforeValidator(_no_switch)]
Number = Annotated[float, BeforeValidator(_no_switch)]


# frozen; unknown options are errors; nan and inf are no setting of any option
@dataclass(frozen=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))
class TrainArgs:
    # data and run folder
    data: str = field(default="", metadata={"help": "data folder (label folders, recordings + annotation tables, "
                                                    "an audiofolder) or a Hugging Face dataset id"})
    out: str = field(default="", metadata={"help": "run folder to create (RUN)"})
    data_format: str = field(default="auto", metadata={"help": "auto | folders | annotations | hf"})
    # model
    base: str = field(default=DEFAULT_BASE, metadata={"help": "backbone: hub id or local checkpoint folder "
                                                                "(wav2vec2, HuBERT, WavLM)"})
    tiny: Switch = field(default=False, metadata={"help": "small random-init wav2vec2 (tests, demo, CPU)"})
    init_from: str | None = field(default=None, metadata={"help": "fine-tune on from an earlier run (RUN or "
                                                                    "RUN/model) in a new run: its weights start "
                                                                    "from RUN's model (--base and --tiny are not "
                                                                    "used); with a RUN folder its training clips "
                                                                    "are replayed beside the new ones and its "
                                                                    "validation and test clips stay on their "
                                                                    "sides (their audio must be on this machine "
                                                                    "at the paths RUN/splits/*.csv name)"})
    sample_rate: Whole | None = field(default=None, metadata={"help": "analysis sample rate in Hz (default: the "
                                                                    "backbone's, 16000). 8000 halves the samples "
                                                                    "per window: about half the CPU time per "
                                                                    "window of wav2vec2-base int8 and ~60 MiB less "
                                                                    "memory, same bundle size "
                                                                    "(bench/backbone_cost.py). It keeps the band "
                                                                    "below 4 kHz (the owl's calls and harmonics "
                                                                    "are below 2 kHz, the default --lowpass-hz is "
                                                                    "3000), but a pretrained backbone heard 16 kHz "
                                                                    "speech: its accuracy on owls at 8 kHz is not "
                                                                    "measured here"})
    layers: Whole | None = field(default=None, metadata={"help": "keep only the first K transformer layers of the "
                                                               "backbone (1 to its layer count: 12 in "
                                                               "wav2vec2-base, 2 with --tiny; default: all). Each "
                                                               "wav2vec2-base layer is ~7 MB of the int8 bundle "
                                                               "(122 MB at 12, 79 at 6, 65 at 4) and ~13 MiB of "
                                                               "memory; compute falls less, the convolutional "
                                                               "encoder stays (CPU time per window at 16 kHz: 6 "
                                                               "layers ~0.84x, 4 layers ~0.78x of 12; "
                                                               "bench/backbone_cost.py). Speech models' middle "
                                                               "layers serve animal sounds about as well as "
                                                               "their last, but owl accuracy with fewer layers "
                                                               "is not measured here. Not with --init-from, "
                                                               "which keeps the earlier model's layers"})
    window_s: Number = field(default=5.0, metadata={"help": "clip (window) length in seconds"})
    hop_s: Number | None = field(default=None, metadata={"help": "hop between windows at inference, saved with "
                                                                "the model (default: half the window)"})
    # the powerful owl calls at 150-550 Hz with harmonics below 2 kHz: wind rumble below and insect choruses
    # above this band only drown the call once a window is scaled to unit variance (see edge/contract/preprocess.py)
    highpass_hz: Number | None = field(default=150.0, metadata={"help": "band limit applied to every window before "
                                                                       "normalisation, low edge in Hz (0: none); "
                                                                       "saved in the bundle"})
    lowpass_hz: Number | None = field(default=3000.0, metadata={"help": "band limit, high edge in Hz (0: none); "
                                                                       "saved in the bundle"})
    unfreeze_feature_encoder: Switch | None = field(
        default=None, metadata={"help": "train the convolutional feature encoder too (default: frozen for a "
                                        "pretrained backbone, trained for --tiny, whose encoder is random)"})
    gradient_checkpointing: Switch = field(default=False, metadata={"help": "trade compute for GPU memory"})
    # the cascade's first stage (trainer/student.py)
    student: Switch = field(default=True, metadata={"help": "distil a small student model, the cascade's first "
                                                            "stage, after training (--no-student: the bundle "
                                                            "scores every window with the full model)"})
    distil_audio: str | None = field(default=None, metadata={"help": "folder of unlabelled recordings from your "
                                                                     "sites (SD-card dumps) the student also "
                                                                     "learns the model's scores on"})
    distil_max_windows: Whole = field(default=6000, metadata={"help": "windows the student learns from at most "
                                                                      "(held in memory: 6000 are 1 GB at 16 kHz)"})
    student_epochs: Whole = field(default=12, metadata={"help": "passes of the student over its windows"})
    # labels
    positive_label: str = field(default="owl", metadata={"help": "the class to detect"})
    background_label: str = field(default="not_owl", metadata={"help": "label of unannotated stretches"})
    label_column: str | None = field(default=None, metadata={"help": "label column of Raven tables"})
    default_label: str | None = field(default=None, metadata={"help": "label of Raven selections with no label"})
    # splits
    validation_fraction: Number = field(default=0.15, metadata={"help": "share of recordings for validation"})
    test_fraction: Number = field(default=0.15, metadata={"help": "share of recordings for test"})
    negative_margin_s: Number = field(default=1.0, metadata={"help": "negatives keep this far from annotations"})
    max_negatives_per_recording: Whole = field(default=100, metadata={"help": "cap on negatives per recording"})
    # optimisation
    epochs: Whole = field(default=10, metadata={"help": "passes over the training split"})
    batch_size: Whole = field(default=8, metadata={"help": "clips per forward pass (per device)"})
    grad_accum: Whole = field(default=1, metadata={"help": "forward passes per optimizer step; effective batch = "
                                                         "batch_size x grad_accum (x number of GPUs)"})
    learning_rate: Number | None = field(default=None, metadata={"help": "default 3e-5, or 5e-4 with --tiny"})
    weight_decay: Number = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: Number = field(default=0.1, metadata={"help": "share of steps with linear warm-up"})
    seed: Whole = field(default=0, metadata={"help": "random seed (splits, init, augmentation)"})
    select_metric: str = field(default="pr_auc", metadata={"help": "best checkpoint by: pr_auc | f1"})
    target_recall: Number | None = field(default=None, metadata={"help": "choose the threshold that keeps at "
                                                                        "least this owl recall on validation "
                                                                        "(default: the threshold of best F1)"})
    # augmentation
    augment: Switch = field(default=True, metadata={"help": "gain and background mixing in training"})
    mix_probability: Number = field(default=0.5, metadata={"help": "chance of mixing a background clip in"})
    snr_min_db: Number = field(default=0.0, metadata={"help": "lowest SNR of background mixing"})
    snr_max_db: Number = field(default=20.0, metadata={"help": "highest SNR of background mixing"})
    gain_db: Number = field(default=6.0, metadata={"help": "random gain range (+/- dB)"})
    # hardware
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 or fp16 on GPU, fp32 on CPU) | fp32 | "
                                                              "fp16 | bf16"})
    num_workers: Whole | None = field(default=None, metadata={"help": "data loading processes (default: "
                                                                       "min(4, CPUs - 1) on a GPU, 0 on a CPU)"})
    threads: Whole | None = field(default=None, metadata={"help": "CPU threads for torch"})
    # run folder rules
    resume: Switch = field(default=False, metadata={"help": "continue the run in --out from its last checkpoint"})
    overwrite: Switch = field(default=False, metadata={"help": "delete --out and start again"})
    progress: Switch = field(default=True, metadata={"help": "show progress bars"})

    @field_validator(*OFF_WHEN_ZERO)
    @classmethod
    def _zero_is_off(cls, value, info):
        return canonical(info.field_name, value)

    @property
    def lr(self) -> float:
        # tiny, random init: 1e-3 often collapses to a constant output for hundreds of steps; 5e-4 leaves the
        # ln 2 plateau within a few epochs (measured on 600 synthetic clips)
        return self.learning_rate if self.learning_rate is not None else (5e-4 if self.tiny else 3e-5)

    @property
    def train_feature_encoder(self) -> bool:
        return self.unfreeze_feature_encoder if self.unfreeze_feature_encoder is not None else self.tiny

    @property
    def hop(self) -> float:
        return self.hop_s if self.hop_s is not None else self.window_s / 2

    def validate(self) -> "TrainArgs":
        OperatingPoint(hop_s=self.hop, window_s=self.window_s,
                       wording=Wording(hop="--hop-s", fix_hop="pass --hop-s between 0 and --window-s ({window_s:g})",
                                       error=ConfigError))
        if not self.data and not self.resume:
            raise ConfigError("no training data given", "pass --data DATA (a folder or a dataset id)")
        if not self.out:
            raise ConfigError("no run folder given", "pass --out RUN")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other", "pass only one of them")
        if self.init_from and self.resume:
            raise ConfigError("--init-from starts a new run from an earlier model; --resume continues an "
                              "interrupted one", "pass only one of them")
        if self.init_from and Path(self.init_from).resolve() == Path(self.out).resolve():
            raise ConfigError(f"--init-from {self.init_from} is the new run's own --out",
                              "pass a new folder to --out (the earlier run stays as it is)")
        if self.layers is not None and self.layers < 1:
            raise ConfigError(f"--layers {self.layers}: a model needs at least 1 transformer layer",
                              "pass --layers between 1 and the backbone's layer count (12 in wav2vec2-base, 2 "
                              "with --tiny), or leave it out for all of them")
        if self.sample_rate is not None and self.sample_rate < 1:
            raise ConfigError(f"--sample-rate {self.sample_rate} is not a sample rate",
                              "pass a rate in Hz such as 16000 or 8000, or leave it out for the backbone's")
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}", f"fix --{name}")
        if self.select_metric not in ("pr_auc", "f1"):
            raise ConfigError(f"unknown select_metric {self.select_metric!r}", "use pr_auc or f1")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ConfigError(f"unknown precision {self.precision!r}", "use auto, fp32, fp16 or bf16")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"unknown device {self.device!r}", "use auto, cpu or cuda")
        if self.data_format not in ("auto", "folders", "annotations", "hf"):
            raise ConfigError(f"unknown data_format {self.data_format!r}", "use auto, folders, annotations or hf")
        for name in ("highpass_hz", "lowpass_hz"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(f"{name} must be 0 (no filter) or positive, got {getattr(self, name)}",
                                  f"fix --{name.replace('_', '-')}")
        if self.highpass_hz and self.lowpass_hz and self.highpass_hz >= self.lowpass_hz:
            raise ConfigError(f"highpass_hz ({self.highpass_hz:g}) must be below lowpass_hz ({self.lowpass_hz:g})",
                              "fix --highpass-hz / --lowpass-hz (e.g. 150 and 3000)")
        if self.distil_audio:
            from hootwatch.edge.scan.planning import collect_audio
            d = Path(self.distil_audio).expanduser()
            if not d.is_dir() or not collect_audio([d]):
                raise ConfigError(f"--distil-audio {self.distil_audio}: " + ("no audio files in it" if d.is_dir()
                                                                             else "no such folder"),
                                  "pass a folder of recordings (e.g. a copied SD card), or leave --distil-audio out")
        if self.student and (self.distil_max_windows < 1 or self.student_epochs < 1):
            raise ConfigError("distil_max_windows and student_epochs must be at least 1",
                              "fix --distil-max-windows / --student-epochs, or pass --no-student")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise ConfigError(f"target_recall must be in (0, 1], got {self.target_recall}", "e.g. --target-recall 0.9")
        if not 0 < self.validation_fraction < 1 or not 0 < self.test_fraction < 1 or \
                self.validation_fraction + self.test_fraction >= 1:
            raise ConfigError("validation_fraction and test_fraction must be in (0, 1) with a sum below 1",
                              "e.g. --validation-fraction 0.15 --test-fraction 0.15")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


_MUST_BE = MUST_BE | {str: "text"}  # an option has always said "text" where a daemon config key says "a string"


def option_type(name: str) -> tuple[type, bool]:
    """The type of option `name` (bool, int, float or str) and whether it may be left out (None)."""
    hint = typing.get_type_hints(TrainArgs)[name]
    args = typing.get_args(hint) or (hint,)
    return next(a for a in args if a is not type(None)), type(None) in args


def convert_values(values: dict, source: str) -> dict:
    """`values` converted to their options' types; a ConfigError naming `source` for an unknown option, or for the
    first wrong value in the order given."""
    try:
        converted = TrainArgs(**values)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "unexpected_keyword_argument")
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {unknown}",
                              f"valid options: {', '.join(sorted(f.name for f in fields(TrainArgs)))}") from None
        order = list(values)
        name = min((str(e["loc"][0]) for e in errors), key=order.index)
        base, optional = option_type(name)
        # its nan or inf, if that is among its errors
        err = max((e for e in errors if e["loc"][0] == name), key=lambda e: e["type"] == "finite_number")
        raise ConfigError(f"{source}: option {name!r} must be {must_be(err, base, _MUST_BE)}"
                          f"{' or left out' if optional else ''}, got {values[name]!r}",
                          f"fix the value of {name} in {source}") from None
    return {k: getattr(converted, k) for k in values}


def read_config_file(path: str | Path) -> dict:
    """Field values from a JSON or TOML file, each converted to its field's type (unknown keys are refused, so
    typos do not pass silently)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc})", "check the path of --config") from None
    try:
        if p.suffix.lower() == ".toml":
            import tomllib
            values = tomllib.loads(text)
        else:
            values = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"{p}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} ({exc})",
                          "fix the syntax (a .toml file is read as TOML, anything else as JSON)") from None
    values = values.get("train", values) if isinstance(values, dict) else values
    if not isinstance(values, dict):
        raise ConfigError(f"{p}: expected a table of options", "write key = value pairs (TOML) or an object (JSON)")
    return convert_values(values, f"config file {p}")


def make_args(config_file: str | None = None, **overrides) -> TrainArgs:
    """Dataclass defaults < config file < explicit overrides (the command line)."""
    values = read_config_file(config_file) if config_file else {}
    values.update(convert_values(overrides, "the command line"))
    if values.get("resume"):
        return resume_args(values)
    return replace(TrainArgs(), **values).validate()


RUN_CONFIG = "run_config.json"
# the only options a resumed run may change: how long and how it runs, never what it learns
RESUMABLE = ("epochs", "threads", "num_workers", "progress")


# options added after runs were already saved, and what a run saved without them did
ADDED_LATER = {"highpass_hz": None, "lowpass_hz": None, "layers": None}


def saved_run_args(out: str | Path) -> dict:
    """The arguments of the run in `out`: RUN/run_config.json's args, with the options later resumes changed."""
    path = Path(out).expanduser() / RUN_CONFIG
    if not path.is_file():
        raise ConfigError(f"{Path(out)}: nothing to resume (no {RUN_CONFIG})",
                          "drop --resume to start a new run, or point --out at an interrupted run")
    try:
        rc = json.loads(path.read_text())
        saved = dict(rc["args"])
        for record in rc.get("resumes", []):
            saved.update(record.get("changed", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable run configuration ({exc})", "start a new run with a new --out") from None
    known = {f.name for f in fields(TrainArgs)}
    return convert_values({**ADDED_LATER, **{k: v for k, v in saved.items() if k in known}}, str(path))


def resume_args(given: dict) -> TrainArgs:
    """The SAME run's arguments from RUN/run_config.json; only RESUMABLE options may be given anew.

    `given` holds the options the user set (config file and command line); any other option that differs from
    the run's own is refused by name, so a resumed run never silently mixes two settings."""
    if given.get("overwrite"):
        raise ConfigError("--resume and --overwrite contradict each other", "pass only one of them")
    out = given.get("out")
    if not out:
        raise ConfigError("--resume needs the run folder", "pass --out RUN (the folder of the interrupted run)")
    saved = saved_run_args(out)
    ignore = set(RESUMABLE) | {"resume", "out", "overwrite"}
    given = {k: canonical(k, v) for k, v in given.items()}
    differ = sorted(k for k, v in given.items() if k not in ignore and v != saved.get(k, _default(k)))
    if differ:
        shown = ", ".join(f"{k} (run: {saved.get(k, _default(k))!r}, now: {given[k]!r})" for k in differ)
        raise ConfigError(f"--resume continues the run in {out} with its own settings, and these differ: {shown}",
                          f"drop {', '.join('--' + k.replace('_', '-') for k in differ)} to continue that run "
                          f"(only {', '.join(RESUMABLE)} may change), or start a new run with a new --out")
    values = {**saved, **{k: given[k] for k in RESUMABLE if k in given}, "out": str(out), "resume": True,
              "overwrite": bool(given.get("overwrite", False))}
    return replace(TrainArgs(), **values).validate()


def _default(name: str):
    return getattr(TrainArgs(), name)


def field_help(name: str) -> str:
    """The --help line of option `name`: what it does and its default."""
    f = next(f for f in fields(TrainArgs) if f.name == name)
    default = f.default if f.default is not MISSING else None
    return f"{f.metadata.get('help', '')} (default: {default})"
