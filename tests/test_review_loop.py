"""One round of the loop: scan -> labels -> dataset -> train --init-from (tiny) -> export -> scan."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("optimum")

from hootwatch.edge.commands.main import main  # noqa: E402
from hootwatch.edge.contract.clips import ClipRef, read_clip_csv  # noqa: E402
from hootwatch.edge.contract.detector import Detector  # noqa: E402
from hootwatch.edge.core.errors import HootwatchError  # noqa: E402
from hootwatch.edge.store.labels import LabelBook  # noqa: E402
from hootwatch.edge.scan.engine import ScanSettings, scan_into  # noqa: E402
from hootwatch.edge.store.database import DetectionStore  # noqa: E402
from hootwatch.export.core import ExportOptions, export_bundle  # noqa: E402
from hootwatch.trainer import init_from  # noqa: E402
from hootwatch.trainer.args import make_args  # noqa: E402
from hootwatch.trainer.data.splits import Splits  # noqa: E402
from hootwatch.trainer.train import run  # noqa: E402
from test_data_fixtures import make_label_folders  # noqa: E402
from tiny_bundles import tone_bundle, write_tone  # noqa: E402

FAST = dict(tiny=True, sample_rate=8000, window_s=2.0, batch_size=8, progress=False, threads=1, epochs=2,
            learning_rate=1e-3, seed=1)


@pytest.fixture(scope="module")
def run0(tmp_path_factory):
    """A first model (run 0), trained on a folder per label."""
    tmp = tmp_path_factory.mktemp("run0")
    data0 = make_label_folders(tmp / "data0", n_recordings=6, clips_per_recording=3, seed=3)
    run(make_args(data=str(data0), out=str(tmp / "run0"), **FAST))
    return tmp / "run0"


def test_dataset_then_train_init_from_then_export_then_scan(tmp_path, run0):
    # six recorders' nights scanned (by a stand-in model), their detections reviewed as owl calls
    tones = tone_bundle(tmp_path / "tone", sample_rate=8000)
    for i in range(6):
        write_tone(tmp_path / "rec" / f"R{i}" / "20240101_100000.WAV", 40, 8000, tones=[(8, 11), (25, 28)], seed=i)
    out = tmp_path / "out"
    scan_into([tmp_path / "rec"], Detector.load(tones, threads=1), out, ScanSettings())
    with DetectionStore(out / "detections.sqlite") as s:
        book = LabelBook(s)
        for d in s.detections():
            book.add(d["file_key"], d["file"], d["start_s"], d["end_s"], "owl")
    data = tmp_path / "data"
    assert main(["dataset", str(out), "--out", str(data), "--negatives", "30"]) == 0
    # round 1: fine-tune on from run 0 (a new run, not a resume)
    run1 = tmp_path / "run1"
    res = run(make_args(data=str(data), out=str(run1), init_from=str(run0), **FAST))
    rc = json.loads((run1 / "run_config.json").read_text())
    assert rc["args"]["init_from"] == str(run0) and res.metrics["test"] is not None
    assert (run0 / "model" / "config.json").is_file()  # the earlier run is left as it was
    test_recs = {c.recording for c in read_clip_csv(run1 / "splits" / "test.csv")}
    earlier_test = {c.recording for c in read_clip_csv(run0 / "splits" / "test.csv")}
    assert earlier_test <= test_recs and any(r.startswith("R") for r in test_recs)  # the earlier test clips stay
    train = read_clip_csv(run1 / "splits" / "train.csv")
    assert {c.source for c in read_clip_csv(run0 / "splits" / "train.csv")} <= {c.source for c in train}  # replayed
    bundle = tmp_path / "bundle"
    export_bundle(ExportOptions(source=run1, out=bundle, target="x86", speed_repeats=0, force=True))
    new_out = tmp_path / "out_round1"
    summary, paths = scan_into([tmp_path / "rec"], Detector.load(bundle, threads=1), new_out, ScanSettings())
    assert len(summary.done) == 6 and paths["csv"].is_file()
    with DetectionStore(new_out / "detections.sqlite") as s:  # its window scores are kept too
        assert s.conn.execute("SELECT COUNT(*) FROM window_scores").fetchone()[0] == 6


def _one_card(tmp_path, tones_per_file):
    """One recorder, one card: two 60 s recordings scanned; the detections reviewed; a few not-owl windows."""
    tones = tone_bundle(tmp_path / "tone", sample_rate=8000)
    calls = [(5 + 8 * k, 8 + 8 * k) for k in range(tones_per_file)]
    for i in range(2):
        write_tone(tmp_path / "card" / "SM4" / f"2024010{i + 1}_200000.WAV", 60, 8000, tones=calls, seed=i)
    out = tmp_path / "out"
    scan_into([tmp_path / "card"], Detector.load(tones, threads=1), out, ScanSettings())
    with DetectionStore(out / "detections.sqlite") as s:
        book = LabelBook(s)
        for d in s.detections():
            book.add(d["file_key"], d["file"], d["start_s"], d["end_s"], "owl")
        for key, path in {(d["file_key"], d["file"]) for d in s.detections()}:
            for a in (50.0, 55.0):
                book.add(key, path, a, a + 5.0, "not_owl")
    return out


def test_one_card_one_recorder_first_round_trains_with_no_extra_folders(tmp_path, run0, capsys):
    out = _one_card(tmp_path, tones_per_file=5)
    data = tmp_path / "data"
    assert main(["dataset", str(out), "--out", str(data), "--negatives", "20"]) == 0
    assert "optimistic" in capsys.readouterr().out      # one recorder: said plainly
    run1 = tmp_path / "run1"
    res = run(make_args(data=str(data), out=str(run1), init_from=str(run0), **FAST))
    parts = {s: read_clip_csv(run1 / "splits" / f"{s}.csv") for s in ("train", "validation", "test")}
    new = {s: [c for c in p if "SM4" in c.recording] for s, p in parts.items()}
    assert new["train"] and new["validation"] + new["test"]   # the one card on every side, by time blocks
    assert not ({c.recording for c in new["train"]} & {c.recording for c in new["validation"] + new["test"]})
    earlier = {s: {c.source for c in read_clip_csv(run0 / "splits" / f"{s}.csv")} for s in parts}
    assert earlier["train"] & {c.source for c in parts["train"]}           # replayed
    assert all(earlier[s] <= {c.source for c in parts[s]} for s in ("validation", "test"))  # kept on their sides
    assert any("optimistic" in n for n in res.metrics["data_notes"])


def test_a_round_with_really_too_little_is_refused_saying_how_much_is_needed(tmp_path, run0):
    out = _one_card(tmp_path, tones_per_file=1)   # 2 owl calls
    data = tmp_path / "data"
    assert main(["dataset", str(out), "--out", str(data), "--negatives", "20"]) == 0
    with pytest.raises(HootwatchError) as exc:
        run(make_args(data=str(data), out=str(tmp_path / "run1"), init_from=str(run0), **FAST))
    import re
    found = re.search(r"(\d+) owl and (\d+) not-owl clip", exc.value.message)
    assert found and int(found[1]) < 5 and "at least 5 of each" in exc.value.message


def _clip(rec, label, start=0.0):
    return ClipRef(f"{rec}.wav", start, start + 3.0, label, rec)


def test_init_from_replays_the_earlier_clips_on_their_sides(tmp_path):
    earlier = Splits(*([_clip(f"{s}{i}", lab) for i in range(2) for lab in ("owl", "not_owl")]
                       for s in ("train", "validation", "test")))
    new = Splits([_clip("new0", "owl"), _clip("new0", "not_owl"), _clip("test0", "owl", 9.0),
                  _clip("train0", "owl")], [], [])   # train0 owl at 0 s: the very clip the earlier run had
    merged = init_from.with_earlier(new, earlier, [])
    assert {c.recording for c in merged.train} == {"train0", "train1", "new0"}
    assert len(merged.train) == len(earlier.train) + 2                        # the earlier ones replayed, no copy
    assert {c.recording for c in merged.test} == {"test0", "test1"} and len(merged.test) == 5  # test0 stays test
    assert merged.validation == earlier.validation and "replayed" in " ".join(merged.notes)
    with pytest.raises(HootwatchError, match="no trained model"):
        init_from.model_dir(tmp_path)


def test_a_large_earlier_set_is_replayed_as_a_sample_of_each_class():
    earlier = [_clip(f"e{i}", "owl" if i % 4 == 0 else "not_owl") for i in range(400)]
    got = init_from.replay_sample(earlier, 40)
    assert 36 <= len(got) <= 44 and {c.label for c in got} == {"owl", "not_owl"}
    assert abs(sum(c.label == "owl" for c in got) / len(got) - 0.25) < 0.05
    assert init_from.replay_sample(earlier[:10], 40) == earlier[:10]
