"""Faults found by fault injection on the field runtime (issue 24, item 6): clips on a small disk, entries that
cannot be scanned, and a SIGTERM in `run`'s first milliseconds."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_run_installs_its_sigterm_handler_before_its_own_imports():
    # every import after the program starts is checked: from `argparse` on (main.py's own imports, the errors
    # module, the rest of hootwatch) a SIGTERM must find the handler in place
    code = textwrap.dedent("""
        import signal, sys
        seen = {}
        class Watch:
            def find_spec(self, name, path=None, target=None):
                seen.setdefault(name, signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None))
        sys.meta_path.insert(0, Watch())
        sys.argv = ["/opt/venv/bin/hootwatch", "run", "--config", "x.toml"]
        import hootwatch.edge.commands.main
        late = [m for m in ("argparse", "logging", "hootwatch.edge.core.errors") if not seen.get(m, True)]
        print("late:", late, "installed:", signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "late: [] installed: True"
    # another program importing the module (a test runner, `python -m`) gets no handler
    code = "import signal, hootwatch.edge.commands.main; print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60).stdout.strip() == "True"
