"""Proof before a bundle is written: PyTorch, ONNX fp32 and ONNX int8 on the same clips, compared.

Clips are cut exactly as evaluation cuts them (the centred window of each ClipRef). The ONNX variants are scored
by the edge `Detector` itself (its session options, its normalisation); PyTorch gets the same windows normalised
with the same Normalisation. For each ONNX variant: the largest absolute logit difference
from PyTorch, the fraction of clips whose decision at the threshold agrees with PyTorch, and the F1 of the
positive label when the clips are labelled. A clip whose probability moves less than BORDERLINE may flip on
rounding alone; such flips are reported, not counted. The int8 model fails the check when more than `tolerance`
of its decisions change by a real margin, and, on labelled clips, also when its F1 falls below PyTorch's by more
than allowed (labelled clips must hold a positive clip, else F1 is 0 for any model). The two rules agree: the F1
judged keeps PyTorch's decision on the borderline flips the first rule forgives, and the drop allowed is the
larger of `tolerance` and the drop ONE clip's flip causes (on 15 validation clips, 3 of them owl, that is 0.18:
F1 cannot see a smaller change there); the message says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.bundle import Bundle, Manifest
from hootwatch.edge.contract.clips import ClipRef
from hootwatch.edge.contract.detector import Detector, softmax
from hootwatch.edge.core.errors import ConfigError, HootwatchError
from hootwatch.edge.contract.preprocess import Normalisation

from .onnx_export import require

BATCH = 8
BORDERLINE = 0.01


class ParityError(HootwatchError):
    """The quantized model is measurably worse than the PyTorch model it came from."""


@dataclass(frozen=True)
class VariantParity:
    name: str                      # "pytorch", "fp32", "int8", "fp16"
    max_abs_logit_diff: float      # vs PyTorch (0 for PyTorch itself)
    max_abs_prob_diff: float
    agreement: float               # fraction of clips with the same decision as PyTorch
    f1: float | None               # positive-label F1 (None for unlabelled clips)
    error: str = ""                # set when this variant could not run here (e.g. fp16 on a CPU)


@dataclass(frozen=True)
class ParityReport:
    n_clips: int
    labelled: bool
    positive_label: str
    threshold: float
    tolerance: float
    variants: tuple[VariantParity, ...]
    passed: bool
    message: str

    def get(self, name: str) -> VariantParity:
        return next(v for v in self.variants if v.name == name)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["variants"] = {v.name: {k: x for k, x in asdict(v).items() if k != "name"} for v in self.variants}
        return d


def cut_windows(clips: tuple[ClipRef, ...] | list[ClipRef], sample_rate: int, window_s: float) -> np.ndarray:
    """(n_clips, window_samples) raw audio: the centred window of each clip, as evaluation cuts it."""
    return np.stack([c.cut(sample_rate, window_s) for c in clips]).astype(np.float32)


def torch_logits(model, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return np.concatenate([model(torch.from_numpy(x[i:i + BATCH])).logits.float().numpy()
                                   for i in range(0, len(x), BATCH)])
    finally:
        torch.set_num_threads(before)


def ort_session(path: Path, threads: int | None = 2):
    """The edge's ONNX Runtime session over one model file, on the CPU (the speed report times it)."""
    from hootwatch.edge.contract.detector import open_session

    return open_session(path, threads, ["CPUExecutionProvider"])


def edge_detector(path: Path, sample_rate: int, window_s: float, normalisation: Normalisation,
                  labels: tuple[str, ...], positive_label: str, threshold: float, threads: int | None = 2) -> Detector:
    """The edge `Detector` over a candidate ONNX file, with the audio contract the bundle will carry: parity
    scores through the very code the field runs (normalisation included), on the CPU."""
    session = ort_session(path, threads)
    manifest = Manifest(labels=tuple(labels), positive_label=positive_label, sample_rate=int(sample_rate),
                        window_s=float(window_s), hop_s=float(window_s) / 2, normalisation=normalisation,
                        threshold=float(threshold), input_name=session.get_inputs()[0].name,
                        output_name=session.get_outputs()[0].name, model_file=Path(path).name)
    return Detector.from_session(Bundle(Path(path).parent, manifest), session, BATCH, warmup=False)


def _f1(truth: np.ndarray | None, decisions: np.ndarray) -> float | None:
    if truth is None:
        return None
    f1_score = require("sklearn.metrics").f1_score
    return float(f1_score(truth, decisions, zero_division=0))


def _f1_counts(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def one_flip_f1_drop(truth: np.ndarray, decisions: np.ndarray) -> float:
    """The largest F1 drop that flipping ONE clip's decision can cause: on a small validation set this is the
    resolution of F1, so a smaller change cannot tell a worse model from noise."""
    tp = int((truth & decisions).sum())
    fp = int((~truth & decisions).sum())
    fn = int((truth & ~decisions).sum())
    tn = len(truth) - tp - fp - fn
    f = _f1_counts(tp, fp, fn)
    worse = [_f1_counts(tp - 1, fp, fn + 1)] if tp else []
    worse += [_f1_counts(tp, fp + 1, fn)] if tn else []
    return max(0.0, f - min(worse)) if worse else 0.0


def compare(reference: np.ndarray, candidates: dict[str, np.ndarray | str], positive_index: int, positive_label: str,
            threshold: float, tolerance: float, truth: np.ndarray | None) -> ParityReport:
    """Compare logits of each candidate (or an error string) with the PyTorch reference logits."""
    ref_p = softmax(reference.astype(np.float64))[:, positive_index]
    ref_dec = ref_p >= threshold
    rows = [VariantParity("pytorch", 0.0, 0.0, 1.0, _f1(truth, ref_dec))]
    for name, logits in candidates.items():
        if isinstance(logits, str):
            rows.append(VariantParity(name, float("nan"), float("nan"), float("nan"), None, logits))
            continue
        p = softmax(logits.astype(np.float64))[:, positive_index]
        dec = p >= threshold
        rows.append(VariantParity(name, float(np.abs(logits - reference).max()), float(np.abs(p - ref_p).max()),
                                  float((dec == ref_dec).mean()), _f1(truth, dec)))
    int8 = next(r for r in rows if r.name == "int8")
    int8_p = softmax(candidates["int8"].astype(np.float64))[:, positive_index]
    # decisions that changed by a real margin (not a borderline clip flipping on rounding alone)
    flipped = (int8_p >= threshold) != ref_dec
    real = flipped & (np.abs(int8_p - ref_p) >= BORDERLINE)
    changed = float(real.mean())
    agreement = (f"int8 changes {changed:.1%} of decisions vs PyTorch (tolerance {tolerance:.1%}; "
                 f"{int(flipped.sum() - real.sum())} borderline flips not counted)")
    if truth is not None:
        if not truth.any():  # F1 would be 0 for both models whatever they decide: it proves nothing
            raise ConfigError(f"the labelled parity clips hold no {positive_label!r} clip",
                              f"add clips of {positive_label!r} to the validation clips or --audio folders")
        # the F1 rule judges what the decision rule judges: a forgiven borderline flip keeps PyTorch's decision
        judged = np.where(flipped & ~real, ref_dec, int8_p >= threshold)
        drop = rows[0].f1 - _f1(truth, judged)
        one_clip = one_flip_f1_drop(truth, ref_dec)
        allowed = max(tolerance, one_clip)
        passed = drop <= allowed + 1e-9 and changed <= tolerance
        size = f"{len(reference)} clips ({int(truth.sum())} {positive_label})"
        bound = (f"tolerance {tolerance:.3f}" if allowed == tolerance else
                 f"allowed {allowed:.3f}: on only {size} one clip's flip moves F1 by that much, so a smaller drop "
                 "is noise, not a loss; judge on more validation clips for a finer check")
        message = (f"int8 {positive_label} F1 {int8.f1:.3f} vs PyTorch {rows[0].f1:.3f}, {_f1(truth, judged):.3f} "
                   f"with the borderline flips at PyTorch's decision (drop {drop:+.3f}, {bound}); {agreement} on "
                   f"{size}")
    else:
        passed = changed <= tolerance
        message = f"{agreement} on {len(reference)} unlabelled clips"
    return ParityReport(len(reference), truth is not None, positive_label, threshold, tolerance, tuple(rows), passed, message)


def check_parity(model, onnx_paths: dict[str, Path], clips, sample_rate: int, window_s: float,
                 normalisation: Normalisation, labels: tuple[str, ...], positive_label: str, threshold: float,
                 tolerance: float, threads: int = 2) -> ParityReport:
    """Run PyTorch and every ONNX variant ({"fp32": path, "int8": path, ...}) on `clips` and compare."""
    labelled = bool(clips) and all(c.label for c in clips)
    if labelled and not any(c.label == positive_label for c in clips):
        found = sorted({c.label for c in clips})
        raise ConfigError(f"the labelled parity clips hold no {positive_label!r} clip (labels found: "
                          f"{', '.join(found)}); F1 would be 0 for every model and prove nothing",
                          f"add {positive_label!r} clips (a sub-folder named {positive_label} under --audio), "
                          "or pass --positive-label with the owl's label")
    raw = cut_windows(clips, sample_rate, window_s)
    reference = torch_logits(model, normalisation.apply(raw, sample_rate), threads)
    candidates: dict[str, np.ndarray | str] = {}
    for name, path in onnx_paths.items():
        try:
            detector = edge_detector(path, sample_rate, window_s, normalisation, labels, positive_label, threshold,
                                     threads)
            candidates[name] = detector.logits(raw).astype(np.float32)
        except Exception as exc:  # fp16 graphs may not run on a CPU; that is reported, not fatal
            if name == "int8":
                raise
            candidates[name] = f"could not run on this machine: {str(exc).splitlines()[0][:200]}"
    truth = np.array([c.label == positive_label for c in clips]) if labelled else None
    return compare(reference, candidates, labels.index(positive_label), positive_label, threshold, tolerance, truth)
