"""The student (the cascade's first stage, RUN/student/ from hootwatch.trainer.student) into the bundle.

1. ONNX through the very path of the full model (onnx_export), in fp32: dynamic int8 computes one activation scale
   per batch, so a window's score would depend on the windows beside it in the batch (measured: 0.026 in a logit),
   and the pass rule below must hold for the window however the scan batches it; int8 would also save nothing
   (the student is ~66 k weights; its time is the convolutional front, which int8 leaves in fp32: 0.36 vs 0.38 ms);
2. parity: the ONNX student, run by the edge's own code (hootwatch.edge.contract.student) on the validation clips,
   against the PyTorch student (at most STUDENT_TOLERANCE apart, else no student ships);
3. a first pass rule on the clips: the highest threshold that keeps every owl clip the int8 full model detects at
   the bundle's threshold (trainer.student.clip_rule), with one neighbour on each side passed (min_hits 2 needs
   two windows in a row; one is enough for the student to see).

Export then chooses the rule that ships on labelled validation recordings when it is given them
(`--first-stage-check DIR`, hootwatch.edge.scan.pass_rule), which is the rule the issue of record asks for: about
calls, on recordings like those the bundle will scan. The clips' rule is what a bundle gets without them, and the
manifest says which it is (`first_stage["chosen_on"]`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.student import FILE_NAME, KIND, Student
from hootwatch.trainer.student import DIR_NAME, MODEL_SUBDIR, REPORT_FILE, clip_rule

from . import onnx_export
from .parity import cut_windows, edge_detector, ort_session

log = logging.getLogger(__name__)

STUDENT_TOLERANCE = 0.01     # max abs owl-probability difference ONNX vs PyTorch on the validation clips
CLIP_NEIGHBOURS = 1


def run_student_dir(source) -> Path | None:
    """RUN/student/model of a training run, if the trainer distilled one."""
    if source.kind != "run":
        return None
    d = Path(source.model_dir).parent / DIR_NAME / MODEL_SUBDIR
    return d if (d / "config.json").is_file() else None


def _probs(student: Student, x: np.ndarray) -> np.ndarray:
    return np.concatenate([student.score_normalised(x[i:i + 32]) for i in range(0, len(x), 32)]) if len(x) else \
        np.zeros(0, np.float32)


def prepare(source, int8_full: Path, clips, threshold: float, bundle_dir: Path, work: Path, target: str,
            threads: int = 2) -> dict:
    """Export, check and copy the run's student into `bundle_dir`; the manifest's `first_stage` field ({} when the
    run has no student, or nothing on the clips shows a pass threshold is safe)."""
    import torch
    from transformers import AutoModelForAudioClassification

    d = run_student_dir(source)
    if d is None:
        return {}
    meta = source.meta
    model = AutoModelForAudioClassification.from_pretrained(d).eval()
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    if meta.positive_label not in labels:
        log.warning("%s: the student's labels %s lack %r; the bundle scores every window", d, labels,
                    meta.positive_label)
        return {}
    pos = labels.index(meta.positive_label)
    graph = onnx_export.export_onnx(model, work / "student_onnx")

    raw = cut_windows(clips, meta.sample_rate, meta.window_s)
    x = meta.normalisation.apply(raw, meta.sample_rate)
    with torch.inference_mode():
        ref = torch.softmax(torch.cat([model(input_values=torch.from_numpy(x[i:i + 32])).logits.float()
                                       for i in range(0, len(x), 32)]), -1)[:, pos].numpy()
    spec = {"positive_index": pos, "input": graph.input_name, "output": graph.output_name}
    name, path = "fp32", graph.path
    stage = _probs(Student(ort_session(path, threads), graph.input_name, graph.output_name, pos), x)
    parity = {name: round(float(np.abs(stage - ref).max()) if len(x) else 0.0, 6)}
    if parity[name] > STUDENT_TOLERANCE:
        log.warning("the student's ONNX differs from PyTorch by %s on the validation clips; the bundle scores every "
                    "window", parity)
        return {}
    full = edge_detector(int8_full, meta.sample_rate, meta.window_s, meta.normalisation, meta.labels,
                         meta.positive_label, threshold, threads).score(raw)
    is_owl = np.array([c.label == meta.positive_label for c in clips], bool)
    rule = clip_rule(stage, full, is_owl, threshold) | {"clips_from": source.clips_origin, "judge": "int8 model",
                                                        "neighbours": CLIP_NEIGHBOURS}
    if rule["owl_clips_detected"] == 0:
        log.warning("the int8 model detects none of the %d owl clips at threshold %.3f, so no pass threshold can be "
                    "shown safe: the bundle scores every window with the full model", int(is_owl.sum()), threshold)
        return {}
    shutil.copyfile(path, bundle_dir / FILE_NAME)
    trained = json.loads((d.parent / REPORT_FILE).read_text()) if (d.parent / REPORT_FILE).is_file() else {}
    return {"kind": KIND, "file": FILE_NAME, **spec, "pass_threshold": rule["pass_threshold"],
            "neighbours": CLIP_NEIGHBOURS, "chosen_on": "validation clips", "clip_rule": rule,
            "quantization": name, "parity_max_abs_prob_diff": parity, "training": trained}


def describe(manifest, bundle: str | Path = "BUNDLE") -> list[str]:
    """What a bundle's first stage is and what its pass rule rests on, in lines for a person (export, demo)."""
    fs = manifest.first_stage
    if not fs:
        return ["[yellow]no cascade first stage: every window is scored by the full model[/]"]
    if fs.get("kind") != KIND:   # the feature MLP of earlier bundles
        v = fs["validation"]
        return [f"cascade first stage (feature MLP of an earlier version): pass threshold {fs['pass_threshold']:.4g}, "
                f"{v['pass_rate']:.1%} of the validation clips passed"]
    c = fs["clip_rule"]
    lines = [f"cascade first stage: a student model ({fs.get('quantization', 'int8')}); on the validation clips it "
             f"keeps all {c['owl_clips_detected']} owl clips the int8 model detects at pass threshold "
             f"{c['pass_threshold']:.4g}, passing {c['pass_rate']:.1%} of the clips"]
    r = fs.get("rule")
    if r:
        lines.append(f"  pass rule chosen on {r['recordings']}: every one of the {r['calls_detected']} labelled calls "
                     f"the full model detects there is still detected ({r['calls_kept']} kept) at pass threshold "
                     f"{r['pass_threshold']:.4g} with {r['neighbours']} neighbour(s); the full model scores "
                     f"{r['pass_rate']:.1%} of {r['windows']} windows ({r['cascade_detections']} detections against "
                     f"{r['exhaustive_detections']} exhaustive)")
    elif fs.get("recordings_check"):
        k = fs["recordings_check"]
        lines.append(f"  checked on {k['recordings']}: pass threshold {k['pass_threshold_before']:.4g} -> "
                     f"{k['pass_threshold']:.4g}, the same {k['cascade_detections']} detections as an exhaustive "
                     f"scan, passing {k['pass_rate']:.1%} of {k['windows']} windows")
    else:
        lines.append("[yellow]  the pass threshold rests on the validation clips only, which under-sample faint calls "
                     "and calls cut by window edges: choose it on labelled recordings with `hootwatch export "
                     "--first-stage-check DIR` (a folder with a ground_truth.csv or annotation tables), or check it "
                     f"on a night or two with `hootwatch cascade-check RECORDINGS --bundle {bundle}`[/]")
    return lines
