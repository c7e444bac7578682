"""`hootwatch restore BACKUP OUTDIR`: put a backup made by `hootwatch backup` (or the daemon's backup_dir) back
as OUTDIR's store. Stop the daemon first (it refuses while the store is in use). The backup is copied in beside
the store first, then the store it replaces is kept beside it as detections.replaced-<UTC time>.sqlite, and what
that store knew beyond the backup is read back into the restored one, as the daemon's recovery does: labels given
since, microphone detections, and the rows of recordings deleted since. Recordings scanned after the backup that
are still on disk are listed: the daemon scans those in its watched folder again by itself."""

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
    from hootwatch.edge.store.backup import backups
    from hootwatch.edge.store.integrity import restore

    src = Path(args.backup)
    if src.is_dir():
        found = backups(src)
        if not found:
            raise ConfigError(f"{src}: no backups here (detections-*.sqlite)", "give the backup folder or a file in it")
        src = found[0]
    recovery = restore(src, args.out)
    print(f"{args.out}: {recovery.summary()}" if recovery.damaged else f"restored {src} into {args.out}")
    for path in recovery.rescan:
        print(f"  to scan again: {path}")
    return 0
