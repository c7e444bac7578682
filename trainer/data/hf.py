"""A Hugging Face `datasets` audio dataset (a hub id, its local parquet copy, or a local `audiofolder`) as ClipRefs.

Audio is read undecoded (`Audio(decode=False)`, so no torchcodec is needed) and each item's encoded bytes are
written once, as they are, under the run's cache folder (`CACHE/SPLIT/LABEL/`), or used in place when the item is
a local file. From there it is exactly the label-folder path: the same harvesting rule (a long clip of the positive
label stays one region, the call lies somewhere in it; other long clips give several regions) and the edge
decoder (`ClipRef.cut` -> hootwatch.edge.contract.audio: mono, soxr resampling to the model rate), so a dataset never
decodes audio its own way. Dataset splits named train/validation/test become an explicit split; a `recording` or
`site` column gives the split groups.
(datasets >= 4 needs torchcodec to build an `audiofolder`, not to read parquet datasets; hootwatch reads the
audiofolder layout, a folder per label, directly anyway.)
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from pathlib import Path

import soundfile as sf

from hootwatch.edge.core.errors import HootwatchError

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


def _store(item: dict, dest_stem: Path) -> Path:
    """The item's audio as a file: its local path when it has one and no bytes, else its bytes written as they
    are (the extension from its name, or from the format soundfile recognises)."""
    data = item.get("bytes")
    if not data:
        return Path(item["path"])
    suffix = Path(item.get("path") or "").suffix
    if not suffix:
        try:
            suffix = "." + sf.info(io.BytesIO(data)).format.lower()
        except Exception:
            suffix = ".wav"   # not audio: the edge decoder says so when it probes the file
    dest = dest_stem.with_name(dest_stem.name + suffix)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file() or dest.stat().st_size != len(data):
        dest.write_bytes(data)
    return dest


def clips_from_hf_dataset(data: str, opts, sample_rate: int, cache_dir: Path):
    import datasets

    from .sources import SPLIT_NAMES, LoadedClips, folder_clips, clip_key, recording_from_name

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
            src = _store(item, out_dir / label / f"{i:06d}_{Path(name).stem}")
            group = str(row.get("site") or row.get("recording") or recording_from_name(Path(name)))
            for c in folder_clips(src, label, opts, skipped, {}, src.parent):
                c = replace(c, recording=group)
                clips.append(c)
                explicit[clip_key(c)] = SPLIT_NAMES.get(split_name.lower(), split_name)
    explicit_split = explicit if len(dsd) > 1 else None
    return LoadedClips(clips, explicit_split, skipped)
