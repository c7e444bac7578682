"""The daemon's configuration: one TOML file, validated strictly into frozen dataclasses.

Every field declares its type and bounds next to its default (as Frigate does with pydantic), so a typo or an
out-of-range value is rejected at start-up naming the key, e.g.
`sources.folder.poll_interval_s: must be between 0.5 and 3600, got 0`, instead of failing at 3 a.m. in the bush.
Every problem of a file is reported at once, each with its key and its fix. What only the machine can tell
(does the bundle load, does the watched folder exist, is PortAudio there) is checked by `preflight.py`.
Relative paths are taken relative to the folder holding the config file.

Why not pydantic (issue 13 item 13 asked): it would replace only `_convert` and the bounds check (about 60 lines)
with a layer of about the same size translating its errors back into "key: problem" + "fix" for ecologists,
while the field metadata (doc lines that generate `check-config --example`, the fix of each required key) and
the effective-config printer stay; reporting every problem at once is done here. Not simpler, one more
compiled dependency on the edge.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError
from ..recorder_time import parse_tz

REQUIRED = object()  # marker: the key has no default
_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def spec(default=REQUIRED, *, between: tuple | None = None, choices: tuple | None = None, doc: str = "",
         hint: str = ""):
    """A config field: its default, its allowed range or choices, one line for `check-config --example`, and
    for a required key the fix to print when it is missing."""
    meta = {"between": between, "choices": choices, "doc": doc, "hint": hint}
    if default is REQUIRED:
        return field(metadata={**meta, "required": True})
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    bundle: Path = spec(doc="model bundle folder (made by `hootwatch export`)")
    threads: int = spec(2, between=(1, 64), doc="ONNX Runtime threads")
    hop_s: float | None = spec(None, between=(0.1, 60.0), doc="seconds between window starts (default: the bundle's)")
    threshold: float | None = spec(None, between=(0.0, 1.0), doc="detection threshold (default: the bundle's)")
    min_hits: int | None = spec(None, between=(1, 100), doc="consecutive windows over threshold to report a "
                                                               "detection (default: the bundle's)")
    providers: list[str] = spec([], doc='ONNX Runtime providers, e.g. ["CUDAExecutionProvider"] (default: automatic)')


@dataclass(frozen=True)
class FolderConfig:
    path: Path = spec(doc="folder where recordings arrive (an SD card mount, an rsync target)")
    recursive: bool = spec(True, doc="also watch sub-folders")
    poll: bool = spec(False, doc="poll the folder instead of inotify (needed for removable media, NFS, FAT)")
    poll_interval_s: float = spec(5.0, between=(0.5, 3600), doc="seconds between polls / stability checks")
    settle_s: float = spec(5.0, between=(0.0, 3600), doc="a file is complete once its size and mtime are "
                                                        "unchanged for this long")
    after: str = spec("keep", choices=("keep", "archive", "delete"),
                      doc="what to do with a recording once its detections are saved")
    archive_dir: Path | None = spec(None, doc='where processed recordings go when after = "archive"')
    max_attempts: int = spec(3, between=(1, 100), doc="tries before a failing file is left alone")
    retry_after_s: float = spec(300.0, between=(1.0, 86400.0), doc="seconds before a failed file is tried again")
    queue_size: int = spec(1000, between=(1, 1_000_000), doc="files waiting to be scanned before the watcher waits")
    recorder_timezone: str | None = spec(None, doc='time zone the recorders\' clocks are set to, for local-time '
                                                 'names (Song Meter, Swift), e.g. "Australia/Sydney" or "+10:00" '
                                                 '(default: output.timezone); local times of file detections are shown in it')


@dataclass(frozen=True)
class MicrophoneConfig:
    device: str | None = spec(None, doc="sounddevice input device name or number (default: the system default)")
    sample_rate: int = spec(48000, between=(8000, 384000), doc="capture rate in Hz (resampled to the model's)")
    channels: int = spec(1, between=(1, 32), doc="capture channels (averaged to mono)")
    block_s: float = spec(0.5, between=(0.01, 10.0), doc="seconds per audio callback block")
    ring_s: float = spec(60.0, between=(1.0, 3600.0), doc="seconds of audio buffered between capture and model")
    reopen_max_s: float = spec(60.0, between=(1.0, 3600.0), doc="longest wait between tries to reopen a lost device")
    record_raw: bool = spec(False, doc="also keep rolling raw recordings")
    raw_dir: Path | None = spec(None, doc="where raw recordings go (default: <output.dir>/raw)")
    raw_format: str = spec("flac", choices=("flac", "wav"), doc="raw recording format")
    raw_segment_s: float = spec(300.0, between=(5.0, 86400.0), doc="seconds per raw recording file")
    raw_budget_mb: float = spec(2048.0, between=(1.0, 10_000_000.0),
                                doc="raw recordings kept within this size; the oldest are deleted first")


@dataclass(frozen=True)
class SourcesConfig:
    folder: FolderConfig | None = spec(None)
    microphone: MicrophoneConfig | None = spec(None)


@dataclass(frozen=True)
class ScheduleConfig:
    mode: str = spec("always", choices=("always", "dusk_to_dawn", "windows"),
                     doc="when to listen: always, from dusk to dawn, or in fixed local-time windows")
    latitude: float | None = spec(None, between=(-90.0, 90.0), doc="site latitude (dusk_to_dawn)")
    longitude: float | None = spec(None, between=(-180.0, 180.0), doc="site longitude (dusk_to_dawn)")
    twilight: str = spec("civil", choices=("sunset", "civil", "nautical", "astronomical"),
                         doc="which dusk/dawn: sunset/sunrise or the end/start of civil/nautical/astronomical "
                             "twilight")
    dusk_offset_min: float = spec(0.0, between=(-720.0, 720.0), doc="minutes added to dusk (negative = earlier)")
    dawn_offset_min: float = spec(0.0, between=(-720.0, 720.0), doc="minutes added to dawn (positive = later)")
    windows: list[str] = spec(["19:00-06:00"], doc='local-time windows, "HH:MM-HH:MM", may cross midnight')


@dataclass(frozen=True)
class OutputConfig:
    dir: Path = spec(doc="SQLite store and exports (detections.csv)")
    timezone: str = spec(doc='IANA time zone of the site, e.g. "Australia/Sydney" (local times, schedule windows, '
                             'and the recorders\' clocks unless sources.folder.recorder_timezone says otherwise)',
                         hint='add timezone = "Australia/Sydney" (the site\'s IANA time zone) under [output]: '
                              'Song Meter and Swift name files in local time, and a wrong zone shifts every '
                              'detection by hours')
    export_every_min: float = spec(15.0, between=(0.0, 1440.0), doc="minutes between exports (0: only at stop)")
    csv: bool = spec(True, doc="write detections.csv")
    raven: bool = spec(False, doc="write Raven selection tables")
    audacity: bool = spec(False, doc="write Audacity label tracks (labels/<recording>.txt)")
    clips: bool = spec(False, doc="save an audio clip of each detection")


@dataclass(frozen=True)
class HealthConfig:
    status_file: Path | None = spec(None, doc="JSON status file (default: <output.dir>/status.json)")
    status_every_s: float = spec(10.0, between=(0.5, 3600.0), doc="seconds between status file updates")
    min_free_mb: float = spec(500.0, between=(0.0, 10_000_000.0),
                              doc="below this much free disk, clips and raw audio stop (detections continue)")
    watchdog: bool = spec(True, doc="ping systemd's watchdog from the processing loop (Type=notify units)")


@dataclass(frozen=True)
class DaemonConfig:
    model: ModelConfig = spec()
    output: OutputConfig = spec()
    sources: SourcesConfig = spec(None)
    schedule: ScheduleConfig = spec(None)
    health: HealthConfig = spec(None)
    source_file: Path | None = None  # not a key: where it was read from

    @property
    def status_file(self) -> Path:
        return self.health.status_file or self.output.dir / "status.json"

    @property
    def raw_dir(self) -> Path:
        mic = self.sources.microphone
        return (mic.raw_dir if mic and mic.raw_dir else self.output.dir / "raw")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.output.timezone)

    @property
    def recorder_timezone(self) -> str:
        """The zone recorder local-time file names are read in (ScanSettings.tz of the folder source)."""
        folder = self.sources.folder
        return (folder.recorder_timezone if folder and folder.recorder_timezone else self.output.timezone)


# ---------------------------------------------------------------- validation

def _fail(key: str, problem: str, hint: str = "") -> ConfigError:
    return ConfigError(f"{key}: {problem}", hint or "fix this key (see `hootwatch check-config --example`)")


def _type_name(t) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
            Path: "a path string"}.get(t, getattr(t, "__name__", str(t)))


def _convert(key: str, value, annotation, base: Path):
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _convert(key, value, inner[0], base)
    if origin is list:
        if not isinstance(value, list):
            raise _fail(key, f"must be a list, got {value!r}")
        return [_convert(f"{key}[{i}]", v, args[0], base) for i, v in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise _fail(key, f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, f"must be a whole number, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(key, f"must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if isinstance(value, int) and not isinstance(value, bool) and key.endswith(".device"):
            return str(value)  # a device number
        if not isinstance(value, str):
            raise _fail(key, f"must be a string, got {value!r}")
        return value
    if annotation is Path:
        if not isinstance(value, str) or not value.strip():
            raise _fail(key, f"must be a path string, got {value!r}")
        p = Path(os.path.expandvars(value)).expanduser()
        return p if p.is_absolute() else (base / p)
    raise TypeError(f"unsupported config type {annotation!r}")  # pragma: no cover - a programming error


def _build(cls, table, prefix: str, base: Path, problems: list[ConfigError]):
    """The section as `cls`, or None when it has problems (each appended to `problems`, none raised), so one
    check reports every wrong key at once."""
    if not isinstance(table, dict):
        problems.append(_fail(prefix, f"must be a table ([{prefix}]), got {table!r}"))
        return None
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != "source_file"}
    n_before = len(problems)
    for name in sorted(set(table) - set(known)):
        key = f"{prefix}.{name}" if prefix else name
        problems.append(_fail(key, "unknown key", f"known keys{' in [' + prefix + ']' if prefix else ''}: "
                                                  f"{', '.join(known)} (check the spelling)"))
    values = {}
    for name, f in known.items():
        key = f"{prefix}.{name}" if prefix else name
        annotation = hints[name]
        sub = next((a for a in (typing.get_args(annotation) or (annotation,)) if dataclasses.is_dataclass(a)), None)
        if sub is not None:
            if name in table:
                values[name] = _build(sub, table[name], key, base, problems)
            elif f.metadata.get("required"):
                problems.append(_fail(key, "missing section", f"add a [{key}] section"))
            elif prefix == "" and name in ("sources", "schedule", "health"):
                values[name] = _build(sub, {}, key, base, problems)
            continue
        if name not in table:
            if f.metadata.get("required"):
                problems.append(_fail(key, "missing", f.metadata.get("hint") or f"add `{name} = ...` under [{prefix}]"))
            continue
        try:
            value = _convert(key, table[name], annotation, base)
        except ConfigError as exc:
            problems.append(exc)
            continue
        lo_hi = f.metadata.get("between")
        if lo_hi and value is not None and not lo_hi[0] <= value <= lo_hi[1]:
            problems.append(_fail(key, f"must be between {lo_hi[0]:g} and {lo_hi[1]:g}, got {value:g}"))
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            problems.append(_fail(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}"))
            continue
        values[name] = value
    return cls(**values) if len(problems) == n_before else None


def all_problems(problems: list[ConfigError], where: str = "") -> ConfigError:
    """One error for one problem or many (each with its key and fix), optionally prefixed with the file."""
    head = f"{where}: " if where else ""
    if len(problems) == 1:
        return ConfigError(head + problems[0].message, problems[0].hint)
    lines = [f"{head}{len(problems)} problems:"]
    for p in problems:
        lines.append(f"  - {p.message}" + (f"\n      fix: {p.hint}" if p.hint else ""))
    return ConfigError("\n".join(lines), "fix each one above; `hootwatch check-config FILE` checks again")


def parse_window(text: str, key: str = "schedule.windows") -> tuple[dt.time, dt.time]:
    m = _WINDOW_RE.match(text)
    if not m:
        raise _fail(key, f'must look like "19:00-06:00", got {text!r}')
    h1, m1, h2, m2 = map(int, m.groups())
    if not (h1 < 24 and h2 <= 24 and m1 < 60 and m2 < 60) or (h2 == 24 and m2):
        raise _fail(key, f"{text!r} is not a valid time of day range")
    if (h1, m1) == (h2 % 24, m2):
        raise _fail(key, f"{text!r} starts and ends at the same time", 'use mode = "always" to listen all day')
    return dt.time(h1, m1), dt.time(h2 % 24, m2)


def _check_together(cfg: DaemonConfig) -> list[ConfigError]:
    """Problems of keys that depend on each other (all of them, none raised)."""
    problems: list[ConfigError] = []
    src = cfg.sources
    if src.folder is None and src.microphone is None:
        problems.append(_fail("sources", "no source configured",
                              "add a [sources.folder] or [sources.microphone] section"))
    try:
        ZoneInfo(cfg.output.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(_fail("output.timezone", f"unknown time zone {cfg.output.timezone!r}",
                              'use an IANA name such as "Australia/Sydney" or "UTC"'))
    if src.folder is not None:
        if src.folder.recorder_timezone is not None:
            try:
                parse_tz(src.folder.recorder_timezone)
            except (ConfigError, ValueError):
                problems.append(_fail("sources.folder.recorder_timezone",
                                      f"unknown time zone {src.folder.recorder_timezone!r}",
                                      'use an IANA name such as "Australia/Sydney", or an offset such as "+10:00"'))
        if src.folder.after == "archive" and src.folder.archive_dir is None:
            problems.append(_fail("sources.folder.archive_dir", 'missing (needed when after = "archive")',
                                  "add archive_dir = \"/path/to/archive\" under [sources.folder]"))
        if src.folder.archive_dir is not None and src.folder.archive_dir == src.folder.path:
            problems.append(_fail("sources.folder.archive_dir", "must not be the watched folder itself"))
    sch = cfg.schedule
    if sch.mode == "dusk_to_dawn" and (sch.latitude is None or sch.longitude is None):
        problems.append(_fail("schedule.latitude" if sch.latitude is None else "schedule.longitude",
                              'missing (needed when mode = "dusk_to_dawn")',
                              "add latitude and longitude under [schedule]"))
    if sch.mode == "windows":
        if not sch.windows:
            problems.append(_fail("schedule.windows", "is empty", 'add at least one window, e.g. ["19:00-06:00"]'))
        for i, w in enumerate(sch.windows):
            try:
                parse_window(w, f"schedule.windows[{i}]")
            except ConfigError as exc:
                problems.append(exc)
    return problems


def config_from_dict(data: dict, base: Path | None = None, source: Path | None = None) -> DaemonConfig:
    """Validate a parsed TOML document; one ConfigError naming every bad key."""
    base = base or Path.cwd()
    problems: list[ConfigError] = []
    cfg = _build(DaemonConfig, data, "", base, problems)
    if cfg is not None:
        cfg = dataclasses.replace(cfg, source_file=source)
        problems += _check_together(cfg)
    if problems:
        raise all_problems(problems)
    return cfg


def load_config(path: str | os.PathLike) -> DaemonConfig:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file",
                          "check the path; `hootwatch check-config --example > hootwatch.toml` writes a starting point")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})", "fix the syntax at the line named") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read ({exc})", "check its permissions and encoding (UTF-8)") from None
    try:
        return config_from_dict(data, base=p.resolve().parent, source=p)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc.message}", exc.hint) from None


# ---------------------------------------------------------------- printing

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Path):
        return _toml_value(str(v))
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def to_toml(cfg, prefix: str = "", comments: bool = False) -> str:
    """The effective configuration as TOML (defaults filled in); None values are shown as comments."""
    lines, tables = [], []
    for f in dataclasses.fields(cfg):
        if f.name == "source_file":
            continue
        value = getattr(cfg, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            tables.append(to_toml(value, key, comments))
            continue
        if value is None and not dataclasses.is_dataclass(typing.get_type_hints(type(cfg))[f.name]):
            if prefix == "sources":
                continue
            doc = f"  # {f.metadata['doc']}" if comments and f.metadata.get("doc") else ""
            lines.append(f"# {f.name} = (unset){doc}")
            continue
        if value is None:
            continue
        doc = f"  # {f.metadata['doc']}" if comments and f.metadata.get("doc") else ""
        lines.append(f"{f.name} = {_toml_value(value)}{doc}")
    head = [f"[{prefix}]"] if prefix and lines else []
    body = "\n".join(head + lines)
    return "\n\n".join(x for x in [body, *tables] if x)


EXAMPLE_HEADER = """\
# hootwatch daemon configuration (`hootwatch run --config hootwatch.toml`).
# Check it with `hootwatch check-config hootwatch.toml`: it names any wrong key and prints the effective
# configuration with every default filled in. Relative paths are relative to this file's folder.
# Only [model] bundle, one source ([sources.folder] path or [sources.microphone]) and [output] dir and timezone
# are required.
"""

_EXAMPLE_VALUES = {
    "model": {"bundle": "/var/lib/hootwatch/bundle"},
    "sources": {"folder": {"path": "/srv/hootwatch/incoming"}, "microphone": {}},
    "output": {"dir": "/var/lib/hootwatch/detections", "timezone": "Australia/Sydney"},
    "schedule": {"mode": "always", "latitude": -33.87, "longitude": 151.21},
}


def example_toml() -> str:
    """A commented example holding every key with its default; it validates (tests check it)."""
    cfg = config_from_dict(_EXAMPLE_VALUES, base=Path("/"))
    text = to_toml(cfg, comments=True)
    # the microphone is optional: show it commented out so the example runs with a folder only
    out, in_mic = [], False
    for line in text.splitlines():
        if line.startswith("["):
            in_mic = line == "[sources.microphone]"
            if in_mic:
                out.append("# Live microphone (optional): uncomment this section to listen through a sound card.")
        out.append(f"# {line}" if in_mic and line else line)
    return EXAMPLE_HEADER + "\n" + "\n".join(out) + "\n"
