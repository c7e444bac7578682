"""A Hugging Face `datasets` audio dataset (a hub id, its local parquet copy, or a local `audiofolder`) as ClipRefs.

Audio is read undecoded (`Audio(decode=False)`, so no torchcodec is needed), decoded with soundfile, mixed to
mono, resampled with soxr to the model rate and written once as WAV files under the run's cache folder; from
there it is the same ClipRef path as every other layout (cut by `ClipRef.cut`). Dataset splits named
train/validation/test become an explicit split; a `recording` or `site` column gives the split groups.
(datasets >= 4 needs torchcodec to build an `audiofolder`, not to read parquet datasets; hootwatch reads the
audiofolder layout, a folder per label, directly anyway.)
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from hootwatch.edge.audio import to_mono
from hootwatch.edge.clips import ClipRef
from hootwatch.edge.errors import HootwatchError

log = logging.getLogger(__name__)


def _load(data: str):
    """A local parquet/arrow dataset folder, a local audiofolder, or a hub id."""
    import datasets

    local = Path(data).expanduser()
    try:
        if local.is_dir():
            if any(local.rglob("*.parquet")) or any(local.rglob("*.arrow")):
                return datasets.load_dataset(str(local))
            return datasets.load_dataset("audiofolder", data_dir=str(local))
        return datasets.load_dataset(data)
    except Exception as exc:  # offline hub ids raise ConnectionError, DatasetNotFoundError, OSError, ...
        cause = exc.__cause__ or exc
        if "torchcodec" in str(cause):
            raise HootwatchError(f"{data}: the datasets library needs torchcodec to read audio files",
                                 "pip install torchcodec, or drop --data-format hf: hootwatch reads a folder per "
                                 "label (optionally under train/validation/test) directly") from None
        if local.is_dir():
            raise HootwatchError(f"{data}: cannot read this dataset folder ({type(exc).__name__}: {exc})",
                                 "see https://huggingface.co/docs/datasets/audio_dataset for the layouts"
                                 ) from None
        raise HootwatchError(f"cannot download dataset {data!r} ({type(exc).__name__}: {exc})",
                             "without internet, download it elsewhere and pass its local folder with --data") from None


def _decode(item: dict) -> tuple[np.ndarray, int]:
    src = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
    x, sr = sf.read(src, dtype="float32", always_2d=True)
    return to_mono(x), int(sr)


def clips_from_hf_dataset(data: str, opts, sample_rate: int, cache_dir: Path):
    import datasets

    from .sources import SPLIT_NAMES, LoadedClips, clip_key, recording_from_name, split_long

    dsd = _load(data)
    if isinstance(dsd, datasets.Dataset):
        dsd = datasets.DatasetDict({"train": dsd})
    clips, explicit, skipped = [], {}, []
    for split_name, ds in dsd.items():
        audio_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.Audio)), None)
        label_col = next((c for c in ("label", "labels", "class", "category") if c in ds.features), None)
        if audio_col is None or label_col is None:
            raise HootwatchError(f"{data}: dataset split {split_name!r} has no audio or no label column "
                                 f"(columns: {list(ds.features)})",
                                 "use a dataset with an Audio column and a label column (audiofolder makes both)")
        names = getattr(ds.features[label_col], "names", None)
        ds = ds.cast_column(audio_col, datasets.Audio(decode=False))
        out_dir = cache_dir / split_name
        for i, row in enumerate(ds):
            label = names[row[label_col]] if names else str(row[label_col])
            item = row[audio_col]
            name = Path(item.get("path") or f"{split_name}_{i}").name
            try:
                x, sr = _decode(item)
            except Exception as exc:
                log.warning("skipping undecodable audio %s in %s: %s", name, data, exc)
                skipped.append(f"{name}: {exc}")
                continue
            if len(x) == 0:
                skipped.append(f"{name}: empty")
                continue
            if sr != sample_rate:
                x = soxr.resample(x, sr, sample_rate, quality="HQ").astype(np.float32)
            dest = out_dir / label / f"{i:06d}_{Path(name).stem}.wav"
            dest.parent.mkdir(parents=True, exist_ok=True)
            sf.write(dest, x, sample_rate, subtype="FLOAT")
            group = str(row.get("site") or row.get("recording") or recording_from_name(Path(name)))
            for a, b in split_long(0.0, len(x) / sample_rate, opts.window_s, opts.max_regions_per_file):
                c = ClipRef(str(dest.resolve()), a, b, label, group)
                clips.append(c)
                explicit[clip_key(c)] = SPLIT_NAMES.get(split_name.lower(), split_name)
    explicit_split = explicit if len(dsd) > 1 else None
    return LoadedClips(clips, explicit_split, skipped)
