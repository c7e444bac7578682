"""How tests talk to the review app as its page does: `review_client` (FastAPI's test client, no network) and
`review_server` (`hootwatch review` as a real subprocess on 127.0.0.1 and a free port, for the kill -9 and browser
tests) with `page_headers` (the CSRF header the page sends, read from the page the server served)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

CSRF_HEADER = "X-Hootwatch-Csrf"


def review_client(app, csrf: bool = True, **kw):
    """A TestClient of `app` that reaches it by a loopback name and sends the CSRF token the page would send
    (`csrf=False`: none, as a page of another site). Open one per app with `with` (it closes the app's store)."""
    from fastapi.testclient import TestClient
    headers = {CSRF_HEADER: app.state.csrf_token} if csrf else {}
    return TestClient(app, base_url="http://127.0.0.1:8765", headers=headers | kw.pop("headers", {}), **kw)


def page_headers(url: str, **params) -> dict:
    """The header a state-changing request from the page at `url` carries (its token is in the page's <meta>)."""
    import httpx
    html = httpx.get(url, params=params, timeout=30).text
    m = re.search(r'<meta name="hootwatch-csrf" content="([^"]+)"', html)
    assert m, "the page carries no CSRF token"
    return {CSRF_HEADER: m.group(1)}


@contextmanager
def review_server(out: Path, *extra: str):
    """Yields (process, base URL); the server is stopped afterwards (if the test has not killed it)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "hootwatch.edge.commands.main", "review", str(out), "--port", "0",
                             "--host", "127.0.0.1", "--no-browser", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline, url, seen = time.monotonic() + 60, None, []
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "review server did not start:\n" + "".join(seen)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.stdout.close()
