"""Faults for the cluster tests, run inside Dask worker processes.

`KillOn(part)`: a worker plugin that kill -9s its own worker process when it starts decoding a file whose name
contains `part` (a decoder that crashes on that file); with `marker`, only the first time (the marker file is
created atomically by the worker that dies).

As a Dask preload (`distributed.worker.preload`), this file slows every decode by HOOTWATCH_TEST_SLOW_S
seconds, so that a test can kill the driver in the middle of a run.
"""

from __future__ import annotations

import os
import signal
import time

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # the tests that use it skip without distributed
    WorkerPlugin = object

# modules that decode with iter_blocks
PATCHED = ("hootwatch.edge.contract.score_loop", "hootwatch.edge.cluster.worker")


def _wrap_iter_blocks(before):
    import importlib

    for name in PATCHED:
        mod = importlib.import_module(name)
        orig = getattr(mod, "_test_orig_iter_blocks", mod.iter_blocks)

        def wrapped(path, *a, _orig=orig, **kw):
            before(str(path))
            yield from _orig(path, *a, **kw)

        mod._test_orig_iter_blocks = orig
        mod.iter_blocks = wrapped


class KillOn(WorkerPlugin):
    name = "test-kill-on"

    def __init__(self, part: str, marker: str | None = None) -> None:
        self.part, self.marker = part, marker

    def setup(self, worker) -> None:
        def before(path: str) -> None:
            if self.part not in os.path.basename(path):
                return
            if self.marker is not None:
                try:
                    os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
            os.kill(os.getpid(), signal.SIGKILL)

        _wrap_iter_blocks(before)


def dask_setup(worker) -> None:
    delay = float(os.environ.get("HOOTWATCH_TEST_SLOW_S", "0"))
    _wrap_iter_blocks(lambda path: time.sleep(delay))
