"""`hootwatch labels OUTDIR --import TABLE | --export TABLE`: labels made elsewhere in, the store's labels out.

TABLE is a CSV `file,start_s,end_s,label`, a Raven selection table (`*.selections.txt`) or Audacity labels
(`*.txt`, or a folder on export: one track per recording). `file` names a recording the store has scanned, by
path or by name. Colleagues' annotations and the review app's labels are one set.
"""

from __future__ import annotations

import argparse

from hootwatch.edge.core.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser("labels", help="import or export labels (CSV, Raven, Audacity)",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch labels results/ --import colleague.selections.txt")
    p.add_argument("out", metavar="OUTDIR", help="the scan's output folder (holds detections.sqlite)")
    p.add_argument("--import", dest="import_", action="append", default=[], metavar="TABLE",
                   help="add the labels of this table (repeatable)")
    p.add_argument("--export", action="append", default=[], metavar="TABLE", help="write all labels to this table")
    p.add_argument("--reviewer", default="", metavar="NAME", help="who made the imported labels")
    p.add_argument("--default-label", default="", metavar="LABEL", help="label of rows whose label cell is empty")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hootwatch.edge.review.label_io import export_table, import_table
    from hootwatch.edge.store.database import open_store
    from hootwatch.edge.store.labels import LabelBook

    if not args.import_ and not args.export:
        raise ConfigError("nothing to do", "pass --import TABLE and/or --export TABLE")
    with open_store(args.out) as store:
        book = LabelBook(store)
        for t in args.import_:
            n = import_table(book, t, reviewer=args.reviewer, default_label=args.default_label)
            print(f"{t}: {n} label(s) added ({book.count()} in the store)")
        for t in args.export:
            files = export_table(book, t)
            print(f"{book.count()} label(s) written to {', '.join(map(str, files)) or t}")
    return 0
