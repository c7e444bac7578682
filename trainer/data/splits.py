"""Train / validation / test splits that cannot leak: whole recordings (or sites) go to one side only.

Clips from one recording share its background, recorder and often the same calling bird, so a clip-level split
would score the model on near-copies of its training data. Groups are assigned like sklearn's
GroupShuffleSplit, but label by label (rarest first) so every split receives recordings of every class. Owl
clips are never duplicated here; imbalance is handled inside training (class-weighted loss).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hootwatch.edge.contract.clips import ClipRef
from hootwatch.edge.core.errors import HootwatchError

from .sources import clip_key

SPLITS = ("train", "validation", "test")
MIN_CLIPS = 5
MIN_RECORDINGS = 3  # one recording per split at the very least


class SplitError(HootwatchError):
    """Data that cannot be split without leaking or without a class in every split."""


class SplitLeakError(SplitError):
    """A given split that puts one recording on more than one side (never repaired: the user's split is wrong)."""


@dataclass(frozen=True)
class Splits:
    train: list[ClipRef]
    validation: list[ClipRef]
    test: list[ClipRef]
    notes: tuple[str, ...] = ()  # what was decided for the user (e.g. validation carved out of train/)

    def items(self):
        return (("train", self.train), ("validation", self.validation), ("test", self.test))

    @property
    def labels(self) -> list[str]:
        return sorted({c.label for _, clips in self.items() for c in clips})


def check_class_sizes(clips: list[ClipRef], min_clips: int = MIN_CLIPS, min_recordings: int = MIN_RECORDINGS,
                      data: str = "the data") -> None:
    if not clips:
        raise SplitError(f"{data}: no usable clips found", "check the folder layout (DATA/owl/*.wav, DATA/not_owl/*.wav)")
    n_clips = Counter(c.label for c in clips)
    n_recs = {lab: len({c.recording for c in clips if c.label == lab}) for lab in n_clips}
    if len(n_clips) < 2:
        raise SplitError(f"{data}: only one class ({next(iter(n_clips))!r}) found",
                         "a detector needs examples of at least two classes, e.g. owl/ and not_owl/ folders")
    for lab in sorted(n_clips):
        if n_clips[lab] < min_clips or n_recs[lab] < min_recordings:
            raise SplitError(
                f"class {lab!r} has too few examples: {n_clips[lab]} clips from {n_recs[lab]} recordings "
                f"(need at least {min_clips} clips from {min_recordings} different recordings)",
                f"add more '{lab}' clips from other recordings (each split needs its own), or remove or merge "
                f"the '{lab}' class; if these clips do come from different recordings, say so in recordings.csv "
                "(columns file,recording)",
            )


def split_by_recording(clips: list[ClipRef], validation_fraction: float = 0.15, test_fraction: float = 0.15,
                       seed: int = 0) -> Splits:
    """Assign whole recordings to splits, so that each split holds recordings of every class."""
    check_class_sizes(clips)
    side = _assign_groups(clips, {"validation": validation_fraction, "test": test_fraction}, seed)
    parts = {s: [c for c in clips if side[c.recording] == s] for s in SPLITS}
    return _checked(Splits(parts["train"], parts["validation"], parts["test"]))


def _assign_groups(clips: list[ClipRef], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """recording -> split: for each class (rarest first), about `fraction` of its recordings per split, at least
    one each, and at least one left for train; recordings holding several classes are placed once."""
    labels_of: dict[str, set[str]] = defaultdict(set)
    for c in clips:
        labels_of[c.recording].add(c.label)
    groups_with = defaultdict(list)
    for g in sorted(labels_of):
        for lab in labels_of[g]:
            groups_with[lab].append(g)
    rng = np.random.default_rng(seed)
    side: dict[str, str] = {}
    for lab in sorted(groups_with, key=lambda lab: (len(groups_with[lab]), lab)):  # rarest class first
        groups = groups_with[lab]
        n = len(groups)
        target = {s: max(1, round(f * n)) for s, f in fractions.items()}
        while sum(target.values()) > n - 1 and any(target.values()):  # keep at least one for training
            big = max(target, key=target.get)
            target[big] -= 1
        have = Counter(side[g] for g in groups if g in side)
        free = [groups[i] for i in rng.permutation(n) if groups[i] not in side]
        for split in fractions:
            while have[split] < target[split] and free:
                side[free.pop()] = split
                have[split] += 1
        for g in free:
            side[g] = "train"
    return side


def apply_explicit_split(clips: list[ClipRef], explicit: dict[tuple, str], validation_fraction: float = 0.15,
                         test_fraction: float = 0.15, seed: int = 0) -> Splits:
    """The user's own split (train/validation/test folders or a split column), refused if a recording leaks.

    A split the user did not give (e.g. train/ and test/ without validation/) is carved out of train by
    recording, and the summary says so."""
    check_class_sizes(clips, min_recordings=1)
    sides = defaultdict(set)
    for c in clips:
        sides[c.recording].add(explicit[clip_key(c)])
    leaks = sorted(g for g, s in sides.items() if len(s) > 1)
    if leaks:
        examples = "; ".join(f"{g!r} in {' and '.join(sorted(sides[g]))}" for g in leaks[:5])
        raise SplitLeakError(
            f"the given split puts {len(leaks)} recording(s) on more than one side: {examples}",
            "move all clips of a recording into one of train/validation/test (clips of one recording are "
            "near-copies, so the scores would be inflated), or drop the explicit split and let hootwatch split "
            "by recording",
        )
    parts = {s: [c for c in clips if explicit[clip_key(c)] == s] for s in SPLITS}
    unknown = set(explicit.values()) - set(SPLITS)
    if unknown:
        raise SplitError(f"unknown split name(s) {sorted(unknown)}", "use train, validation and test")
    missing = {s: f for s, f in (("validation", validation_fraction), ("test", test_fraction)) if not parts[s]}
    notes = []
    if missing and parts["train"]:
        train = parts["train"]
        for lab in sorted({c.label for c in train}):
            n = len({c.recording for c in train if c.label == lab})
            if n < len(missing) + 1:
                raise SplitError(
                    f"no {' or '.join(missing)} split given, and train has only {n} recording(s) of class {lab!r} "
                    f"to set aside for it",
                    f"add a {'/ and '.join(missing)}/ folder beside train/ with recordings of every class, or more "
                    f"train recordings of {lab!r}")
        side = _assign_groups(train, missing, seed)
        parts["train"] = [c for c in train if side[c.recording] == "train"]
        for s in missing:
            parts[s] = [c for c in train if side[c.recording] == s]
            notes.append(f"no {s} split was given: {len({c.recording for c in parts[s]})} recording(s) "
                         f"({len(parts[s])} clips) of train set aside for {s}, by recording")
    return _checked(Splits(parts["train"], parts["validation"], parts["test"], tuple(notes)))


def _checked(splits: Splits) -> Splits:
    labels = splits.labels
    for name, part in splits.items():
        missing = sorted(set(labels) - {c.label for c in part})
        if missing:
            raise SplitError(f"the {name} split has no clips of class {', '.join(map(repr, missing))}",
                             f"add recordings of {', '.join(missing)} (each split needs its own recordings of every "
                             "class)")
    return splits


PADDING_GAP = 0.2  # a larger difference between classes in the share of padded clips is a label cue


def window_notes(clips: list[ClipRef], window_s: float, positive_label: str = "owl") -> tuple[dict, list[str]]:
    """Share of clips shorter than the window (padded by reflection) per class, and warnings: when the shares
    differ a lot, the model can learn "padded = owl" instead of the call; an owl clip much longer than the window
    may hold its call outside the random window of an epoch."""
    padded = {}
    for lab in sorted({c.label for c in clips}):
        mine = [c for c in clips if c.label == lab]
        padded[lab] = round(sum(c.region_end_s - c.region_start_s < window_s - 1e-6 for c in mine) / len(mine), 4)
    notes = []
    if padded and max(padded.values()) - min(padded.values()) > PADDING_GAP:
        shown = ", ".join(f"{lab} {share:.0%}" for lab, share in padded.items())
        notes.append(f"clips shorter than the {window_s:g} s window (padded) differ a lot between classes "
                     f"({shown}): the model may learn the padding instead of the call; cut clips of every class "
                     f"to at least {window_s:g} s, or use recordings with annotation tables")
    long_owls = [c for c in clips if c.label == positive_label and c.region_end_s - c.region_start_s > 2 * window_s]
    if long_owls:
        notes.append(f"{len(long_owls)} {positive_label} clip(s) are longer than twice the {window_s:g} s window "
                     f"(e.g. {Path(long_owls[0].source).name}): a random window may miss the call; cut them "
                     "around the call or annotate the calls in a table (Raven, Audacity, CSV)")
    return padded, notes


def summary(splits: Splits, skipped: list[str] | None = None, notes: list[str] | None = None,
            window_s: float | None = None, positive_label: str = "owl") -> dict:
    out = {"splits": {}, "labels": splits.labels, "skipped_files": list(skipped or []),
           "notes": list(notes or []) + list(splits.notes)}
    if window_s is not None:
        padded, more = window_notes([c for _, part in splits.items() for c in part], window_s, positive_label)
        out["padded_share"] = padded
        out["notes"] += more
    for name, part in splits.items():
        out["splits"][name] = {
            lab: {"clips": sum(c.label == lab for c in part),
                  "recordings": len({c.recording for c in part if c.label == lab})}
            for lab in splits.labels
        }
        out["splits"][name]["_total"] = {"clips": len(part), "recordings": len({c.recording for c in part})}
    return out


def print_summary(summ: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="clips per class and split (recordings in brackets)")
    table.add_column("class")
    for s in SPLITS:
        table.add_column(s, justify="right")
    for lab in summ["labels"] + ["_total"]:
        table.add_row(lab if lab != "_total" else "all",
                      *(f"{summ['splits'][s][lab]['clips']} ({summ['splits'][s][lab]['recordings']})" for s in SPLITS))
    console = console or Console(stderr=True)
    console.print(table)
    for note in summ.get("notes", []):
        console.print(f"[yellow]note: {note}[/]", highlight=False)
    if summ.get("skipped_files"):
        console.print(f"[yellow]{len(summ['skipped_files'])} file(s) skipped (listed in data_summary.json), e.g. "
                      f"{summ['skipped_files'][0]}[/]", highlight=False)


def save_summary(summ: dict, path: Path) -> None:
    path.write_text(json.dumps(summ, indent=2))
