"""Helpers shared by the daemon tests."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path


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


def kept(source: type) -> type:
    """A subclass of a daemon source class (Intake, LiveSource) whose instances are kept in its `made` list, for
    a test to look at what the daemon made: Daemon(cfg, intake=kept(Intake))."""
    made: list = []

    class Kept(source):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)
    Kept.made = made
    return Kept


def write_daemon_config(tmp: Path, bundle: Path, incoming: Path, out: Path, settle_s: float = 0.3,
                        health: dict | None = None, **folder) -> Path:
    """TMP/hootwatch.toml for `hootwatch run` on a watched folder (the folder settings given as keywords)."""
    def lines(d: dict) -> str:
        return "".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items())
    cfg = tmp / "hootwatch.toml"
    cfg.write_text(f"""
[model]
bundle = "{bundle}"
threads = 1
[sources.folder]
path = "{incoming}"
settle_s = {settle_s}
poll_interval_s = 0.5
{lines(folder)}
[output]
dir = "{out}"
timezone = "Australia/Sydney"
[health]
status_every_s = 0.5
{lines(health or {})}""")
    return cfg
