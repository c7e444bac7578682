"""Checking a bundle's cascade on recordings like those it will scan (`hootwatch cascade-check`, `hootwatch export
--first-stage-check`): the pass threshold comes down until, there, the cascade makes exactly the rows of an
exhaustive scan.

The export chooses the pass threshold on the validation clips (hootwatch.export.first_stage). Clips hold one
centred window per call; nights hold calls cut by window edges, faint calls and the model's own false alarms,
which the clips under-sample (measured: a pass threshold chosen on 231 clips lost 3 of 116 calls on an unseen
night, bench/accuracy.py --exhaustive). This check needs only recordings and the bundle, no labels (the full model
is the judge), so it also runs on a field machine, after `hootwatch calibrate` moved the threshold or at a new site.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace

import numpy as np

from hootwatch.edge.contract.bundle import write_manifest
from hootwatch.edge.core.errors import BundleError, ConfigError
from hootwatch.edge.contract.first_stage import KEEP, choose_pass_threshold
from hootwatch.edge.contract.student import is_student
from .offline import FileScores, score_windows
from .pass_rule import cascade_rows, cheapest_rule, passed_mask, read_labels

log = logging.getLogger(__name__)


@dataclass
class _BothStages:
    """Scores every window with the full model (what it returns, so scan.offline windows the audio as a scan
    does) and records the first stage's score of the same windows, in order, in one pass over the audio."""
    cascade: object                     # hootwatch.edge.contract.cascade.CascadeDetector
    first: list = field(default_factory=list)

    @property
    def manifest(self):
        return self.cascade.manifest

    @property
    def batch_size(self) -> int:
        return self.cascade.full.batch_size

    def score(self, windows: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(windows, np.float32))
        if self.cascade.context == 0 and not is_student(self.manifest.first_stage):   # the feature MLP: raw windows
            self.first.append(self.cascade.first_stage_scores(x))
            return self.cascade.full.score(x)
        xn = self.cascade.full.normalise(x)          # once, for both models
        self.first.append(self.cascade.first_stage_scores(xn, normalised=True))
        return self.cascade.full.score(xn, normalised=True)


@dataclass(frozen=True)
class CheckedThreshold:
    pass_threshold: float
    windows: int
    positives: int                   # windows the full model calls positive at the bundle's threshold
    kept: int                        # of those, passed by the first stage
    passed: int
    exhaustive_detections: int
    cascade_detections: int          # with this pass threshold: the same rows, by construction


def _key(d) -> tuple:
    return d.file, round(d.start_s, 6), round(d.end_s, 6)


def checked_pass_threshold(full: list[FileScores], first: list[np.ndarray], start: float, manifest,
                           keep: float | None = KEEP, neighbours: int = 0) -> CheckedThreshold:
    """The highest pass threshold <= `start` at which the first stage keeps `keep` of the positive windows (the
    feature MLP's rule; None for the student, whose rule is about calls) and the cascade makes exactly the
    detections (file, start, end) of an exhaustive scan, at the bundle's threshold and min_hits. A detection the
    cascade loses, splits or shortens gets every positive window inside it passed, which rebuilds it exactly
    (passing more windows never removes a scored window)."""
    judge = np.concatenate([f.scores for f in full]) if full else np.zeros(0, np.float32)
    cheap = np.concatenate(first) if first else np.zeros(0, np.float32)
    by_windows = choose_pass_threshold(cheap, judge, manifest.threshold, keep if keep is not None else 0.0)
    t = min(start, by_windows.pass_threshold) if by_windows.n_positive and keep is not None else start

    def _rows(full, first, t, manifest):
        return cascade_rows(full, first, t, manifest, neighbours)

    exhaustive = _rows(full, None, t, manifest)
    want = {_key(d) for d in exhaustive}
    sr = manifest.sample_rate
    for _ in range(2):
        got = {_key(d) for d in _rows(full, first, t, manifest)}
        changed = [d for d in exhaustive if _key(d) not in got]
        if not changed and got == want:
            break
        for d in changed:
            i = next(i for i, f in enumerate(full) if f.file == d.file)
            s = full[i].starts / sr
            inside = (s >= d.start_s - 1e-6) & (s < d.end_s) & (full[i].scores >= manifest.threshold)
            need = first[i][inside]
            if len(need) == 0 or np.isnan(need).any():
                raise BundleError(f"{d.file} at {d.start_s:.1f} s: the first stage cannot pass the windows of this "
                                  "detection (no first-stage score)", "scan with --exhaustive, or export the model "
                                  "again with this hootwatch version")
            t = min(t, float(need.min()))
    got = _rows(full, first, t, manifest)
    if {_key(d) for d in got} != want:   # cannot happen (see above); never write a threshold that loses rows
        raise BundleError("the cascade's rows differ from an exhaustive scan's at every pass threshold tried",
                          "scan with --exhaustive, or export without a first stage (--no-first-stage)")
    passed = np.concatenate([passed_mask(c, t, neighbours) for c in first]) if first else cheap >= t
    return CheckedThreshold(t, len(cheap), by_windows.n_positive, int((passed & (judge >= manifest.threshold)).sum()),
                            int(passed.sum()), len(exhaustive), len(got))


def check_on_recordings(bundle_dir: str | os.PathLike, audio_dir: str | os.PathLike, threads: int | None = None,
                        chosen_on: str = "", keep: float = KEEP, write: bool = True, use_labels: bool = True) -> dict:
    """Choose or check the bundle's pass threshold on recordings like those it will scan.

    A student bundle and recordings with labels (a ground_truth.csv or annotation tables in the folder; export's
    validation recordings): the pass rule about calls (scan.pass_rule: the highest threshold, and the neighbour
    count, that keep every labelled call the full model detects there). Otherwise (a field check, no labels): lower
    the threshold (never raise it) until the cascade makes exactly the rows of an exhaustive scan there, and, for the
    feature MLP of earlier bundles, keeps `keep` (99.5 %) of the windows the int8 model calls positive
    (checked_pass_threshold).

    Writes the threshold and the figures (`first_stage.rule` or `first_stage.recordings_check`) into manifest.json
    (unless not `write`); returns the figures. A bundle without a first stage is left as it is ({})."""
    from hootwatch.edge.contract.cascade import CascadeDetector, load_detector

    cascade = load_detector(bundle_dir, threads=threads)   # hash-checked once, here
    if not isinstance(cascade, CascadeDetector):
        return {}                                          # no first stage
    bundle, m = cascade.bundle, cascade.manifest
    student = is_student(m.first_stage)
    both = _BothStages(cascade)
    full = score_windows(both, audio_dir)
    first = np.concatenate(both.first) if both.first else np.zeros(0, np.float32)
    n = np.cumsum([0] + [len(f.scores) for f in full])
    if n[-1] == 0:
        raise ConfigError(f"{audio_dir}: no audio to check the first stage on", "give a folder of recordings")
    if len(first) != n[-1]:
        raise ConfigError(f"{audio_dir}: the recordings changed while they were checked, or one failed part-way "
                          "(see the warnings above)", "run it again when nothing is writing into that folder, "
                          "leaving out files that fail")
    firsts = [first[a:b] for a, b in zip(n, n[1:])]
    old = float(m.first_stage["pass_threshold"])
    common = {"recordings": str(audio_dir), "chosen_on": chosen_on, "pass_threshold_before": old,
              "judge": "int8 model", "full_threshold": m.threshold, "min_hits": m.min_hits, "hop_s": m.hop_s}
    truth = read_labels(audio_dir) if student and use_labels else []
    rule = cheapest_rule(full, firsts, truth, m, root=audio_dir) if truth else None
    if truth and rule is None:
        n_owl = sum(t.label == m.positive_label for t in truth)
        why = (f"none of its {len(truth)} labels is {m.positive_label!r} (found: "
               f"{', '.join(sorted({t.label for t in truth})[:8])}): name the owl calls {m.positive_label!r} to use them"
               if n_owl == 0 else f"the full model detects none of its {n_owl} labelled {m.positive_label!r} calls")
        log.warning("%s: %s, so the labels cannot choose the pass threshold; checking instead that the cascade makes "
                    "the exhaustive scan's rows there", audio_dir, why)
    if rule is not None:
        report = common | rule.to_dict() | {"labels": len(truth)}
        if write:
            fs = {k: v for k, v in m.first_stage.items() if k != "recordings_check"}   # no stale figures
            write_manifest(bundle.path, replace(m, first_stage=fs | {
                "pass_threshold": rule.pass_threshold, "neighbours": rule.neighbours, "rule": report,
                "chosen_on": f"labelled recordings {audio_dir}"}))
        log.info("pass rule chosen on %s: threshold %.3g, %d neighbours, pass rate %.1f %%, %d of %d detected calls "
                 "kept", audio_dir, rule.pass_threshold, rule.neighbours, 100 * rule.pass_rate, rule.calls_kept,
                 rule.calls_detected)
        return report
    neighbours = int(m.first_stage.get("neighbours", 0)) if student else 0
    c = checked_pass_threshold(full, firsts, old, m, None if student else keep, neighbours)
    report = common | {"windows": c.windows, "full_model_positives": c.positives, "positives_kept": c.kept,
                       "pass_rate": round(c.passed / c.windows, 4), "exhaustive_detections": c.exhaustive_detections,
                       "cascade_detections": c.cascade_detections, "pass_threshold": c.pass_threshold,
                       "keep_target": None if student else keep, "neighbours": neighbours}
    if write:
        fs = {k: v for k, v in m.first_stage.items() if k != "rule"}   # a stale rule would describe another threshold
        write_manifest(bundle.path, replace(m, first_stage=fs | {
            "pass_threshold": c.pass_threshold, "recordings_check": report}))
    log.info("first stage checked on %s: pass threshold %.3g -> %.3g, pass rate %.1f %%", audio_dir, old,
             c.pass_threshold, 100 * report["pass_rate"])
    return report
