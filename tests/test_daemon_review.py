"""The daemon serves the review app when its [review] section says so (off by default, loopback by default)."""

import socket
import sqlite3

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from hootwatch.edge.daemon.config import config_from_dict  # noqa: E402
from hootwatch.edge.daemon.service import Daemon  # noqa: E402
from hootwatch.edge.core.errors import ConfigError  # noqa: E402

from daemon_helpers import run_daemon_until  # noqa: E402
from review_server import page_headers  # noqa: E402
from tiny_bundles import tone_bundle, write_tone  # noqa: E402


def _config(tmp_path, bundle, **review):
    return config_from_dict({
        "model": {"bundle": str(bundle), "threads": 1},
        "sources": {"folder": {"path": str(tmp_path / "in"), "settle_s": 0.0, "poll_interval_s": 0.5}},
        "output": {"dir": str(tmp_path / "out"), "timezone": "UTC"},
        "health": {"status_every_s": 0.5, "watchdog": False},
        **({"review": review} if review else {}),
    })


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_review_section_is_off_by_default_and_needs_a_token_off_loopback(tmp_path):
    bundle = tone_bundle(tmp_path / "b", sample_rate=8000)
    cfg = _config(tmp_path, bundle)
    assert not cfg.review.enabled and cfg.review.host == "127.0.0.1"
    with pytest.raises(ConfigError, match="review.token"):
        _config(tmp_path, bundle, enabled=True, host="0.0.0.0")
    assert _config(tmp_path, bundle, enabled=True, host="0.0.0.0", token="x" * 20).review.token == "x" * 20


def test_daemon_serves_the_review_app_over_its_store(tmp_path):
    bundle = tone_bundle(tmp_path / "b", sample_rate=8000)
    write_tone(tmp_path / "in" / "20240101_100000.wav", 20, 8000, tones=[(10, 13)])
    port = _free_port()
    daemon = Daemon(_config(tmp_path, bundle, enabled=True, port=port))
    url = f"http://127.0.0.1:{port}/"
    saved = {}

    def labelled() -> bool:
        if daemon.health.files_done < 1:
            return False
        try:
            items = httpx.get(url + "api/queue", timeout=5).json()["items"]
        except httpx.HTTPError:
            return False
        if not items:
            return False
        it = items[0]
        r = httpx.post(url + "api/labels", json={k: it[k] for k in ("file_key", "start_s", "end_s")} | {"label": "owl"},
                       headers=page_headers(url), timeout=5)
        saved.update(r.json())
        return True

    run_daemon_until(daemon, labelled)
    assert saved.get("saved") is True
    con = sqlite3.connect(tmp_path / "out" / "detections.sqlite")
    assert con.execute("SELECT label FROM labels").fetchall() == [("owl",)]
    with pytest.raises(httpx.HTTPError):  # stopped with the daemon
        httpx.get(url + "api/health", timeout=2)
