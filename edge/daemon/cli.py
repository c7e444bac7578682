"""`hootwatch run --config hootwatch.toml`: the field daemon (watched folder, microphone, schedule, systemd)."""

from __future__ import annotations

import argparse

from .config import load_config


def register(sub) -> None:
    p = sub.add_parser("run", help="run the field daemon (watched folder and/or microphone) until stopped",
                       description=__doc__)
    p.add_argument("--config", "-c", required=True, metavar="FILE",
                   help="daemon configuration (TOML); `hootwatch check-config --example` prints one")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from . import signals

    cfg = load_config(args.config)
    if signals.STOP.is_set():  # stopped while starting: no model to load, nothing to drain
        return 0
    from .service import Daemon

    return Daemon(cfg, stop=signals.STOP).run()
