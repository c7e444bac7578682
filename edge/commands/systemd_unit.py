"""`hootwatch systemd-unit`: print the packaged systemd unit, its ExecStart pointed at this installation.

The unit and the example config travel inside the package (hootwatch.systemd), so a device that installed
hootwatch with pip has them without a copy of the repository:

    hootwatch systemd-unit > /etc/systemd/system/hootwatch.service
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib.resources import files
from pathlib import Path

PACKAGED_EXEC = "/opt/hootwatch/venv/bin/hootwatch"
PACKAGED_CONFIG = "/etc/hootwatch/hootwatch.toml"


def packaged_text(name: str) -> str:
    """A file shipped in hootwatch.systemd ('hootwatch.service', 'hootwatch.toml.example')."""
    return files("hootwatch.systemd").joinpath(name).read_text(encoding="utf-8")


def this_hootwatch() -> str:
    """The hootwatch script of the running installation (beside its python), else the one on PATH."""
    beside = Path(sys.executable).with_name("hootwatch")
    if beside.is_file():
        return str(beside.absolute())
    return shutil.which("hootwatch") or PACKAGED_EXEC


def unit_text(executable: str, config: str) -> str:
    text = packaged_text("hootwatch.service")
    return text.replace(PACKAGED_EXEC, executable).replace(PACKAGED_CONFIG, config)


def register(sub) -> None:
    p = sub.add_parser("systemd-unit", help="print the systemd unit for this installation",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=PACKAGED_CONFIG, help=f"the daemon config the unit runs (default {PACKAGED_CONFIG})")
    p.add_argument("--executable", help="the hootwatch to run (default: this installation's)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    sys.stdout.write(unit_text(args.executable or this_hootwatch(), str(Path(args.config).absolute())))
    return 0
