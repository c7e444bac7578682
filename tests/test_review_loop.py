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


def test_dataset_then_train_init_from_then_export_then_scan(tmp_path):
    # a first model (run 0), trained on a folder per label
    data0 = make_label_folders(tmp_path / "data0", n_recordings=6, clips_per_recording=3, seed=3)
    run0 = tmp_path / "run0"
    run(make_args(data=str(data0), out=str(run0), **FAST))
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
    assert test_recs and all(r.startswith("R") for r in test_recs)
    bundle = tmp_path / "bundle"
    export_bundle(ExportOptions(source=run1, out=bundle, target="x86", speed_repeats=0, force=True))
    new_out = tmp_path / "out_round1"
    summary, paths = scan_into([tmp_path / "rec"], Detector.load(bundle, threads=1), new_out, ScanSettings())
    assert len(summary.done) == 6 and paths["csv"].is_file()
    with DetectionStore(new_out / "detections.sqlite") as s:  # its window scores are kept too
        assert s.conn.execute("SELECT COUNT(*) FROM window_scores").fetchone()[0] == 6


def _clip(rec, label):
    return ClipRef(f"{rec}.wav", 0.0, 3.0, label, rec)


def test_init_from_keeps_the_earlier_test_recordings_on_the_test_side(tmp_path):
    clips = {s: [_clip(f"{s}{i}", lab) for i in range(2) for lab in ("owl", "not_owl")]
             for s in ("train", "validation", "test")}
    splits = Splits(clips["train"], clips["validation"], clips["test"])
    moved = init_from.keep_on_test_side(splits, {"train0", "validation1"})
    assert {c.recording for c in moved.test} == {"test0", "test1", "train0", "validation1"}
    assert {c.recording for c in moved.train} == {"train1"} and "moved to test" in moved.notes[-1]
    with pytest.raises(HootwatchError, match="no trained model"):
        init_from.model_dir(tmp_path)
