"""hootwatch: detect powerful owl calls in recordings; train, export and run the detector.

The field commands (scan, run, check-config) live in hootwatch.edge. The workstation commands (synth, train,
demo, export) are registered through the `hootwatch.commands` entry-point group and imported only when asked
for, so a field install never imports torch, and a missing extra is named instead of a traceback.
"""

from __future__ import annotations

import sys

if sys.argv[0].endswith("hootwatch"):  # the `hootwatch` program: `run` is stoppable before any other import
    from hootwatch.edge.daemon import signals as _signals
    _signals.install_for(sys.argv[1:])

import argparse  # noqa: E402
import logging  # noqa: E402

from hootwatch.edge.core.errors import DOCS, DiskFullError, HootwatchError, MissingExtraError  # noqa: E402

# extra that provides each workstation command (for the message when it is not installed)
EXTRA_FOR = {"synth": "train", "train": "train", "demo": "train,export", "export": "export",
             "review": "review"}  # else "edge"
HEAVY_MODULES = {"torch": "train", "transformers": "train", "optimum": "export", "onnx": "export",
                 "datasets": "train", "accelerate": "train", "sklearn": "train", "crowsetta": "train",
                 "matplotlib": "train", "onnxruntime": "edge", "fastapi": "review", "uvicorn": "review",
                 "multipart": "review", "starlette": "review"}
QUIET_LOGGERS = ("accelerate", "transformers", "optimum", "datasets", "apscheduler", "watchdog", "urllib3")


def _plugins() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="hootwatch.commands")}


def _edge_commands() -> dict:
    # field commands: (module, register function), imported lazily to keep `--help` fast
    return {"scan": "hootwatch.edge.commands.scan", "run": "hootwatch.edge.commands.run",
            "check-config": "hootwatch.edge.commands.check_config",
            "systemd-unit": "hootwatch.edge.commands.systemd_unit",
            "labels": "hootwatch.edge.commands.labels", "detections": "hootwatch.edge.commands.detections",
            "review": "hootwatch.edge.commands.review", "calibrate": "hootwatch.edge.commands.calibrate",
            "dataset": "hootwatch.edge.commands.dataset", "cascade-check": "hootwatch.edge.commands.cascade_check",
            "search": "hootwatch.edge.commands.search", "fit": "hootwatch.edge.commands.fit",
            "embed": "hootwatch.edge.commands.embed", "backup": "hootwatch.edge.commands.backup",
            "restore": "hootwatch.edge.commands.restore"}


def _missing_extra(exc: ModuleNotFoundError, command: str) -> MissingExtraError:
    root = (exc.name or "").split(".")[0]
    return MissingExtraError(HEAVY_MODULES.get(root) or EXTRA_FOR.get(command, "edge"), root or str(exc))


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="hootwatch", description=__doc__.splitlines()[0],
                                     epilog=f"`hootwatch COMMAND --help` for each command; the field guide: "
                                            f"{DOCS}/field-guide.md")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    commands = {**{k: ("edge", v) for k, v in _edge_commands().items()},
                **{k: ("plugin", ep) for k, ep in _plugins().items()}}
    for name, (kind, target) in commands.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name, help=f"(run `hootwatch {name} --help`)")
            continue
        try:
            register = target.load() if kind == "plugin" else importlib.import_module(target).register
        except ModuleNotFoundError as exc:
            if wanted == name:
                raise _missing_extra(exc, name) from None
            sub.add_parser(name, help=f"(needs hootwatch[{EXTRA_FOR.get(name, 'edge')}])")
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from hootwatch.edge.daemon import signals  # before any other import: systemd may stop us at any moment
    signals.install_for(argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if not args.verbose:  # libraries that narrate every checkpoint at INFO
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `hootwatch check-config FILE | head`: the reader has seen enough
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # 128 + SIGPIPE, as a shell reports it
    except HootwatchError as exc:
        print(f"hootwatch: error: {exc}", file=sys.stderr)
        return 4 if isinstance(exc, DiskFullError) else 2  # 2: systemd does not restart (a config to fix)
    except KeyboardInterrupt:
        print("hootwatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
