"""The review app in a real browser: Debian's chromium driven by Playwright, over a store made by a real scan.

One store, server and browser for the module (a fresh page and no labels for each test): the spectrogram's axes and
the detection's span, keys that label only the item the reviewer saw (auto-repeat, a verdict before the item has
loaded, `y` then `n` 30 ms apart), the reviewer's name asked once, and the whole loop (label, undo, reload, SQLite).
Skips when playwright or chromium is missing (.ci/run installs chromium). With HOOTWATCH_SCREENSHOTS=docs/img the
first item's screenshot is saved there (docs/img/review-item.png in the docs)."""

import os
import re
import shutil
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from review_helpers import scanned_store  # noqa: E402
from review_server import page_headers, review_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")
ACCEPTING = "body[data-accepting='1']"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    _, _, out = scanned_store(tmp_path_factory.mktemp("browser"), embeddings=True)
    args = ["--autoplay-policy=no-user-gesture-required", "--mute-audio"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    with review_server(out) as (_, url), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        yield out, url, browser
        browser.close()


def _labels(out) -> list[tuple]:
    con = sqlite3.connect(out / "detections.sqlite")
    try:
        return con.execute("SELECT file, start_ms, label, reviewer FROM labels ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.fixture()
def open_page(served):
    """open_page(reviewer='tester') -> a page on the first item (no labels in the store)."""
    out, url, browser = served
    con = sqlite3.connect(out / "detections.sqlite")
    con.execute("DELETE FROM labels")
    con.commit()
    con.close()
    contexts = []

    def _open(reviewer: str | None = "tester", wait: bool = True):
        ctx = browser.new_context(viewport={"width": 1100, "height": 760})
        ctx.set_default_timeout(60_000)  # CI's two cores also run the other tests: a hang still fails
        if reviewer is not None:
            ctx.add_init_script(f"localStorage.setItem('hootwatch.reviewer', {reviewer!r})")
        contexts.append(ctx)
        page = ctx.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-loaded='1']")
        if wait:
            page.wait_for_selector(ACCEPTING)
        return page

    yield _open
    for ctx in contexts:
        ctx.close()


def _status(page) -> str:
    return page.inner_text("#status")


def test_the_spectrogram_has_axes_the_span_marked_and_one_time_scale(open_page):
    page = open_page()
    it = page.evaluate("state.items[state.i]")
    geo = page.evaluate("state.display")
    pps = geo["px_per_s"]
    a = max(0.0, it["start_s"] - 2)
    natural = page.evaluate("[document.getElementById('spec').naturalWidth, "
                            "document.getElementById('spec').getBoundingClientRect().width]")
    assert natural[0] == round((it["end_s"] + 2 - a) * pps) and natural[1] == natural[0]  # never stretched
    box = page.eval_on_selector("#spec", "e => e.getBoundingClientRect()")
    for pad, expect in (("#pad-before", (it["start_s"] - a) * pps), ("#pad-after", 2 * pps)):
        w = page.eval_on_selector(pad, "e => e.getBoundingClientRect().width")
        assert abs(w - expect) <= 1, (pad, w, expect)
    span = page.eval_on_selector("#span", "e => e.getBoundingClientRect()")
    assert abs(span["x"] - box["x"] - (it["start_s"] - a) * pps) <= 1
    assert abs(span["width"] - (it["end_s"] - it["start_s"]) * pps) <= 1
    freq = page.eval_on_selector_all("#freq-axis .tick", "es => es.map(e => e.textContent)")
    assert "0.5 kHz" in freq and "2 kHz" in freq and "1 kHz" in freq
    band = page.eval_on_selector("#band", "e => e.getBoundingClientRect()")
    assert band["height"] > 0.5 * box["height"]  # the owl's 0.2-1.5 kHz takes most of the image
    secs = page.eval_on_selector_all("#time-axis .tick-s", "es => es.map(e => e.textContent)")
    clocks = page.eval_on_selector_all("#time-axis .tick-clock", "es => es.map(e => e.textContent)")
    first = int(secs[0].removesuffix(" s"))
    begin = datetime.fromisoformat(it["begin_local"])
    assert first >= a and len(secs) >= int(it["end_s"] + 2 - a) and len(clocks) == len(secs)
    assert clocks[0] == (begin + timedelta(seconds=first - it["start_s"])).strftime("%H:%M:%S")
    assert re.match(r"1 - \d\.\de-\d+ \(logit|0\.\d{4}", page.inner_text("#i-score"))
    shots = os.environ.get("HOOTWATCH_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / "review-item.png"))
    page.check("#zoom")  # the owl's band alone
    page.wait_for_function("document.getElementById('spec').src.includes('view=band') && "
                           "document.getElementById('spec').complete")
    assert page.eval_on_selector_all("#freq-axis .tick", "es => es.map(e => e.textContent)")[0] == "0.2 kHz"
    page.mouse.click(box["x"] + 3 * pps, box["y"] + 20)  # play from 3 s into the clip: the playhead is there
    page.wait_for_function(f"document.getElementById('playhead').getBoundingClientRect().x >= {box['x'] + 3 * pps - 2}",
                           timeout=15000)
    x = page.eval_on_selector("#playhead", "e => e.getBoundingClientRect().x")
    assert x - box["x"] <= 4 * pps and not page.eval_on_selector("#audio", "e => e.paused")


def test_auto_repeat_labels_one_item(open_page, served):
    page = open_page()
    for _ in range(6):  # holding y: the first keydown, then repeats (event.repeat) as the keyboard sends them
        page.keyboard.down("y")
        time.sleep(0.1)
    page.keyboard.up("y")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved: owl for ')")
    page.wait_for_timeout(300)
    assert [lab for *_, lab, _ in _labels(served[0])] == ["owl"]
    assert page.inner_text("#progress").startswith("1 / 3 reviewed")


def test_holding_enter_after_a_mouse_click_labels_nothing_more(open_page, served):
    """chromium turns a held Enter into clicks on the focused button: only the mouse's click is a verdict."""
    page = open_page()
    page.click("#b-not")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved: not_owl for ')")
    page.wait_for_selector(ACCEPTING)
    page.wait_for_timeout(300)  # past the item's SEEN_MS: a repeated click would now be taken
    for _ in range(6):
        page.keyboard.down("Enter")
        time.sleep(0.1)
    page.keyboard.up("Enter")
    page.wait_for_timeout(400)
    assert [lab for *_, lab, _ in _labels(served[0])] == ["not_owl"]
    assert page.get_attribute("body", "data-item") == "1"


def _until(page, done, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(20)


def test_a_failed_load_says_why_and_a_queue_change_mid_save_or_mid_load_leaves_no_stale_state(open_page, served):
    page = open_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.fill("#min_score", "")  # the server refuses it (422): the status line says so
    page.click("#reload")
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "min_score" in _status(page)
    page.fill("#min_score", "0")
    page.locator("#min_score").blur()  # keys typed in a field are no verdicts
    page.wait_for_selector(ACCEPTING)
    held = []  # a label save held in flight while the queue changes to an empty one
    page.route("**/api/labels", lambda route: held.append(route))
    page.keyboard.press("y")
    _until(page, lambda: held)
    page.select_option("#queue", "search")
    page.wait_for_function("state.items.length === 0")
    held.pop().continue_()
    page.wait_for_function("!state.busy")
    assert page.evaluate("state.undo.length") == 0 and errors == []  # the old queue's step is not undone here
    page.keyboard.press("ArrowLeft")
    page.wait_for_timeout(300)
    assert [lab for *_, lab, _ in _labels(served[0])] == ["owl"]
    spectrograms = []  # a spectrogram of the old queue that loads after the queue has emptied
    page.route("**/api/spectrogram.png*", lambda route: spectrograms.append(route))
    page.select_option("#queue", "detections")
    _until(page, lambda: spectrograms)
    page.select_option("#queue", "search")
    page.wait_for_function("state.items.length === 0")
    for route in spectrograms:
        route.continue_()
    page.wait_for_timeout(300)
    assert errors == []


def test_a_verdict_before_the_item_has_loaded_is_refused(open_page, served):
    held, holding = [], [True]  # the spectrogram requests, held back until the test lets them go
    out, url, browser = served  # (open_page emptied the labels; the route must be set before the page loads)
    ctx = browser.new_context()
    ctx.add_init_script("localStorage.setItem('hootwatch.reviewer', 'tester')")
    try:
        page = ctx.new_page()
        page.route("**/api/spectrogram.png*", lambda route: held.append(route) if holding[0] else route.continue_())
        page.goto(url)
        page.wait_for_selector("body[data-loaded='1']")
        page.keyboard.press("y")
        assert page.inner_text("#hint") == "still loading: wait for the spectrogram and the audio"
        assert _labels(out) == [] and page.get_attribute("body", "data-item") == "0"
        holding[0] = False
        for route in held:
            route.continue_()
        page.wait_for_selector(ACCEPTING)
        page.keyboard.press("y")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('saved: owl for ')")
        assert len(_labels(out)) == 1
    finally:
        ctx.close()


def test_y_then_n_30_ms_apart_labels_one_item_and_the_confirmation_names_it(open_page, served):
    page = open_page()
    it = page.evaluate("state.items[state.i]")
    # dispatched in the page, so they are 30 ms apart there whatever the load on the machine running the test
    page.evaluate("""() => new Promise((done) => {
        const press = (key) => document.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true }));
        press("y");
        setTimeout(() => { press("n"); done(); }, 30);
    })""")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved: owl for ')")
    page.wait_for_timeout(400)
    assert [lab for *_, lab, _ in _labels(served[0])] == ["owl"]
    t = [datetime.fromisoformat(it["begin_local"]) + timedelta(seconds=d) for d in (0, it["end_s"] - it["start_s"])]
    name = it["file"].rsplit("/", 1)[-1]
    assert _status(page) == f"saved: owl for {name} {t[0]:%H:%M:%S}-{t[1]:%H:%M:%S}"
    assert page.get_attribute("body", "data-item") == "1"


def test_the_reviewer_is_asked_once_and_remembered(open_page, served):
    page = open_page(reviewer=None, wait=False)
    page.wait_for_selector("#who[open]")
    page.fill("#who-name", "Kim")
    page.keyboard.press("Enter")
    page.wait_for_selector(ACCEPTING)
    page.keyboard.press("u")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved: unsure for ')")
    page.reload()
    page.wait_for_selector(ACCEPTING)
    assert not page.eval_on_selector("#who", "e => e.open") and page.input_value("#reviewer") == "Kim"
    assert [(lab, who) for *_, lab, who in _labels(served[0])] == [("unsure", "Kim")]


def _saved(page, what: str) -> None:
    page.wait_for_function(f"document.getElementById('status').textContent.startsWith({what!r})")
    page.wait_for_selector(ACCEPTING)


def test_label_with_keys_undo_reload_and_the_labels_are_in_sqlite(open_page, served):
    out = served[0]
    page = open_page()
    assert page.inner_text("#progress").startswith("0 / 3 reviewed")
    first_file = page.inner_text("#i-file")
    assert page.inner_text("#i-recorder") in ("A", "B") and "2024-01-01 10:00" in page.inner_text("#i-time")
    page.keyboard.press("y")
    _saved(page, "saved: owl for ")
    page.keyboard.press("n")
    _saved(page, "saved: not_owl for ")
    page.keyboard.press("ArrowLeft")  # undo the "not owl"
    _saved(page, "label removed for ")
    assert page.get_attribute("body", "data-item") == "1"
    page.keyboard.press("u")
    _saved(page, "saved: unsure for ")
    assert page.inner_text("#progress").startswith("2 / 3 reviewed; 1 owl, 0 not owl")
    page.reload()
    page.wait_for_selector(ACCEPTING)
    assert page.inner_text("#progress").startswith("2 / 3 reviewed; 1 owl, 0 not owl")
    assert page.get_attribute("body", "data-item") == "2"  # opens at the first item not yet reviewed
    page.click("#b-owl")  # the buttons do what the keys do
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved: owl for ')")
    assert page.inner_text("#empty").startswith("End of the queue")
    page.click("#calibration summary")  # 2 reviewed detections: the panel says they are too few to trust
    page.wait_for_selector("#cal-few:not([hidden])")
    assert "Too few labels to trust" in page.inner_text("#cal-few") and "(at least 30," in page.inner_text("#cal-few")
    history = [(lab, who) for _, _, lab, who in _labels(out)]
    assert history == [("owl", "tester"), ("not_owl", "tester"), ("", "tester"), ("unsure", "tester"),
                       ("owl", "tester")]
    con = sqlite3.connect(out / "detections.sqlite")
    current = con.execute("SELECT file, label FROM labels l WHERE id = (SELECT MAX(id) FROM labels m"
                          " WHERE m.file_key = l.file_key AND m.start_ms = l.start_ms AND m.end_ms = l.end_ms)"
                          " ORDER BY id").fetchall()
    con.close()
    assert [lab for _, lab in current] == ["owl", "unsure", "owl"] and current[0][0] == first_file


def test_more_like_this_opens_the_windows_most_like_the_item_seen_as_the_queue(open_page):
    page = open_page()
    seen = page.evaluate("state.items[state.i]")
    page.keyboard.press("m")
    page.wait_for_function("document.getElementById('q-desc').textContent.includes('like')")
    assert page.evaluate("state.i") == 0 and page.evaluate("state.items.length") > 0
    like = page.evaluate("state.items")
    assert all(x["similarity"] is not None for x in like)
    assert [x["similarity"] for x in like] == sorted((x["similarity"] for x in like), reverse=True)
    assert not any(x["file_key"] == seen["file_key"] and x["start_s"] == seen["start_s"] for x in like)
    page.wait_for_selector(ACCEPTING)  # the first of them is shown and takes a verdict
    assert page.inner_text("#i-file") == like[0]["file"]


def test_a_verdict_on_a_conflict_settles_it_everywhere(open_page, served):
    import httpx

    from hootwatch.edge.review.queues import Queues
    from hootwatch.edge.store.database import DetectionStore

    out, url, _ = served
    page = open_page()
    it = page.evaluate("state.items[state.i]")
    h = page_headers(url)
    for start, end, label in ((it["start_s"], it["end_s"], "owl"), (it["start_s"] + 2.5, it["end_s"], "not_owl")):
        r = httpx.post(url + "api/labels", headers=h, timeout=30,
                       json={"file_key": it["file_key"], "start_s": start, "end_s": end, "label": label})
        assert r.status_code == 200, r.text
    page.reload()
    page.wait_for_selector(ACCEPTING)
    page.evaluate(f"state.i = state.items.findIndex((x) => x.file_key === {it['file_key']!r} && "
                  f"x.start_s === {it['start_s']}); show()")
    page.wait_for_selector(ACCEPTING)
    assert page.inner_text("#i-label").startswith("conflict: ")
    page.keyboard.press("y")  # its own span already says owl: only clearing the other label settles it
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved: owl')")
    with DetectionStore(out / "detections.sqlite") as s:
        [item] = [x for x in Queues(s, s.latest_run()).detections("score")
                  if (x.file_key, x.start_s) == (it["file_key"], it["start_s"])]
    assert item.label == "owl" and item.conflict == ()
