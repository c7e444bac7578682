"""A self-contained training set from the reviewed labels (`hootwatch dataset OUTDIR --out DATA [--append]`).

    DATA/owl/*.wav             every reviewed owl call, with `context_s` of audio each side (and never shorter
                               than the model's window, so no clip needs padding that would give its label away)
    DATA/not_owl/*.wav         every reviewed false positive (hard negatives: not_owl, or another sound's name),
                               and random unreviewed low-score windows (ordinary negatives, file names `random_*`)
    DATA/recordings.csv        file,recording,site,group,split: recording = the source recording, site = its
                               recorder, group = the trainer's split group (see below), split = its side
    DATA/clips.csv             every clip: file,label,kind (owl | hard_negative | random_negative),reviewed,
                               source, source_start_s, source_end_s, score, recording, site, group

Clips are cut at the recording's own sample rate (training resamples), so DATA can be copied to a GPU box
without the SD cards. Splits are ~70/15/15 by group (owl-bearing ones first, so every split gets some): whole
recorders when there are three or more; with fewer (one card: the common first round) a recorder's recordings,
or time blocks of its recordings when fewer than three hold owl calls (`assign_groups`; the summary's notes say
so, as figures from the training recorder are optimistic). Decided here so that `--append` keeps them: a clip
already on one side stays there, new groups are placed where their share is furthest below its target. The
folder layout is the one the trainer reads.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from hootwatch.edge.contract.audio import load, probe
from hootwatch.edge.core.errors import AudioReadError, ConfigError
from hootwatch.edge.store.exports import write_atomic
from hootwatch.edge.store.labels import OWL, UNSURE, LabelBook, label_conflicts
from hootwatch.edge.store.database import DetectionStore

SPLITS = (("train", 0.7), ("validation", 0.15), ("test", 0.15))
# not start_s/end_s: the trainer takes any file,start_s,end_s,label CSV for an annotation table
CLIP_COLUMNS = ("file", "label", "kind", "reviewed", "source", "source_start_s", "source_end_s", "score",
                "recording", "site", "group")
MIN_GROUPS = 3                   # one per split at the very least
BLOCKS_PER_RECORDING = 6         # time blocks of one recording, when a recorder has too few recordings
BLOCK_MARK = "#block"
LONG_SPAN = 1.0                  # a label longer than this many windows is cut at its high-scoring windows
HEARD_SCORE = 0.5


@dataclass(frozen=True)
class DatasetOptions:
    context_s: float = 1.0           # audio kept each side of a labelled span
    negatives: int | None = None     # random low-score windows (None: as many as the reviewed clips, at least 20)
    low_score: float = 0.2           # a random negative scores below this
    seed: int = 0
    positive_label: str = OWL
    negative_label: str = "not_owl"


@dataclass(frozen=True)
class DatasetSummary:
    owl: int
    hard_negatives: int
    random_negatives: int
    recordings: dict[str, str]       # recording -> split (the last clip's: one card's recordings may be cut in blocks)
    skipped: tuple[str, ...]
    conflicts: tuple[str, ...] = ()  # labels left out because another label on the same stretch disagrees
    notes: tuple[str, ...] = ()      # how the split was made (e.g. one recorder: by recording or time blocks)
    clips_per_split: dict[str, int] = field(default_factory=dict)


def recording_id(path: str, recorder: str, file_key: str) -> str:
    """A readable, unique recording id: recorder (or folder) / file stem, and 6 hex digits of its content key."""
    p = Path(path)
    return f"{recorder or p.parent.name}/{p.stem}-{hashlib.sha256(file_key.encode()).hexdigest()[:6]}"


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _csv(rows: list[dict], columns) -> str:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def assign_splits(new: list[str], owl_bearing: set[str], existing: dict[str, str]) -> dict[str, str]:
    """Splits for groups (sites) not yet placed (owl-bearing ones first); the placed ones keep theirs."""
    out = dict(existing)
    for is_owl in (True, False):
        group = sorted((r for r in new if (r in owl_bearing) == is_owl),
                       key=lambda r: hashlib.sha256(r.encode()).hexdigest())
        for rec in group:
            have = {s: sum(1 for r, sp in out.items() if sp == s and (r in owl_bearing) == is_owl) for s, _ in SPLITS}
            empty = [s for s, _ in SPLITS if have[s] == 0]
            n = sum(have.values()) + 1
            out[rec] = empty[0] if empty else max(SPLITS, key=lambda st: st[1] * n - have[st[0]])[0]
    return out


def write_dataset(store: DetectionStore, run_key: str, data_dir: str | os.PathLike, append: bool = False,
                  options: DatasetOptions = DatasetOptions()) -> DatasetSummary:
    data = Path(data_dir)
    if data.exists() and any(data.iterdir()) and not append:
        raise ConfigError(f"{data} is not empty", "pass --append to grow this training set, or choose a new --out")
    old_clips = _read_csv(data / "clips.csv")
    # the split of every clip already written, by file (and by group for a set written before groups were recorded)
    placed = {}
    for r in _read_csv(data / "recordings.csv"):
        placed[r["file"]] = placed[r.get("group") or r["site"] or r["recording"]] = r["split"]
    done_spans = {(r["source"], r["source_start_s"], r["source_end_s"]) for r in old_clips}
    ledger = {r.file_key: r for r in store.ledger_rows(status="done")}
    book = LabelBook(store)
    rng = np.random.default_rng(options.seed)

    todo = []   # (label folder, kind, file_key, start_s, end_s, score, reviewed)
    labelled_spans: dict[str, list[tuple[float, float]]] = {}
    owl_spans: dict[str, list[tuple[float, float]]] = {}
    current = book.current()
    clashes = label_conflicts(current)
    disputed = {x.id for pair in clashes for x in pair}
    conflicts = tuple(f"{Path(o.file).name} {o.start_s:g}-{o.end_s:g} s says owl, {n.start_s:g}-{n.end_s:g} s says "
                      f"{n.label}: both left out (relabel one in `hootwatch review`)" for o, n in clashes)
    for x in current:
        labelled_spans.setdefault(x.file_key, []).append((x.start_s, x.end_s))
        if x.is_owl:
            owl_spans.setdefault(x.file_key, []).append((x.start_s, x.end_s))
    scored = store.window_scores(run_key)
    window_s = scored[0].window_samples / scored[0].sample_rate if scored else 5.0
    scores_of: dict[str, list] = {}
    for ws in scored:
        scores_of.setdefault(ws.file_key, []).append(ws)
    cut: set[tuple] = set()   # windows already cut (two labels over one call give it once)
    for x in current:
        if x.label == UNSURE or x.id in disputed:
            continue
        if x.is_owl or x.is_negative:
            folder, kind = ((options.positive_label, "owl") if x.is_owl else (options.negative_label, "hard_negative"))
            peaks = heard_windows(x.start_s, x.end_s, scores_of.get(x.file_key, []), window_s)
            if not peaks:
                todo.append((folder, kind, x.file_key, x.start_s, x.end_s, None, 1))
            for a, b, p in peaks:
                if (folder, x.file_key, a) not in cut:
                    cut.add((folder, x.file_key, a))
                    todo.append((folder, kind, x.file_key, a, b, p, 1))
    n_random = options.negatives if options.negatives is not None else max(20, len(todo))
    pool = []
    dets = {}
    for d in store.detections(run_key):
        dets.setdefault(d["file_key"], []).append((d["start_s"], d["end_s"]))
    for ws in scored:
        busy = labelled_spans.get(ws.file_key, []) + dets.get(ws.file_key, [])
        for s, p in zip(ws.starts.tolist(), ws.scores.tolist()):
            a, b = s / ws.sample_rate, (s + ws.window_samples) / ws.sample_rate
            low = p != p or p < options.low_score  # NaN: a first stage rejected it, below any threshold
            if low and not any(x < b and a < y for x, y in busy):
                pool.append((ws.file_key, round(a, 3), round(b, 3), float(p)))
    for i in sorted(rng.choice(len(pool), size=min(n_random, len(pool)), replace=False)) if pool else []:
        k, a, b, p = pool[i]
        todo.append((options.negative_label, "random_negative", k, a, b, p, 0))

    clips, skipped = list(old_clips), []
    for c in clips:  # a set written before groups were recorded: its group was the site
        c["group"] = c.get("group") or c["site"] or c["recording"]
    durations = {}
    for folder, kind, key, a, b, score, reviewed in todo:
        row = ledger.get(key)
        if row is None:
            skipped.append(f"{key}: not in the store's ledger")
            continue
        ctx = options.context_s if kind != "random_negative" and score is None else 0.0
        start, end = max(0.0, a - ctx), b + ctx
        if kind == "hard_negative":  # a not-owl clip's context never reaches into a span labelled owl
            for oa, ob in owl_spans.get(key, ()):
                if ob <= a and ob > start:
                    start = ob
                if oa >= b and oa < end:
                    end = oa
        if end - start < window_s:  # never shorter than a window: padding would tell the label away
            grow = (window_s - (end - start)) / 2
            start = max(0.0, start - grow)
            end = start + max(window_s, b + ctx - start)
            end = min(end, row.audio_s) if row.audio_s else end
            start = max(0.0, min(start, end - window_s))
        if (row.path, f"{start:.3f}", f"{end:.3f}") in done_spans:
            continue
        rec = recording_id(row.path, row.recorder_id, key)
        try:
            sr = probe(row.path).sample_rate
            x = load(row.path, sr, start_s=start, duration_s=end - start)
        except AudioReadError as exc:
            skipped.append(exc.message)
            continue
        name = (f"{'random_' if kind == 'random_negative' else ''}{rec.replace('/', '_')}_{start:09.3f}s.wav")
        dest = data / folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp.wav")
        sf.write(str(tmp), x, sr)
        os.replace(tmp, dest)
        durations[rec] = row.audio_s or 0.0
        clips.append({"file": f"{folder}/{name}", "label": folder, "kind": kind, "reviewed": reviewed,
                      "source": row.path, "source_start_s": f"{start:.3f}", "source_end_s": f"{end:.3f}",
                      "score": "" if score is None else f"{score:.6f}", "recording": rec,
                      "site": row.recorder_id or Path(row.path).parent.name, "group": ""})
    notes = assign_groups(clips, durations)
    placed = {c["group"]: placed_split for c in old_clips
              if (placed_split := placed.get(c["file"]) or placed.get(c["group"]))}
    owl_bearing = {c["group"] for c in clips if c["kind"] == "owl"}
    splits = assign_splits(sorted({c["group"] for c in clips} - set(placed)), owl_bearing, placed)
    rec_rows = [{"file": c["file"], "recording": c["recording"], "site": c["site"], "group": c["group"],
                 "split": splits[c["group"]]} for c in clips]
    write_atomic(data / "clips.csv", _csv(clips, CLIP_COLUMNS))
    write_atomic(data / "recordings.csv", _csv(rec_rows, ("file", "recording", "site", "group", "split")))
    kinds = [c["kind"] for c in clips]
    return DatasetSummary(kinds.count("owl"), kinds.count("hard_negative"), kinds.count("random_negative"),
                          {r["recording"]: r["split"] for r in rec_rows}, tuple(skipped), conflicts, tuple(notes),
                          {sp: sum(r["split"] == sp for r in rec_rows) for sp, _ in SPLITS})


def heard_windows(start_s: float, end_s: float, scored: list, window_s: float) -> list[tuple[float, float, float]]:
    """A labelled span longer than LONG_SPAN windows (a detection over a bout, or over a chorus of frogs) holds its
    sound somewhere: a random window of it may hold none, which would teach owl (or not owl) on bare background.
    Its clips are instead the windows inside it that the model scored at least HEARD_SCORE (where it heard the
    call, or the sound it took for one: what a round must teach it), each exactly one window long; [] (keep the
    span whole) for a shorter span or one without such windows."""
    if end_s - start_s <= LONG_SPAN * window_s:
        return []
    out = []
    for ws in scored:   # the window scores of the label's recording
        for s, p in zip(ws.starts.tolist(), ws.scores.tolist()):
            a = s / ws.sample_rate
            if start_s - 1e-6 <= a and a + window_s <= end_s + 1e-6 and p == p and p >= HEARD_SCORE:
                out.append((round(a, 3), round(a + window_s, 3), float(p)))
    return out


def assign_groups(clips: list[dict], durations: dict[str, float]) -> list[str]:
    """The split group of every clip without one (in place), and notes saying what was chosen.

    A group goes to one side of the split, so clips that share a place and its noise must share a group. With
    recorders enough holding owl calls (MIN_GROUPS; a recorder with none cannot give validation or test an owl
    clip) the group is the recorder, and so it is for a recorder without owl calls; with fewer (one card is the
    common first round) a recorder's recordings are split by recording when MIN_GROUPS of them hold owl calls,
    else each recording by time blocks (BLOCKS_PER_RECORDING). A recorder already grouped keeps its way. Validation
    and test then come from the recorder(s) the model trains on, and the notes say that their figures are
    optimistic."""
    sites = {c["site"] for c in clips}
    owl_sites = {c["site"] for c in clips if c["kind"] == "owl"}   # a recorder without calls gives no owl clips
    way = {}
    for c in clips:
        if c["group"]:
            way[c["site"]] = ("site" if c["group"] == c["site"] else
                              "block" if BLOCK_MARK in c["group"] else "recording")
    notes = []
    for site in sorted(sites - set(way)):
        owl_recs = {c["recording"] for c in clips if c["site"] == site and c["kind"] == "owl"}
        way[site] = ("site" if len(owl_sites) >= MIN_GROUPS or not owl_recs else
                     "recording" if len(owl_recs) >= MIN_GROUPS else "block")
        if way[site] != "site":
            how = (f"by recording ({len(owl_recs)} of its recordings hold owl calls)" if way[site] == "recording"
                   else f"by time blocks of each recording ({BLOCKS_PER_RECORDING} per recording; "
                        f"{len(owl_recs)} recording(s) hold owl calls)")
            notes.append(f"only {len(owl_sites)} recorder(s) with owl calls: recorder {site} is split {how}; "
                         "validation and test come from the same recorder(s) as training, so their figures are "
                         "optimistic for other sites")
    for c in clips:
        if c["group"]:
            continue
        w = way[c["site"]]
        if w == "site":
            c["group"] = c["site"]
        elif w == "recording":
            c["group"] = c["recording"]
        else:
            block = max(durations.get(c["recording"], 0.0) / BLOCKS_PER_RECORDING, 1e-9)
            k = min(int(float(c["source_start_s"]) // block), BLOCKS_PER_RECORDING - 1)
            c["group"] = f"{c['recording']}{BLOCK_MARK}{k + 1}"
    return notes
