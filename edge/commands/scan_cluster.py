"""`hootwatch scan ... --cluster SPEC`: the scan command's call into the cluster scan (not a command of its own;
commands/scan.py is otherwise the same with or without it: same progress bar, same summary, same exit codes)."""

from __future__ import annotations

from pathlib import Path


def scan_with_cluster(args, out: Path, settings, progress, console):
    """Returns (summary, export paths, the bundle's manifest), as the scan command needs them for its summary."""
    from hootwatch.edge.cluster import ClusterSettings, scan_on_cluster

    cs = ClusterSettings.from_config(args.cluster or None, args.threads)

    def on_connect(conn) -> None:
        console.print(f"[bold]cluster[/]: {conn.description}" + (f"; dashboard {conn.dashboard}" if conn.dashboard
                                                                  else ""))

    summary, exports, report = scan_on_cluster(args.paths, args.model, out, settings, cs, progress,
                                               on_connect=on_connect, exhaustive=args.exhaustive)
    n = report.chunked_files
    console.print(f"[bold]cluster[/]: {report.units} units of work sent ({n} long file{'' if n == 1 else 's'} cut "
                  f"into chunks of {cs.chunk_s:g} s)")
    return summary, exports, report.manifest
