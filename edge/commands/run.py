"""`hootwatch run --config hootwatch.toml`: the field daemon (watched folder, microphone, schedule, systemd)."""

from __future__ import annotations

import argparse

from hootwatch.edge.daemon.config import load_config

EXIT_CODES = """exit status:
  0   stopped by SIGTERM or SIGINT (also during start-up, from the first line of hootwatch's own code on)
  143 killed by a SIGTERM in the Python interpreter's own start-up, before any hootwatch code runs (the first
      ~20 ms on an idle machine, 50 ms and more under load): no handler can be there yet; systemd counts it as
      a clean stop
  1   a worker thread died: status.json says 'failed' and why; systemd restarts it
  2   a config, bundle or machine problem (`hootwatch check-config FILE` lists them): not restarted
  4   the disk holding the output folder is full at start: free space; systemd starts it again
  5   the store failed its integrity check (at start: set aside, replaced by the newest backup, and the daemon
      went on; daily: stopped, and the next start does that): status.json says what was done"""


def register(sub) -> None:
    p = sub.add_parser("run", help="run the field daemon (watched folder and/or microphone) until stopped",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=EXIT_CODES)
    p.add_argument("--config", "-c", required=True, metavar="FILE",
                   help="daemon configuration (TOML); `hootwatch check-config --example` prints one")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from hootwatch.edge.daemon import signals

    cfg = load_config(args.config)
    if signals.STOP.is_set():  # stopped while starting: no model to load, nothing to drain
        return 0
    from hootwatch.edge.daemon.service import Daemon

    return Daemon(cfg, stop=signals.STOP).run()
