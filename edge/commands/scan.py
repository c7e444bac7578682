"""`hootwatch scan PATH... --model BUNDLE --out OUTDIR`: scan recorder files for owl calls.

Writes OUTDIR/detections.sqlite (the store; re-running skips files already done), OUTDIR/detections.csv,
a Raven selection table and Audacity labels, and with --clips a clip and spectrogram per detection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hootwatch.edge.core.errors import ConfigError, is_disk_full

# exit statuses (also in docs/field-guide.md, Troubleshooting)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_AUDIO, EXIT_DISK_FULL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = """exit status:
  0   every file was scanned (or had been already)
  1   some files could not be scanned, or entries in the folders are no recordings to scan (a name that is not
      UTF-8, a dangling link, a symlink loop, a link to a device): they are listed with the reason; the others'
      results are written
  2   bad arguments, bundle or timezone: nothing was scanned and no output folder was created
  3   nothing to scan: no audio file in the paths given
  4   the disk is full: free space and run the same command again (finished files are kept)
  130 interrupted (Ctrl-C): run the same command again to continue"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "scan", help="scan recordings (files or folders) for owl calls",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: hootwatch scan /media/sdcard --model bundle/ --out results/ --tz Australia/Melbourne\n\n"
               + EXIT_CODES)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="model bundle folder (from `hootwatch export`)")
    p.add_argument("--out", required=True, metavar="OUTDIR", help="folder for the results")
    p.add_argument("--hop", type=float, default=None, metavar="S", help="seconds between windows (default: bundle)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="score for a positive window, 0..1 (default: the bundle's)")
    p.add_argument("--min-hits", type=int, default=None, metavar="K",
                   help="minimum positive windows per detection, counted at the bundle's hop (default: the bundle's)")
    p.add_argument("--tz", default=None, metavar="ZONE",
                   help="recorder timezone, e.g. Australia/Melbourne (needed for Song Meter/Swift names)")
    p.add_argument("--clips", action="store_true", help="also write a padded audio clip + spectrogram per detection")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for the model (default: all)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="windows per model call (default: 1 on the CPU, where larger batches only cost memory; 8 on a GPU)")
    p.add_argument("--exhaustive", action="store_true",
                   help="score every window with the full model, skipping the bundle's cascade first stage (for "
                        "checking; slower). Its rows are a run of their own, so it may go into the same --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cluster", nargs="?", const="", default=None, metavar="SPEC",
                   help="scan on a Dask cluster (needs hootwatch[cluster]): local:N (N worker processes here), "
                        "tcp://HOST:PORT or a scheduler file; without SPEC, hootwatch.cluster.address from the Dask "
                        "config. --threads is then the model threads per worker")
    p.set_defaults(func=run)


def _settings(args):
    from hootwatch.edge.contract.operating_point import OperatingPoint
    from hootwatch.edge.contract.recorder_time import parse_tz
    from hootwatch.edge.scan.engine import ScanSettings
    OperatingPoint(args.threshold, args.min_hits, args.hop)  # the window is the bundle's: the Scanner checks the hop
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be at least 1", "pass e.g. --batch-size 8")
    try:
        parse_tz(args.tz)
    except ValueError:  # an offset beyond +-24 h
        raise ConfigError(f"unknown timezone {args.tz!r}",
                          "use an IANA name such as Australia/Melbourne, or an offset such as +10:00") from None
    return ScanSettings(hop_s=args.hop, threshold=args.threshold, min_hits=args.min_hits, tz=args.tz,
                        batch_size=args.batch_size, clips=args.clips)


class RichProgress:
    """Progress bar in audio hours with the real-time factor."""

    def __init__(self, console, enabled: bool = True) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        self.console = console
        self.bar = Progress(TextColumn("[bold]scan"), BarColumn(), TextColumn("{task.fields[hours]}"),
                            TextColumn("{task.fields[rtf]}"), TimeRemainingColumn(), TextColumn("{task.fields[name]}"),
                            console=console, disable=not enabled, transient=False)
        self.task = None
        self.done_s = 0.0
        self.total_s = 0.0

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def _update(self, name: str | None = None) -> None:
        import time
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        fields = {"hours": f"{self.done_s / 3600:.2f}/{self.total_s / 3600:.2f} h audio",
                  "rtf": f"{self.done_s / elapsed:.0f}x real time"}
        if name is not None:
            fields["name"] = name
        self.bar.update(self.task, completed=self.done_s, **fields)

    # scan.Progress hooks
    def planned(self, files) -> None:
        import time
        self._t0 = time.perf_counter()
        self.total_s = sum(f.info.duration_s for f in files if f.info is not None)
        self.task = self.bar.add_task("scan", total=max(self.total_s, 1e-9), hours="", rtf="", name="")
        self._update("")

    def file_started(self, path, duration_s) -> None:
        self._file_start_done = self.done_s
        self._update(Path(path).name)

    def advance(self, audio_s) -> None:
        self.done_s += audio_s
        self._update()

    def file_finished(self, outcome) -> None:
        if outcome.status == "skipped":
            self.done_s += outcome.audio_s
        self._update()


def summary_table(summary, csv_path: Path, store_path: Path, rule: str | None = None,
                  pass_rate: float | None = None, command: str = "scan", done: str = "files scanned"):
    from rich.table import Table
    t = Table(title=f"hootwatch {command}", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    if rule:
        t.add_row("detection rule", rule)
    t.add_row(done, str(len(summary.done)))
    t.add_row("files already done (skipped)", str(len(summary.skipped)))
    t.add_row("files failed", str(len(summary.failed)))
    t.add_row("odd entries skipped (not recordings)", str(len(summary.odd)))
    t.add_row("audio scanned", f"{summary.audio_s / 3600:.2f} h")
    t.add_row("detections (new files)", str(summary.n_detections))
    t.add_row("speed", f"{summary.realtime_factor:.0f}x real time")
    if pass_rate is not None:
        t.add_row("windows scored by the full model", f"{pass_rate:.1%}" + (" (--exhaustive or a single-stage bundle)"
                                                                             if pass_rate == 1.0 else " (cascade)"))
    t.add_row("detections CSV", str(csv_path))
    t.add_row("database", str(store_path))
    if summary.interrupted:
        t.add_row("[red]interrupted", "re-run the same command to finish; finished files are kept")
    return t


def failed_table(summary):
    from rich.table import Table

    from hootwatch.edge.scan.planning import printable
    t = Table(title="files that could not be scanned")
    t.add_column("file")
    t.add_column("reason")
    for o in summary.failed + summary.odd:
        t.add_row(printable(o.path), o.reason.removeprefix(f"{printable(o.path)}: "))
    return t


def _log_through(console) -> None:
    """Log lines (skipped files, time warnings) above the progress bar instead of through it."""
    import logging

    from rich.logging import RichHandler
    root = logging.getLogger()
    level = root.level
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(RichHandler(console=console, show_path=False, show_time=False))
    root.setLevel(level)


def _any_audio(paths) -> bool:
    """Whether there is anything to scan: a file given by name, or an audio file somewhere in a folder (stops at
    the first; no hashing, so a full card is not read twice)."""
    from hootwatch.edge.contract.audio import is_audio_file

    for p in map(Path, paths):
        if not p.is_dir():
            return True
        try:
            if any(is_audio_file(f) for f in p.rglob("*")):
                return True
        except OSError:  # an unreadable sub-folder: let the scan say which
            return True
    return False


def _disk_full(out: Path, exc: BaseException) -> int:
    print(f"hootwatch: error: the disk holding {out} is full ({getattr(exc, 'message', exc)})\n"
          "  fix: free some space there (or give --out on another disk) and run the same command again; "
          "files already finished are kept", file=sys.stderr)
    return EXIT_DISK_FULL


def check_paths(paths, out_dir) -> Path:
    """The output folder, after checking it is no file and that every path given is there (ConfigError)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder", "give --out a new or existing folder")
    missing = [p for p in paths if not Path(p).exists() and not Path(p).is_symlink()]  # dangling: that path fails
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(missing)}", "check the paths (is the SD card mounted?)")
    return out


def scan_and_report(paths, out: Path, scan, console, settings, *, quiet: bool = False, detector=None,
                    command: str = "scan", done: str = "files scanned") -> int:
    """Run `scan(progress) -> (summary, export paths, manifest)` into `out` and report it as `hootwatch scan` does
    (summary, odd entries and failed files with the reason, disk full, Ctrl-C); returns the exit status
    (EXIT_CODES). `scan` and `embed` both end here."""
    from rich.console import Console

    from hootwatch.edge.contract.cascade import pass_rate_of
    from hootwatch.edge.scan.engine import detection_rule
    from hootwatch.edge.store.database import STORE_NAME
    from hootwatch.edge.store.exports import exports_note

    if not _any_audio(paths):
        print("hootwatch: no audio files found in the given paths (nothing was scanned)\n"
              "  fix: check the paths (is the SD card mounted, are the recordings in a sub-folder?)", file=sys.stderr)
        return EXIT_NO_AUDIO
    store_path = out / STORE_NAME
    created = not out.exists()
    progress = RichProgress(console, enabled=not quiet and console.is_terminal)
    try:
        with progress:
            summary, exports, manifest = scan(progress)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: the file being scanned was not recorded; finished files are kept. "
                      "Run the same command again to continue.")
        return EXIT_INTERRUPTED
    except ConfigError:  # e.g. a local-time name and no --tz: the empty store would read as "no detections"
        if created:
            import shutil
            shutil.rmtree(out, ignore_errors=True)
        raise
    except Exception as exc:
        if is_disk_full(exc):
            return _disk_full(out, exc)
        raise
    report = Console()  # the summary goes to stdout, progress and warnings to stderr
    if not report.is_terminal:
        report = Console(width=200)  # piped to a file or a log: do not wrap paths
    rule = detection_rule(manifest, settings) if manifest.output_name or manifest.head else None  # else: no scores
    report.print(summary_table(summary, exports["csv"], store_path, rule,
                               pass_rate_of(detector) if detector is not None else None, command, done))
    report.print(exports_note(exports))
    if summary.failed or summary.odd:
        report.print(failed_table(summary))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if not summary.outcomes:
        print("hootwatch: no audio files found in the given paths", file=sys.stderr)
        return EXIT_NO_AUDIO
    return EXIT_FAILED if summary.failed or summary.odd else EXIT_OK


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hootwatch.edge.contract.cascade import load_detector
    from hootwatch.edge.scan.engine import scan_into

    console = Console(stderr=True)
    _log_through(console)
    settings = _settings(args)
    out = check_paths(args.paths, args.out)
    detector = None if args.cluster is not None else load_detector(args.model, threads=args.threads,
                                                                   batch_size=args.batch_size,
                                                                   exhaustive=args.exhaustive)

    def scan(progress):
        if detector is None:
            from .scan_cluster import scan_with_cluster
            return scan_with_cluster(args, out, settings, progress, console)
        return (*scan_into(args.paths, detector, out, settings, progress), detector.manifest)

    return scan_and_report(args.paths, out, scan, console, settings, quiet=args.quiet, detector=detector)
