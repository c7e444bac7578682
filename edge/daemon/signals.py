"""SIGTERM/SIGINT -> one stop event, installed as the very first thing `hootwatch run` does.

systemd sends SIGTERM whenever it likes, also while Python is still importing numpy or ONNX Runtime is loading
the model. Without a handler that signal kills the process (exit 143) before the daemon has a chance to say so;
with this one, a stop asked for during start-up makes `run` return 0 before the model is loaded.
Kept free of heavy imports so it can be installed before them.
"""

from __future__ import annotations

import logging
import signal
import threading

STOP = threading.Event()  # the process-wide stop request (the daemon's stop event when run from the CLI)

log = logging.getLogger("hootwatch.daemon")


def install(stop: threading.Event = STOP) -> bool:
    """Route SIGTERM and SIGINT to `stop.set()`; False (nothing done) outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False

    def handler(signum, frame):
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return True
