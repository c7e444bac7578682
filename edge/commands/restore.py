"""`hootwatch restore BACKUP OUTDIR`: put a backup made by `hootwatch backup` (or the daemon's backup_dir) back
as OUTDIR's store. Stop the daemon first. The store it replaces is kept beside it as
detections.replaced-<UTC time>.sqlite; recordings scanned after the backup are scanned again when they are still
in the watched folder (docs/field-guide.md says what to do with archived or deleted ones)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("restore", help="bring back a backup of the store into an output folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example: systemctl stop hootwatch; hootwatch restore "
                                     "/media/usb/hootwatch/detections-20261201T030000.000000Z.sqlite "
                                     "/var/lib/hootwatch/detections; systemctl start hootwatch")
    p.add_argument("backup", metavar="BACKUP", help="a backup file (detections-*.sqlite), or a backup folder: its "
                                                    "newest")
    p.add_argument("out", metavar="OUTDIR", help="the output folder whose store it replaces")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hootwatch.edge.core.errors import ConfigError
    from hootwatch.edge.store.backup import backups, restore_store

    src = Path(args.backup)
    if src.is_dir():
        found = backups(src)
        if not found:
            raise ConfigError(f"{src}: no backups here (detections-*.sqlite)", "give the backup folder or a file in it")
        src = found[0]
    kept = restore_store(src, args.out)
    print(f"restored {src} into {args.out}" + (f"; the store it replaced is kept as {kept}" if kept else ""))
    return 0
