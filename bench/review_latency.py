"""Benchmark: review page latency on a 1-hour (or --hours) night, and the store growth from window scores.

Builds a recorder night (5-minute AudioMoth-style files at 16 kHz, a 450 Hz "call" every ~50 s), scans it with
the deterministic tone bundle of the tests (window 5 s, hop 2.5 s: the standard grid; the model does not change
the review app's work), then:
  - starts `hootwatch review` as a real process on 127.0.0.1 and drives it with Debian's chromium (Playwright):
    for each of --items detections, wait until the page takes a verdict (the item's spectrogram and audio have
    loaded and it has been on screen 250 ms, as a reviewer looks before pressing), press `y` and wait until the
    next item is on screen (saved, its spectrogram and audio loaded): seconds from the key press to the next
    item, as the test driver sees it and as the page itself times it (keydown to the frame after the next item
    is ready), median and 90th percentile;
  - with --screenshot PATH, saves the page on its first item (docs/img/review-item.png);
  - times the JSON API calls behind one item (queue, spectrogram, clip, label) with httpx;
  - measures the window scores' bytes in the store (blobs, and the file size with and without the table).

    python bench/review_latency.py --items 30 --hours 1 --work /tmp/hootwatch-review-bench
    python bench/review_latency.py --items 30 --hours 11 --screenshot docs/img/review-item.png
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SR = 16000


def build_night(work: Path, minutes: int = 60, file_min: int = 5) -> tuple[Path, Path]:
    from tiny_bundles import tone_bundle, write_tone

    from hootwatch.edge.contract.detector import Detector
    from hootwatch.edge.scan.engine import ScanSettings, scan_into

    bundle = tone_bundle(work / "bundle", sample_rate=SR)
    rec = work / "night"
    for i in range(minutes // file_min):
        start = 10 * 3600 + i * file_min * 60
        name = f"2024010{1 + start // 86400}_{start // 3600 % 24:02d}{start // 60 % 60:02d}00.WAV"
        tones = [(t, t + 3.0) for t in range(20, file_min * 60 - 10, 50)]
        write_tone(rec / name, file_min * 60, SR, tones=tones, seed=i)
    out = work / "out"
    t0 = time.perf_counter()
    scan_into([rec], Detector.load(bundle, threads=1), out, ScanSettings())
    print(f"scanned {minutes} min in {time.perf_counter() - t0:.1f} s")
    return bundle, out


def store_growth(out: Path, hours: float) -> None:
    db = out / "detections.sqlite"
    con = sqlite3.connect(db)
    n, blob = con.execute("SELECT SUM(n_windows), SUM(LENGTH(starts) + LENGTH(scores)) FROM window_scores").fetchone()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    copy = out.parent / "without.sqlite"
    shutil.copy(db, copy)
    c2 = sqlite3.connect(copy)
    c2.execute("VACUUM")
    c2.close()
    with_size = copy.stat().st_size
    c2 = sqlite3.connect(copy)
    c2.execute("DROP TABLE window_scores")
    c2.execute("VACUUM")
    c2.close()
    without = copy.stat().st_size
    print(f"window scores: {n} windows, {blob} bytes of blobs ({blob / n:.2f} B/window); store {with_size} B with, "
          f"{without} B without -> {(with_size - without) / hours / 1024:.1f} KiB per recorder-hour, "
          f"{(with_size - without) / hours * 11 / 1024:.0f} KiB per 11-hour recorder-night")


def api_timings(url: str, repeats: int = 10) -> None:
    import httpx

    def timed(fn):
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    from review_server import page_headers

    with httpx.Client(base_url=url, timeout=60, headers=page_headers(url)) as c:  # the page's CSRF header
        items = c.get("api/queue").json()["items"]
        it = items[0]
        span = {k: it[k] for k in ("file_key", "start_s", "end_s")}
        print(f"API medians over {repeats} calls ({len(items)} detections):")
        for name, fn in (("GET /api/queue (detections)", lambda: c.get("api/queue")),
                         ("GET /api/queue?queue=near", lambda: c.get("api/queue", params={"queue": "near"})),
                         ("GET /api/queue?queue=random", lambda: c.get("api/queue", params={"queue": "random"})),
                         ("GET /api/spectrogram.png", lambda: c.get("api/spectrogram.png", params=span)),
                         ("GET /api/clip.wav", lambda: c.get("api/clip.wav", params=span)),
                         ("POST /api/labels", lambda: c.post("api/labels", json=span | {"label": "owl"}))):
            print(f"  {name:32s} {timed(fn) * 1000:7.1f} ms")


# in the page: keydown time, and the frame after the next item is ready (spectrogram and audio loaded)
_PAGE_TIMER = """
window.__lat = [];
document.addEventListener("keydown", () => { window.__key = [performance.now(), document.body.dataset.item]; }, true);
document.addEventListener("DOMContentLoaded", () => new MutationObserver(() => {
  const k = window.__key, b = document.body.dataset;
  if (k && b.item !== k[1] && b.ready === "1") {
    window.__key = null;
    requestAnimationFrame(() => window.__lat.push((performance.now() - k[0]) / 1000));
  }
}).observe(document.body, { attributes: true }));
"""


def _summary(times: list[float]) -> str:
    times = sorted(times)
    return f"median {statistics.median(times):.3f} s, 90th percentile {times[int(0.9 * (len(times) - 1))]:.3f} s"


def browser_latency(url: str, n_items: int, screenshot: Path | None = None) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium not installed: no browser timing")
        return
    import os
    args = ["--mute-audio"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args)
        ctx = browser.new_context(viewport={"width": 1100, "height": 760})
        ctx.add_init_script("localStorage.setItem('hootwatch.reviewer', 'bench');" + _PAGE_TIMER)
        page = ctx.new_page()
        t = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        print(f"page open to first item shown: {time.perf_counter() - t:.3f} s")
        if screenshot:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.wait_for_timeout(300)
            page.screenshot(path=str(screenshot))
            print(f"screenshot: {screenshot}")
        times = []
        for i in range(n_items):
            page.wait_for_selector("body[data-accepting='1']")
            t = time.perf_counter()
            page.keyboard.press("y")
            page.wait_for_function(f"document.body.dataset.item === '{i + 1}' && document.body.dataset.ready === '1' "
                                   "&& document.getElementById('status').textContent.startsWith('saved: owl for ')",
                                   polling="raf")
            times.append(time.perf_counter() - t)
        page.wait_for_timeout(100)
        in_page = page.evaluate("window.__lat")
        browser.close()
    print(f"key press -> next item on screen (saved, spectrogram and audio loaded), {len(times)} items:")
    print(f"  as the test driver sees it: {_summary(times)}")
    print(f"  as the page times it:       {_summary(in_page)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/hootwatch-review-bench"))
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--hours", type=float, default=1.0, help="length of the night (default 1 h)")
    ap.add_argument("--screenshot", type=Path, default=None, help="save the page on its first item here (PNG)")
    args = ap.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    _, out = build_night(args.work, int(round(args.hours * 60)))
    store_growth(out, args.hours)
    from review_server import review_server
    with review_server(out) as (_, url):
        browser_latency(url, args.items, args.screenshot)
        api_timings(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
