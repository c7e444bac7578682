"""The cascade's first stage into the bundle, checked against the model the edge will run.

The trainer leaves RUN/first_stage/ (hootwatch.trainer.first_stage). Before it goes into a bundle:

1. parity: the edge's numpy first stage, loaded from the very file that ships, rescores the validation clips and
   must give the scores the trainer recorded (within PARITY_TOLERANCE);
2. the pass threshold is chosen again, on the same clips, against the int8 model and the bundle's threshold (both
   may differ from the run's: the operating point is often chosen after training), to keep at least 99.5 % of
   the windows the int8 model calls positive. No such window (say, a threshold of 0.99 that no clip reaches):
   nothing shows a pass threshold is safe, and the bundle is written without a first stage.

The first stage is not quantized: it is ~1,300 float32 weights (a few KB) run in numpy in microseconds; int8
would save nothing and only add error.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from hootwatch.edge.core.errors import ConfigError
from hootwatch.edge.contract.first_stage import FILE_NAME, FirstStage, choose_pass_threshold, features
from hootwatch.trainer.first_stage import DIR_NAME, REPORT_FILE, VALIDATION_FILE

from .parity import cut_windows, edge_detector

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4


def run_first_stage_dir(source) -> Path | None:
    """RUN/first_stage of a training run, if the trainer built one."""
    if source.kind != "run":
        return None
    d = Path(source.model_dir).parent / DIR_NAME
    return d if (d / FILE_NAME).is_file() else None


def prepare(source, int8_path: Path, clips, threshold: float, bundle_dir: Path, threads: int = 2) -> dict:
    """Check the run's first stage, choose its pass threshold, copy it into `bundle_dir`; returns the manifest's
    `first_stage` field ({} when there is none to ship)."""
    d = run_first_stage_dir(source)
    if d is None:
        log.info("no first stage in %s: the bundle scores every window with the full model", source.model_dir)
        return {}
    stage = FirstStage.load(d / FILE_NAME)
    meta = source.meta
    if stage.sample_rate != meta.sample_rate:
        raise ConfigError(f"{d / FILE_NAME} runs at {stage.sample_rate} Hz, the model at {meta.sample_rate} Hz",
                          "train the run again, or delete RUN/first_stage to export without a cascade")
    raw = cut_windows(clips, meta.sample_rate, meta.window_s)
    stage_scores = stage.score_features(np.concatenate([features(raw[i:i + 64], meta.sample_rate)
                                                        for i in range(0, len(raw), 64)]))
    parity = None
    recorded = d / VALIDATION_FILE
    if source.clips_origin.endswith("validation.csv") and recorded.is_file():
        with np.load(recorded) as z:
            ref = z["first_stage"]
        if len(ref) == len(stage_scores):
            parity = float(np.abs(ref - stage_scores).max()) if len(ref) else 0.0
            if parity > PARITY_TOLERANCE:
                raise ConfigError(f"{d / FILE_NAME}: the edge's first stage scores the validation clips up to "
                                  f"{parity:.2g} away from the trainer's (tolerance {PARITY_TOLERANCE:g})",
                                  "train again with this hootwatch version, or delete RUN/first_stage to export "
                                  "without a cascade")
    int8 = edge_detector(int8_path, meta.sample_rate, meta.window_s, meta.normalisation, meta.labels,
                         meta.positive_label, threshold, threads).score(raw)   # as the edge scores them
    chosen = choose_pass_threshold(stage_scores, int8, threshold)
    if chosen.n_positive == 0:
        log.warning("the int8 model calls none of the %d clips positive at threshold %.3f, so no pass threshold "
                    "can be validated: the bundle scores every window with the full model", len(clips), threshold)
        return {}
    shutil.copyfile(d / FILE_NAME, bundle_dir / FILE_NAME)
    trained = {}
    if (d / REPORT_FILE).is_file():
        import json
        trained = json.loads((d / REPORT_FILE).read_text())
    validation = chosen.to_dict() | {"clips": source.clips_origin, "judge": "int8 model",
                                     "parity_max_abs_diff": parity}
    return {"file": FILE_NAME, "pass_threshold": chosen.pass_threshold, "validation": validation,
            "training": {k: v for k, v in trained.items() if k != "validation"}}
