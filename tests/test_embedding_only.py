"""`hootwatch export --embedding-only BACKBONE`, then `hootwatch embed`: a store of embeddings with no owl model
(a tiny random-init wav2vec2 saved locally; the hub is not needed)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

from hootwatch.edge.commands.main import main  # noqa: E402
from hootwatch.edge.contract.detector import Detector  # noqa: E402
from hootwatch.edge.store.database import STORE_NAME, DetectionStore  # noqa: E402
from hootwatch.edge.store.embeddings import read_embeddings  # noqa: E402

SR = 16000


def tiny_backbone(folder):
    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                      conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    transformers.Wav2Vec2Model(cfg).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(folder)
    return folder


@pytest.mark.slow  # ~30 s (an export); the default run has `embed` in test_search_loop.py
def test_an_embedding_only_bundle_embeds_a_store_and_scores_nothing(tmp_path, capsys):
    backbone = tiny_backbone(tmp_path / "backbone")
    bundle = tmp_path / "bundle"
    assert main(["export", str(backbone), "--embedding-only", "--out", str(bundle), "--threads", "1"]) == 0
    det = Detector.load(bundle, threads=1)
    m = det.manifest
    assert m.embedding["layer"] == 2 and m.embedding["dim"] == 32 and m.output_name == "" and not m.head
    x = np.random.default_rng(0).standard_normal((2, 5 * SR)).astype(np.float32)
    model = transformers.Wav2Vec2Model.from_pretrained(backbone).eval()
    with torch.no_grad():
        want = model(torch.from_numpy(m.normalisation.apply(x, SR)), output_hidden_states=True).hidden_states[2]
    got = det.embed(x)
    want = want.mean(dim=1).numpy()
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.98 and np.isnan(det.score(x)).all()

    rec = tmp_path / "rec" / "20240101_200000.wav"
    rec.parent.mkdir()
    sf.write(rec, 0.1 * np.random.default_rng(1).standard_normal(20 * SR).astype(np.float32), SR)
    out = tmp_path / "out"
    assert main(["embed", str(rec.parent), "--model", str(bundle), "--out", str(out), "--tz", "UTC"]) == 0
    with DetectionStore(out / STORE_NAME) as store:
        (e,) = read_embeddings(store.conn)
        assert store.count() == 0
    assert len(e.starts) == 7 and e.dim == 32   # 20 s, 5 s windows at a 2.5 s hop


def test_a_folder_that_is_no_backbone_is_a_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--embedding-only", "--out", str(tmp_path / "b")]) == 2
    assert "save_pretrained" in capsys.readouterr().err
