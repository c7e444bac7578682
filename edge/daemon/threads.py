"""The daemon's worker threads (folder watcher, scanning loop, microphone) do not die silently: what ends one is
logged with its traceback and kept, and the daemon's main loop, seeing the thread dead, stops and says why."""

from __future__ import annotations

import logging
import threading
from typing import Callable


class Worker:
    """`target()` in a daemon thread named `name`. An exception that ends it is logged on `log` as
    '<what> stopped' (with the traceback) and kept in `error`."""

    def __init__(self, target: Callable[[], None], name: str, what: str, log: logging.Logger) -> None:
        self.target, self.what, self.log = target, what, log
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.target()
        except BaseException as exc:
            self.error = exc
            self.log.exception("%s stopped", self.what)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def death(what: str, worker) -> str | None:
    """'<what> thread died (<error>)' or '<what> thread ended' for a worker (anything with `is_alive()` and
    `error`) that is no longer running; None while it runs."""
    if worker.is_alive():
        return None
    exc = worker.error
    return f"{what} thread died ({type(exc).__name__}: {exc})" if exc else f"{what} thread ended"
