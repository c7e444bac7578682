"""The model at inference: an ONNX Runtime session over a verified bundle.

Providers are chosen automatically (TensorRT, then CUDA, when onnxruntime-gpu offers them; else CPU), the
thread count is configurable, and the session is warmed up at load so the first real window is not slow.
Scores are the softmax probability of the bundle's positive label; decisions use a threshold, never argmax.
A bundle with an `embedding` output also gives each window's pooled embedding (`score_and_embed`, one session
call for both); a bundle with a fitted `head` (`hootwatch fit`) scores with that head on the embedding instead of
the graph's logits; an embedding-only bundle (`export --embedding-only`: no logits output) scores nothing (NaN).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .bundle import Bundle, check_onnx_metadata, load_bundle
from hootwatch.edge.core.errors import BundleError, MissingExtraError

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingExtraError("edge", "onnxruntime") from None
    return ort


def choose_providers(requested: list[str] | None = None) -> list[str]:
    ort = _onnxruntime()
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise BundleError(
                f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)})",
                "install hootwatch[edge-gpu] (onnxruntime-gpu; on a Jetson, NVIDIA's wheel for your JetPack) "
                "or leave the provider unset",
            )
        return list(requested)
    return [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def open_session(path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None):
    """An ONNX Runtime session over one model file, with the edge's options (all graph optimisations; `threads`
    intra-op threads and one inter-op thread). BundleError when ONNX Runtime cannot load it."""
    ort = _onnxruntime()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=choose_providers(providers))
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"{path}: ONNX Runtime cannot load this model ({exc})",
                          "re-export the bundle, or upgrade onnxruntime") from None


@dataclass
class Detector:
    bundle: Bundle
    session: object
    batch_size: int = 1

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None,
             variant: str = "default", batch_size: int | None = None, warmup: bool = True) -> "Detector":
        """`batch_size` None: 1 on the CPU, 8 with a GPU provider. On the CPU a batch of eight 5 s windows is
        no faster than one at a time (measured with wav2vec2-base int8, 2 threads: 31.1 vs 32.8 s for 5 min of
        audio) but peaks at 1.4 GB instead of 0.43 GB of memory, too much for a Raspberry Pi."""
        bundle = load_bundle(bundle_dir)
        path = bundle.variant_path(variant)
        session = open_session(path, threads, providers)
        try:
            found = dict(session.get_modelmeta().custom_metadata_map)
        except Exception:  # a build without model metadata: the hashes still vouch for the file
            found = {}
        check_onnx_metadata(path, bundle.manifest, found)
        return cls.from_session(bundle, session, batch_size, warmup)

    @classmethod
    def from_session(cls, bundle: Bundle, session, batch_size: int | None = None, warmup: bool = True) -> "Detector":
        """A detector over an open session (`open_session`) whose model obeys `bundle.manifest`; export's parity
        check scores candidate models, before any bundle is written, this way."""
        if batch_size is None:
            batch_size = 8 if session.get_providers()[0] in GPU_PROVIDERS else 1
        det = cls(bundle, session, int(batch_size))
        if warmup:
            det.score(np.zeros((1, bundle.manifest.window_spec.window_samples), np.float32))
        return det

    @property
    def manifest(self):
        return self.bundle.manifest

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def embeds(self) -> bool:
        """Whether this bundle's graph gives embeddings (the scan then stores them)."""
        return bool(self.manifest.embedding_output)

    def normalise(self, windows: np.ndarray) -> np.ndarray:
        """Raw (batch, window_samples) audio as the model reads it (the bundle's band limit and normalisation)."""
        m = self.manifest
        return m.normalisation.apply(np.atleast_2d(windows), m.sample_rate)

    def _run(self, windows: np.ndarray, names: list[str], normalised: bool = False) -> list[np.ndarray]:
        m = self.manifest
        x = np.atleast_2d(np.asarray(windows, np.float32)) if normalised else self.normalise(windows)
        outs = [self.session.run(names, {m.input_name: x[i:i + self.batch_size]})
                for i in range(0, len(x), self.batch_size)]
        return [np.concatenate([o[j] for o in outs]) for j in range(len(names))] if outs else None

    def logits(self, windows: np.ndarray, normalised: bool = False) -> np.ndarray:
        """Raw logits for (batch, window_samples) raw audio windows (normalisation is applied here unless the
        windows are `normalised` already, as the cascade hands them over)."""
        out = self._run(windows, [self.manifest.output_name], normalised)
        return out[0] if out else np.zeros((0, len(self.manifest.labels)), np.float32)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """The pooled embedding of each window, (batch, dim) float32; BundleError when the bundle has none."""
        return self.score_and_embed(windows)[1]

    def score_and_embed(self, windows: np.ndarray, normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(score of each window, its embedding) from one session call."""
        m = self.manifest
        if not m.embedding_output:
            raise BundleError(f"{self.bundle.path}: this bundle gives no embeddings (exported before they were)",
                              "export the model again with this hootwatch, or use `hootwatch export "
                              "--embedding-only BACKBONE` for search")
        names = [m.embedding_output] + ([m.output_name] if m.output_name and not m.head else [])
        out = self._run(windows, names, normalised)
        if out is None:
            return np.zeros(0, np.float32), np.zeros((0, int(m.embedding["dim"])), np.float32)
        emb = out[0].astype(np.float32)
        return (self._scores(out[1]) if len(out) > 1 else self._head_or_nan(emb)), emb

    def score(self, windows: np.ndarray, normalised: bool = False) -> np.ndarray:
        """Probability of the positive label for each window, shape (batch,)."""
        m = self.manifest
        if m.head or not m.output_name:
            return self.score_and_embed(windows, normalised)[0]
        return self._scores(self.logits(windows, normalised))

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits.astype(np.float64))[:, self.manifest.positive_index].astype(np.float32)

    def _head_or_nan(self, emb: np.ndarray) -> np.ndarray:
        from .head import LinearHead
        if not self.manifest.head:
            return np.full(len(emb), np.nan, np.float32)  # an embedding-only bundle: nothing is scored
        return LinearHead.from_manifest(self.manifest).score(emb)
