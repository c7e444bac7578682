"""The model bundle: one folder the edge can trust.

    bundle/
      model.onnx          the int8 model the edge runs
      model_fp32.onnx     optional variants (fp32, fp16)
      first_stage.npz     optional first stage of a cascade (hootwatch.edge.contract.first_stage)
      manifest.json       everything needed to run it, and the sha256 of every file

The edge refuses a bundle whose format version it does not know or whose files do not match their hashes,
and says why. `export` writes bundles; this module reads, verifies and writes the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from hootwatch.edge.core.errors import BundleError
from .operating_point import OperatingPoint, Wording
from .preprocess import Normalisation
from .windows import WindowSpec

# 2: min_hits and the band-limited normalisation. Version 1 bundles (neither) still load: their defaults are
# exactly what version 1 meant. A hootwatch that reads only version 1 refuses version 2 and says to upgrade,
# instead of silently dropping the band filter.
FORMAT_VERSION = 2
# The optional `first_stage` field needs no new version: a hootwatch that does not know it ignores it and scores
# every window with the full model, which is correct, only slower. Nor does the optional `display` field (how the
# review page draws a spectrogram for this species): without it the page uses DEFAULT_DISPLAY. Nor does `embedding`
# (an extra graph output an older hootwatch never asks for). A bundle with a `head` (`hootwatch fit`) is version 3: an
# older hootwatch would ignore the head and score with the graph's own logits, so it must refuse it instead.
HEAD_FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MANIFEST_NAME = "manifest.json"
_MANIFEST_WORDING = Wording("threshold", "min_hits", "hop_s", fix_threshold="re-export the model",
                            fix_min_hits="re-export the model", fix_hop="re-export the model", error=BundleError)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


@dataclass(frozen=True)
class Display:
    """How the review page draws this species' spectrograms: the frequency range and scale of the image, and the
    band where the call lies (marked on the axis; the page's zoom shows that band alone)."""
    min_hz: float = 0.0
    max_hz: float = 2000.0
    scale: str = "linear"           # linear | mel
    band_hz: tuple[float, float] = (200.0, 1500.0)

    def __post_init__(self) -> None:
        nums = (self.min_hz, self.max_hz, *self.band_hz)
        if len(self.band_hz) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in nums):
            raise BundleError(f"field 'display' needs numbers min_hz, max_hz and band_hz [low, high], got {self!r}",
                              "export the model again with `hootwatch export`, or remove 'display' from the manifest")
        lo, hi = self.band_hz
        if not (0 <= self.min_hz < self.max_hz <= 100_000 and self.min_hz <= lo < hi <= self.max_hz):
            raise BundleError(f"field 'display': 0 <= min_hz < max_hz and min_hz <= band low < band high <= max_hz, "
                              f"got min_hz {self.min_hz:g}, max_hz {self.max_hz:g}, band_hz {lo:g}-{hi:g}",
                              "export the model again, or remove 'display' from the manifest (0-2 kHz is used)")
        if self.scale not in ("linear", "mel"):
            raise BundleError(f"field 'display': scale {self.scale!r} is linear or mel",
                              "export the model again, or remove 'display' from the manifest")

    @classmethod
    def from_dict(cls, d: dict) -> "Display":
        if not isinstance(d, dict) or set(d) - {"min_hz", "max_hz", "scale", "band_hz"}:
            raise BundleError(f"field 'display' must be an object of min_hz, max_hz, scale, band_hz, got {d!r}",
                              "export the model again, or remove 'display' from the manifest")
        band = d.get("band_hz", DEFAULT_DISPLAY.band_hz)
        return cls(d.get("min_hz", DEFAULT_DISPLAY.min_hz), d.get("max_hz", DEFAULT_DISPLAY.max_hz),
                   d.get("scale", DEFAULT_DISPLAY.scale), tuple(band) if isinstance(band, (list, tuple)) else band)

    def to_dict(self) -> dict:
        return {"min_hz": self.min_hz, "max_hz": self.max_hz, "scale": self.scale, "band_hz": list(self.band_hz)}


# the powerful owl: its hoots' fundamental lies at about 0.3-0.5 kHz, harmonics up to about 1.5 kHz
DEFAULT_DISPLAY = Display()


@dataclass(frozen=True)
class Manifest:
    labels: tuple[str, ...]
    positive_label: str
    sample_rate: int
    window_s: float
    hop_s: float
    normalisation: Normalisation
    threshold: float
    min_hits: int = 1                                   # positive windows a detection needs (operating point)
    input_name: str = "input_values"
    output_name: str = "logits"
    model_file: str = "model.onnx"
    variants: dict = field(default_factory=dict)       # {"fp32": "model_fp32.onnx", "fp16": ...}
    backbone: str = ""
    metrics: dict = field(default_factory=dict)        # training/validation/test and parity figures
    files: dict = field(default_factory=dict)          # {relative name: sha256}
    versions: dict = field(default_factory=dict)       # package versions at export
    # {"file": "first_stage.npz", "pass_threshold": p, "validation": {...}}: the cascade (contract/cascade.py); empty
    # for a single-stage bundle
    first_stage: dict = field(default_factory=dict)
    display: dict = field(default_factory=dict)         # Display.to_dict(); empty: DEFAULT_DISPLAY
    # {"output": "embedding", "layer": L, "dim": D, "pooling": ..., "chosen": how L was chosen}: the graph's pooled
    # embedding per window (search by example, `hootwatch fit`); empty for bundles exported without it
    embedding: dict = field(default_factory=dict)
    # a linear head on the embedding (`hootwatch fit`, edge/contract/head.py): when present it, not the graph's
    # logits, gives the owl probability; {"weights": [...], "bias": b, "trained_on": {...}}
    head: dict = field(default_factory=dict)
    created_utc: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.positive_label not in self.labels:
            raise BundleError(f"positive label {self.positive_label!r} is not among the labels {list(self.labels)}",
                              "re-export the model; the manifest is inconsistent")
        OperatingPoint(self.threshold, self.min_hits, wording=_MANIFEST_WORDING, complete=True)

    @property
    def positive_index(self) -> int:
        return self.labels.index(self.positive_label)

    @property
    def window_spec(self) -> WindowSpec:
        return WindowSpec(self.sample_rate, self.window_s, self.hop_s)

    @property
    def display_spec(self) -> Display:
        return Display.from_dict(self.display) if self.display else DEFAULT_DISPLAY

    @property
    def backbone_id(self) -> str:
        """The start of the ONNX file's sha256: what stored embeddings are keyed on (a fitted head keeps it)."""
        return self.files.get(self.model_file, "")[:12]

    @property
    def model_id(self) -> str:
        """Short, stable id of the model that made a detection: the start of its ONNX file's sha256, or with a
        fitted head, of the sha256 of that and the head's weights (two heads on one graph are two models)."""
        if not self.head:
            return self.backbone_id
        blob = json.dumps([self.files.get(self.model_file, ""), self.head.get("weights"), self.head.get("bias")])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def embedding_output(self) -> str:
        """The graph's embedding output name ('' when the bundle has none)."""
        return str(self.embedding.get("output", "")) if self.embedding else ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["normalisation"] = self.normalisation.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["labels"] = tuple(d["labels"])
        kw["normalisation"] = Normalisation.from_dict(d["normalisation"])
        return cls(**kw)


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    def variant_path(self, name: str) -> Path:
        if name in ("int8", "default"):
            return self.model_path
        if name not in self.manifest.variants:
            raise BundleError(f"{self.path}: has no {name!r} model (it has: default, {', '.join(self.manifest.variants)})",
                              "export again with that variant, or leave the variant unset")
        return self.path / self.manifest.variants[name]


_FIELD_TYPES = {"sample_rate": int, "window_s": (int, float), "hop_s": (int, float), "threshold": (int, float),
                "input_name": str, "output_name": str, "model_file": str, "variants": dict, "backbone": str,
                "metrics": dict, "files": dict, "versions": dict, "created_utc": str, "positive_label": str,
                "first_stage": dict, "display": dict, "embedding": dict, "head": dict}


def _check_types(m: Manifest) -> None:
    for name, types in _FIELD_TYPES.items():
        value = getattr(m, name)
        if isinstance(value, bool) or not isinstance(value, types):
            raise BundleError(f"field {name!r} has the wrong type ({value!r})",
                              "export the model again with `hootwatch export`; do not edit manifest.json by hand")
    if not all(isinstance(x, str) for x in m.labels):
        raise BundleError(f"field 'labels' must be a list of names, got {list(m.labels)!r}",
                          "export the model again with `hootwatch export`")
    for table in ("variants", "files"):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in getattr(m, table).items()):
            raise BundleError(f"field {table!r} must map names to strings", "export the model again")
    if m.first_stage:
        fs, p = m.first_stage, m.first_stage.get("pass_threshold")
        if not isinstance(fs.get("file"), str) or isinstance(p, bool) or not isinstance(p, (int, float)) \
                or not 0.0 <= p <= 1.0:
            raise BundleError(f"field 'first_stage' needs a 'file' name and a 'pass_threshold' in [0, 1], got {fs!r}",
                              "export the model again with `hootwatch export` (or scan with --exhaustive)")
        kind = fs.get("kind", "features")
        if kind not in ("features", "student"):
            raise BundleError(f"field 'first_stage' is of kind {kind!r}, which this hootwatch does not know",
                              "upgrade hootwatch on this device, or scan with --exhaustive")
        if kind == "student":
            n, i = fs.get("neighbours", 0), fs.get("positive_index")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0 or isinstance(i, bool) \
                    or not isinstance(i, int) or not 0 <= i < len(m.labels):
                raise BundleError(f"field 'first_stage' needs whole 'neighbours' >= 0 and a 'positive_index' among "
                                  f"the {len(m.labels)} labels, got {fs!r}",
                                  "export the model again with `hootwatch export` (or scan with --exhaustive)")


    if m.embedding and not (isinstance(m.embedding.get("output"), str) and isinstance(m.embedding.get("dim"), int)):
        raise BundleError(f"field 'embedding' needs an 'output' name and a 'dim', got {m.embedding!r}",
                          "export the model again with `hootwatch export`")
    if m.head:
        w = m.head.get("weights")
        if not m.embedding or not isinstance(w, list) or len(w) != m.embedding.get("dim") \
                or not isinstance(m.head.get("bias"), (int, float)):
            raise BundleError("field 'head' needs 'weights' (one per embedding dimension) and a 'bias', on a bundle "
                              "with an embedding output", "fit the head again with `hootwatch fit`")


def onnx_metadata(manifest: Manifest) -> dict[str, str]:
    """The manifest fields `export` mirrors into each ONNX file's metadata_props (checked again at load).

    Not the threshold or min_hits: they are settings of the bundle (`set_operating_point`), and a graph that
    carried them would change its hash, the model id, whenever they change. Bundles exported before still
    carry them in the graph; they are not checked."""
    return {
        "hootwatch.labels": json.dumps(list(manifest.labels)),
        "hootwatch.positive_label": manifest.positive_label,
        "hootwatch.sample_rate": str(manifest.sample_rate),
        "hootwatch.window_s": str(manifest.window_s),
        "hootwatch.hop_s": str(manifest.hop_s),
        "hootwatch.normalisation": json.dumps(manifest.normalisation.to_dict()),
        "hootwatch.backbone": manifest.backbone,
        # a fitted head's graph is the backbone's, stamped at export with the version of then
        "hootwatch.format_version": str(FORMAT_VERSION if manifest.head else manifest.format_version),
    }


def check_onnx_metadata(model_path: str | os.PathLike, manifest: Manifest, found: dict[str, str]) -> None:
    """BundleError when the ONNX file's hootwatch.* metadata (`found`) disagrees with the manifest.

    Keys the file does not carry are not checked (bundles made without the stamp)."""
    expected = onnx_metadata(manifest)
    wrong = [k for k, v in expected.items() if k in found and found[k] != v]
    if wrong:
        k = wrong[0]
        raise BundleError(
            f"{model_path}: its metadata says {k.removeprefix('hootwatch.')} = {found[k]}, the manifest says "
            f"{expected[k]} ({len(wrong)} field(s) disagree): the model and manifest.json come from different exports",
            "copy the whole bundle folder from one `hootwatch export` again; do not mix files of two bundles")


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest) -> Manifest:
    """Hash every file in the folder (except the manifest), then write manifest.json atomically."""
    d = Path(bundle_dir)
    files = {
        p.relative_to(d).as_posix(): sha256_file(p)
        for p in sorted(d.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME
    }
    data = manifest.to_dict() | {"files": files}
    final = Manifest.from_dict(data)
    tmp = d / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(final.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, d / MANIFEST_NAME)
    return final


def set_operating_point(bundle_dir: str | os.PathLike, threshold: float | None = None, min_hits: int | None = None,
                        note: dict | None = None) -> Manifest:
    """Change the bundle's threshold and/or min_hits in manifest.json only: no Optimum, torch or quantization,
    the ONNX graph and so the model id stay the same. `note` (how the point was chosen) goes into
    metrics["operating_point"]. The bundle must verify first; the manifest is rewritten atomically."""
    from dataclasses import replace

    b = load_bundle(bundle_dir)
    m = b.manifest
    metrics = dict(m.metrics) | ({"operating_point": note} if note is not None else {})
    new = replace(m, threshold=float(m.threshold if threshold is None else threshold),
                  min_hits=int(m.min_hits if min_hits is None else min_hits), metrics=metrics)
    return write_manifest(b.path, new)


def load_bundle(bundle_dir: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and check a bundle; BundleError says exactly what is wrong and what to do."""
    d = Path(bundle_dir)
    redo = "export the model again with `hootwatch export RUN --out BUNDLE` and copy the whole folder"
    if not d.is_dir():
        raise BundleError(f"{d}: no such bundle folder", "pass the folder `hootwatch export` wrote (it holds manifest.json)")
    mpath = d / MANIFEST_NAME
    if not mpath.is_file():
        raise BundleError(f"{d}: no {MANIFEST_NAME}; this is not a hootwatch bundle or it is incomplete", redo)
    try:
        raw = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc})", redo) from None
    if not isinstance(raw, dict):
        raise BundleError(f"{mpath}: the manifest is not a JSON object (got {type(raw).__name__})", redo)
    version = raw.get("format_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(
            f"{d}: bundle format version {version!r}, but this hootwatch reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}",
            "upgrade hootwatch on this device, or re-export the model with the hootwatch version installed here",
        )
    try:
        manifest = Manifest.from_dict(raw)
        _check_types(manifest)
        # here, not in Manifest.__post_init__: only after _check_types is a bad hop or window known to be a number
        OperatingPoint(hop_s=manifest.hop_s, window_s=manifest.window_s, wording=_MANIFEST_WORDING)
        manifest.window_spec  # noqa: B018 - validates sample rate and window
        manifest.display_spec  # noqa: B018 - validates the display range
    except BundleError as exc:
        raise BundleError(f"{mpath}: {exc.message}", exc.hint) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{mpath}: manifest is missing or has a bad field ({type(exc).__name__}: {exc})",
                          redo) from None
    first_stage = [manifest.first_stage["file"]] if manifest.first_stage else []
    for name in (manifest.model_file, *manifest.variants.values(), *first_stage):
        if name not in manifest.files:  # an unhashed model file could be anything
            raise BundleError(f"{d}: the manifest lists no hash for {name}", redo)
    if verify:
        for name, expected in manifest.files.items():
            p = d / name
            if not p.is_file():
                raise BundleError(f"{d}: {name} is missing (the copy is incomplete)", redo)
            actual = sha256_file(p)
            if actual != expected:
                raise BundleError(
                    f"{d}: {name} does not match its sha256 in the manifest (corrupt or modified copy)", redo)
    return Bundle(d, manifest)
