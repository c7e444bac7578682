"""The review app in a real browser: Debian's chromium driven by Playwright, over a store made by a real scan.

Opens the app, plays an item, labels items with the keys, undoes one, reloads, and finds the labels in SQLite.
Skips when playwright or chromium is missing (.ci/run installs chromium)."""

import os
import shutil
import sqlite3

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from review_helpers import scanned_store  # noqa: E402
from review_server import review_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_label_with_keys_undo_reload_and_the_labels_are_in_sqlite(tmp_path):
    _, _, out = scanned_store(tmp_path)
    args = ["--autoplay-policy=no-user-gesture-required", "--mute-audio"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    with review_server(out) as (_, url), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-loaded='1']")
        assert page.inner_text("#progress").startswith("0 / 3 reviewed")
        first_file = page.inner_text("#i-file")
        assert page.inner_text("#i-recorder") in ("A", "B") and "2024-01-01 10:00" in page.inner_text("#i-time")
        assert page.evaluate("document.getElementById('spec').complete || true")
        page.wait_for_function("document.getElementById('spec').naturalWidth > 0")
        page.keyboard.press(" ")  # play
        page.wait_for_function("document.getElementById('audio').currentTime > 0", timeout=15000)
        page.keyboard.press("y")
        page.wait_for_function("document.getElementById('status').textContent === 'saved: owl'")
        page.keyboard.press("n")
        page.wait_for_function("document.getElementById('status').textContent === 'saved: not_owl'")
        page.keyboard.press("ArrowLeft")  # undo the "not owl"
        page.wait_for_function("document.getElementById('status').textContent === 'label removed'")
        assert page.get_attribute("body", "data-item") == "1"
        page.keyboard.press("u")
        page.wait_for_function("document.getElementById('status').textContent === 'saved: unsure'")
        assert page.inner_text("#progress").startswith("2 / 3 reviewed; 1 owl, 0 not owl")
        page.reload()
        page.wait_for_selector("body[data-loaded='1']")
        assert page.inner_text("#progress").startswith("2 / 3 reviewed; 1 owl, 0 not owl")
        assert page.get_attribute("body", "data-item") == "2"  # opens at the first item not yet reviewed
        page.click("#b-owl")  # the buttons do what the keys do
        page.wait_for_function("document.getElementById('status').textContent === 'saved: owl'")
        assert page.inner_text("#empty").startswith("End of the queue")
        browser.close()
    con = sqlite3.connect(out / "detections.sqlite")
    history = [r[0] for r in con.execute("SELECT label FROM labels ORDER BY id")]
    assert history == ["owl", "not_owl", "", "unsure", "owl"]
    current = con.execute("SELECT file, label FROM labels l WHERE id = (SELECT MAX(id) FROM labels m"
                          " WHERE m.file_key = l.file_key AND m.start_ms = l.start_ms AND m.end_ms = l.end_ms)"
                          " ORDER BY id").fetchall()
    assert [lab for _, lab in current] == ["owl", "unsure", "owl"] and current[0][0] == first_file
