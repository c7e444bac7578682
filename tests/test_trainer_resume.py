"""A resumed run continues the same run: interrupted + resumed == uninterrupted (data order, optimizer, best)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hootwatch.trainer.args import make_args  # noqa: E402
from hootwatch.trainer.train import run  # noqa: E402
from test_data_fixtures import make_label_folders  # noqa: E402

SMALL = dict(tiny=True, sample_rate=8000, window_s=1.0, batch_size=4, progress=False, threads=1, seed=2,
             learning_rate=1e-3)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    import hootwatch.trainer.train as train_mod

    data = make_label_folders(tmp_path / "d", n_recordings=4, clips_per_recording=3, seed=5, dur_range=(1.0, 1.5))
    whole = run(make_args(data=str(data), out=str(tmp_path / "a"), epochs=3, **SMALL))

    evaluate, calls = train_mod.evaluate, []

    def crash_in_epoch_2(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the power goes off during epoch 2
        return evaluate(*a, **k)

    monkeypatch.setattr(train_mod, "evaluate", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(make_args(data=str(data), out=str(tmp_path / "b"), epochs=3, **SMALL))
    monkeypatch.setattr(train_mod, "evaluate", evaluate)
    resumed = run(make_args(out=str(tmp_path / "b"), resume=True, threads=1))  # no --data, no other options
    assert resumed.optimizer_steps == whole.optimizer_steps * 2 // 3
    for a, b in zip(whole.metrics["history"], resumed.metrics["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4, abs=1e-6)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
    assert resumed.metrics["best_epoch"] == whole.metrics["best_epoch"]
    assert resumed.metrics["test"]["pr_auc"] == pytest.approx(whole.metrics["test"]["pr_auc"], abs=1e-6)
    rc = json.loads((tmp_path / "b" / "run_config.json").read_text())
    assert rc["args"]["epochs"] == 3 and rc["resumes"][0]["changed"] == {}


def test_a_data_loading_process_trains_the_same_model(tmp_path):
    """The demo loads data in a worker process (num_workers=1) to overlap decoding with training; augmentation
    draws its randomness per clip and epoch, so the batches, and the model, are those of loading in-process."""
    data = make_label_folders(tmp_path / "d", n_recordings=4, clips_per_recording=3, seed=5, dur_range=(1.0, 1.5))
    inline = run(make_args(data=str(data), out=str(tmp_path / "a"), epochs=2, num_workers=0, **SMALL))
    worker = run(make_args(data=str(data), out=str(tmp_path / "b"), epochs=2, num_workers=1, **SMALL))
    assert worker.metrics["history"] == inline.metrics["history"]
    assert (tmp_path / "b" / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "a" / "model" / "model.safetensors").read_bytes()
