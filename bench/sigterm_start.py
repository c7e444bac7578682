"""Benchmark: `hootwatch run` stopped by SIGTERM in its first milliseconds (issue 24, item 6).

systemd may send SIGTERM at any moment, also while Python is still starting. Each trial starts
`hootwatch run --config X` and sends SIGTERM after a random delay in [0, --max-ms) ms; it prints how many trials
ended 143 (killed by the signal: no handler yet) and how many 0 (the handler saw it and `run` stopped cleanly),
and the longest delay that still gave 143 (the window before the handler is installed).

    python bench/sigterm_start.py --trials 30 --max-ms 50
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_bundles import tone_bundle  # noqa: E402


FLOOR = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(0.3)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--max-ms", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--floor", action="store_true",
                    help="time a bare interpreter instead, whose first statement installs the handler: the floor")
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("hootwatch")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = tone_bundle(tmp / "bundle", sample_rate=8000)
        (tmp / "in").mkdir()
        cfg = tmp / "h.toml"
        cfg.write_text(f'[model]\nbundle = "{bundle}"\n[sources.folder]\npath = "{tmp / "in"}"\n'
                       f'[output]\ndir = "{tmp / "out"}"\ntimezone = "UTC"\n[health]\nwatchdog = false\n')
        codes, killed_at = {}, []
        for _ in range(args.trials):
            delay = rng.uniform(0, args.max_ms) / 1000
            cmd = ([sys.executable, "-c", FLOOR] if args.floor else [str(exe), "run", "--config", str(cfg)])
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
            rc = 128 - rc if rc < 0 else rc  # killed by signal N: the shell's 128 + N
            codes[rc] = codes.get(rc, 0) + 1
            if rc == 143:
                killed_at.append(delay * 1000)
    print(f"{args.trials} trials, SIGTERM after 0..{args.max_ms:g} ms: exit statuses {dict(sorted(codes.items()))}")
    if killed_at:
        print(f"exit 143 (no handler yet) up to {max(killed_at):.1f} ms after the start")


if __name__ == "__main__":
    main()
