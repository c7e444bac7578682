"""A tone bundle (tests/tiny_bundles.py) whose graph also outputs an `embedding`: the power of the window at a
few frequencies (cos and sin parts), so windows of the same tone have near-identical embeddings and a tone at
another pitch points elsewhere. Built with onnx.helper, no torch: fast enough for the default run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hootwatch.edge.contract.bundle import Manifest, load_bundle, write_manifest
from tiny_bundles import TONE_HZ, tone_bundle

FREQS = (250.0, TONE_HZ, 900.0, 1500.0)


def embedding_bundle(bundle_dir: str | Path, **kw) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d = tone_bundle(bundle_dir, **kw)
    m = load_bundle(d).manifest
    n = m.window_spec.window_samples
    t = np.arange(n) / m.sample_rate
    proj = np.concatenate([np.stack([np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t)], axis=1) for f in FREQS],
                          axis=1).astype(np.float32)
    model = onnx.load(str(d / "model.onnx"))
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(proj, "eproj"),
                          numpy_helper.from_array(np.array(2.0 / n ** 2, np.float32), "enorm"),
                          numpy_helper.from_array(np.array(0.01, np.float32), "efloor")])
    g.node.extend([helper.make_node("MatMul", ["input_values", "eproj"], ["ep"]),
                   helper.make_node("Mul", ["ep", "ep"], ["ep2"]),
                   helper.make_node("Mul", ["ep2", "enorm"], ["ep3"]),
                   helper.make_node("Add", ["ep3", "efloor"], ["embedding"])])
    g.output.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 2 * len(FREQS)]))
    onnx.checker.check_model(model)
    onnx.save(model, str(d / "model.onnx"))
    write_manifest(d, Manifest.from_dict(m.to_dict() | {"embedding": {
        "output": "embedding", "layer": 0, "dim": 2 * len(FREQS), "pooling": "band powers (test)"}}))
    return d
