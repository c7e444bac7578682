"""Trainer details that need no training run: precision choice, multi-process errors, gradient checkpointing,
accumulation groups, epoch selection by F1, the evaluation cache."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
torch.set_num_threads(1)

from hootwatch.edge.contract.clips import ClipRef  # noqa: E402
from hootwatch.edge.core.errors import ConfigError, HootwatchError  # noqa: E402
from hootwatch.trainer import train as train_mod  # noqa: E402
from hootwatch.trainer.args import make_args  # noqa: E402


def test_auto_precision_needs_bf16_in_hardware(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert train_mod.native_bf16() is False  # emulated only (e.g. a T4): fp16 is the faster choice
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)  # torch without including_emulation
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert train_mod.native_bf16() is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    assert train_mod.native_bf16() is True


class _Acc:
    def __init__(self, main: bool):
        self.is_main_process, self.num_processes = main, 2


def test_an_error_on_the_main_process_reaches_the_others(monkeypatch):
    import accelerate.utils

    sent = []

    def broadcast_from_main(objs, from_process=0):
        if sent:
            objs[0] = sent[0]  # the other process receives what the main one sent
        else:
            sent.append(objs[0])
        return objs

    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", broadcast_from_main)

    def fail():
        raise ConfigError("run folder not empty", "pass --resume")

    with pytest.raises(ConfigError, match="not empty"):
        train_mod.on_main(_Acc(True), fail)
    with pytest.raises(HootwatchError, match="main process failed: run folder not empty"):
        train_mod.on_main(_Acc(False), fail)
    sent.clear()
    assert train_mod.on_main(_Acc(True), lambda: 5) == 5
    assert train_mod.on_main(_Acc(False), lambda: 5) is None


def test_gradient_checkpointing_with_a_frozen_feature_encoder_trains_the_transformer():
    from hootwatch.trainer.model import build_backbone

    torch.manual_seed(0)
    model = build_backbone("tiny", True, {"not_owl": 0, "owl": 1}, 8000).model
    train_mod.configure_model(model, make_args(data="D", out="R", tiny=True, gradient_checkpointing=True,
                                               unfreeze_feature_encoder=False))
    model.train()
    out = model(input_values=torch.randn(2, 8000), labels=torch.tensor([0, 1]))
    out.loss.backward()
    layer = model.wav2vec2.encoder.layers[0]
    assert model.wav2vec2.encoder.gradient_checkpointing
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters() if p.requires_grad)


def test_a_short_last_accumulation_group_is_normalised_by_its_size():
    sizes = [train_mod.accumulation_group_size(b, 7, 3) for b in range(7)]
    assert sizes == [3, 3, 3, 3, 3, 3, 1]
    assert [train_mod.accumulation_group_size(b, 4, 1) for b in range(4)] == [1, 1, 1, 1]


def test_select_by_f1_uses_the_best_threshold():
    from hootwatch.trainer.metrics import best_f1, binary_metrics

    y = np.array([0, 0, 0, 1, 1, 1])
    shy = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.45])  # perfectly ranked, all below 0.5
    loud = np.array([0.1, 0.6, 0.2, 0.7, 0.3, 0.8])
    m_shy, m_loud = binary_metrics(y, shy), binary_metrics(y, loud)
    assert m_shy["f1"] == 0 and best_f1(y, shy) == 1.0
    m_shy.update(best_f1=best_f1(y, shy), loss=0.6)
    m_loud.update(best_f1=best_f1(y, loud), loss=0.6)
    assert train_mod.selection_key(m_shy, "f1") > train_mod.selection_key(m_loud, "f1")


def test_eval_cache_is_bounded(monkeypatch, tmp_path):
    import soundfile as sf

    from hootwatch.edge.contract.preprocess import Normalisation
    from hootwatch.trainer.data import dataset

    sf.write(tmp_path / "a.wav", np.zeros(8000, np.float32), 8000)
    clips = [ClipRef(str(tmp_path / "a.wav"), 0.0, 1.0, "owl", "a")] * 3
    norm = Normalisation.from_feature_extractor(True)
    small = dataset.ClipDataset(clips, {"owl": 0}, 8000, 1.0, norm)
    small[0], small[1]
    assert len(small._eval_cache) == 2
    monkeypatch.setattr(dataset, "EVAL_CACHE_MAX", 3)
    big = dataset.ClipDataset(clips, {"owl": 0}, 8000, 1.0, norm)
    big[0], big[1]
    assert not big._eval_cache and big[2]["input_values"].shape == (8000,)


def test_data_loading_workers_default_on_gpu_only():
    assert train_mod.default_workers(False) == 0
    assert 0 <= train_mod.default_workers(True) <= 4
    assert make_args(data="D", out="R").num_workers is None and make_args(data="D", out="R", num_workers=2).num_workers == 2


def test_incomplete_local_checkpoint_is_named_not_called_a_download_failure(tmp_path):
    from hootwatch.edge.core.errors import HootwatchError
    from hootwatch.trainer.model import build_backbone

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(HootwatchError) as err:
        build_backbone(str(tmp_path), False, {"not_owl": 0, "owl": 1})
    assert "preprocessor_config.json" in str(err.value) and "download" not in err.value.message
