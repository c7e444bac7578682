"""The review app is safe on the network (issue 21): one test per attack seen from this machine.

DNS rebinding (a Host that is not this server's), cross-site posts (Origin, Sec-Fetch-Site, no CSRF token), upload
abuse (a 1 Hz header, a huge Content-Length, more audio than a request may analyse), parameters that are not finite,
negative or out of range, spans outside their recording, a non-ASCII token."""

import asyncio
import json
import socket
import struct

import numpy as np
import pytest

pytest.importorskip("fastapi")

from hootwatch.edge.review.access import allowed_hosts, shown_address  # noqa: E402
from hootwatch.edge.review.app import create_app  # noqa: E402
from hootwatch.edge.scan.engine import Scanner  # noqa: E402

from review_helpers import scanned_store  # noqa: E402
from review_server import CSRF_HEADER, review_client  # noqa: E402
from tiny_bundles import write_tone  # noqa: E402

EVIL = "evil.example:8799"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    return scanned_store(tmp_path_factory.mktemp("security"))


@pytest.fixture()
def app(scanned):
    bundle, _, out = scanned
    return create_app(out, bundle=bundle, max_upload_mb=0.5, max_analyze_s=30)


@pytest.fixture()
def client(app):
    with review_client(app) as c:
        yield c


@pytest.fixture()
def item(client):
    return client.get("/api/queue").json()["items"][0]


def _span(it, **kw):
    return {k: it[k] for k in ("file_key", "start_s", "end_s")} | kw


def _refused(r, status=403):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] and body["fix"]
    return body


def _wav(rate: int, frames: int) -> bytes:
    """A 16-bit mono PCM WAV whose header says `rate` samples per second."""
    raw = np.random.default_rng(0).integers(-3000, 3000, frames).astype("<i2").tobytes()
    return (b"RIFF" + struct.pack("<I", 36 + len(raw)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", len(raw)) + raw)


# ---------------------------------------------------------------- DNS rebinding: the Host header

def test_a_host_that_is_not_this_server_is_refused_on_every_route(client, item):
    """A rebinding page's requests carry its own name as Host: labels, audio and a label change are all refused."""
    before = client.get("/api/labels").json()
    for r in (client.get("/api/labels", headers={"Host": EVIL}),
              client.get("/api/clip.wav", params=_span(item), headers={"Host": EVIL}),
              client.post("/api/labels", json=_span(item, label="not_owl"), headers={"Host": EVIL}),
              client.get("/", headers={"Host": "127.0.0.1.evil.example"}),
              client.get("/api/health", headers={"Host": "localhost.evil.example:8765"})):
        body = _refused(r)
        assert "Host" in body["error"] and "--allow-host" in body["fix"] and "/Users" not in r.text
    assert client.get("/api/labels").json() == before
    for host in ("127.0.0.1:8765", "localhost", "LOCALHOST:1", "[::1]:8765", "127.0.0.1"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host


def test_a_proxy_name_is_allowed_only_when_given(scanned):
    _, _, out = scanned
    with review_client(create_app(out, allow_hosts=["review.example.org"])) as c:
        assert c.get("/api/health", headers={"Host": "review.example.org"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "review.example.org.evil.example"}).status_code == 403


def test_bound_to_every_address_the_printed_address_is_this_machine_and_allowed():
    shown = shown_address("0.0.0.0")
    assert shown not in ("0.0.0.0", "127.0.0.1", "localhost", "")
    hosts = allowed_hosts("0.0.0.0", ())
    assert shown in hosts and socket.gethostname().lower() in hosts and "evil.example" not in hosts
    assert shown_address("127.0.0.1") == "127.0.0.1"
    assert socket.gethostname().lower() not in allowed_hosts("127.0.0.1", ())


# ---------------------------------------------------------------- cross-site requests

def test_a_cross_site_label_post_is_refused(app, client, item):
    before = client.get("/api/labels").json()
    r = client.post("/api/labels", json=_span(item, label="not_owl"), headers={"Origin": "http://evil.example"})
    assert "Origin" in _refused(r)["error"]
    r = client.post("/api/labels", json=_span(item, label="not_owl"), headers={"Sec-Fetch-Site": "cross-site"})
    _refused(r)
    r = client.post("/api/labels", json=_span(item, label="not_owl"), headers={"Origin": "null"})
    _refused(r)
    bare = review_client(app, csrf=False)  # a form or fetch from a page that has not seen ours
    assert "token" in _refused(bare.post("/api/labels", json=_span(item, label="not_owl")))["error"]
    for guess in ("", "guessed", app.state.csrf_token[:-1]):
        _refused(client.post("/api/labels", json=_span(item, label="not_owl"), headers={CSRF_HEADER: guess}))
    assert client.get("/api/labels").json() == before
    ok = client.post("/api/labels", json=_span(item, label="unsure"),
                     headers={"Origin": "http://127.0.0.1:8765", "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 200 and ok.json()["saved"] is True


def test_the_page_carries_its_server_token_and_cross_site_reads_of_the_api_are_refused(app, client):
    page = client.get("/")
    assert page.status_code == 200 and f'content="{app.state.csrf_token}"' in page.text
    assert client.get("/api/labels", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.get("/api/labels", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_cross_site_multipart_analyze_is_refused_and_runs_nothing(app, client, tmp_path, monkeypatch):
    """multipart/form-data is a "simple" request any page can send without asking: it must not run the model."""
    ran = []
    monkeypatch.setattr(Scanner, "scan_file", lambda self, path: ran.append(path))
    body = write_tone(tmp_path / "20240301_200000.WAV", 5, 8000).read_bytes()
    r = review_client(app, csrf=False).post("/api/analyze", files={"file": ("a.wav", body, "audio/wav")},
                                             headers={"Origin": "http://evil.example"})
    _refused(r)
    r = client.post("/api/analyze", files={"file": ("a.wav", body, "audio/wav")},
                    headers={"Sec-Fetch-Site": "cross-site"})
    _refused(r)
    assert ran == []


# ---------------------------------------------------------------- uploads

def test_a_1_hz_header_is_refused_before_decoding(client, monkeypatch):
    """48 KB that say 1 Hz are 24,000 s of audio: refused from the header, the scanner never runs."""
    ran = []
    monkeypatch.setattr(Scanner, "scan_file", lambda self, path: ran.append(path))
    r = client.post("/api/analyze", files={"file": ("onehz.wav", _wav(1, 24000), "audio/wav")})
    assert r.status_code == 422, r.text
    assert "1 Hz" in r.json()["error"] and "onehz.wav" in r.json()["error"]
    assert ran == []


def test_more_audio_than_a_request_may_analyse_is_refused_saying_the_limit(client, tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(Scanner, "scan_file", lambda self, path: ran.append(path))
    p = write_tone(tmp_path / "long.wav", 31, 2000)  # 124 KB, under the upload limit; 31 s > 30 s
    r = client.post("/api/analyze", files={"file": (p.name, p.read_bytes(), "audio/wav")})
    assert r.status_code == 422 and "30 s" in r.json()["error"] and "31" in r.json()["error"]
    assert ran == []


def test_an_oversized_content_length_is_refused_before_the_body_is_read(app, tmp_path, monkeypatch):
    """The reply comes from the header alone: the app never asks for the body and writes no temporary file."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    asked, sent = [], []

    async def receive():
        asked.append(1)
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    async def send(message):
        sent.append(message)

    headers = [(b"host", b"127.0.0.1:8765"), (b"content-type", b"multipart/form-data; boundary=b"),
               (b"content-length", str(10 << 30).encode()),
               (CSRF_HEADER.lower().encode(), app.state.csrf_token.encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/analyze", "raw_path": b"/api/analyze", "root_path": "", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8765), "state": {}}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert "0.5 MB" in json.loads(sent[1]["body"])["error"]
    assert asked == [] and list(tmp_path.iterdir()) == []


def test_an_upload_without_a_length_stops_at_the_limit(client, tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    blocks = []

    def body():  # no Content-Length: sent chunked, 1 MB of multipart against a 0.5 MB limit
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(16):
            blocks.append(1)
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    r = client.post("/api/analyze", content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "0.5 MB" in r.json()["error"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- parameters

BAD_NUMBERS = ("nan", "NaN", "inf", "Infinity", "-Infinity", "1e400", "-1")
PARAMS = [("/api/clip.wav", "pad_s"), ("/api/clip.wav", "start_s"), ("/api/clip.wav", "end_s"),
          ("/api/night.png", "max_hz"), ("/api/spectrogram.png", "pad_s"),
          ("/api/queue", "seed"), ("/api/queue", "n"), ("/api/queue", "min_score"), ("/api/queue", "max_score"),
          ("/api/windows", "seed"), ("/api/detections", "min_score"), ("/api/calibration", "bins")]


@pytest.mark.parametrize("path,name", PARAMS)
def test_a_number_that_is_not_finite_negative_or_out_of_range_gets_422_naming_it(client, item, path, name):
    base = _span(item) if path in ("/api/clip.wav", "/api/spectrogram.png") else {}
    for value in BAD_NUMBERS + {"seed": ("1e400", str(2 ** 64)), "n": ("0",), "bins": ("1", "51"),
                                "min_score": ("1.5",), "max_score": ("2",), "max_hz": ("0",),
                                "pad_s": ("1000",)}.get(name, ()):
        r = client.get(path, params=base | {name: value})
        assert r.status_code == 422, (path, name, value, r.status_code, r.text)
        assert name in r.json()["error"], r.text


@pytest.mark.parametrize("field", ["start_s", "end_s"])
def test_a_label_with_a_number_that_is_not_finite_or_negative_gets_422(client, item, field):
    for value in ("NaN", "Infinity", "-Infinity", "1e400", "-1"):
        body = json.dumps(_span(item, label="owl")).replace(f'"{field}": {item[field]}', f'"{field}": {value}')
        assert value in body
        r = client.post("/api/labels", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (field, value, r.text)
        assert field in r.json()["error"]


def test_a_label_past_the_end_of_its_recording_is_refused_naming_its_length(client, item):
    before = client.get("/api/labels").json()
    r = client.post("/api/labels", json=_span(item, label="owl", start_s=1e6, end_s=1e6 + 3))
    assert r.status_code == 422 and "60 s" in r.json()["error"], r.text
    r = client.post("/api/labels", json=_span(item, label="owl", start_s=50, end_s=61))
    assert r.status_code == 422 and "60 s" in r.json()["error"]
    r = client.post("/api/labels", json=_span(item, label="owl", start_s=5, end_s=5))
    assert r.status_code == 422 and "end_s" in r.json()["error"]
    r = client.post("/api/labels", json=_span(item, label="owl", reviewer="x" * 10_000))
    assert r.status_code == 422 and "reviewer" in r.json()["error"]
    assert client.get("/api/labels").json() == before


def test_a_span_past_the_end_of_its_recording_says_so(client, item):
    for path in ("/api/clip.wav", "/api/spectrogram.png"):
        r = client.get(path, params=_span(item, start_s=58, end_s=70))
        assert r.status_code == 422, r.text
        msg = r.json()["error"]
        assert "past the end" in msg and "60 s" in msg and "mounted" not in msg
    near_end = client.get("/api/clip.wav", params=_span(item, start_s=57, end_s=60, pad_s=2))
    assert near_end.status_code == 200  # the padding stops at the end of the file


def test_a_non_ascii_token_gets_403(scanned):
    _, _, out = scanned
    app = create_app(out, token="t0k3n")
    with review_client(app) as c:
        assert c.get("/api/health", headers={"X-Hootwatch-Token": "tök3n".encode()}).status_code == 403
        assert c.get("/api/health", params={"token": "tök3n"}).status_code == 403
        assert c.get("/api/health", headers={"Cookie": "hootwatch_token=t%C3%B6k3n"}).status_code == 403
        assert c.get("/api/health", headers={"X-Hootwatch-Token": "t0k3n"}).status_code == 200


def test_an_upload_named_like_the_analysis_store_is_still_analysed(client, tmp_path):
    """The upload's name is the sender's: it must not land on the app's own working files (was a 500)."""
    body = write_tone(tmp_path / "x.wav", 6, 8000).read_bytes()
    for name in ("analyze.sqlite", "../analyze.sqlite", ".analyze.sqlite"):
        r = client.post("/api/analyze", files={"file": (name, body, "audio/wav")})
        assert r.status_code == 200 and r.json()["audio_s"] == 6.0, r.text


def test_a_span_of_a_3_s_recording_may_end_only_within_its_padded_window(scanned, tmp_path):
    """A file shorter than the model's window (5 s here) is scored as one padded window: a span may end there,
    not later, and never start after the file's end (was: a clip of 10-20 s said "is the card still mounted?")."""
    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import ScanSettings, scan_into
    bundle = scanned[0]
    write_tone(tmp_path / "rec" / "C" / "20240101_100000.WAV", 3, 8000, tones=[(0.5, 2.5)], seed=3)
    out = tmp_path / "out"
    scan_into([tmp_path / "rec"], Detector.load(bundle, threads=1), out, ScanSettings(threshold=0.0))
    with review_client(create_app(out)) as c:  # no bundle: the window's length comes from the store
        key = c.get("/api/queue").json()["items"][0]["file_key"]
        for path in ("/api/clip.wav", "/api/spectrogram.png"):
            for start, end in ((10, 20), (3, 4), (1, 5.5)):
                body = _refused(c.get(path, params={"file_key": key, "start_s": start, "end_s": end}), 422)
                assert "3 s" in body["error"] and "mounted" not in body["error"], (path, start, end, body)
            assert c.get(path, params={"file_key": key, "start_s": 1, "end_s": 5}).status_code == 200
        for start, end in ((20, 25), (3, 4), (1, 5.5)):
            body = _refused(c.post("/api/labels", json={"file_key": key, "start_s": start, "end_s": end,
                                                        "label": "owl"}), 422)
            assert "3 s" in body["error"]
        assert c.get("/api/labels").json()["labels"] == []
        r = c.post("/api/labels", json={"file_key": key, "start_s": 0, "end_s": 5, "label": "owl"})
        assert r.status_code == 200, r.text


def test_analyze_computes_no_night_indices(client, tmp_path, monkeypatch):
    """An upload's detections are all /api/analyze answers: the night overview's indices would be thrown away."""
    from hootwatch.edge.scan import engine

    def counted(*a, **kw):
        raise AssertionError("indices computed for an upload")

    monkeypatch.setattr(engine, "MinuteIndices", counted)
    body = write_tone(tmp_path / "x.wav", 6, 8000).read_bytes()
    r = client.post("/api/analyze", files={"file": ("x.wav", body, "audio/wav")})
    assert r.status_code == 200, r.text


def test_a_host_with_anything_after_its_bracketed_address_is_refused():
    from hootwatch.edge.review.access import host_name
    assert host_name("[::1]evil.example") != "::1" and host_name("[::1]:8765") == "::1" and host_name("[::1]") == "::1"


def test_the_lan_address_of_an_ipv4_bind_is_ipv4(monkeypatch):
    from hootwatch.edge.review import access
    real = socket.socket

    def v6_first(family=socket.AF_INET, *a, **kw):  # a machine whose IPv4 route is missing: only IPv6 answers
        if family == socket.AF_INET:
            raise OSError("no IPv4 route")
        return real(family, *a, **kw)

    monkeypatch.setattr(access.socket, "socket", v6_first)
    assert access.shown_address("0.0.0.0") != "" and ":" not in access.shown_address("0.0.0.0")


def test_the_default_reviewer_is_in_the_page(scanned):
    """`hootwatch review --reviewer NAME`: the page gets the name (so it need not ask), escaped like any text."""
    with review_client(create_app(scanned[2], reviewer='Kim "K" <Lee>')) as c:
        page = c.get("/").text
        assert '<meta name="hootwatch-reviewer" content="Kim &quot;K&quot; &lt;Lee&gt;">' in page
    with review_client(create_app(scanned[2])) as c:
        assert '<meta name="hootwatch-reviewer" content="">' in c.get("/").text


def test_every_refusal_says_what_is_wrong_and_the_fix_for_its_kind(client, item):
    """{error, fix} on every error reply; the fix fits the error (was {"detail"}, or always 'a finite number')."""
    for path, params in (("/api/queue", {"queue": "x"}), ("/api/queue", {"order": "x"}),
                         ("/api/windows", {"queue": "detections"}), ("/api/night", {"recorder": "Z", "night": "2024-01-01"}),
                         ("/api/night.png", {"recorder": "Z", "night": "2024-01-01"}),
                         ("/api/clip.wav", {"file_key": "gone", "start_s": 1, "end_s": 2})):
        r = client.get(path, params=params)
        assert r.status_code in (400, 404) and set(r.json()) == {"error", "fix"}, (path, r.text)
    run = _refused(client.get("/api/queue", params={"run": "nope"}), 404)
    assert "no run 'nope'" in run["error"] and "/api/runs" in run["fix"] and "--" not in run["fix"] + run["error"]
    assert "/" not in run["error"]  # no path of this machine
    view = _refused(client.get("/api/spectrogram.png", params=_span(item, view="x")), 422)
    assert "finite" not in view["fix"] and "full" in view["error"]
    broken = _refused(client.post("/api/labels", content=b"{not json", headers={"Content-Type": "application/json"}),
                      422)
    assert "JSON" in broken["fix"] and "finite" not in broken["fix"]
    far = _refused(client.get("/api/queue", params={"min_score": 2}), 422)
    assert "range" in far["fix"]
