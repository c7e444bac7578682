"""The review app's JSON API over a store made by a real scan (FastAPI's test client; no network)."""

import sqlite3

import numpy as np
import pytest

pytest.importorskip("fastapi")
from hootwatch.edge.core.errors import ConfigError  # noqa: E402
from hootwatch.edge.review.access import check_host  # noqa: E402
from hootwatch.edge.review.app import create_app  # noqa: E402
from hootwatch.edge.review.queues import Queues  # noqa: E402
from hootwatch.edge.store.database import DetectionStore  # noqa: E402

from review_helpers import scanned_store  # noqa: E402
from review_server import review_client  # noqa: E402
from tiny_bundles import write_tone  # noqa: E402


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    return scanned_store(tmp_path_factory.mktemp("review"))


@pytest.fixture()
def client(scanned):
    bundle, _, out = scanned
    with review_client(create_app(out, bundle=bundle, max_upload_mb=0.5)) as c:
        yield c


def _span(it):
    return {k: it[k] for k in ("file_key", "start_s", "end_s")}


def test_queues_list_items_with_what_a_reviewer_needs(client):
    q = client.get("/api/queue", params={"queue": "detections"}).json()
    assert [it["start_s"] for it in q["items"]][:3] and q["progress"]["total"] == 3
    scores = [it["score"] for it in q["items"]]
    assert scores == sorted(scores, reverse=True)
    timed = client.get("/api/detections", params={"order": "time"}).json()["items"]
    assert [it["begin_utc"] for it in timed] == sorted(it["begin_utc"] for it in timed)
    it = q["items"][0]
    assert it["recorder"] in ("A", "B") and it["begin_local"].startswith("2024-01-01T10:00")
    near = client.get("/api/windows", params={"queue": "near"}).json()["items"]
    dets = q["items"]
    assert near and all(not (d["file_key"] == w["file_key"] and d["start_s"] < w["end_s"] and w["start_s"] < d["end_s"])
                        for w in near for d in dets)
    assert [w["score"] for w in near] == sorted((w["score"] for w in near), reverse=True)
    only_b = client.get("/api/queue", params={"queue": "detections", "recorder": "B"}).json()["items"]
    assert len(only_b) == 1 and only_b[0]["recorder"] == "B"
    assert client.get("/api/queue", params={"queue": "detections", "min_score": 0.999}).json()["items"] == [
        x for x in dets if x["score"] >= 0.999]
    assert client.get("/api/queue", params={"queue": "bogus"}).status_code == 400


def test_a_label_is_in_sqlite_when_the_reply_says_saved(client, scanned):
    it = client.get("/api/queue").json()["items"][0]
    r = client.post("/api/labels", json=_span(it) | {"label": "owl", "reviewer": "kim"})
    assert r.status_code == 200 and r.json()["saved"] is True
    con = sqlite3.connect(scanned[2] / "detections.sqlite")  # another connection sees it: it is committed
    assert con.execute("SELECT label, reviewer FROM labels WHERE id=?", (r.json()["id"],)).fetchone() == ("owl", "kim")
    assert client.get("/api/queue").json()["progress"]["owl"] >= 1
    assert client.post("/api/labels", json=_span(it) | {"label": "maybe"}).status_code == 400
    assert client.post("/api/labels", json=_span(it) | {"file_key": "nope", "label": "owl"}).status_code == 404


def test_clip_and_spectrogram_of_an_item_and_no_other_file_is_served(client, scanned):
    it = client.get("/api/queue").json()["items"][0]
    wav = client.get("/api/clip.wav", params=_span(it) | {"pad_s": 1})
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    import io

    import soundfile as sf
    x, sr = sf.read(io.BytesIO(wav.content))
    assert sr == 8000 and len(x) == int((it["end_s"] - it["start_s"] + 2) * 8000)
    png = client.get("/api/spectrogram.png", params=_span(it))
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    secret = scanned[2].parent / "secret.txt"
    secret.write_text("private")
    for key in (str(secret), "../secret.txt", f"path:{secret}", "/etc/passwd"):
        r = client.get("/api/clip.wav", params={"file_key": key, "start_s": 0, "end_s": 1})
        assert r.status_code == 404 and b"private" not in r.content
    for url in ("/static/../../secret.txt", "/static/%2e%2e/%2e%2e/secret.txt", "/static/..%2f..%2fsecret.txt"):
        r = client.get(url)
        assert r.status_code == 404 and b"private" not in r.content
    assert client.get("/api/clip.wav", params=_span(it) | {"end_s": 500}).status_code == 422


def test_analyze_returns_detections_with_clock_times_and_refuses_bad_or_big_files(client, tmp_path):
    p = write_tone(tmp_path / "20240301_200000.WAV", 20, 8000, tones=[(5, 8)])
    r = client.post("/api/analyze", files={"file": (p.name, p.read_bytes(), "audio/wav")})
    assert r.status_code == 200, r.text
    [d] = r.json()["detections"]
    assert d["begin_utc"].startswith("2024-03-01T20:00:0") and d["start_s"] < 8 < d["end_s"]
    r = client.post("/api/analyze", files={"file": ("notes.wav", b"this is not audio", "audio/wav")})
    assert r.status_code == 400 and "notes.wav" in r.json()["error"]
    big = np.zeros(400_000, np.int16).tobytes()  # 0.8 MB > the 0.5 MB limit
    r = client.post("/api/analyze", files={"file": ("big.wav", big, "audio/wav")})
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_token_is_required_off_loopback(scanned):
    with pytest.raises(ConfigError, match="without a token"):
        check_host("0.0.0.0", None)
    check_host("127.0.0.1", None)
    check_host("0.0.0.0", "t0k3n")
    with review_client(create_app(scanned[2], token="t0k3n")) as c:
        assert c.get("/api/health").status_code == 403
        assert c.get("/").status_code == 403
        assert c.get("/api/health", headers={"X-Hootwatch-Token": "wrong"}).status_code == 403
        assert c.get("/api/health", params={"token": "t0k3n"}).status_code == 200
        assert c.get("/api/health").status_code == 200  # the cookie the tokened request set


def test_random_queue_is_a_uniform_sample_of_windows(scanned):
    """Chi-square test: over many seeds every window is drawn about equally often."""
    stats = pytest.importorskip("scipy.stats")

    with DetectionStore(scanned[2] / "detections.sqlite") as s:
        q = Queues(s, s.ledger_rows()[0].run_key)
        windows = [(w.file_key, w.start_s) for w in q.windows()]
        counts = dict.fromkeys(windows, 0)
        for seed in range(400):
            for it in q.random(n=5, seed=seed):
                counts[(it.file_key, it.start_s)] += 1
    observed = np.array(list(counts.values()))
    assert observed.sum() == 2000 and len(observed) == 46
    assert stats.chisquare(observed).pvalue > 0.001


def test_windows_a_cascade_left_unscored_are_shown_as_such_and_are_no_near_misses(tmp_path):
    import zlib

    _, _, out = scanned_store(tmp_path)
    con = sqlite3.connect(out / "detections.sqlite")
    key, blob = con.execute("SELECT file_key, scores FROM window_scores LIMIT 1").fetchone()
    scores = np.frombuffer(zlib.decompress(blob), np.float32).copy()
    scores[:] = np.nan  # every window of one file passed over by a first stage
    con.execute("UPDATE window_scores SET scores=? WHERE file_key=?", (zlib.compress(scores.tobytes()), key))
    con.commit()
    with review_client(create_app(out)) as c:
        rand = c.get("/api/queue", params={"queue": "random", "n": 1000}).json()["items"]
        assert len(rand) == 46 and sum(it["score"] is None for it in rand) == len(scores)
        near = c.get("/api/queue", params={"queue": "near"}).json()["items"]
        assert near and all(it["score"] is not None and it["file_key"] != key for it in near)


def test_a_saved_label_says_what_the_span_held_before_so_undo_can_restore_it(client, scanned):
    """Undo puts back the span's own earlier label: the reply names it ("" when there was none), and a label the
    span already had (an imported 'kookaburra') can be posted again there, though not invented elsewhere."""
    from hootwatch.edge.store.labels import LabelBook
    items = client.get("/api/queue").json()["items"]
    it, other = items[-1], items[-2]
    with DetectionStore(scanned[2] / "detections.sqlite") as s:
        ledger = {r.file_key: r.path for r in s.ledger_rows()}
        LabelBook(s).add(it["file_key"], ledger[it["file_key"]], it["start_s"], it["end_s"], "kookaburra",
                         source="import:colleague.csv")
    r = client.post("/api/labels", json=_span(it) | {"label": "owl"}).json()
    assert r["saved"] and r["previous"] == "kookaburra"
    assert client.post("/api/labels", json=_span(it) | {"label": "kookaburra"}).json()["previous"] == "owl"
    assert client.post("/api/labels", json=_span(other) | {"label": "kookaburra"}).status_code == 400
    fresh = client.post("/api/labels", json=_span(other) | {"label": "not_owl"}).json()
    assert fresh["previous"] == ""
