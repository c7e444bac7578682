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


def test_entries_that_cannot_be_scanned_are_counted_as_odd_not_already_done_and_scan_exits_1(tmp_path, capsys):
    import os

    from hootwatch.edge.commands.main import main
    from tiny_bundles import tone_bundle, write_tone

    bundle = tone_bundle(tmp_path / "b")
    rec = tmp_path / "rec"
    write_tone(rec / "20240101_220000.wav", 20, 8000, tones=[(10, 13)])
    os.rename(write_tone(rec / "tmp.wav", 20, 8000, seed=2), rec / os.fsdecode(b"20240102_\xff.wav"))
    os.symlink("gone.wav", rec / "dangling.wav")
    os.symlink("loop.wav", rec / "loop.wav")
    os.symlink("/dev/zero", rec / "device.wav")
    args = ["scan", str(rec), "--model", str(bundle), "--out", str(tmp_path / "out"), "--quiet"]
    for already in (0, 1):  # the second run: the good file is already done, the odd entries are odd again
        assert main(args) == 1  # "0: every file was scanned" would be untrue
        rows = dict(line.strip("│ ").split("│")[:2] for line in capsys.readouterr().out.splitlines()
                    if line.count("│") >= 2)
        rows = {k.strip(): v.strip() for k, v in rows.items()}
        assert rows["files already done (skipped)"] == str(already)
        assert rows["odd entries skipped (not recordings)"] == "4"
        assert rows["files scanned"] == str(1 - already)
