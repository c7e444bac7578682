"""`train --init-from RUN` on a machine without the earlier run's data: it says how many earlier clips it found,
where they were, and what to copy; when the new data cannot be split without them it refuses naming that folder."""

import soundfile as sf
import numpy as np

from hootwatch.edge.contract.clips import ClipRef, write_clip_csv
from hootwatch.trainer import init_from
from hootwatch.trainer.data.splits import SPLITS, SplitError


def _run(tmp_path, here: int, gone: int):
    data, run = tmp_path / "olddata", tmp_path / "RUN"
    (data / "owl").mkdir(parents=True)
    (run / "splits").mkdir(parents=True)
    clips = []
    for i in range(here + gone):
        p = data / "owl" / f"c{i}.wav"
        if i < here:
            sf.write(p, np.zeros(800, np.float32), 8000)
        clips.append(ClipRef(str(p), 0.0, 0.1, "owl", f"r{i}"))
    for k, s in enumerate(SPLITS):
        write_clip_csv(run / "splits" / f"{s}.csv", clips[k::3])
    return run, data


def test_all_earlier_clips_found_is_said_without_a_warning(tmp_path):
    run, _ = _run(tmp_path, 6, 0)
    e = init_from.earlier_splits(run)
    assert (e.found, e.missing) == (6, 0) and len(e.notes) == 1 and "6 of the earlier run's 6" in e.notes[0]


def test_a_run_copied_without_its_data_says_what_to_copy_and_refuses_naming_the_folder(tmp_path):
    run, data = _run(tmp_path, 0, 6)
    e = init_from.earlier_splits(run)
    assert (e.found, e.missing) == (0, 6) and e.missing_folder == str(data / "owl")
    assert "0 of the earlier run's 6" in e.notes[0] and f"copy the earlier run's data folder {data}" in e.notes[1]
    err = e.refusal("new-data", "only 1 recording")
    assert isinstance(err, SplitError) and str(data / "owl") in err.message and "copy" in err.hint


def test_a_leaky_given_split_is_its_own_kind_of_split_error():
    from hootwatch.trainer.data.sources import clip_key
    from hootwatch.trainer.data.splits import SplitLeakError, apply_explicit_split
    clips = [ClipRef(f"/{lab}.wav", 5.0 * i, 5.0 * i + 5, lab, f"r{lab}") for lab in ("owl", "not_owl")
             for i in range(6)]
    sides = {clip_key(c): ("test" if c == clips[5] else "train") for c in clips}   # owl's recording on two sides
    try:
        apply_explicit_split(clips, sides)
    except SplitLeakError as exc:   # train --init-from lets this one through, and only this one
        assert "rowl" in exc.message
    else:
        raise AssertionError("a recording on two sides was accepted")
