"""Turn what users have on disk into `ClipRef`s (hootwatch.edge.contract.clips): one labelled region per clip.

Three layouts are recognised (see `load_clips`):
- a folder per label (`owl/`, `not_owl/`, any names) of clips of any length, rate, channels and format; long
  negative clips give several non-overlapping regions, a long owl clip one (the window lies at random in it);
- long recordings with annotation tables (Raven, Audacity, CSV): regions around each call, negatives from the
  unannotated stretches, cut the same way;
- a Hugging Face `datasets` audio dataset (local `audiofolder` or hub id), decoded to WAV files at the model rate.

Optionally, each layout may sit inside `train/ validation/ test/` folders (an explicit split, see splits.py).
Unreadable audio is skipped with a warning naming the file. Recording ids (the split groups) come from a
`recordings.csv` (`file,recording[,site][,group][,split]`) when present, else from the file name.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hootwatch.edge.contract import audio
from hootwatch.edge.contract.clips import ClipRef
from hootwatch.edge.core.content_key import content_key  # size and hash: the store's file_key adds the name
from hootwatch.edge.core.errors import AudioReadError, HootwatchError

from .annotations import (RAVEN_SUFFIX, Annotation, AnnotationError, audio_for_table, find_tables, is_multi_file_raven,
                          read_table)

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
               "dev": "validation", "test": "test"}
RECORDINGS_CSV = "recordings.csv"
_CLIP_INDEX = re.compile(r"(?:[_\-. ](?:clip|seg|part)?\d{1,4}|\(\d+\))$", re.IGNORECASE)
# copies made by file managers: "x (1)", "x - Copy", "x - Copy (2)", "x_copy", "x copy 2", "Copy of x"
_COPY_SUFFIX = re.compile(r"(?:\s*\(\d+\)|\s*-\s*copy(?:\s*\(\d+\))?|[_ ]copy(?:[_ ]?\d+)?)$", re.IGNORECASE)
_COPY_PREFIX = re.compile(r"^copy(?: \(\d+\))? of ", re.IGNORECASE)
# clips cut at a time offset: "rec_12.5s", "rec_t30", "rec_10-15s", "rec_10.0-15.0", "rec-start12.5s"
_NUM = r"\d+(?:\.\d+)?"
_TIME_OFFSET = re.compile(rf"[_\-. ](?:(?:t|start|offset|from)?{_NUM}s(?:[-_]{_NUM}s?)?|t{_NUM}|\d+\.\d+(?:[-_]{_NUM}s?)?"
                          rf"|\d+-{_NUM}s)$", re.IGNORECASE)
MERGED = "both layouts found and merged:"


@dataclass(frozen=True)
class HarvestOptions:
    """How clips are cut from recordings. All lengths in seconds."""
    window_s: float = 5.0
    negative_margin_s: float = 1.0       # negatives keep at least this far from any annotation
    max_negatives_per_recording: int = 100
    max_regions_per_file: int = 20       # a long file in a label folder gives at most this many regions
    background_label: str = "not_owl"    # label of unannotated stretches
    positive_label: str = "owl"          # its long files in a label folder stay one region (the call is somewhere)
    label_column: str | None = None      # Raven label column (default: Annotation/Species/label ...)
    default_label: str | None = None     # label of Raven selections whose label cell is empty
    seed: int = 0


@dataclass(frozen=True)
class LoadedClips:
    clips: list[ClipRef]
    explicit_split: dict[str, str] | None  # clip source+region key -> split name, when the data says so
    skipped: list[str]                      # files skipped (unreadable), with the reason
    notes: list[str] = field(default_factory=list)  # warnings about the data, shown and kept in data_summary


def recording_from_name(path: Path) -> str:
    """The file stem minus copy suffixes (` (1)`, ` - Copy`, `_copy`) and a trailing clip index or time offset
    (`rec12_003` -> `rec12`, `rec12_12.5s` -> `rec12`); 5+ digit tails (clock times) are kept."""
    stem = path.stem.strip()
    prev = None
    while prev != stem:
        prev, stem = stem, _COPY_PREFIX.sub("", _COPY_SUFFIX.sub("", stem)).strip()
    base = _TIME_OFFSET.sub("", stem)
    if base == stem:
        base = _CLIP_INDEX.sub("", stem)
    return base.strip(" _-.") or stem


def drop_duplicate_files(clips: list[ClipRef], explicit: dict | None, notes: list[str]) -> list[ClipRef]:
    """Files with the same content count once: later copies are dropped (a duplicated owl clip on both sides of
    a split inflates the scores). In an explicit split, a copy on another side joins the first file's recording,
    so the leak check refuses it by name."""
    first: dict[str, str] = {}
    dropped, joined = {}, {}
    recording_of = {c.source: c.recording for c in clips}
    side_of = {c.source: explicit[clip_key(c)] for c in clips} if explicit is not None else {}
    for src in sorted(recording_of):
        try:
            key = content_key(src)
        except OSError:
            continue
        if key not in first:
            first[key] = src
        elif explicit is not None and side_of[src] != side_of[first[key]]:
            joined[src] = first[key]
        else:
            dropped[src] = first[key]
    if dropped:
        names = "; ".join(f"{Path(a).name} = {Path(b).name}" for a, b in list(dropped.items())[:5])
        msg = (f"{len(dropped)} duplicate file(s) (same content as another) dropped before splitting: {names}"
               f"{' ...' if len(dropped) > 5 else ''}")
        log.warning(msg)
        notes.append(msg)
    return [replace(c, recording=recording_of[joined[c.source]]) if c.source in joined else c
            for c in clips if c.source not in dropped]


def read_recordings_csv(root: Path) -> dict[str, dict]:
    """`recordings.csv` beside the data: file (relative to root) -> row with recording, site and split."""
    path = root / RECORDINGS_CSV
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if "file" not in (reader.fieldnames or []) or not ({"recording", "site"} & set(reader.fieldnames or [])):
            raise HootwatchError(f"{path}: needs columns file and recording (or site); has {reader.fieldnames}",
                                 "write a header line: file,recording[,site][,split]")
        return {str(Path(r["file"])): r for r in reader}


def _group(path: Path, root: Path, rec_map: dict[str, dict]) -> str:
    """Split group of a file: group (`hootwatch dataset` writes it) > site (when known) > recording from
    recordings.csv > recording from the name."""
    row = None
    try:
        row = rec_map.get(str(path.resolve().relative_to(root.resolve())))
    except ValueError:
        pass
    row = row or rec_map.get(path.name)
    if row:
        for key in ("group", "site", "recording"):
            if (row.get(key) or "").strip():
                return row[key].strip()
    return recording_from_name(path)


def _probe_or_skip(path: Path, skipped: list[str]):
    try:
        return audio.probe(path)
    except AudioReadError as exc:
        log.warning("skipping unreadable audio %s", exc)
        skipped.append(str(exc))
        return None


def split_long(start_s: float, end_s: float, window_s: float, max_regions: int) -> list[tuple[float, float]]:
    """Non-overlapping regions, each at least one window long (a span shorter than a window stays whole)."""
    length = end_s - start_s
    n = int(min(max_regions, max(1, length // window_s)))
    edges = np.linspace(start_s, end_s, n + 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def clips_from_label_folders(root: Path, opts: HarvestOptions, skipped: list[str],
                             rec_map: dict[str, dict] | None = None, base: Path | None = None) -> list[ClipRef]:
    """A folder per label: every audio file below `root/LABEL/` is one clip (several for long files)."""
    base = base or root
    rec_map = read_recordings_csv(base) if rec_map is None else rec_map
    clips = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(p for p in label_dir.rglob("*") if p.is_file() and audio.is_audio_file(p)):
            clips.extend(folder_clips(f, label_dir.name, opts, skipped, rec_map, base))
    return clips


def folder_clips(f: Path, label: str, opts: HarvestOptions, skipped: list[str], rec_map: dict,
                  base: Path) -> list[ClipRef]:
    """The clip regions of one file in a label folder."""
    info = _probe_or_skip(f, skipped)
    if info is None:
        return []
    group = _group(f, base, rec_map)
    # a long owl clip holds its call somewhere: cutting it up would label call-free parts "owl"
    most = 1 if label == opts.positive_label else opts.max_regions_per_file
    return [ClipRef(str(f.resolve()), a, b, label, group)
            for a, b in split_long(0.0, info.duration_s, opts.window_s, most)]


def call_region(ann: Annotation, duration_s: float, window_s: float) -> tuple[float, float]:
    """Region in which every window contains the whole call (or lies inside it, for calls longer than a window)."""
    if ann.end_s - ann.start_s >= window_s:
        return ann.start_s, ann.end_s
    return max(0.0, ann.end_s - window_s), min(duration_s, ann.start_s + window_s)


def negative_regions(anns: list[Annotation], duration_s: float, opts: HarvestOptions) -> list[tuple[float, float]]:
    """Stretches at least `negative_margin_s` from every annotation, cut into window-or-longer regions."""
    busy = sorted((max(0.0, a.start_s - opts.negative_margin_s), a.end_s + opts.negative_margin_s) for a in anns)
    gaps, t = [], 0.0
    for a, b in busy:
        if a > t:
            gaps.append((t, a))
        t = max(t, b)
    if t < duration_s:
        gaps.append((t, duration_s))
    out = []
    for a, b in gaps:
        if b - a >= opts.window_s:  # no padding: a gap shorter than a window gives nothing
            out.extend(split_long(a, b, opts.window_s, 10**9))
    return out


def clips_from_annotations(root: Path, opts: HarvestOptions, skipped: list[str],
                           rec_map: dict[str, dict] | None = None, base: Path | None = None,
                           notes: list[str] | None = None, merge_folders: bool = False) -> list[ClipRef]:
    """Recordings with annotation tables: a region around each call, negatives from the unannotated stretches.

    A recording whose table is empty (header only, or an empty Audacity label file), or one listed in
    recordings.csv without any rows in a CSV table, holds no calls: all of it gives negatives. A recording with
    no table at all is not used (nobody said whether it holds calls) and is listed among the skipped files --
    except, with `merge_folders`, a file inside a folder below `root` (`root/LABEL/...`): that is a label-folder
    clip of class LABEL, merged with the annotated recordings (and said so in `notes`)."""
    base = base or root
    rec_map = read_recordings_csv(base) if rec_map is None else rec_map
    by_audio: dict[str, list[Annotation]] = {}
    for table in find_tables(root):
        if table.name == RECORDINGS_CSV:
            continue
        # a table of one recording lies beside it; a Raven multi-file table names its recordings in its rows
        if table.suffix.lower() == ".txt" and not (table.name.endswith(RAVEN_SUFFIX) and is_multi_file_raven(table)):
            beside = audio_for_table(table)
            if beside is None:
                log.warning("skipping %s: no recording with the same name beside it", table)
                skipped.append(f"{table}: no recording beside it")
                continue
            by_audio.setdefault(str(beside.resolve()), [])  # an empty table: a recording without calls
        default = opts.default_label
        for ann in read_table(table, opts.label_column, default):
            by_audio.setdefault(str(Path(ann.audio).resolve()), []).append(ann)
    root_r = root.resolve()
    for name in rec_map:  # listed in recordings.csv, no rows in any table: no calls
        f = (base / name).resolve()
        if f.is_file() and audio.is_audio_file(f) and root_r in f.parents:
            by_audio.setdefault(str(f), [])
    untabled = sorted(str(f.resolve()) for f in root.rglob("*")
                      if f.is_file() and audio.is_audio_file(f) and str(f.resolve()) not in by_audio)
    clips = []
    if merge_folders:
        clips, untabled = _merge_label_folders(root, untabled, opts, skipped, rec_map, base, len(by_audio), notes)
    if untabled:
        log.warning("%d recording(s) without an annotation table are not used (e.g. %s); give a recording "
                    "without owl calls an empty table (header only) to use it as negatives", len(untabled),
                    untabled[0])
        skipped.extend(f"{f}: no annotation table (not used; an empty table marks a recording without calls)"
                       for f in untabled)
    rng = np.random.default_rng(opts.seed)
    for src in sorted(by_audio):
        anns = by_audio[src]
        info = _probe_or_skip(Path(src), skipped)
        if info is None:
            continue
        group = _group(Path(src), base, rec_map)
        dur = info.duration_s
        for ann in anns:
            if ann.start_s >= dur or ann.end_s < ann.start_s:  # a point selection (end == start) is kept
                log.warning("%s: annotation %.2f-%.2f s outside the recording (%.1f s) or reversed; ignored",
                            src, ann.start_s, ann.end_s, dur)
                continue
            a, b = call_region(ann, dur, opts.window_s)
            clips.append(ClipRef(src, a, b, ann.label, group))
        neg = negative_regions(anns, dur, opts)
        if len(neg) > opts.max_negatives_per_recording:
            keep = np.sort(rng.choice(len(neg), opts.max_negatives_per_recording, replace=False))
            neg = [neg[i] for i in keep]
        clips.extend(ClipRef(src, a, b, opts.background_label, group) for a, b in neg)
    return clips


def _merge_label_folders(root: Path, untabled: list[str], opts: HarvestOptions, skipped: list[str], rec_map: dict,
                         base: Path, n_annotated: int, notes: list[str] | None) -> tuple[list[ClipRef], list[str]]:
    """Folder clips of the untabled files inside `root/LABEL/` folders; returns them and the files still unused."""
    root_r = root.resolve()
    per_label: dict[str, list[str]] = {}
    rest = []
    for f in untabled:
        rel = Path(f).relative_to(root_r)
        if len(rel.parts) > 1 and not rel.parts[0].startswith("."):
            per_label.setdefault(rel.parts[0], []).append(f)
        else:
            rest.append(f)
    clips = []
    for label, files in sorted(per_label.items()):
        for f in files:
            clips.extend(folder_clips(Path(f), label, opts, skipped, rec_map, base))
    if per_label:
        msg = (f"{root}: {MERGED} {n_annotated} recording(s) with annotation tables, and "
               + ", ".join(f"{len(v)} file(s) in {k}/ as class {k!r}" for k, v in sorted(per_label.items()))
               + " (files without a table in a label folder count as clips of that folder's label)")
        log.warning(msg)
        if notes is not None:
            notes.append(msg)
    return clips, rest


def _has_label_folders(root: Path) -> bool:
    return any(p.is_dir() and any(audio.is_audio_file(q) for q in p.rglob("*")) for p in root.iterdir())


def _load_layout(root: Path, opts: HarvestOptions, skipped: list[str], rec_map: dict, base: Path,
                 fmt: str = "auto", layouts: list[str] | None = None, notes: list[str] | None = None) -> list[ClipRef]:
    layouts = [] if layouts is None else layouts
    if fmt == "annotations" or (fmt == "auto" and find_tables(root)):
        layouts.append("annotations")
        clips = clips_from_annotations(root, opts, skipped, rec_map, base, notes, merge_folders=fmt == "auto")
        if any(n.startswith(f"{root}: {MERGED}") for n in notes or []):
            layouts.append("folders")
        return clips
    if fmt == "folders" or _has_label_folders(root):
        layouts.append("folders")
        return clips_from_label_folders(root, opts, skipped, rec_map, base)
    raise HootwatchError(
        f"{root}: found neither label folders with audio nor annotation tables",
        "arrange clips as DATA/owl/*.wav and DATA/not_owl/*.wav, or put recordings beside Raven/Audacity tables "
        "or a CSV file,start_s,end_s,label",
    )


def clip_key(c: ClipRef) -> tuple:
    return (c.source, round(c.region_start_s, 4), round(c.region_end_s, 4))


def load_clips(data: str, opts: HarvestOptions, sample_rate: int, cache_dir: Path, fmt: str = "auto") -> LoadedClips:
    """ClipRefs from a data folder (any layout above, optionally under train/validation/test) or a HF dataset.

    fmt: "auto" (a folder on disk is read directly; anything else is taken as a hub id), "hf" (load it with
    `datasets`: a local audiofolder or a hub id), "folders" or "annotations".
    """
    root = Path(data).expanduser()
    if fmt == "hf" or (fmt == "auto" and not root.exists() and "/" in data and not data.startswith((".", "/", "~"))):
        from .hf import clips_from_hf_dataset
        return clips_from_hf_dataset(data, opts, sample_rate, cache_dir)
    if not root.is_dir():
        raise HootwatchError(f"{data}: no such data folder", "pass the folder that holds your clips or recordings")
    skipped: list[str] = []
    notes: list[str] = []
    layouts: list[str] = []
    rec_map = read_recordings_csv(root)
    split_dirs = {SPLIT_NAMES[p.name.lower()]: p for p in root.iterdir()
                  if p.is_dir() and p.name.lower() in SPLIT_NAMES}
    if split_dirs:
        clips, explicit = [], {}
        for split, d in sorted(split_dirs.items()):
            part = _load_layout(d, opts, skipped, rec_map, root, fmt, layouts, notes)
            clips.extend(part)
            explicit.update({clip_key(c): split for c in part})
        clips = drop_duplicate_files(clips, explicit, notes)
        notes.extend(name_grouping_notes(clips, rec_map, layouts))
        return LoadedClips(clips, explicit, skipped, notes)
    clips = _load_layout(root, opts, skipped, rec_map, root, fmt, layouts, notes)
    explicit = None
    if rec_map and any((r.get("split") or "").strip() for r in rec_map.values()):
        explicit = {}
        for c in clips:
            row = _row_for(Path(c.source), root, rec_map)
            split = SPLIT_NAMES.get((row or {}).get("split", "").strip().lower())
            if split is None:
                raise HootwatchError(f"{RECORDINGS_CSV}: no valid split for {c.source}",
                                     "give every file a split of train, validation or test (or drop the column)")
            explicit[clip_key(c)] = split
    clips = drop_duplicate_files(clips, explicit, notes)
    notes.extend(name_grouping_notes(clips, rec_map, layouts))
    notes.extend(same_site_notes(clips, explicit, root, rec_map))
    return LoadedClips(clips, explicit, skipped, notes)


def same_site_notes(clips: list[ClipRef], explicit: dict | None, root: Path, rec_map: dict) -> list[str]:
    """A plain warning when validation or test clips come from a site (recorder) training also uses: their
    figures are then optimistic for other sites (one card split by recording or time blocks)."""
    if explicit is None:
        return []
    sides: dict[str, set[str]] = {}
    for c in clips:
        site = ((_row_for(Path(c.source), root, rec_map) or {}).get("site") or "").strip()
        if site:
            sides.setdefault(site, set()).add(explicit[clip_key(c)])
    shared = sorted(s for s, sp in sides.items() if "train" in sp and len(sp) > 1)
    if not shared:
        return []
    return [f"validation/test come from the same recorder(s) as training ({', '.join(shared[:5])}), split by "
            "recording or by time blocks: their figures are optimistic, expect less at other sites"]


def name_grouping_notes(clips: list[ClipRef], rec_map: dict, layouts: list[str]) -> list[str]:
    """A warning when clips in label folders take their recording id from the file name and every file became
    its own recording: clips cut from one recording then land on both sides of the split. (One recording per
    file is right for long annotated recordings.)"""
    files = {c.source for c in clips}
    if "folders" not in layouts or rec_map or len(files) < 10 or len({c.recording for c in clips}) < len(files):
        return []
    msg = (f"every one of the {len(files)} files is its own recording (no clip index in the names and no "
           f"{RECORDINGS_CSV}): if several clips come from one recording, name it in {RECORDINGS_CSV} "
           "(file,recording), or clips of one recording can land in train and test and inflate the scores")
    log.warning(msg)
    return [msg]


def _row_for(path: Path, root: Path, rec_map: dict) -> dict | None:
    try:
        return rec_map.get(str(path.relative_to(root.resolve()))) or rec_map.get(path.name)
    except ValueError:
        return rec_map.get(path.name)
