"""A night at a glance: a real scan of a duty-cycled night (four 6-minute recordings, one every 30 minutes from
20:00 in Sydney, owl-like hoot series in two of them, insects at 3.5 kHz in the first two) keeps its acoustic
indices with its scores; the API draws the night and marks its detections and labels; a store scanned before the
indices were kept says so; and Debian's chromium shows the page, its axes and a mark that opens its span (the
screenshot, with HOOTWATCH_SCREENSHOTS=docs/img, is docs/img/night-overview.png)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")

from hootwatch.edge.contract.detector import Detector  # noqa: E402
from hootwatch.edge.review.app import create_app  # noqa: E402
from hootwatch.edge.scan.engine import ScanSettings, scan_into  # noqa: E402
from hootwatch.edge.store.database import DetectionStore  # noqa: E402
from hootwatch.edge.store.indices import MinuteIndexRows, read_indices  # noqa: E402
from hootwatch.edge.store.labels import LabelBook  # noqa: E402

from review_server import review_client  # noqa: E402
from tiny_bundles import TONE_HZ, tone_bundle  # noqa: E402

SR = 8000
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# file name (UTC, AudioMoth style) -> (minutes with owl calls, insects' level)
NIGHT = {"20240101_090000.WAV": ((), 0.02), "20240101_093000.WAV": ((3, 4), 0.01),
         "20240101_100000.WAV": ((), 0.0), "20240101_103000.WAV": ((4,), 0.0)}


def night_audio(owl_minutes, insects: float, seed: int, minutes: float = 6.0) -> np.ndarray:
    n = int(minutes * 60 * SR)
    x = 0.003 * np.random.default_rng(seed).standard_normal(n, dtype=np.float32)
    if insects:  # 3.5 kHz, trilling at 40 Hz: 400 samples repeat exactly
        t = np.arange(400) / SR
        x += np.resize((insects * np.sin(2 * np.pi * 3500 * t) * (1 + 0.3 * np.sin(2 * np.pi * 40 * t))), n)
    t = np.arange(60 * SR) / SR
    phase = t % 5  # a hoot series: two 1.2 s notes every 5 s, loud enough for the tone model
    calls = (0.2 * ((phase < 1.2) | ((phase >= 1.6) & (phase < 2.8))) * np.sin(2 * np.pi * TONE_HZ * t))
    for m in owl_minutes:
        x[m * 60 * SR:(m + 1) * 60 * SR] += calls[:n - m * 60 * SR].astype(np.float32)
    return x


def scan_night(root: Path, night: dict = NIGHT, minutes: float = 6.0) -> Path:
    bundle = tone_bundle(root / "bundle", sample_rate=SR)
    for i, (name, (owl, insects)) in enumerate(night.items()):
        (root / "rec" / "R1").mkdir(parents=True, exist_ok=True)
        if not (root / "rec" / "R1" / name).exists():
            sf.write(root / "rec" / "R1" / name, night_audio(owl, insects, i, minutes), SR)
    out = root / "out"
    scan_into([root / "rec"], Detector.load(bundle, threads=1), out, ScanSettings(tz="Australia/Sydney"))
    return out


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    out = scan_night(tmp_path_factory.mktemp("night"))
    with DetectionStore(out / "detections.sqlite") as st:  # a reviewer's verdicts: one on a detection, one not
        d = st.detections()[0]
        LabelBook(st).add(d["file_key"], d["file"], d["start_s"], d["end_s"], "owl")
        LabelBook(st).add(d["file_key"], d["file"], 300.0, 305.0, "not_owl")
    return out


def test_scan_keeps_each_files_indices_with_its_scores(night):
    with DetectionStore(night / "detections.sqlite") as st:
        rows = st.ledger_rows(status="done")
        run = rows[0].run_key
        found = read_indices(st.conn, [r.file_key for r in rows], run)
        assert len(rows) == 4 and set(found) == {r.file_key for r in rows}
        assert len(st.window_scores(run)) == 4
        assert all(x.n_minutes == 6 for x in found.values())


def test_a_file_whose_indices_cannot_be_written_keeps_no_scores_either(tmp_path, monkeypatch):
    def broken(self, cur, file_key, run_key):
        raise sqlite3.OperationalError("disk I/O error")

    one = {"20240101_093000.WAV": ((0,), 0.0)}
    monkeypatch.setattr(MinuteIndexRows, "write", broken)
    out = scan_night(tmp_path, one, minutes=1.0)
    with DetectionStore(out / "detections.sqlite") as st:
        assert st.count() == 0 and st.ledger_rows(status="done") == []
        assert st.conn.execute("SELECT COUNT(*) FROM window_scores").fetchone()[0] == 0
        assert [r.status for r in st.ledger_rows()] == ["failed"]
    monkeypatch.undo()
    scan_night(tmp_path, one, minutes=1.0)  # the next scan redoes it, scores and indices together
    with DetectionStore(out / "detections.sqlite") as st:
        [row] = st.ledger_rows(status="done")
        assert st.count() > 0 and len(read_indices(st.conn, [row.file_key], row.run_key)) == 1


def test_the_api_draws_the_night_and_marks_detections_and_labels(night):
    c = review_client(create_app(night))
    [n] = c.get("/api/nights").json()["nights"]
    assert (n["recorder"], n["night"], n["files"], n["indices"]) == ("R1", "2024-01-01", 4, 4)
    q = {"recorder": "R1", "night": "2024-01-01"}
    body = c.get("/api/night", params=q).json()
    assert body["start_local"].startswith("2024-01-01T20:00") and body["zone"] == "Australia/Sydney"
    assert body["minutes"] == 120 and body["message"] == "" and body["max_hz"] == SR / 2
    detections = [m for m in body["marks"] if m["kind"] == "detection"]
    # the owl calls: minutes 3-4 of the 20:30 file and minute 4 of the 21:30 one
    assert detections and all(32.5 <= m["minute"] < 35 or 93.5 <= m["minute"] < 95 for m in detections)
    assert any(m["minute"] < 35 for m in detections) and any(m["minute"] > 93 for m in detections)
    assert detections[0]["label"] == "owl"
    from hootwatch.edge.review.calibrate import score_text
    assert all(m["score_text"] == score_text(m["score"]) for m in detections)  # the queues' digits, not "0.997"
    [lone] = [m for m in body["marks"] if m["kind"] == "label"]
    assert lone["label"] == "not_owl" and lone["minute"] == pytest.approx(35.0)  # 300 s into the 20:30 file
    png = c.get("/api/night.png", params=q)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    img = decode_png(png.content)
    assert img.shape == (body["rows"], 120, 3)
    owl_row = body["rows"] - 1 - int(TONE_HZ // body["bin_hz"])
    calls, quiet = img[owl_row, 33], img[owl_row, 65]  # 20:33 (hoots) against 21:05 (no calls)
    assert int(calls[1]) + calls[2] > int(quiet[1]) + quiet[2] + 100  # green and blue light up
    assert (img[:, 15] == img[:, 15][0]).all(axis=1).sum() < img.shape[0] and _hatched(img[:, 15])  # 20:15: none
    half = c.get("/api/night", params=q | {"max_hz": 2000}).json()
    assert half["max_hz"] == 2000 and half["rows"] == body["rows"] // 2


# Sydney's daylight saving, 1 min files named in UTC: spring forward (2024-10-06 02:00 AEST -> 03:00 AEDT) between
# 01:30 and 03:30, one real hour apart; autumn back (2024-04-07 03:00 AEDT -> 02:00 AEST): 02:30 twice, an hour apart
DST = {"20241005_153000.WAV": ((0,), 0.0), "20241005_163000.WAV": ((0,), 0.0),
       "20240406_140000.WAV": ((), 0.0), "20240406_153000.WAV": ((0,), 0.0), "20240406_163000.WAV": ((0,), 0.0)}


def test_across_a_daylight_saving_change_columns_and_marks_keep_real_time(tmp_path):
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo
    out = scan_night(tmp_path, DST, minutes=1.0)
    c = review_client(create_app(out))
    spring = c.get("/api/night", params={"recorder": "R1", "night": "2024-10-05"}).json()
    autumn = c.get("/api/night", params={"recorder": "R1", "night": "2024-04-06"}).json()
    assert spring["start_local"] == "2024-10-06T01:00:00.000+10:00" and spring["minutes"] == 120
    assert autumn["start_local"] == "2024-04-07T01:00:00.000+11:00" and autumn["minutes"] == 180
    # each file's column is its real minutes from the left edge: 30 and 90 (spring), 90 and 150 (autumn)
    for body, files in ((spring, {30: "01:30", 90: "03:30"}), (autumn, {90: "02:30", 150: "02:30"})):
        marks = [m for m in body["marks"] if m["kind"] == "detection"]
        assert {min(files, key=lambda x: abs(x - m["minute"])) for m in marks} == set(files)
        t0 = datetime.fromisoformat(body["start_local"])
        for m in marks:
            assert any(x <= m["minute"] < x + 1 for x in files), m
            begin = (t0 + timedelta(minutes=m["minute"])).astimezone(ZoneInfo("Australia/Sydney"))
            # (by timestamps: Python calls no two zones' times in a repeated hour equal)
            assert datetime.fromisoformat(m["begin_local"]).timestamp() == pytest.approx(begin.timestamp(), abs=1e-3)
            assert m["begin_local"][-6:] == begin.isoformat()[-6:]
        assert [body["clock"][x] for x in files] == list(files.values())
        img = decode_png(c.get("/api/night.png", params={"recorder": "R1", "night": body["night"]}).content)
        assert all(not _hatched(img[:, x]) for x in files) and _hatched(img[:, 60])  # no file overwrote another
    assert spring["clock"][59:62] == ["01:59", "03:00", "03:01"]
    assert autumn["clock"][119:122] == ["02:59", "02:00", "02:01"]


def _hatched(column: np.ndarray) -> bool:
    """Grey (R = G = B) stripes: no recording."""
    return bool((column[:, 0] == column[:, 1]).all() and (column[:, 1] == column[:, 2]).all())


def decode_png(data: bytes) -> np.ndarray:
    """The 8-bit RGB PNGs scan/material.py writes -> (h, w, 3)."""
    import struct
    import zlib
    w, h = struct.unpack(">II", data[16:24])
    i, idat = 8, b""
    while i < len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        if data[i + 4:i + 8] == b"IDAT":
            idat += data[i + 8:i + 8 + n]
        i += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()  # filter "none" on every row
    return raw[:, 1:].reshape(h, w, 3)


def test_bad_parameters_get_a_message_and_an_old_store_says_scan_again(night, tmp_path):
    c = review_client(create_app(night))
    for q in ({"recorder": "R1", "night": "tonight"}, {"recorder": "R1", "night": "2024-01-01", "max_hz": "nan"},
              {"recorder": "R1", "night": "2024-01-01", "max_hz": "-5"}):
        assert c.get("/api/night", params=q).status_code == 422
    missing = c.get("/api/night", params={"recorder": "R9", "night": "2024-01-01"})
    assert missing.status_code == 404 and "R9" in missing.json()["error"]
    old = shutil.copytree(night, tmp_path / "old")
    con = sqlite3.connect(old / "detections.sqlite")
    con.execute("DELETE FROM minute_indices WHERE file_key LIKE '20240101_100000%'")  # rescanned but one
    con.commit()
    body = review_client(create_app(old)).get("/api/night", params={"recorder": "R1", "night": "2024-01-01"}).json()
    assert body["message"].startswith("1 of 4 recordings") and body["files_with_indices"] == 3
    con.execute("DELETE FROM minute_indices")  # as a store scanned before this version
    con.commit()
    con.close()
    c = review_client(create_app(old))
    assert c.get("/api/nights").json()["nights"][0]["indices"] == 0
    body = c.get("/api/night", params={"recorder": "R1", "night": "2024-01-01"}).json()
    assert "scan again to see the overview" in body["message"] and body["rows"] == 0 and body["marks"]
    png = c.get("/api/night.png", params={"recorder": "R1", "night": "2024-01-01"})
    assert png.status_code == 404 and "scan again" in png.json()["error"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_night_page_in_chromium_shows_the_picture_axes_and_opens_a_mark(night):
    sync_api = pytest.importorskip("playwright.sync_api")
    from review_server import review_server
    args = ["--mute-audio"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with review_server(night) as (_, url), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.add_init_script("localStorage.setItem('hootwatch.reviewer', 'tester')")  # the name is asked once
        ctx.set_default_timeout(60_000)  # CI's two cores also run the other tests: a hang still fails
        page = ctx.new_page()
        page.goto(url)
        page.click("#night-link")
        page.wait_for_selector("body[data-loaded='1']")
        page.wait_for_function("document.getElementById('night-img').naturalWidth === 120")
        assert page.is_visible("#night-img") and page.is_visible("#legend")
        assert page.locator("#band").bounding_box()["width"] > 60  # the frequency choice, not the review page's #band
        ticks = page.locator("#xaxis .xt").all_inner_texts()
        assert ticks[0] == "20:00" and ticks[-1] == "22:00"
        assert "Australia/Sydney" in page.inner_text("#xaxis")
        assert "1 kHz" in page.locator("#plot .yt").all_inner_texts()
        marks = page.locator("#marks button.detection")
        assert marks.count() >= 2 and page.locator("#marks button.label-only").count() == 1
        marks.first.click()
        page.wait_for_function("document.getElementById('item-spec').naturalWidth > 0")
        first = page.evaluate("state.night.marks.find((m) => m.kind === 'detection')")
        assert f"score {first['score_text']}" in page.inner_text("#item-title")
        assert page.get_attribute("body", "data-opened").endswith("@" + page.evaluate(
            "new URL(document.getElementById('item-open').href).searchParams.get('start_s')"))
        if shots := os.environ.get("HOOTWATCH_SCREENSHOTS"):  # docs/img: the overview and the mark opened
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / "night-overview.png"), clip={"x": 0, "y": 0, "width": 1100,
                                                                                "height": 545})
        # the link opens THAT item in the review page: the last detection (not the queue's first), then the lone label
        for kind in ("detection", "label-only"):
            page.locator(f"#marks button.{kind}").last.click()
            link = page.evaluate("Object.fromEntries(new URL(document.getElementById('item-open').href).searchParams)")
            mark = page.evaluate("([k, s]) => state.night.marks.find((m) => m.file_key === k && m.start_s === +s)",
                                 [link["file_key"], link["start_s"]])
            page.click("#item-open")
            page.wait_for_selector("body[data-opened-item]")
            assert page.get_attribute("body", "data-opened-item") == f"{mark['file_key']}@{link['start_s']}"
            assert page.is_visible("#i-file") and page.inner_text("#i-file") == mark["file"]
            assert f"({mark['start_s']:.2f} s)" in page.inner_text("#i-offset")
            assert page.inner_text("#i-label") == (mark["label"] or "not reviewed")
            assert [page.input_value(f"#{k}") for k in ("queue", "order", "recorder", "night")] == \
                ["detections", "time", "R1", "2024-01-01"]
            page.wait_for_selector("body[data-ready='1']")  # its spectrogram and audio load
            page.go_back()
            page.wait_for_function("document.getElementById('night-img').naturalWidth === 120")
        page.goto(url + "?recorder=R1&night=2024-01-01&file_key=gone&start_s=5&end_s=10")  # a stale link says so
        page.wait_for_selector("body[data-opened-item='']")
        assert "(gone at 5 s) is not in this queue" in page.inner_text("#status")
        browser.close()
