"""SIGTERM/SIGINT -> one stop event, installed as the very first thing `hootwatch run` does.

systemd sends SIGTERM whenever it likes, also while Python is still importing numpy or ONNX Runtime is loading
the model. Without a handler that signal kills the process (exit 143) before the daemon has a chance to say so;
with this one, a stop asked for during start-up makes `run` return 0 before the model is loaded.
Kept free of heavy imports (logging included) so that commands/main.py can install it at its very top, before
its own imports; the handler only sets the event and notes the signal's name (a handler that logged, or
imported, could run in the middle of the import of that very module), and the daemon says it when it stops.
What runs before that, the interpreter's own start-up (about 20 ms on an idle desktop, more on a Pi or under
load), is a floor no handler can cover: a SIGTERM in it exits 143 (bench/sigterm_start.py measures it).
"""

from __future__ import annotations

import signal
import threading

STOP = threading.Event()  # the process-wide stop request (the daemon's stop event when run from the CLI)
RECEIVED: list[str] = []  # the names of the signals received, for the daemon's log


def install(stop: threading.Event = STOP) -> bool:
    """Route SIGTERM and SIGINT to `stop.set()`; False (nothing done) outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False

    def handler(signum, frame):
        stop.set()
        RECEIVED[:] = [signal.Signals(signum).name]  # the last one (a signal storm grows nothing)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return True


def install_for(argv: list[str]) -> bool:
    """`install()` when `argv` (the arguments after the program) is the `run` command; whether it did."""
    return next((a for a in argv if not a.startswith("-")), None) == "run" and install()
