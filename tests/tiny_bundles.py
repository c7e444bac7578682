"""Deterministic model bundles for tests, built without torch (onnx.helper only).

`tone_bundle(dir)`: a "tone detector". input_values (B, N) float32 -> logits (B, 2) where
    e = |<x, cos(2 pi f t)>|^2 + |<x, sin(2 pi f t)>|^2, scaled so a window filled with a pure tone at `tone_hz`
        gives e ~= 1 (after the bundle's zero-mean/unit-variance normalisation), and a window holding the
        tone for a fraction p of its length gives e ~= p;
    logits = [-(k/2)(e - c), (k/2)(e - c)]  -> P(owl) = sigmoid(k (e - c)).
With the defaults (c=0.3, k=20, threshold 0.5) a window is positive when the tone fills more than ~30% of
it, so a tone at known times gives detections at known times. Labels ("not_owl", "owl").

`write_tone(path, ...)` writes a WAV of low noise with tone bursts at given times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from hootwatch.edge.contract.bundle import Manifest, write_manifest
from hootwatch.edge.contract.preprocess import Normalisation

TONE_HZ = 450.0


def tone_model(path: Path, sample_rate: int = 8000, window_s: float = 5.0, tone_hz: float = TONE_HZ,
               centre: float = 0.3, gain: float = 20.0) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = int(round(window_s * sample_rate))
    t = np.arange(n) / sample_rate
    proj = np.stack([np.cos(2 * np.pi * tone_hz * t), np.sin(2 * np.pi * tone_hz * t)], axis=1).astype(np.float32)
    inits = [
        numpy_helper.from_array(proj, "proj"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(2.0 / n ** 2, np.float32), "norm"),
        numpy_helper.from_array(np.array(centre, np.float32), "centre"),
        numpy_helper.from_array(np.array([-gain / 2, gain / 2], np.float32), "signs"),
    ]
    nodes = [
        helper.make_node("MatMul", ["input_values", "proj"], ["p"]),
        helper.make_node("Mul", ["p", "p"], ["p2"]),
        helper.make_node("ReduceSum", ["p2", "axes"], ["s"], keepdims=1),
        helper.make_node("Mul", ["s", "norm"], ["e"]),
        helper.make_node("Sub", ["e", "centre"], ["d"]),
        helper.make_node("Mul", ["d", "signs"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tone_detector",
        [helper.make_tensor_value_info("input_values", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def tone_bundle(bundle_dir: str | Path, sample_rate: int = 8000, window_s: float = 5.0, hop_s: float = 2.5,
                threshold: float = 0.5, tone_hz: float = TONE_HZ, min_hits: int = 1,
                normalisation: Normalisation = Normalisation("zero_mean_unit_var")) -> Path:
    d = Path(bundle_dir)
    d.mkdir(parents=True, exist_ok=True)
    tone_model(d / "model.onnx", sample_rate, window_s, tone_hz)
    write_manifest(d, Manifest(
        labels=("not_owl", "owl"), positive_label="owl", sample_rate=sample_rate, window_s=window_s, hop_s=hop_s,
        normalisation=normalisation, threshold=threshold, min_hits=min_hits,
        backbone="tiny-tone-test",
        created_utc="2024-01-01T00:00:00+00:00"))
    return d


def tone_signal(duration_s: float, sample_rate: int, tones: list[tuple[float, float]] = (),
                tone_hz: float = TONE_HZ, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """Low white noise with tone bursts [(start_s, end_s), ...] of amplitude 0.5."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    x = (noise * rng.standard_normal(n)).astype(np.float32)
    t = np.arange(n) / sample_rate
    for a, b in tones:
        m = (t >= a) & (t < b)
        x[m] += 0.5 * np.sin(2 * np.pi * tone_hz * t[m]).astype(np.float32)
    return x


def write_tone(path: str | Path, duration_s: float, sample_rate: int = 8000,
               tones: list[tuple[float, float]] = (), seed: int = 0, **kw) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), tone_signal(duration_s, sample_rate, tones, seed=seed, **kw), sample_rate)
    return p


def add_first_stage(bundle_dir: str | Path, n_windows: int = 120, seed: int = 0) -> Path:
    """Give a tone bundle a cascade first stage, distilled from the tone model's own scores as the trainer does
    (hootwatch.trainer.first_stage: an MLP on the edge's features, pass threshold keeping 99.5 % of positives).

    Training windows: low noise, noise of other levels, tones filling 0-100 % of the window, off-pitch tones."""
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.contract.first_stage import FILE_NAME, choose_pass_threshold, features
    from hootwatch.trainer.first_stage import fit

    d = Path(bundle_dir)
    det = Detector.load(d, threads=1)
    m = det.manifest
    sr, win_s = m.sample_rate, m.window_s
    rng = np.random.default_rng(seed)
    windows = []
    for i in range(n_windows):
        kind = (i // 2) % 4   # both halves (fit, pass threshold) get every kind
        if kind == 0:
            tones, hz = [], TONE_HZ
        elif kind == 1:
            a = rng.uniform(0, win_s - 0.5)
            tones, hz = [(a, a + rng.uniform(2.0, win_s))], TONE_HZ
        elif kind == 2:
            tones, hz = [(0.0, win_s)], TONE_HZ * rng.choice([0.4, 2.5, 4.0])
        else:
            tones, hz = [], TONE_HZ
        windows.append(tone_signal(win_s, sr, tones, tone_hz=hz, noise=float(rng.choice([0.003, 0.01, 0.05])),
                                   seed=seed + i))
    x = np.stack(windows)
    full = det.score(x)
    feats = features(x, sr)
    stage = fit(feats[::2], full[::2], m.threshold, sr, seed)
    chosen = choose_pass_threshold(stage.score_features(feats[1::2]), full[1::2], m.threshold)
    stage.save(d / FILE_NAME)
    data = m.to_dict() | {"first_stage": {"file": FILE_NAME, "pass_threshold": chosen.pass_threshold,
                                          "validation": chosen.to_dict()}}
    write_manifest(d, Manifest.from_dict(data))
    return d


def add_student(bundle_dir: str | Path, pass_threshold: float = 0.5, neighbours: int = 1, centre: float = 0.1,
                gain: float = 40.0) -> Path:
    """Give a tone bundle a student first stage (contract/student.py): the tone model itself, made more permissive
    (a lower share of tone energy is enough), so it passes the tone windows, some of their neighbours and
    nothing else."""
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.contract.student import FILE_NAME, KIND

    d = Path(bundle_dir)
    m = load_bundle(d).manifest
    tone_model(d / FILE_NAME, m.sample_rate, m.window_s, centre=centre, gain=gain)
    fs = {"kind": KIND, "file": FILE_NAME, "input": "input_values", "output": "logits", "positive_index": 1,
          "pass_threshold": pass_threshold, "neighbours": neighbours, "chosen_on": "a test"}
    write_manifest(d, Manifest.from_dict(m.to_dict() | {"first_stage": fs}))
    return d
