"""`hootwatch backup OUTDIR DEST`: a whole copy of OUTDIR's store (detections, ledger, window scores, labels)
into the folder DEST, best on another disk, as DEST/detections-<UTC time>.sqlite; the oldest (by mtime) beyond
--keep are removed. DEST must exist: it is never created, so that an unmounted disk is not filled on the card
beneath it (make it once with mkdir -p); a DEST on the store's own disk is warned about. Safe while the daemon
runs (SQLite's online backup API); a kill or power cut mid-way leaves the earlier backups intact. The daemon
takes them by itself with `[output] backup_dir` (docs/field-guide.md)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("backup", help="copy an output folder's store to another folder or disk",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example: hootwatch backup /var/lib/hootwatch/detections /media/usb/hootwatch\n"
                                     "bring one back with `hootwatch restore BACKUP OUTDIR`")
    p.add_argument("out", metavar="OUTDIR", help="the output folder (holds detections.sqlite)")
    p.add_argument("dest", metavar="DEST", help="the folder to put the backup in (must exist)")
    p.add_argument("--keep", type=int, default=7, metavar="N", help="backups kept in DEST (default 7)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from hootwatch.edge.core.errors import ConfigError
    from hootwatch.edge.store.backup import backup_store
    from hootwatch.edge.store.database import STORE_NAME

    if args.keep < 1:
        raise ConfigError(f"--keep {args.keep}: must be at least 1", "give --keep 1 or more")
    store = Path(args.out) / STORE_NAME
    if not store.is_file():
        raise ConfigError(f"{args.out}: no {STORE_NAME} here", "pass the output folder of `hootwatch scan` / `run`")
    b = backup_store(store, args.dest, keep=args.keep)
    print(f"backed up {store} to {b.path} ({b.bytes / 1e6:.1f} MB in {b.seconds:.1f} s)")
    if b.same_disk:
        print(f"warning: {args.dest} is on the same disk as the store: this backup is lost with that disk; "
              f"put it on another disk (a USB stick)", file=sys.stderr)
    return 0
