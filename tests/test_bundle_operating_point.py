"""The operating point (threshold, min_hits) is a setting of the bundle, not of its ONNX graph (issue 11 item 2)."""

import json

import pytest

from hootwatch.edge.contract.bundle import MANIFEST_NAME, load_bundle, onnx_metadata, set_operating_point, sha256_file
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.core.errors import BundleError

from tiny_bundles import tone_bundle


def _stamp_like_old_exports(d):
    """What `hootwatch export` wrote before: every manifest field mirrored into the ONNX metadata, the
    threshold and min_hits included."""
    import onnx

    from hootwatch.edge.contract.bundle import Manifest, write_manifest
    m = load_bundle(d).manifest
    props = onnx_metadata(m) | {"hootwatch.threshold": str(m.threshold), "hootwatch.min_hits": str(m.min_hits)}
    model = onnx.load(str(d / "model.onnx"))
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(d / "model.onnx"))
    write_manifest(d, Manifest.from_dict(json.loads((d / MANIFEST_NAME).read_text())))


def test_changing_the_operating_point_keeps_the_graph_and_the_model_id(tmp_path):
    d = tone_bundle(tmp_path / "b", threshold=0.5, min_hits=1)
    _stamp_like_old_exports(d)  # an old bundle: still loads and can be re-pointed
    graph, model_id = sha256_file(d / "model.onnx"), load_bundle(d).manifest.model_id
    m = set_operating_point(d, threshold=0.8, min_hits=2, note={"chosen_on": "test"})
    assert (m.threshold, m.min_hits) == (0.8, 2) and m.metrics["operating_point"]["chosen_on"] == "test"
    assert sha256_file(d / "model.onnx") == graph and m.model_id == model_id
    det = Detector.load(d, threads=1, warmup=False)  # the graph's stamped 0.5 no longer contradicts the manifest
    assert (det.manifest.threshold, det.manifest.min_hits, det.manifest.model_id) == (0.8, 2, model_id)
    assert "hootwatch.threshold" not in onnx_metadata(m) and "hootwatch.min_hits" not in onnx_metadata(m)
    with pytest.raises(BundleError, match="outside"):
        set_operating_point(d, threshold=1.5)
