"""`hootwatch review` as a real subprocess on 127.0.0.1 and a free port (for the kill -9 and browser tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


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
