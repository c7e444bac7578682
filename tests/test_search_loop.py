"""Search by example, a fitted head and the uncertain queue (issue 22), on a tone bundle with an embedding output:
the 450 Hz tone is the "owl", a 1500 Hz tone the confuser."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from embed_bundles import embedding_bundle
from hootwatch.edge.commands.main import main
from hootwatch.edge.contract.bundle import load_bundle
from hootwatch.edge.contract.cascade import load_detector
from hootwatch.edge.contract.detector import Detector
from hootwatch.edge.review.fit import fit_logistic
from hootwatch.edge.review.queues import Queues
from hootwatch.edge.review.search import SEARCH_FILE, EmbeddingIndex, Example, read_ranked
from hootwatch.edge.scan.engine import ScanSettings, scan_into
from hootwatch.edge.store.database import STORE_NAME, DetectionStore
from hootwatch.edge.store.embeddings import read_embeddings
from hootwatch.edge.store.labels import LabelBook
from tiny_bundles import tone_bundle, tone_signal

SR = 8000
OWL = [(12.0, 17.0), (40.0, 45.0), (70.0, 75.0)]
CONFUSER = [(25.0, 30.0), (55.0, 60.0)]


def night(path: Path, owl=OWL, confuser=CONFUSER, seed: int = 0) -> Path:
    x = tone_signal(90.0, SR, owl, seed=seed) + tone_signal(90.0, SR, confuser, tone_hz=1500.0, noise=0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR)
    return path


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    bundle = embedding_bundle(root / "bundle")
    rec = night(root / "rec" / "20240101_200000.wav")
    out = root / "out"
    scan_into([rec], Detector.load(bundle, threads=1), out, ScanSettings(tz="UTC"))
    return root, bundle, rec, out


def test_a_scan_stores_every_windows_embedding_beside_its_score(loop):
    _, bundle, _, out = loop
    with DetectionStore(out / STORE_NAME) as store:
        (ws,) = store.window_scores(store.latest_run())
        (emb,) = read_embeddings(store.conn)
    assert np.array_equal(emb.starts, ws.starts)
    assert emb.model_id == load_bundle(bundle).manifest.backbone_id and emb.dim == 8
    assert emb.vectors.dtype == np.float16 and np.isfinite(emb.floats()).all()


def test_an_old_bundle_without_embeddings_still_scans(tmp_path, capsys):
    bundle = tone_bundle(tmp_path / "b")
    rec = night(tmp_path / "rec" / "20240101_200000.wav")
    summary, _ = scan_into([rec], Detector.load(bundle, threads=1), tmp_path / "out", ScanSettings(tz="UTC"))
    assert summary.n_detections == 3
    with DetectionStore(tmp_path / "out" / STORE_NAME) as store:
        assert read_embeddings(store.conn) == []
    assert main(["search", str(tmp_path / "out"), "--example", f"{rec}@12-17"]) == 2
    assert "no window embeddings" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cascade_bundle(tmp_path_factory):
    from tiny_bundles import add_first_stage
    return add_first_stage(embedding_bundle(tmp_path_factory.mktemp("cascade") / "b"))


def test_a_cascade_stores_embeddings_only_of_the_windows_it_passed(cascade_bundle):
    det = load_detector(cascade_bundle, threads=1)
    x = np.stack([tone_signal(5.0, SR, [(0, 5)], seed=1), tone_signal(5.0, SR, [], seed=2)])
    scores, emb = det.score_and_embed(x)
    assert np.isfinite(emb[0]).all() and np.isnan(emb[1]).all() == np.isnan(scores[1])


def test_embed_stores_every_windows_embedding_even_with_a_cascade(cascade_bundle, tmp_path, capsys):
    bundle = cascade_bundle
    rec = night(tmp_path / "rec" / "20240101_200000.wav")
    out = tmp_path / "out"
    assert main(["embed", str(rec.parent), "--model", str(bundle), "--out", str(out), "--tz", "UTC"]) == 0
    capsys.readouterr()
    assert main(["embed", str(rec.parent), "--model", str(bundle), "--out", str(out), "--tz", "UTC"]) == 0
    assert re.search(r"files already done \(skipped\)\W*1\b", capsys.readouterr().out)   # the second time
    with DetectionStore(out / STORE_NAME) as store:
        (e,) = read_embeddings(store.conn)
        (ws,) = store.window_scores(store.latest_run())
    assert np.array_equal(e.starts, ws.starts) and np.isfinite(ws.scores).all()


def test_search_ranks_the_owl_windows_first_and_opens_them_as_a_queue(loop, capsys):
    root, bundle, rec, out = loop
    example = root / "hoot.wav"
    sf.write(example, tone_signal(5.0, SR, [(0.5, 4.5)], seed=9), SR)
    csv_out = root / "ranked.csv"
    assert main(["search", str(out), "--example", str(example), "--example", f"{rec}@40-45",
                 "--top", "12", "--out", str(csv_out)]) == 0
    hits = read_ranked(csv_out)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    on_owl = [any(a < h.end_s and h.start_s < b for a, b in OWL) for h in hits[:6]]
    assert all(on_owl), hits[:6]
    assert read_ranked(out / SEARCH_FILE) == hits
    with DetectionStore(out / STORE_NAME) as store:
        items = Queues(store, store.latest_run()).queue("search")
        assert [(it.start_s, it.similarity) for it in items] == [(h.start_s, h.similarity) for h in hits]
        like = Queues(store, store.latest_run()).like(items[0].file_key, 70.0, 75.0, n=4)
        assert all(any(a < it.end_s and it.start_s < b for a, b in OWL) for it in like)
        assert (70.0, 75.0) not in [(it.start_s, it.end_s) for it in like]


def test_a_bad_example_is_a_clear_error(loop, capsys):
    _, _, rec, out = loop
    assert main(["search", str(out), "--example", f"{rec}@9-3"]) == 2
    assert main(["search", str(out), "--example", "/nowhere.wav"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_an_example_span_past_the_end_says_how_long_the_file_is(loop, capsys):
    _, _, rec, out = loop   # a 90 s recording
    for span in ("200-205", "88-95"):
        assert main(["search", str(out), "--example", f"{rec}@{span}"]) == 2
        err = capsys.readouterr().err
        assert f"{rec.name} is 90 s long" in err and "within" in err, err
        assert "decoded" not in err and "copy it again" not in err


def test_a_long_example_without_a_span_is_refused_with_what_to_give(loop, capsys):
    _, _, rec, out = loop   # 90 s: a whole recording, not one call
    assert main(["search", str(out), "--example", str(rec)]) == 2
    err = capsys.readouterr().err
    assert "90 s long" in err and "RECORDING@START-END" in err
    assert main(["search", str(out), "--example", f"{rec}@10-85"]) == 2   # a span longer than an example should be
    assert "RECORDING@START-END" in capsys.readouterr().err


def label_truth(out: Path, truth=OWL) -> None:
    with DetectionStore(out / STORE_NAME) as store:
        book = LabelBook(store)
        (ws,) = store.window_scores(store.latest_run())
        path = store.recording_path(ws.file_key)
        for s in ws.starts[::2].tolist():
            a, b = s / SR, s / SR + 5.0
            owl = any(min(b, y) - max(a, x) >= 2.5 for x, y in truth)
            book.add(ws.file_key, path, a, b, "owl" if owl else "not_owl")


def test_fit_writes_a_head_bundle_that_rescoring_and_the_detector_agree_on(loop, tmp_path, capsys):
    _, bundle, rec, out = loop
    label_truth(out)
    b2 = tmp_path / "b2"
    assert main(["fit", str(out), "--bundle", str(bundle), "--out", str(b2)]) == 0
    m2 = load_bundle(b2).manifest
    m1 = load_bundle(bundle).manifest
    assert m2.format_version == 3 and m2.backbone_id == m1.backbone_id and m2.model_id != m1.model_id
    used = m2.head["trained_on"]
    assert used["owl_windows"] > 0 and used["other_windows"] > used["owl_windows"]
    assert main(["detections", str(out), "--bundle", str(bundle)]) == 2   # no head: nothing to rescore with
    assert "no fitted head" in capsys.readouterr().err
    assert main(["detections", str(out), "--bundle", str(b2)]) == 0
    with DetectionStore(out / STORE_NAME) as store:
        run = store.latest_run()
        rows = store.detections(m2.model_id + "|t=0.5|hop=2.5|k=1")
        (ws,) = [w for w in store.window_scores(m2.model_id + "|t=0.5|hop=2.5|k=1")]
    assert rows and all(any(r["start_s"] < b and a < r["end_s"] for a, b in OWL) for r in rows)
    assert {any(r["start_s"] < b and a < r["end_s"] for r in rows) for a, b in OWL} == {True}
    # the edge detector scores a window with the head as the rescore did from the stored (int8) embeddings: the
    # same decisions, the scores apart only by the rounding of the stored vectors
    from hootwatch.edge.contract.audio import load
    x = load(rec, SR)
    windows = np.stack([x[s:s + 5 * SR] for s in ws.starts.tolist()[:-1]])
    live = Detector.load(b2, threads=1).score(windows)
    assert np.array_equal(live >= 0.5, ws.scores[:-1] >= 0.5)
    assert np.abs(live - ws.scores[:-1]).max() < 0.01
    assert run


def test_fit_needs_both_kinds_of_label():
    with pytest.raises(Exception, match="needs both"):
        fit_logistic(np.ones((4, 3)), np.ones(4))


def test_fit_logistic_separates_and_weighs_the_classes():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(1.0, 1.0, (20, 5)), rng.normal(-1.0, 1.0, (400, 5))])
    y = np.r_[np.ones(20), np.zeros(400)].astype(int)
    head, facts = fit_logistic(x, y)
    assert facts["train_recall"] >= 0.9 and facts["train_specificity"] >= 0.9   # unweighted, recall would sink
    assert head.score(np.full((1, 5), 1.0))[0] > 0.5 > head.score(np.full((1, 5), -1.0))[0]


def test_the_uncertain_queue_puts_the_windows_nearest_the_threshold_first(loop):
    *_, out = loop
    with DetectionStore(out / STORE_NAME) as store:
        q = Queues(store, store.latest_run())
        items = q.uncertain(n=1000)
        all_scored = [w for w in q.windows() if w.score is not None]
    assert items and not any(it.label for it in items)
    gaps = [abs(np.log(it.score / (1 - it.score))) if 0 < it.score < 1 else np.inf for it in items]
    assert gaps == sorted(gaps)
    assert len(items) <= len(all_scored)


def test_example_spans_parse():
    assert Example.parse("a.wav@1.5-3") == Example(Path("a.wav"), 1.5, 3.0)
    assert Example.parse("clip.wav") == Example(Path("clip.wav"))


def test_index_over_many_windows_ranks_by_cosine():
    from hootwatch.edge.store.embeddings import WindowEmbeddings
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 16)).astype(np.float32)
    rows = [WindowEmbeddings(np.arange(1000) * 100, x.astype(np.float16), "m", 0, 100, 200, 100, "", "f")]
    index = EmbeddingIndex.of(rows, "m")
    hits = index.rank(x[7] * 3.0, top=3)
    assert hits[0].start_s == 7.0 and hits[0].similarity > 0.99


def test_the_api_says_what_each_queue_is_for_and_gives_more_like_this(loop):
    from hootwatch.edge.review.app import create_app
    from review_server import review_client
    *_, out = loop
    with review_client(create_app(out)) as c:
        names = {q["name"]: q["description"] for q in c.get("/api/queues").json()["queues"]}
        assert {"detections", "near", "random", "uncertain", "search", "like"} <= set(names) and all(names.values())
        body = c.get("/api/queue", params={"queue": "uncertain", "n": 5}).json()
        assert body["description"] == names["uncertain"] and len(body["items"]) == 5
        key = body["items"][0]["file_key"]
        like = c.get("/api/like", params={"file_key": key, "start_s": 40.0, "end_s": 45.0, "n": 3}).json()
        assert like["queue"] == "like" and len(like["items"]) == 3
        assert like["items"][0]["similarity"] >= like["items"][-1]["similarity"]
        bad = c.get("/api/like", params={"file_key": "nope", "start_s": 0.0, "end_s": 5.0})
        assert bad.status_code == 400 and "no stored embedding" in bad.json()["error"]


def test_the_daemon_stores_each_files_embeddings_beside_its_scores(tmp_path):
    from daemon_helpers import run_daemon_until
    from hootwatch.edge.daemon.config import config_from_dict
    from hootwatch.edge.daemon.service import Daemon
    bundle = embedding_bundle(tmp_path / "b")
    night(tmp_path / "in" / "20240101_200000.wav")
    daemon = Daemon(config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1},
        "sources": {"folder": {"path": str(tmp_path / "in"), "settle_s": 0.0, "poll_interval_s": 0.5}},
        "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
        "health": {"status_every_s": 0.5, "watchdog": False}}))
    run_daemon_until(daemon, lambda: daemon.health.files_done >= 1)
    with DetectionStore(tmp_path / "out" / STORE_NAME) as store:
        (e,) = read_embeddings(store.conn)
        (ws,) = store.window_scores(store.latest_run())
    assert np.array_equal(e.starts, ws.starts) and e.bundle == str(bundle.resolve())


def test_embed_reports_odd_entries_and_failed_files_as_scan_does_and_exits_1(cascade_bundle, tmp_path, capsys):
    rec = night(tmp_path / "rec" / "20240101_200000.wav").parent
    (rec / "20240102_200000.wav").write_bytes(b"not wav")   # undecodable
    (rec / "dangling.wav").symlink_to(tmp_path / "gone.wav")
    out = tmp_path / "out"
    assert main(["embed", str(rec), "--model", str(cascade_bundle), "--out", str(out), "--tz", "UTC"]) == 1
    report = capsys.readouterr().out
    assert "odd entries skipped (not recordings)" in report and "dangling.wav" in report
    assert "20240102_200000.wav" in report and "files embedded" in report


def test_embed_on_a_full_disk_says_so_without_a_traceback(tmp_path, capsys, monkeypatch):
    import sqlite3

    from hootwatch.edge.store import database as store
    bundle = embedding_bundle(tmp_path / "b")
    rec = night(tmp_path / "rec" / "20240101_200000.wav").parent

    def full(self, path):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(store.DetectionStore, "__init__", full)
    assert main(["embed", str(rec), "--model", str(bundle), "--out", str(tmp_path / "o"), "--tz", "UTC"]) == 4
    err = capsys.readouterr().err
    assert "disk" in err and "full" in err and "free" in err and "Traceback" not in err


def test_search_with_model_uses_that_bundles_embeddings_in_a_store_of_two_backbones(tmp_path, capsys):
    a = embedding_bundle(tmp_path / "a")
    b = embedding_bundle(tmp_path / "b", tone_hz=600.0)   # another graph: another backbone_id
    assert load_bundle(a).manifest.backbone_id != load_bundle(b).manifest.backbone_id
    out = tmp_path / "out"
    for bundle, name in ((a, "20240101_200000.wav"), (a, "20240102_200000.wav"), (b, "20240103_200000.wav")):
        rec = night(tmp_path / "rec" / bundle.name / name)
        assert main(["embed", str(rec), "--model", str(bundle), "--out", str(out), "--tz", "UTC", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", str(out), "--model", str(b), "--example", f"{rec}@12-17", "--out",
                 str(tmp_path / "r.csv")]) == 0   # b has fewer windows than a
    assert {Path(h).name for h in _ranked_files(tmp_path / "r.csv")} == {"20240103_200000.wav"}
    assert main(["search", str(out), "--model", str(a), "--example", f"{rec}@12-17", "--out",
                 str(tmp_path / "r.csv")]) == 0
    assert {Path(h).name for h in _ranked_files(tmp_path / "r.csv")} == {"20240101_200000.wav", "20240102_200000.wav"}


def _ranked_files(path) -> set[str]:
    import csv
    with open(path, newline="") as f:
        return {r["file"] for r in csv.DictReader(f)}


def test_fit_with_a_bundle_whose_embeddings_are_not_stored_names_the_bundle_they_came_from(loop, tmp_path, capsys):
    _, bundle, _, out = loop
    other = embedding_bundle(tmp_path / "other", tone_hz=600.0)
    assert main(["fit", str(out), "--bundle", str(other), "--out", str(tmp_path / "b2")]) == 2
    err = capsys.readouterr().err
    assert str(bundle.resolve()) in err and "Traceback" not in err
