"""`hootwatch train --init-from RUN_OR_MODEL`: fine-tune on from an earlier run's model.

Not a resume: a new run folder with its own splits and metrics; the weights (and feature extractor) start from
the earlier model instead of the pretrained backbone. The earlier run's test recordings (RUN/splits/test.csv)
are moved to the test side of the new split, so the new model is never trained or tuned on what the old one
was tested on, and the two test figures stay comparable.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hootwatch.edge.contract.clips import read_clip_csv
from hootwatch.edge.core.errors import HootwatchError

from .data.splits import Splits, _checked


def model_dir(init_from: str | Path) -> Path:
    """RUN/model for a run folder, the folder itself for a saved model; HootwatchError otherwise."""
    p = Path(init_from).expanduser()
    for cand in (p / "model", p):
        if (cand / "config.json").is_file() and (cand / "preprocessor_config.json").is_file():
            return cand
    raise HootwatchError(f"--init-from {init_from}: no trained model there (no config.json and "
                         "preprocessor_config.json in it or in its model/ folder)",
                         "pass the folder of an earlier `hootwatch train --out RUN` run, or its RUN/model")


def earlier_test_recordings(init_from: str | Path) -> set[str]:
    """Recordings on the earlier run's test side (empty when --init-from names a bare model)."""
    p = Path(init_from).expanduser() / "splits" / "test.csv"
    return {c.recording for c in read_clip_csv(p)} if p.is_file() else set()


def keep_on_test_side(splits: Splits, test_recordings: set[str]) -> Splits:
    """Move every clip of those recordings to test (a note says how many moved)."""
    if not test_recordings:
        return splits
    moved = [c for name, part in splits.items() if name != "test" for c in part if c.recording in test_recordings]
    if not moved:
        return splits
    keep = lambda part: [c for c in part if c.recording not in test_recordings]  # noqa: E731
    note = (f"{len(moved)} clip(s) of {len({c.recording for c in moved})} recording(s) the earlier run tested on "
            "moved to test (--init-from)")
    return _checked(replace(splits, train=keep(splits.train), validation=keep(splits.validation),
                            test=splits.test + moved, notes=splits.notes + (note,)))


def check_labels(model: Path, label2id: dict[str, int]) -> None:
    """The earlier model's classes must be the new data's, in the same order (its output layer is reused)."""
    cfg = json.loads((model / "config.json").read_text())
    old = {k: int(v) for k, v in (cfg.get("label2id") or {}).items()}
    if old and old != dict(label2id):
        raise HootwatchError(f"--init-from {model}: the earlier model has classes {sorted(old, key=old.get)}, "
                             f"the new data {sorted(label2id, key=label2id.get)}",
                             "use data with the same class folders (e.g. owl/ and not_owl/) as the earlier run")
