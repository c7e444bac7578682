"""`hootwatch review` as a real process: an acknowledged label survives kill -9 of the server."""

import signal
import sqlite3

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402

from review_helpers import scanned_store  # noqa: E402
from review_server import page_headers, review_server  # noqa: E402


def test_kill_9_after_an_acknowledged_label_loses_nothing(tmp_path):
    _, _, out = scanned_store(tmp_path)
    with review_server(out) as (proc, url):
        items = httpx.get(url + "api/queue", timeout=30).json()["items"]
        headers = page_headers(url)  # what the page sends with a label
        acked = []
        for it, label in zip(items, ("owl", "not_owl", "unsure")):
            r = httpx.post(url + "api/labels", json={"file_key": it["file_key"], "start_s": it["start_s"],
                                                     "end_s": it["end_s"], "label": label}, headers=headers,
                           timeout=30)
            assert r.json()["saved"] is True
            acked.append((r.json()["id"], label))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    con = sqlite3.connect(out / "detections.sqlite")
    assert con.execute("SELECT id, label FROM labels ORDER BY id").fetchall() == acked


def test_non_loopback_host_without_a_token_is_refused(tmp_path):
    import subprocess
    import sys
    _, _, out = scanned_store(tmp_path)
    r = subprocess.run([sys.executable, "-m", "hootwatch.edge.commands.main", "review", str(out), "--host", "0.0.0.0",
                        "--token", "", "--no-browser"], capture_output=True, text=True, timeout=60)  # refused before binding
    assert r.returncode == 2 and "without a token" in r.stderr
