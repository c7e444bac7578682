"""RUN/model/hootwatch.json: what `hootwatch train` saves beside the model and `hootwatch export` reads back.

One record, written by the trainer and read strictly by the export (torch-free, so either side can use it): the
positive label, the audio contract (sample rate, window, hop, normalisation), the decision threshold, and for
checking the backbone's name and a copy of config.json's labels. A missing, unknown or mistyped key is a
ConfigError naming the file: a silent default would export a model with another audio contract or threshold than
it was trained with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.contract.operating_point import OperatingPoint, Wording
from hootwatch.edge.contract.preprocess import Normalisation
from hootwatch.edge.core.errors import ConfigError

MODEL_DIR = "model"
META_FILE = "hootwatch.json"

# every version of `hootwatch train` has written all of these
REQUIRED = ("positive_label", "sample_rate", "window_s", "hop_s", "threshold", "normalisation")
OPTIONAL = ("backbone", "labels")   # labels: a copy of config.json's id2label
_REDO = "restore the file `hootwatch train` wrote (or train again); do not edit it by hand"


@dataclass(frozen=True)
class RunMeta:
    positive_label: str
    sample_rate: int
    window_s: float
    hop_s: float
    threshold: float
    normalisation: Normalisation
    backbone: str | None = None
    labels: tuple[str, ...] | None = None

    def write(self, path: str | Path) -> None:
        d = {"positive_label": self.positive_label, "sample_rate": self.sample_rate, "window_s": self.window_s,
             "hop_s": self.hop_s, "threshold": self.threshold, "normalisation": self.normalisation.to_dict()}
        if self.backbone is not None:
            d["backbone"] = self.backbone
        if self.labels is not None:
            d["labels"] = list(self.labels)
        Path(path).write_text(json.dumps(d, indent=2))

    @classmethod
    def read(cls, path: str | Path, labels: tuple[str, ...]) -> "RunMeta":
        """The record in `path`, checked key by key; `labels` are config.json's, which a stamped copy must equal."""
        path = Path(path)
        meta = read_json(path)
        if not isinstance(meta, dict):
            raise ConfigError(f"{path}: not a JSON object", _REDO)
        unknown = sorted(set(meta) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(REQUIRED + OPTIONAL)})",
                              "remove or correct them; a newer hootwatch may have written this run: upgrade hootwatch")
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}", _REDO)
        for key in ("window_s", "hop_s", "threshold"):
            v = meta[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"{path}: {key} is {v!r}, not a number", _REDO)
        OperatingPoint(meta["threshold"], hop_s=meta["hop_s"], window_s=meta["window_s"],
                       wording=Wording(threshold=f"{path}: threshold", hop=f"{path}: hop_s", fix_threshold=_REDO,
                                       fix_hop=_REDO, error=ConfigError))
        for key in ("positive_label", "backbone"):
            if key in meta and not isinstance(meta[key], str):
                raise ConfigError(f"{path}: {key} is {meta[key]!r}, not a name", _REDO)
        if not isinstance(meta["normalisation"], dict):
            raise ConfigError(f"{path}: normalisation is {meta['normalisation']!r}, not an object", _REDO)
        if "labels" in meta and (not isinstance(meta["labels"], list) or tuple(meta["labels"]) != labels):
            raise ConfigError(f"{path}: labels {meta['labels']} differ from config.json's {list(labels)}: the files "
                              "come from different runs", "copy the whole RUN/model folder of one run")
        return cls(positive_label=meta["positive_label"],
                   sample_rate=checked_sample_rate(meta["sample_rate"], path, "sample_rate"),
                   window_s=float(meta["window_s"]), hop_s=float(meta["hop_s"]), threshold=float(meta["threshold"]),
                   normalisation=checked_normalisation(meta["normalisation"], path), backbone=meta.get("backbone"),
                   labels=tuple(meta["labels"]) if "labels" in meta else None)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read JSON ({exc})",
                          "re-create it by training or saving the model again") from None


def checked_sample_rate(value, path: Path, key: str) -> int:
    """The model's sample rate from `key` of `path`; never guessed (a wrong rate makes every score wrong)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or value != int(value):
        raise ConfigError(f"{path}: {key} is {'missing' if value is None else f'not a sample rate ({value!r})'}",
                          f'add "{key}": RATE (the rate in Hz the model was trained at, e.g. 16000) to that file')
    return int(value)


def checked_normalisation(d: dict, path: Path) -> Normalisation:
    try:
        return Normalisation.from_dict(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: its normalisation {d!r} cannot be used ({exc})",
                          "export with the hootwatch version that trained the model, or upgrade hootwatch") from None
