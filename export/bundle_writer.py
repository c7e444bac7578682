"""Writing the bundle folder so that a failed export never leaves half a bundle.

Everything is built in a hidden staging folder next to BUNDLE (same filesystem, so the final step is one
rename, after every file and folder in it is fsynced; the parent folder is fsynced after it). Key manifest fields
are mirrored into model.onnx's metadata_props before hashing, so the ONNX file alone still says what it is; not the
threshold and min_hits, which are the bundle's settings (`edge.contract.bundle.set_operating_point`), so changing
them keeps the graph and its id. The manifest itself is written by edge.contract.bundle.write_manifest, which
hashes every file; the edge verifies those hashes with load_bundle.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from hootwatch.edge.core import fsio, versions
from hootwatch.edge.contract.bundle import DEFAULT_DISPLAY, Manifest, onnx_metadata, write_manifest
from hootwatch.edge.core.errors import ConfigError

from .onnx_export import require

PACKAGES = ("hootwatch", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "numpy")
REPORT_NAME = "report.json"


def check_destination(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder", "choose another --out path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out}: already exists and is not empty", "choose another --out folder, or add --overwrite to replace it")


@contextlib.contextmanager
def staging(out: Path) -> Iterator[tuple[Path, Path]]:
    """(bundle_dir, work_dir) inside a staging folder next to `out`; removed afterwards, whatever happens."""
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (root / "bundle").mkdir()
        (root / "work").mkdir()
        yield root / "bundle", root / "work"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fsync_tree(folder: Path) -> None:
    """fsync every file, then every folder (deepest first), so the bundle is on the disk before it is renamed
    into place: a power cut never leaves a bundle whose names exist and whose bytes do not."""
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            fsio.fsync_file(p)
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        fsio.fsync_dir(d)
    fsio.fsync_dir(folder)


def publish(bundle_dir: Path, out: Path, overwrite: bool) -> None:
    """Move the finished bundle to `out` (replacing an old one only with overwrite), durably."""
    check_destination(out, overwrite)
    fsync_tree(bundle_dir)
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.with_name(f".{out.name}.old-{datetime.now().strftime('%Y%m%d%H%M%S%f')}")
            out.rename(old)
        else:
            out.rmdir()
    bundle_dir.rename(out)
    fsio.fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def metadata_props(manifest: Manifest) -> dict[str, str]:
    return onnx_metadata(manifest)  # the edge checks the same fields at load


def stamp_metadata(path: Path, props: dict[str, str]) -> None:
    onnx = require("onnx")
    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def write_bundle(bundle_dir: Path, manifest: Manifest, report: dict) -> Manifest:
    """Stamp metadata into every ONNX file, write report.json, then the manifest with every file's sha256."""
    props = metadata_props(manifest)
    for name in [manifest.model_file, *manifest.variants.values()]:
        stamp_metadata(bundle_dir / name, props)
    (bundle_dir / REPORT_NAME).write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    manifest = Manifest.from_dict(manifest.to_dict() | {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions.package_versions(PACKAGES, missing="not installed"),
        "display": manifest.display or DEFAULT_DISPLAY.to_dict(),  # how the review page draws the species
    })
    return write_manifest(bundle_dir, manifest)
