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
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.errors import ConfigError
from hootwatch.edge.first_stage import FILE_NAME, FirstStage, features

from .parity import cut_windows, edge_detector

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
RUN_DIR = "first_stage"


def run_first_stage_dir(source) -> Path | None:
    """RUN/first_stage of a training run, if the trainer built one."""
    if source.kind != "run":
        return None
    d = Path(source.model_dir).parent / RUN_DIR
    return d if (d / FILE_NAME).is_file() else None


def prepare(source, int8_path: Path, clips, threshold: float, bundle_dir: Path, threads: int = 2) -> dict:
    """Check the run's first stage, choose its pass threshold, copy it into `bundle_dir`; returns the manifest's
    `first_stage` field ({} when there is none to ship)."""
    from hootwatch.trainer.first_stage import REPORT_FILE, VALIDATION_FILE, choose_pass_threshold

    d = run_first_stage_dir(source)
    if d is None:
        log.info("no first stage in %s: the bundle scores every window with the full model", source.model_dir)
        return {}
    stage = FirstStage.load(d / FILE_NAME)
    if stage.sample_rate != source.sample_rate:
        raise ConfigError(f"{d / FILE_NAME} runs at {stage.sample_rate} Hz, the model at {source.sample_rate} Hz",
                          "train the run again, or delete RUN/first_stage to export without a cascade")
    raw = cut_windows(clips, source.sample_rate, source.window_s)
    stage_scores = stage.score_features(np.concatenate([features(raw[i:i + 64], source.sample_rate)
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
    int8 = edge_detector(int8_path, source.sample_rate, source.window_s, source.normalisation, source.labels,
                         source.positive_label, threshold, threads).score(raw)   # as the edge scores them
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


@dataclass(frozen=True)
class _FirstStageScorer:
    """The first stage's scores as a scorer, so that window_scores windows the audio exactly as for the full model."""
    manifest: object
    stage: FirstStage
    batch_size: int = 64

    def score(self, windows: np.ndarray) -> np.ndarray:
        return self.stage.score(np.atleast_2d(windows))


def check_on_recordings(bundle_dir: str | os.PathLike, audio_dir: str | os.PathLike, threads: int | None = None,
                        chosen_on: str = "", keep: float | None = None) -> dict:
    """Check the bundle's pass threshold on recordings like those it will scan, and lower it (never raise it) until
    there the first stage keeps at least `keep` (99.5 %) of the windows the int8 model calls positive AND every
    detection an exhaustive scan makes at the bundle's threshold and min_hits. No labels are needed: the full
    model is the judge. The validation clips hold one window per call, a night holds calls cut by window edges,
    faint calls and the model's own false alarms, which the clips under-sample (measured: a pass threshold chosen on
    231 clips lost 3 of 116 calls on an unseen night, bench/accuracy.py --exhaustive).

    Writes the threshold and the figures (`first_stage.recordings_check`) into manifest.json; returns the figures.
    A bundle without a first stage is left as it is ({})."""
    from dataclasses import replace

    from hootwatch.edge.bundle import load_bundle, write_manifest
    from hootwatch.edge.detector import Detector
    from hootwatch.edge.window_scores import detections_at, score_windows
    from hootwatch.trainer.first_stage import KEEP, choose_pass_threshold

    keep = KEEP if keep is None else keep
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    if not m.first_stage:
        return {}
    stage = FirstStage.load(bundle.path / m.first_stage["file"])
    full = score_windows(Detector.load(bundle_dir, threads=threads), audio_dir)
    cheap = score_windows(_FirstStageScorer(m, stage), audio_dir)
    if [f.file for f in full] != [f.file for f in cheap] or any(len(a.scores) != len(b.scores)
                                                                for a, b in zip(full, cheap)):
        raise RuntimeError(f"{audio_dir}: the two passes windowed the audio differently (files changed meanwhile?)")
    judge = np.concatenate([f.scores for f in full]) if full else np.zeros(0, np.float32)
    first = np.concatenate([f.scores for f in cheap]) if cheap else np.zeros(0, np.float32)
    if len(judge) == 0:
        raise ConfigError(f"{audio_dir}: no audio to check the first stage on", "give a folder of recordings")
    old = float(m.first_stage["pass_threshold"])
    by_windows = choose_pass_threshold(first, judge, m.threshold, keep)
    t = min(old, by_windows.pass_threshold) if by_windows.n_positive else old

    n = m.window_spec.window_samples

    def events(threshold_pass: float | None):
        files = full if threshold_pass is None else [
            replace(f, scores=np.where(c.scores >= threshold_pass, f.scores, np.nan).astype(np.float32))
            for f, c in zip(full, cheap)]
        return detections_at(files, n, m.sample_rate, m.threshold, m.min_hits, m.positive_label)

    def lost(reference, got):
        return [d for d in reference if not any(g.file == d.file and g.start_s < d.end_s and d.start_s < g.end_s
                                                for g in got)]

    exhaustive = events(None)
    missing = lost(exhaustive, events(t))
    if missing:
        # passing every positive window of a lost detection brings it back whole (passing more windows only adds)
        for d in missing:
            f, c = next((f, c) for f, c in zip(full, cheap) if f.file == d.file)
            inside = ((f.starts + n) / m.sample_rate > d.start_s) & (f.starts / m.sample_rate < d.end_s)
            t = min(t, float(c.scores[inside & (f.scores >= m.threshold)].min()))
        assert not lost(exhaustive, events(t))
    cascade = events(t)
    passed = first >= t
    report = {"recordings": str(audio_dir), "chosen_on": chosen_on, "windows": int(len(first)),
              "full_model_positives": by_windows.n_positive,
              "positives_kept": int((passed & (judge >= m.threshold)).sum()),
              "pass_rate": round(float(passed.mean()), 4), "exhaustive_detections": len(exhaustive),
              "cascade_detections": len(cascade), "pass_threshold_before": old, "pass_threshold": t,
              "keep_target": keep, "judge": "int8 model"}
    write_manifest(bundle.path, replace(m, first_stage=dict(m.first_stage) | {"pass_threshold": t,
                                                                             "recordings_check": report}))
    log.info("first stage checked on %s: pass threshold %.3g -> %.3g, pass rate %.1f %%", audio_dir, old, t,
             100 * report["pass_rate"])
    return report
