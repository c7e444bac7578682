"""Helpers shared by the daemon tests."""

from __future__ import annotations

import threading
import time


def run_daemon_until(daemon, until, timeout: float = 30) -> None:
    """Run `daemon` in a thread until `until()` is true (or `timeout` s), then stop it and check it stopped."""
    t = threading.Thread(target=daemon.run, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        time.sleep(0.1)
    daemon.stop.set()
    t.join(30)
    assert not t.is_alive()
