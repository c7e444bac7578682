"""Bundle loading refuses malformed manifests and unhashed model files with a BundleError (no traceback)."""

from __future__ import annotations

import json
import shutil

import pytest

from hootwatch.edge.contract.bundle import MANIFEST_NAME, load_bundle
from hootwatch.edge.core.errors import BundleError

from tiny_bundles import tone_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tone_bundle(tmp_path_factory.mktemp("bundle") / "b")


def _edited(bundle, tmp_path, edit):
    d = shutil.copytree(bundle, tmp_path / "copy")
    raw = json.loads((d / MANIFEST_NAME).read_text())
    (d / MANIFEST_NAME).write_text(json.dumps(edit(raw)))
    return d


def test_the_unedited_bundle_loads(bundle):
    assert load_bundle(bundle).manifest.sample_rate == 8000


@pytest.mark.parametrize("edit, needle", [
    (lambda m: [m], "not a JSON object"),
    (lambda m: "bundle", "not a JSON object"),
    (lambda m: m | {"sample_rate": "8000"}, "sample_rate"),
    (lambda m: m | {"hop_s": 10.0}, "hop_s"),
    (lambda m: m | {"window_s": "5"}, "window_s"),
    (lambda m: m | {"normalisation": "zero_mean_unit_var"}, "manifest"),
    (lambda m: m | {"labels": "owl"}, "labels"),
    (lambda m: m | {"files": ["model.onnx"]}, "files"),
    (lambda m: m | {"variants": {"fp32": 3}}, "variants"),
    (lambda m: m | {"min_hits": 0}, "min_hits"),
    (lambda m: m | {"min_hits": "2"}, "min_hits"),
    (lambda m: m | {"min_hits": 2.0}, "min_hits"),
    (lambda m: m | {"normalisation": {"kind": "zero_mean_unit_var", "eps": 1e-7, "pre_emphasis": 0.97}},
     "pre_emphasis"),
])
def test_malformed_manifest_is_a_bundle_error(bundle, tmp_path, edit, needle):
    d = _edited(bundle, tmp_path, edit)
    with pytest.raises(BundleError) as exc:
        load_bundle(d)
    assert needle in exc.value.message and MANIFEST_NAME in exc.value.message and exc.value.hint


@pytest.mark.parametrize("hop", [10.0, 0.0, -1])
def test_a_hop_outside_the_window_says_re_export(bundle, tmp_path, hop):
    d = _edited(bundle, tmp_path, lambda m: m | {"hop_s": hop})
    with pytest.raises(BundleError) as exc:
        load_bundle(d)
    assert exc.value.message == (f"{d / MANIFEST_NAME}: hop_s {hop:g} s must be above 0 and at most the model's "
                                 "window (5 s)")
    assert exc.value.hint == "re-export the model"


def test_a_variant_without_a_hash_is_refused(bundle, tmp_path):
    d = _edited(bundle, tmp_path, lambda m: m | {"variants": {"fp32": "model_fp32.onnx"}})
    shutil.copy(d / "model.onnx", d / "model_fp32.onnx")  # present but not hashed: it could be anything
    with pytest.raises(BundleError, match="no hash for model_fp32.onnx"):
        load_bundle(d)


def _stamp(d, props: dict[str, str]) -> None:
    import onnx

    from hootwatch.edge.contract.bundle import Manifest, write_manifest

    model = onnx.load(str(d / "model.onnx"))
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(d / "model.onnx"))
    raw = json.loads((d / MANIFEST_NAME).read_text())
    write_manifest(d, Manifest.from_dict(raw))  # hashes match again: only the metadata can tell


def test_onnx_metadata_must_agree_with_the_manifest(bundle, tmp_path):
    from hootwatch.edge.contract.bundle import onnx_metadata
    from hootwatch.edge.contract.detector import Detector

    good = shutil.copytree(bundle, tmp_path / "good")
    _stamp(good, onnx_metadata(load_bundle(good).manifest))
    assert Detector.load(good, threads=1, warmup=False).manifest.sample_rate == 8000
    mixed = shutil.copytree(bundle, tmp_path / "mixed")
    _stamp(mixed, onnx_metadata(load_bundle(mixed).manifest) | {"hootwatch.sample_rate": "16000"})
    with pytest.raises(BundleError) as exc:
        Detector.load(mixed, threads=1, warmup=False)
    assert "sample_rate = 16000" in exc.value.message and "8000" in exc.value.message


def test_cpu_detector_scores_one_window_at_a_time_unless_told(tmp_path):
    """On the CPU batching buys no speed and costs memory (1.4 GB vs 0.43 GB for wav2vec2-base int8)."""
    import numpy as np

    from hootwatch.edge.contract.detector import Detector

    path = tone_bundle(tmp_path / "b")
    cpu = Detector.load(path, providers=["CPUExecutionProvider"])
    assert cpu.batch_size == 1
    assert Detector.load(path, providers=["CPUExecutionProvider"], batch_size=4).batch_size == 4
    x = np.random.default_rng(0).normal(size=(5, cpu.manifest.window_spec.window_samples)).astype(np.float32)
    batched = Detector.load(path, providers=["CPUExecutionProvider"], batch_size=4).score(x)
    assert np.allclose(cpu.score(x), batched, atol=1e-6)


def test_a_version_1_bundle_made_before_min_hits_still_loads(bundle, tmp_path):
    def as_version_1(m):
        m = dict(m)
        del m["min_hits"]
        return m | {"format_version": 1}
    d = _edited(bundle, tmp_path, as_version_1)
    m = load_bundle(d).manifest
    assert (m.format_version, m.min_hits) == (1, 1)


def test_a_newer_bundle_format_asks_for_an_upgrade(bundle, tmp_path):
    from hootwatch.edge.contract.bundle import READABLE_VERSIONS
    newer = max(READABLE_VERSIONS) + 1   # 3 is read since `hootwatch fit` writes it (a fitted head)
    d = _edited(bundle, tmp_path, lambda m: m | {"format_version": newer})
    with pytest.raises(BundleError) as exc:
        load_bundle(d)
    assert f"format version {newer}" in exc.value.message and "upgrade hootwatch" in exc.value.hint


def test_the_detector_band_limits_at_the_bundles_own_sample_rate(tmp_path):
    """At 8 kHz a 100 Hz hum is below the 150 Hz band edge; read as 16 kHz audio it would pass as 200 Hz."""
    import numpy as np
    import onnxruntime as ort

    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.contract.preprocess import Normalisation

    norm = Normalisation(highpass_hz=150.0, lowpass_hz=3000.0)
    path = tone_bundle(tmp_path / "b", sample_rate=8000, normalisation=norm)
    det = Detector.load(path, threads=1)
    n = det.manifest.window_spec.window_samples
    t = np.arange(n) / 8000
    x = (np.sin(2 * np.pi * 100 * t) + 0.05 * np.sin(2 * np.pi * 450 * t)).astype(np.float32)[None]
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    def logits(rate):
        return session.run(["logits"], {"input_values": norm.apply(x, rate)})[0]
    assert np.allclose(det.logits(x), logits(8000), atol=1e-5)
    assert not np.allclose(logits(8000), logits(16000), atol=1e-2)


def test_the_optional_display_range_defaults_round_trips_and_is_checked(bundle, tmp_path):
    from hootwatch.edge.contract.bundle import DEFAULT_DISPLAY

    assert load_bundle(bundle).manifest.display_spec == DEFAULT_DISPLAY  # a bundle without one: the owl's
    mel = {"min_hz": 0, "max_hz": 3000, "scale": "mel", "band_hz": [300, 1200]}
    d = _edited(bundle, tmp_path, lambda m: m | {"display": mel})
    assert load_bundle(d, verify=False).manifest.display_spec.to_dict() == mel
    shutil.rmtree(d)
    d = _edited(bundle, tmp_path, lambda m: m | {"display": {"max_hz": 1000, "band_hz": [200, 1500]}})
    with pytest.raises(BundleError, match="band high <= max_hz"):
        load_bundle(d, verify=False)
