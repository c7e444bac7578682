"""`hootwatch export --embedding-only BACKBONE --out BUNDLE`: an embedding bundle from a pretrained backbone with no
owl head, so that a person with three hoots and no model can start: `embed`, `search`, review, `fit`.

    BACKBONE   a Hugging Face model id (facebook/wav2vec2-base: downloaded once, where the hub can be reached), or a
               folder saved with save_pretrained of a wav2vec2/HuBERT/WavLM model (config.json + weights) and its
               feature extractor (preprocessor_config.json: the sample rate and whether inputs are normalised)

The graph's one output is the pooled embedding (the mean over frames of one transformer layer,
onnx_export.with_embedding); int8 as for any bundle; the check compares the int8 embeddings with PyTorch's by
cosine similarity on windows of noise and tones (or --audio recordings), and refuses a bundle whose smallest
cosine is below MIN_COSINE unless forced. The bundle scores nothing (NaN, no detections) until `hootwatch fit`
puts a head on it; its labels are the owl / not_owl pair that head will have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.bundle import Manifest
from hootwatch.edge.contract.preprocess import Normalisation
from hootwatch.edge.core.errors import ConfigError

from . import bundle_writer, onnx_export, quantize
from .parity import ParityError

log = logging.getLogger(__name__)

MIN_COSINE = 0.98
LABELS = ("not_owl", "owl")


@dataclass(frozen=True)
class EmbeddingExport:
    bundle: Path
    manifest: Manifest
    min_cosine: float


def _source(backbone: str) -> str:
    """BACKBONE as `from_pretrained` takes it: a local folder (checked here, so a wrong one is named at once) or a
    Hugging Face model id such as facebook/wav2vec2-base (downloaded once into the cache, as `train --base`)."""
    local = Path(backbone).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(f"{local}: no config.json; not a saved backbone",
                              "pass a Hugging Face model id (e.g. facebook/wav2vec2-base), or a folder saved with "
                              "save_pretrained (config.json, weights, preprocessor_config.json)")
        if not (local / "preprocessor_config.json").is_file():
            raise ConfigError(f"{local}: no preprocessor_config.json (the sample rate and input normalisation)",
                              "save the feature extractor with the model (Wav2Vec2FeatureExtractor.save_pretrained)")
        return str(local)
    if backbone.startswith((".", "/", "~")) or backbone.count("/") > 1 or local.exists():
        raise ConfigError(f"{backbone}: no such backbone folder",
                          "pass a folder saved with save_pretrained, or a Hugging Face model id (owner/name)")
    return backbone


def load_backbone(source: str):
    """(model, sample rate, normalisation) of a local folder or a hub id (trainer.model's loading: the cache
    first, then the hub if it answers, else a clear offline message)."""
    onnx_export.require("torch")
    transformers = onnx_export.require("transformers")
    from hootwatch.trainer.model import _pretrained
    from hootwatch.trainer.run_folder import checked_sample_rate, read_json
    try:
        fe = _pretrained(transformers.AutoFeatureExtractor, source)
        model = _pretrained(transformers.AutoModel, source)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{source}: cannot load a backbone ({str(exc).splitlines()[0] if str(exc) else exc})",
                          "pass a Hugging Face model id (e.g. facebook/wav2vec2-base), or a folder saved with "
                          "save_pretrained") from None
    if not hasattr(model.config, "num_hidden_layers"):
        raise ConfigError(f"{source}: {type(model).__name__} has no transformer layers to embed from",
                          "pass a wav2vec2, HuBERT or WavLM backbone")
    model.eval()
    onnx_export.fold_weight_norm(model)
    local = Path(source) / "preprocessor_config.json"   # a local folder's own file: a missing rate is never guessed
    raw = read_json(local) if local.is_file() else fe.to_dict()
    rate = checked_sample_rate(raw.get("sampling_rate"), local if local.is_file() else Path(source), "sampling_rate")
    return model, rate, Normalisation.from_feature_extractor(bool(raw.get("do_normalize", True)))


def check_windows(sample_rate: int, window_s: float, audio_dir: Path | None, n: int = 8) -> np.ndarray:
    """Windows to compare int8 with PyTorch on: the --audio recordings' first windows, else noise and tones."""
    from hootwatch.edge.contract.audio import load
    from hootwatch.edge.contract.windows import fit_length
    win = int(round(window_s * sample_rate))
    if audio_dir is not None:
        from .source import audio_dir_clips
        clips = audio_dir_clips(Path(audio_dir), window_s)[:n]
        return np.stack([fit_length(load(c.source, sample_rate, duration_s=window_s), win) for c in clips])
    rng = np.random.default_rng(0)
    t = np.arange(win) / sample_rate
    return np.stack([(0.1 * (i + 1) * rng.standard_normal(win) + (i % 2) * np.sin(2 * np.pi * (300 + 150 * i) * t))
                     .astype(np.float32) for i in range(n)])


def min_cosine(model, onnx_path: Path, manifest: Manifest, windows: np.ndarray, threads: int = 2) -> float:
    """The smallest cosine similarity between PyTorch's embedding of each raw window and the ONNX file's (the
    model must be `onnx_export.with_embedding`'s; the edge Detector runs the file, with its normalisation)."""
    import torch

    from hootwatch.edge.contract.bundle import Bundle
    from hootwatch.edge.contract.detector import Detector
    from .parity import ort_session

    with torch.no_grad():
        want = model(torch.from_numpy(manifest.normalisation.apply(windows, manifest.sample_rate))).embedding.numpy()
    det = Detector.from_session(Bundle(Path(onnx_path).parent, manifest), ort_session(onnx_path, threads),
                                warmup=False)
    got = det.embed(windows)
    cos = (got * want).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
    return float(cos.min())


def export_embedding_bundle(backbone: Path, out: Path, layer: int | None = None, target: str | None = None,
                            window_s: float = 5.0, hop_s: float = 2.5, audio_dir: Path | None = None,
                            force: bool = False, overwrite: bool = False, threads: int = 2,
                            opset: int = onnx_export.DEFAULT_OPSET) -> EmbeddingExport:
    out = Path(out)
    source = _source(str(backbone))
    bundle_writer.check_destination(out, overwrite)
    model, sample_rate, norm = load_backbone(source)
    layer = onnx_export.middle_layer(model) if layer is None else int(layer)
    target = target or quantize.default_target()
    with bundle_writer.staging(out) as (bundle_dir, work):
        graph = onnx_export.export_onnx(model, work / "onnx", opset, embedding_layer=layer,
                                        task="feature-extraction")
        int8 = quantize.quantize_int8(graph.path, work / "model_int8.onnx", target, False)
        manifest = Manifest(labels=LABELS, positive_label="owl", sample_rate=sample_rate, window_s=float(window_s),
                            hop_s=float(hop_s), normalisation=norm, threshold=0.5, input_name=graph.input_name,
                            output_name="", model_file="model.onnx",
                            backbone=str(model.config._name_or_path or source),
                            embedding=graph.embedding | {"chosen": onnx_export.EMBEDDING_CHOICE if layer is None
                                                         else "given (--embedding-layer)"})
        x = check_windows(sample_rate, window_s, audio_dir)
        min_cos = min_cosine(model, int8, manifest, x, threads)
        if min_cos < MIN_COSINE and not force:
            raise ParityError(f"the int8 embeddings differ from PyTorch's (smallest cosine {min_cos:.3f} < "
                              f"{MIN_COSINE}); no bundle written",
                              "try --target for the device, or accept it with --force")
        int8.rename(bundle_dir / "model.onnx")
        report = {"source": {"path": source, "kind": "backbone (embedding only)"},
                  "parity": {"embedding_min_cosine_int8_vs_torch": min_cos, "windows": len(x),
                             "on": str(audio_dir) if audio_dir else "noise and tones"},
                  "quantization": {"target": target, "weights": "int8 (signed)", "opset": opset}}
        from dataclasses import replace
        manifest = replace(manifest, metrics={"embedding_only": True, **report})
        manifest = bundle_writer.write_bundle(bundle_dir, manifest, report)
        bundle_writer.publish(bundle_dir, out, overwrite)
    return EmbeddingExport(out, manifest, min_cos)
