"""Annotation tables (Raven, Audacity, CSV) and the clip regions harvested from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hootwatch.edge.core.errors import HootwatchError
from hootwatch.trainer.data.annotations import (Annotation, audio_for_table, find_tables, read_annotation_csv,
                                                read_audacity, read_raven)
from hootwatch.trainer.data.sources import HarvestOptions, call_region, clips_from_annotations, negative_regions
from test_data_fixtures import make_annotated_recording

RAVEN_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t{col}\n")


def write_raven(path: Path, rows: list[tuple[float, float, str]], col: str = "Annotation") -> Path:
    lines = [RAVEN_HEADER.format(col=col)]
    lines += [f"{i + 1}\tSpectrogram 1\t1\t{b}\t{e}\t300\t900\t{lab}\n" for i, (b, e, lab) in enumerate(rows)]
    path.write_text("".join(lines))
    return path


@pytest.mark.shared
def test_real_raven_tables_parse(shared_real):
    tables = sorted((shared_real / "boobook" / "positive").glob("*.selections.txt"))
    assert len(tables) >= 5
    total = 0
    for t in tables:
        anns = read_raven(t, default_label="boobook")
        assert anns, t
        assert Path(anns[0].audio) == audio_for_table(t)
        for a in anns:
            assert 0 <= a.start_s <= a.end_s <= 30.5  # one real table holds a point selection (end == start)
            assert a.end_s - a.start_s < 3.0  # boobook calls last about 0.7 s
            assert a.label == "boobook"
        total += len(anns)
    assert total >= 15
    assert sum(a.end_s - a.start_s > 0.3 for t in tables for a in read_raven(t, default_label="b")) >= 15
    first = read_raven(tables[0], default_label="boobook")
    # dalby_bush_01_2980_702775...: the first selection of the real table
    if tables[0].name.startswith("dalby_bush_01_2980_702775"):
        assert first[0].start_s == pytest.approx(4.389401149) and first[0].end_s == pytest.approx(5.109643443)


@pytest.mark.shared
def test_real_raven_without_labels_needs_a_default(shared_real):
    table = sorted((shared_real / "boobook" / "positive").glob("*.selections.txt"))[0]
    with pytest.raises(HootwatchError) as exc:
        read_raven(table)
    assert table.name in str(exc.value) and "--default-label" in str(exc.value)


@pytest.mark.shared
def test_real_tables_harvest_regions(shared_real, tmp_path):
    pos = shared_real / "boobook" / "positive"
    opts = HarvestOptions(window_s=5.0, default_label="boobook", background_label="quiet")
    skipped: list[str] = []
    clips = clips_from_annotations(pos, opts, skipped)
    calls = [c for c in clips if c.label == "boobook"]
    quiet = [c for c in clips if c.label == "quiet"]
    assert len(calls) >= 15 and quiet
    anns = {}
    for t in pos.glob("*.selections.txt"):
        for a in read_raven(t, default_label="boobook"):
            anns.setdefault(str(Path(a.audio).resolve()), []).append(a)
    for q in quiet:  # negatives keep the margin from every annotation and are a full window long
        assert q.region_end_s - q.region_start_s >= 5.0 - 1e-9
        for a in anns[q.source]:
            assert q.region_end_s <= a.start_s - 1.0 + 1e-9 or q.region_start_s >= a.end_s + 1.0 - 1e-9


def test_raven_with_label_column(tmp_path):
    make_annotated_recording(tmp_path / "rec1.wav", 16000, 30.0, [3.0, 15.0])
    t = write_raven(tmp_path / "rec1.Table.1.selections.txt", [(3.0, 4.4, "owl"), (15.0, 16.2, "owl")], col="Species")
    anns = read_raven(t)
    assert [(a.start_s, a.end_s, a.label) for a in anns] == [(3.0, 4.4, "owl"), (15.0, 16.2, "owl")]
    assert anns[0].audio == str(tmp_path / "rec1.wav")
    with pytest.raises(HootwatchError, match="--label-column"):
        read_raven(t, label_column="Call type")


@pytest.mark.shared
def test_real_tables_saved_with_two_views_give_one_annotation_per_selection(shared_real, tmp_path):
    """Raven Pro saves each selection once per view: a real table, saved as Raven does with a Waveform view open
    too, must give the same annotations, not twice as many."""
    import shutil

    total = 0
    for table in sorted((shared_real / "boobook" / "positive").glob("*.selections.txt")):
        single = read_raven(table, default_label="boobook")
        lines = table.read_text(encoding="utf-8-sig").splitlines()
        doubled = [lines[0]] + [ln for row in lines[1:] if row.strip()
                                for ln in (row.replace("Spectrogram 1", "Waveform 1", 1), row)]
        copy = tmp_path / table.name
        copy.write_text("\n".join(doubled) + "\n")
        audio = audio_for_table(table)
        shutil.copy(audio, tmp_path / audio.name)
        both = read_raven(copy, default_label="boobook")
        assert [(a.start_s, a.end_s) for a in both] == [(a.start_s, a.end_s) for a in single]
        assert len(both) == len({ln.split("\t")[0] for ln in lines[1:] if ln.strip()})
        total += len(both)
    assert total >= 15
    calls = [c for c in clips_from_annotations(tmp_path, HarvestOptions(default_label="boobook"), [])
             if c.label == "boobook"]
    assert len(calls) == total  # one clip per call, not one per view


def test_multi_view_table_keeps_one_row_per_selection(tmp_path):
    make_annotated_recording(tmp_path / "rec.wav", 16000, 30.0, [3.0, 15.0])
    rows = [(1, "Waveform 1", 3.0, 4.4), (1, "Spectrogram 1", 3.0, 4.4), (2, "Waveform 1", 15.0, 16.2),
            (2, "Spectrogram 1", 15.0, 16.2)]
    text = RAVEN_HEADER.format(col="Annotation") + "".join(
        f"{sel}\t{view}\t1\t{b}\t{e}\t300\t900\towl\n" for sel, view, b, e in rows)
    (tmp_path / "rec.Table.1.selections.txt").write_text(text)
    anns = read_raven(tmp_path / "rec.Table.1.selections.txt")
    assert [(a.start_s, a.end_s) for a in anns] == [(3.0, 4.4), (15.0, 16.2)]


MULTI_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t"
                "Begin Path\tFile Offset (s)\tBegin File\tSpecies\n")


def test_multi_file_table_puts_each_selection_in_its_own_file(tmp_path):
    """A table over files opened together: Begin Time runs on across files; File Offset is the time in the file."""
    a = make_annotated_recording(tmp_path / "a.wav", 16000, 20.0, [4.0])
    b = make_annotated_recording(tmp_path / "b.wav", 24000, 30.0, [2.0, 12.0])
    rows = [(1, "Spectrogram 1", 4.0, 5.4, "/elsewhere/a.wav", 4.0, "a.wav"),
            (1, "Waveform 1", 4.0, 5.4, "/elsewhere/a.wav", 4.0, "a.wav"),
            (2, "Spectrogram 1", 22.0, 23.4, str(b), 2.0, "b.wav"),
            (3, "Spectrogram 1", 32.0, 33.5, str(b), 12.0, "b.wav")]
    (tmp_path / "night.selections.txt").write_text(MULTI_HEADER + "".join(
        f"{s}\t{v}\t1\t{t0}\t{t1}\t300\t900\t{path}\t{off}\t{name}\towl\n"
        for s, v, t0, t1, path, off, name in rows))
    anns = read_raven(tmp_path / "night.selections.txt")
    assert [(Path(x.audio).name, x.start_s, round(x.end_s, 6)) for x in anns] == [
        ("a.wav", 4.0, 5.4), ("b.wav", 2.0, 3.4), ("b.wav", 12.0, 13.5)]
    assert anns[0].audio == str(a)  # Begin Path does not exist here: Begin File beside the table
    clips = clips_from_annotations(tmp_path, HarvestOptions(window_s=5.0), [])
    owls = sorted((Path(c.source).name, c.region_start_s) for c in clips if c.label == "owl")
    assert [n for n, _ in owls] == ["a.wav", "b.wav", "b.wav"]


def test_audacity_label_track_with_frequency_lines_and_no_label(tmp_path):
    make_annotated_recording(tmp_path / "r.wav", 16000, 20.0, [2.0])
    (tmp_path / "r.txt").write_text("2.0\t3.5\towl\n\\\t300.0\t900.0\n7\t8\t\n")
    anns = read_audacity(tmp_path / "r.txt")
    assert [(a.start_s, a.end_s, a.label) for a in anns] == [(2.0, 3.5, "owl"), (7.0, 8.0, "")]
    (tmp_path / "r.txt").write_text("2.0\t3.5\towl\nstart end\n")
    with pytest.raises(HootwatchError, match="line 2"):
        read_audacity(tmp_path / "r.txt")


def test_raven_table_without_audio_is_named(tmp_path):
    t = write_raven(tmp_path / "lonely.Table.1.selections.txt", [(1.0, 2.0, "owl")])
    with pytest.raises(HootwatchError, match="lonely.Table.1.selections.txt"):
        read_raven(t)


def test_audacity_and_csv(tmp_path):
    make_annotated_recording(tmp_path / "night.flac", 22050, 20.0, [2.0])
    (tmp_path / "night.txt").write_text("2.000000\t3.300000\towl\n10.5\t11.25\tboobook\n")
    anns = read_audacity(tmp_path / "night.txt")
    assert [(a.start_s, a.end_s, a.label) for a in anns] == [(2.0, 3.3, "owl"), (10.5, 11.25, "boobook")]
    (tmp_path / "ann.csv").write_text("file,start_s,end_s,label\nnight.flac,2.0,3.3,owl\n")
    anns = read_annotation_csv(tmp_path / "ann.csv")
    assert anns == [Annotation(str(tmp_path / "night.flac"), 2.0, 3.3, "owl")]
    assert {p.name for p in find_tables(tmp_path)} == {"night.txt", "ann.csv"}
    (tmp_path / "bad.csv").write_text("file,begin,end\nx.wav,1,2\n")
    with pytest.raises(HootwatchError, match="bad.csv"):
        read_annotation_csv(tmp_path / "bad.csv")


@pytest.mark.parametrize("start,end,dur", [(10.0, 11.0, 60.0), (0.5, 1.5, 60.0), (57.0, 58.5, 60.0)])
def test_every_window_in_a_call_region_contains_the_call(start, end, dur):
    a, b = call_region(Annotation("x", start, end, "owl"), dur, 5.0)
    assert 0 <= a and b <= dur and b - a >= 5.0
    for w0 in np.linspace(a, b - 5.0, 50):
        assert w0 <= start + 1e-9 and w0 + 5.0 >= end - 1e-9


def test_negative_regions_keep_margin_and_length():
    anns = [Annotation("x", 10, 11, "owl"), Annotation("x", 14, 15, "owl"), Annotation("x", 40, 41, "owl")]
    regs = negative_regions(anns, 60.0, HarvestOptions(window_s=5.0, negative_margin_s=1.0))
    assert regs
    for a, b in regs:
        assert b - a >= 5.0 - 1e-9 and b - a < 10.0
        for ann in anns:
            assert b <= ann.start_s - 1.0 + 1e-9 or a >= ann.end_s + 1.0 - 1e-9
    # the 2 s gap between 12 and 13 s gives nothing (no padding of short stretches)
    assert not any(a >= 11 and b <= 14 for a, b in regs)


def test_annotated_clips_cut_to_exact_window_with_the_call(tmp_path):
    make_annotated_recording(tmp_path / "r.wav", 32000, 40.0, [8.0, 25.0], seed=3)
    (tmp_path / "r.txt").write_text("8.0\t9.5\towl\n25.0\t26.5\towl\n")
    clips = clips_from_annotations(tmp_path, HarvestOptions(window_s=5.0), [])
    owls = [c for c in clips if c.label == "owl"]
    assert len(owls) == 2 and any(c.label == "not_owl" for c in clips)
    rng = np.random.default_rng(0)
    for c in owls:
        for _ in range(3):
            x = c.cut(16000, 5.0, rng)
            assert x.shape == (80000,)
            assert np.max(np.abs(x)) > 0.15  # the call (amplitude 0.3) is inside every random window


def test_annotation_layout_is_detected_and_split_by_recording(tmp_path):
    from hootwatch.trainer.data.sources import load_clips
    from hootwatch.trainer.data.splits import split_by_recording

    rows = ["file,start_s,end_s,label"]
    for r in range(6):
        times = [4.0 + 9.0 * k for k in range(3)]
        make_annotated_recording(tmp_path / f"night{r}.wav", (16000, 24000, 48000)[r % 3], 32.0, times, seed=r)
        rows += [f"night{r}.wav,{t:.2f},{t + 1.4:.2f},owl" for t in times]
    (tmp_path / "calls.csv").write_text("\n".join(rows) + "\n")
    loaded = load_clips(str(tmp_path), HarvestOptions(window_s=5.0, negative_margin_s=0.5), 16000, tmp_path / "c")
    labels = {c.label for c in loaded.clips}
    assert labels == {"owl", "not_owl"}
    assert sum(c.label == "owl" for c in loaded.clips) == 18
    assert {c.recording for c in loaded.clips} == {f"night{r}" for r in range(6)}
    s = split_by_recording(loaded.clips, 0.2, 0.2, seed=0)
    seen = {}
    for name, part in s.items():
        for c in part:
            assert seen.setdefault(c.recording, name) == name


def test_empty_tables_make_all_negative_recordings_and_untabled_audio_is_listed(tmp_path):
    from hootwatch.trainer.data.sources import load_clips

    make_annotated_recording(tmp_path / "calls.wav", 16000, 30.0, [5.0, 20.0], seed=1)
    write_raven(tmp_path / "calls.Table.1.selections.txt", [(5.0, 6.4, "owl"), (20.0, 21.4, "owl")])
    make_annotated_recording(tmp_path / "quiet.wav", 16000, 30.0, [], seed=2)
    write_raven(tmp_path / "quiet.Table.1.selections.txt", [])  # Raven table, header only: no calls
    make_annotated_recording(tmp_path / "wind.wav", 16000, 20.0, [], seed=3)
    (tmp_path / "wind.txt").write_text("")  # empty Audacity label track
    make_annotated_recording(tmp_path / "unknown.wav", 16000, 20.0, [], seed=4)  # no table at all
    loaded = load_clips(str(tmp_path), HarvestOptions(window_s=5.0), 16000, tmp_path / "c")
    by_src = {}
    for c in loaded.clips:
        by_src.setdefault(Path(c.source).name, []).append(c)
    assert {c.label for c in by_src["quiet.wav"]} == {"not_owl"} and len(by_src["quiet.wav"]) == 6
    assert {c.label for c in by_src["wind.wav"]} == {"not_owl"} and len(by_src["wind.wav"]) == 4
    assert sum(c.label == "owl" for c in by_src["calls.wav"]) == 2
    assert "unknown.wav" not in by_src
    assert any("unknown.wav" in s and "no annotation table" in s for s in loaded.skipped)


def test_recording_listed_in_recordings_csv_without_rows_is_negative(tmp_path):
    from hootwatch.trainer.data.sources import load_clips

    for r in range(2):
        make_annotated_recording(tmp_path / f"n{r}.wav", 16000, 20.0, [4.0] if r == 0 else [], seed=r)
    (tmp_path / "calls.csv").write_text("file,start_s,end_s,label\nn0.wav,4.0,5.4,owl\n")
    (tmp_path / "recordings.csv").write_text("file,recording\nn0.wav,A\nn1.wav,B\n")
    loaded = load_clips(str(tmp_path), HarvestOptions(window_s=5.0), 16000, tmp_path / "c")
    assert {(c.recording, c.label) for c in loaded.clips} == {("A", "owl"), ("A", "not_owl"), ("B", "not_owl")}
    assert not loaded.skipped


def test_label_folders_and_annotation_tables_in_one_set_are_merged(tmp_path):
    """One annotated recording among label folders used to switch the loader to tables only and drop every
    folder clip; both layouts are now read, and the merge is said in the notes."""
    from hootwatch.trainer.data.sources import load_clips

    for label, calls in (("owl", [1.0]), ("not_owl", [])):
        (tmp_path / label).mkdir()
        for i in range(4):
            make_annotated_recording(tmp_path / label / f"rec{i}_{label}.wav", 16000, 6.0, calls, seed=i)
    make_annotated_recording(tmp_path / "long.wav", 16000, 30.0, [5.0, 20.0], seed=9)
    write_raven(tmp_path / "long.Table.1.selections.txt", [(5.0, 6.4, "owl"), (20.0, 21.4, "owl")])
    loaded = load_clips(str(tmp_path), HarvestOptions(window_s=5.0), 16000, tmp_path / "c")
    by_label: dict[str, set[str]] = {}
    for c in loaded.clips:
        by_label.setdefault(c.label, set()).add(Path(c.source).name)
    assert {f"rec{i}_owl.wav" for i in range(4)} | {"long.wav"} == by_label["owl"]
    assert {f"rec{i}_not_owl.wav" for i in range(4)} <= by_label["not_owl"] and "long.wav" in by_label["not_owl"]
    assert sum(c.label == "owl" and c.source.endswith("long.wav") for c in loaded.clips) == 2
    assert not loaded.skipped
    [note] = [n for n in loaded.notes if "merged" in n]
    assert "1 recording(s) with annotation tables" in note and "4 file(s) in owl/" in note


def test_label_tables_written_are_read_back(tmp_path):
    """One module writes what it reads: Raven (per recording and multi-file columns), Audacity and CSV."""
    from hootwatch.edge.tables.label_tables import annotation_csv_text, audacity_text, raven_text, read_table

    rec = make_annotated_recording(tmp_path / "rec.wav", 16000, 20.0, [2.0])
    anns = [Annotation(str(rec), 2.0, 3.5, "owl"), Annotation(str(rec), 10.25, 11.0, "boobook")]
    (tmp_path / "rec.txt").write_text(audacity_text(anns))
    (tmp_path / "all.csv").write_text(annotation_csv_text(anns))
    rows = [{"begin_s": a.start_s, "end_s": a.end_s, "low_hz": 0.0, "high_hz": 4000.0, "path": a.audio,
             "offset_s": a.start_s, "Annotation": a.label} for a in anns]
    (tmp_path / "rec.Table.1.selections.txt").write_text(raven_text(rows, ("Annotation",)))
    for name in ("rec.txt", "all.csv", "rec.Table.1.selections.txt"):
        assert read_table(tmp_path / name) == anns, name
