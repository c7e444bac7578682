"""`hootwatch train --init-from RUN_OR_MODEL`: fine-tune on from an earlier run's model, adding to what it knew.

Not a resume: a new run folder with its own splits and metrics; the weights (and feature extractor) start from
the earlier model instead of the pretrained backbone. When RUN is a run folder, its own clips (RUN/splits/*.csv,
which record where its data came from) come back on their sides: the earlier training clips are replayed beside
the new ones (all of them, or a sample of REPLAY_PER_NEW per new training clip, drawn per class), so a few dozen
reviewed clips add to what the model knew instead of making it forget; the earlier
validation and test clips stay validation and test, beside the new data's own (split as usual; when the new data
cannot give validation and test clips of its own, all of it trains and the notes say so). A new clip of a
recording the earlier run already used goes to that recording's side, so the new model is never trained or
tuned on what the old one was tested on, and the two test figures stay comparable. Too little new data is
refused, saying how many owl and not-owl clips are needed and how many there are.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.clips import ClipRef, read_clip_csv
from hootwatch.edge.core.errors import HootwatchError

from .data.sources import clip_key
from .data.splits import SPLITS, Splits, SplitError, _checked

MIN_NEW_PER_CLASS = 5   # new clips of each class a round needs to learn anything from
REPLAY_PER_NEW = 2      # earlier training clips replayed per new training clip, at most: the new ones stay a third


def model_dir(init_from: str | Path) -> Path:
    """RUN/model for a run folder, the folder itself for a saved model; HootwatchError otherwise."""
    p = Path(init_from).expanduser()
    for cand in (p / "model", p):
        if (cand / "config.json").is_file() and (cand / "preprocessor_config.json").is_file():
            return cand
    raise HootwatchError(f"--init-from {init_from}: no trained model there (no config.json and "
                         "preprocessor_config.json in it or in its model/ folder)",
                         "pass the folder of an earlier `hootwatch train --out RUN` run, or its RUN/model")


@dataclass(frozen=True)
class Earlier:
    """The earlier run's clips whose audio is on this machine, on their sides, and what is missing."""
    splits: Splits
    found: int              # clips found on disk
    missing: int            # clips whose audio is not here
    missing_folder: str     # where the missing clips' audio was (the earlier run's data folder), "" if none
    notes: tuple[str, ...]  # for the run's report and the warning at the start

    def refusal(self, data: str, why: str) -> SplitError:
        """The new data cannot be split on its own and the earlier clips that would fill its sides are missing."""
        return SplitError(f"{data}: {why}; the earlier run's clips that would fill validation and test are not on "
                          f"this machine ({self.missing} of {self.found + self.missing} missing, their audio was "
                          f"under {self.missing_folder})",
                          f"copy the earlier run's data folder {self.missing_folder} to the same path on this machine "
                          "(beside the RUN folder), or give more new data")


def earlier_splits(init_from: str | Path) -> Earlier | None:
    """The earlier run's clips on their sides (None when --init-from names a bare model), those whose audio is
    still where it was (RUN/splits/*.csv name each clip's audio by its absolute path: on another machine the
    earlier run's data folder must be copied to the same path); the notes say how many were found and where."""
    folder = Path(init_from).expanduser() / "splits"
    if not all((folder / f"{s}.csv").is_file() for s in SPLITS):
        return None
    parts = {s: read_clip_csv(folder / f"{s}.csv") for s in SPLITS}
    kept = {s: [c for c in part if Path(c.source).is_file()] for s, part in parts.items()}
    gone = [c.source for s in SPLITS for c in parts[s] if not Path(c.source).is_file()]
    found = sum(len(k) for k in kept.values())
    where = os.path.commonpath([str(Path(x).parent) for x in gone]) if gone else ""
    notes = [f"--init-from: {found} of the earlier run's {found + len(gone)} clip(s) found (listed in {folder})"]
    if gone:
        notes.append(f"{len(gone)} clip(s) of the earlier run are not on this machine (their audio was under "
                     f"{where}) and are left out: to replay them, copy the earlier run's data folder {where} to the "
                     "same path here")
    return Earlier(Splits(kept["train"], kept["validation"], kept["test"]), found, len(gone), where, tuple(notes))


def check_new_data(clips: list[ClipRef], positive_label: str, data: str) -> None:
    """Refuse a round with too little new data, saying how much is needed and how much there is."""
    owl = sum(c.label == positive_label for c in clips)
    other = len(clips) - owl
    if owl < MIN_NEW_PER_CLASS or other < MIN_NEW_PER_CLASS:
        raise SplitError(f"{data}: {owl} {positive_label} and {other} not-{positive_label} clip(s); a round needs at "
                         f"least {MIN_NEW_PER_CLASS} of each to learn from",
                         f"review and label more detections (`hootwatch review`), then `hootwatch dataset OUTDIR "
                         f"--out {data} --append` and train again")


def as_given(clips: list[ClipRef], explicit: dict | None) -> Splits | list[ClipRef]:
    """New data too small to split on its own terms: its given sides when it has them (a side may lack a class:
    the earlier run's clips fill it), else its clips, all for training."""
    if explicit is None:
        return list(clips)
    parts = {s: [c for c in clips if explicit[clip_key(c)] == s] for s in SPLITS}
    return Splits(parts["train"], parts["validation"], parts["test"])


def replay_sample(clips: list[ClipRef], n: int, seed: int = 0) -> list[ClipRef]:
    """All the clips when they are at most n, else n of them drawn evenly from each class (seeded)."""
    if len(clips) <= n:
        return list(clips)
    rng = np.random.default_rng(seed)
    out = []
    for lab in sorted({c.label for c in clips}):
        mine = [c for c in clips if c.label == lab]
        k = max(1, round(n * len(mine) / len(clips)))
        out += [mine[i] for i in sorted(rng.choice(len(mine), size=min(k, len(mine)), replace=False))]
    return out


def with_earlier(new: Splits | list[ClipRef], earlier: Splits, notes: list[str]) -> Splits:
    """The new data's splits (or, when it could not be split, its clips, all for training) merged with the earlier
    run's: earlier training clips replayed, earlier validation and test kept; a new clip already among the
    earlier clips is dropped, one of a recording the earlier run used goes to that recording's side."""
    if isinstance(new, list):
        new = Splits(new, [], [], ("the new data cannot give validation and test clips of its own: all of it "
                                   "trains, and validation and test are the earlier run's",))
    side = {c.recording: name for name, part in earlier.items() for c in part}
    known = {(c.source, c.region_start_s, c.region_end_s) for _, part in earlier.items() for c in part}
    parts: dict[str, list[ClipRef]] = {name: list(part) for name, part in earlier.items()}
    n_new_train = sum(1 for c in new.train if (c.source, c.region_start_s, c.region_end_s) not in known)
    parts["train"] = replay_sample(earlier.train, REPLAY_PER_NEW * max(n_new_train, 1))
    replayed = len(parts["train"])
    moved = 0
    for name, part in new.items():
        for c in part:
            if (c.source, c.region_start_s, c.region_end_s) in known:
                continue
            to = side.get(c.recording, name)
            moved += to != name
            parts[to].append(c)
    n_new = sum(len(p) for _, p in new.items())
    notes = list(new.notes) + notes + [
        f"--init-from: {replayed} training clip(s) of the earlier run's "
        f"{len(earlier.train)} replayed beside {n_new} new clip(s); "
        f"validation and test hold the earlier run's ({len(earlier.validation)} and {len(earlier.test)} clips) "
        "and the new data's"]
    if moved:
        notes.append(f"{moved} new clip(s) of recordings the earlier run used went to that recording's side")
    return _checked(Splits(parts["train"], parts["validation"], parts["test"], tuple(notes)))


def check_labels(model: Path, label2id: dict[str, int]) -> None:
    """The earlier model's classes must be the new data's, in the same order (its output layer is reused)."""
    cfg = json.loads((model / "config.json").read_text())
    old = {k: int(v) for k, v in (cfg.get("label2id") or {}).items()}
    if old and old != dict(label2id):
        raise HootwatchError(f"--init-from {model}: the earlier model has classes {sorted(old, key=old.get)}, "
                             f"the new data {sorted(label2id, key=label2id.get)}",
                             "use data with the same class folders (e.g. owl/ and not_owl/) as the earlier run")


def check_layers(model: Path, layers: int | None) -> None:
    """--init-from keeps the earlier model's transformer layers: --layers may only repeat their count."""
    if layers is None:
        return
    n = json.loads((model / "config.json").read_text()).get("num_hidden_layers")
    if layers != n:
        raise HootwatchError(f"--layers {layers}: --init-from {model} keeps the earlier model's {n} transformer "
                             "layer(s)", "drop --layers (or train a new run from --base with --layers)")
