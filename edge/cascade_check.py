"""Checking a bundle's cascade on recordings like those it will scan (`hootwatch cascade-check`, `hootwatch export
--first-stage-check`): the pass threshold comes down until, there, the first stage keeps what the full model finds.

The export chooses the pass threshold on the validation clips (hootwatch.export.first_stage); this check needs only
recordings and the bundle, so it runs on the field machine too, and after `hootwatch calibrate` moved the threshold.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import numpy as np

from .bundle import load_bundle, write_manifest
from .detector import Detector
from .errors import ConfigError
from .first_stage import KEEP, FirstStage, choose_pass_threshold
from .window_scores import detections_at, score_windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _FirstStageScorer:
    """The first stage's scores as a scorer, so that window_scores windows the audio exactly as for the full model."""
    manifest: object
    stage: FirstStage
    batch_size: int = 64

    def score(self, windows: np.ndarray) -> np.ndarray:
        return self.stage.score(np.atleast_2d(windows))


def check_on_recordings(bundle_dir: str | os.PathLike, audio_dir: str | os.PathLike, threads: int | None = None,
                        chosen_on: str = "", keep: float = KEEP, write: bool = True) -> dict:
    """Check the bundle's pass threshold on recordings like those it will scan, and lower it (never raise it) until
    there the first stage keeps at least `keep` (99.5 %) of the windows the int8 model calls positive AND every
    detection an exhaustive scan makes at the bundle's threshold and min_hits. No labels are needed: the full
    model is the judge. The validation clips hold one window per call, a night holds calls cut by window edges,
    faint calls and the model's own false alarms, which the clips under-sample (measured: a pass threshold chosen on
    231 clips lost 3 of 116 calls on an unseen night, bench/accuracy.py --exhaustive).

    Writes the threshold and the figures (`first_stage.recordings_check`) into manifest.json (unless not `write`);
    returns the figures. A bundle without a first stage is left as it is ({})."""
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
    if write:
        write_manifest(bundle.path, replace(m, first_stage=dict(m.first_stage) | {"pass_threshold": t,
                                                                                 "recordings_check": report}))
    log.info("first stage checked on %s: pass threshold %.3g -> %.3g, pass rate %.1f %%", audio_dir, old, t,
             100 * report["pass_rate"])
    return report
