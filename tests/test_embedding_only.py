"""`hootwatch export --embedding-only BACKBONE`, then `hootwatch embed`: a store of embeddings with no owl model
(a tiny random-init wav2vec2 saved locally; the hub is not needed). The first test, with no torch, runs the whole
loop from an embedding-only bundle: embed -> search -> labels -> fit -> scan with the fitted bundle."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from hootwatch.edge.commands.main import main
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.store.database import STORE_NAME, DetectionStore
from hootwatch.edge.store.embeddings import read_embeddings

SR = 16000


def embedding_only_bundle(folder):
    """A tone bundle with an embedding output (embed_bundles.py) made into what `export --embedding-only` writes:
    the embedding is the graph's one output, the manifest has no owl output and no head."""
    import onnx

    from embed_bundles import embedding_bundle
    from hootwatch.edge.contract.bundle import Manifest, load_bundle, write_manifest
    d = embedding_bundle(folder)
    m = load_bundle(d).manifest
    model = onnx.load(str(d / "model.onnx"))
    keep = [o for o in model.graph.output if o.name == "embedding"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    onnx.save(model, str(d / "model.onnx"))
    write_manifest(d, Manifest.from_dict(m.to_dict() | {
        "output_name": "", "embedding": m.embedding | {"layers": 1, "chosen": "test"},
        "metrics": {"embedding_only": True}}))
    return d


def test_an_embedding_only_bundle_goes_through_embed_search_fit_and_scan(tmp_path, capsys):
    from test_search_loop import OWL, SR as TONE_SR, label_truth, night
    bundle = embedding_only_bundle(tmp_path / "bundle")
    det = Detector.load(bundle, threads=1)
    assert det.embeds and not det.manifest.output_name and [o.name for o in det.session.get_outputs()] == ["embedding"]
    rec = night(tmp_path / "card" / "20240101_200000.wav")
    out = tmp_path / "out"
    assert main(["embed", str(rec.parent), "--model", str(bundle), "--out", str(out), "--tz", "UTC", "--quiet"]) == 0
    with DetectionStore(out / STORE_NAME) as store:
        assert store.count() == 0 and len(read_embeddings(store.conn)) == 1   # it scores nothing
    assert main(["search", str(out), "--example", f"{rec}@12-17", "--top", "4", "--out", str(tmp_path / "r.csv")]) == 0
    from hootwatch.edge.review.search import read_ranked
    hits = read_ranked(tmp_path / "r.csv")
    assert all(any(a < h.end_s and h.start_s < b for a, b in OWL) for h in hits)
    label_truth(out)
    fitted = tmp_path / "owl-r1"
    assert main(["fit", str(out), "--bundle", str(bundle), "--out", str(fitted)]) == 0
    scanned = tmp_path / "scanned"
    assert main(["scan", str(rec.parent), "--model", str(fitted), "--out", str(scanned), "--tz", "UTC",
                 "--quiet", "--threads", "1"]) == 0
    with DetectionStore(scanned / STORE_NAME) as store:
        rows = store.detections(store.latest_run())
    assert TONE_SR == 8000 and rows
    assert {any(r["start_s"] < b and a < r["end_s"] for r in rows) for a, b in OWL} == {True}
    assert all(any(r["start_s"] < b and a < r["end_s"] for a, b in OWL) for r in rows)


def tiny_backbone(folder):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                      conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    transformers.Wav2Vec2Model(cfg).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(folder)
    return folder


@pytest.mark.slow  # ~30 s (an export); the default run has `embed` in test_search_loop.py
def test_an_embedding_only_bundle_embeds_a_store_and_scores_nothing(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("optimum.exporters.onnx")
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


def test_a_hub_model_id_is_fetched_from_the_hub_not_refused_as_a_folder(tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers")
    from hootwatch.trainer import model as trainer_model
    monkeypatch.setattr(trainer_model, "hub_offline", lambda *a, **kw: "no network in the test")
    monkeypatch.chdir(tmp_path)   # no folder of that name here
    assert main(["export", "hootwatch-test/no-such-backbone", "--embedding-only", "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err
    assert "cannot download hootwatch-test/no-such-backbone" in err and "offline" in err, err
    assert "Traceback" not in err and not (tmp_path / "b").exists()


def test_the_help_says_a_hub_id_or_a_local_folder(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Hugging Face model id" in text and "facebook/wav2vec2-base" in text
