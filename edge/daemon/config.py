"""The daemon's configuration: one TOML file, validated strictly (pydantic, as Frigate does) into frozen models.

Every field declares its type and bounds next to its default, so a typo or an out-of-range value is rejected
at start-up naming the key, e.g. `sources.folder.poll_interval_s: must be between 0.5 and 3600, got 0`,
instead of failing at 3 a.m. in the bush. Every problem of a file is reported at once, each with its key and
its fix: pydantic finds them, `_problem` says them in words for ecologists. What only the machine can tell
(does the bundle load, does the watched folder exist, is PortAudio there) is checked by `preflight.py`.
Relative paths are taken relative to the folder holding the config file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo

from hootwatch.edge.core.errors import ConfigError
from hootwatch.edge.core.validation import must_be
from hootwatch.edge.contract.operating_point import LEAST_MIN_HITS, THRESHOLD_RANGE
from hootwatch.edge.contract.recorder_time import parse_tz

REQUIRED = object()  # marker: the key has no default
_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def spec(default=REQUIRED, *, between: tuple | None = None, doc: str = "", hint: str = ""):
    """A config field: its default, its allowed range, one line for `check-config --example`, and for a
    required key the fix to print when it is missing."""
    extra = {"between": between, "hint": hint}
    bounds = {"ge": between[0], "le": between[1]} if between else {}
    if default is REQUIRED:
        return Field(description=doc, json_schema_extra=extra, **bounds)
    if isinstance(default, (list, dict)):
        return Field(default_factory=lambda d=default: type(d)(d), description=doc, json_schema_extra=extra, **bounds)
    return Field(default=default, description=doc, json_schema_extra=extra, **bounds)


def _to_path(value, info: ValidationInfo) -> Path:
    """A path string ($VARS and ~ expanded), relative to the config file's folder (the validation context)."""
    if isinstance(value, Path):
        p = value
    elif isinstance(value, str) and value.strip():
        p = Path(os.path.expandvars(value)).expanduser()
    else:
        raise ValueError(f"must be a path string, got {value!r}")
    base = (info.context or {}).get("base") or Path.cwd()
    return p if p.is_absolute() else Path(base) / p


def _device_name(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # a device number


ConfigPath = Annotated[Path, BeforeValidator(_to_path)]
Device = Annotated[str | None, BeforeValidator(_device_name)]


class _Section(BaseModel):
    # strict: TOML's types as they are (no "5" for 5, no 1 for true); unknown keys are errors
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelConfig(_Section):
    bundle: ConfigPath = spec(doc="model bundle folder (made by `hootwatch export`)")
    threads: int = spec(2, between=(1, 64), doc="ONNX Runtime threads")
    # threshold and min_hits: the operating point's ranges (contract/operating_point.py), so pydantic says
    # "must be between" as for every key; the hop's longest is the bundle's window (preflight, the Scanner)
    hop_s: float | None = spec(None, between=(0.1, 60.0), doc="seconds between window starts (default: the bundle's)")
    threshold: float | None = spec(None, between=THRESHOLD_RANGE, doc="detection threshold (default: the bundle's)")
    min_hits: int | None = spec(None, between=(LEAST_MIN_HITS, 100), doc="consecutive windows over threshold to "
                                                                        "report a detection (default: the bundle's)")
    providers: list[str] = spec([], doc='ONNX Runtime providers, e.g. ["CUDAExecutionProvider"] (default: automatic)')
    exhaustive: bool = spec(False, doc="score every window with the full model, skipping the bundle's cascade first "
                                       "stage (for checking; slower). Its rows are a run of their own, so "
                                       "turning it on or off scans the watched recordings again")


class FolderConfig(_Section):
    path: ConfigPath = spec(doc="folder where recordings arrive (an SD card mount, an rsync target)")
    recursive: bool = spec(True, doc="also watch sub-folders")
    poll: bool = spec(False, doc="poll the folder instead of inotify (needed for removable media, NFS, FAT)")
    poll_interval_s: float = spec(5.0, between=(0.5, 3600), doc="seconds between polls / stability checks")
    settle_s: float = spec(5.0, between=(0.0, 3600), doc="a file is complete once its size and mtime are "
                                                        "unchanged for this long")
    after: Literal["keep", "archive", "delete"] = spec("keep",
                      doc="what to do with a recording once its detections are saved")
    archive_dir: ConfigPath | None = spec(None, doc='where processed recordings go when after = "archive"')
    max_attempts: int = spec(3, between=(1, 100), doc="tries before a failing file is left alone")
    retry_after_s: float = spec(300.0, between=(1.0, 86400.0), doc="seconds before a failed file is tried again")
    queue_size: int = spec(1000, between=(1, 1_000_000), doc="files waiting to be scanned before the watcher waits")
    recorder_timezone: str | None = spec(None, doc='time zone the recorders\' clocks are set to, for local-time '
                                                 'names (Song Meter, Swift), e.g. "Australia/Sydney" or "+10:00" '
                                                 '(default: output.timezone); local times of file detections are shown in it')


class MicrophoneConfig(_Section):
    device: Device = spec(None, doc="sounddevice input device name or number (default: the system default)")
    sample_rate: int = spec(48000, between=(8000, 384000), doc="capture rate in Hz (resampled to the model's)")
    channels: int = spec(1, between=(1, 32), doc="capture channels (averaged to mono)")
    block_s: float = spec(0.5, between=(0.01, 10.0), doc="seconds per audio callback block")
    ring_s: float = spec(60.0, between=(1.0, 3600.0), doc="seconds of audio buffered between capture and model")
    reopen_max_s: float = spec(60.0, between=(1.0, 3600.0), doc="longest wait between tries to reopen a lost device")
    record_raw: bool = spec(False, doc="also keep rolling raw recordings")
    raw_dir: ConfigPath | None = spec(None, doc="where raw recordings go (default: <output.dir>/raw)")
    raw_format: Literal["flac", "wav"] = spec("flac", doc="raw recording format")
    raw_segment_s: float = spec(300.0, between=(5.0, 86400.0), doc="seconds per raw recording file")
    raw_budget_mb: float = spec(2048.0, between=(1.0, 10_000_000.0),
                                doc="raw recordings kept within this size; the oldest are deleted first")


class SourcesConfig(_Section):
    folder: FolderConfig | None = spec(None)
    microphone: MicrophoneConfig | None = spec(None)


class ScheduleConfig(_Section):
    mode: Literal["always", "dusk_to_dawn", "windows"] = spec("always",
                     doc="when to listen: always, from dusk to dawn, or in fixed local-time windows")
    latitude: float | None = spec(None, between=(-90.0, 90.0), doc="site latitude (dusk_to_dawn)")
    longitude: float | None = spec(None, between=(-180.0, 180.0), doc="site longitude (dusk_to_dawn)")
    twilight: Literal["sunset", "civil", "nautical", "astronomical"] = spec("civil",
                         doc="which dusk/dawn: sunset/sunrise or the end/start of civil/nautical/astronomical "
                             "twilight")
    dusk_offset_min: float = spec(0.0, between=(-720.0, 720.0), doc="minutes added to dusk (negative = earlier)")
    dawn_offset_min: float = spec(0.0, between=(-720.0, 720.0), doc="minutes added to dawn (positive = later)")
    windows: list[str] = spec(["19:00-06:00"], doc='local-time windows, "HH:MM-HH:MM", may cross midnight')


class OutputConfig(_Section):
    dir: ConfigPath = spec(doc="SQLite store and exports (detections.csv)")
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
    backup_dir: ConfigPath | None = spec(None, doc="folder (best on another disk) for backups of the store, taken "
                                                   "at start and every backup_every_h; the daemon restores the "
                                                   "newest one if the store fails its check (default: no backups)")
    backup_every_h: float = spec(24.0, between=(0.01, 8760.0), doc="hours between backups of the store")
    backup_keep: int = spec(7, between=(1, 10_000), doc="backups kept in backup_dir (the oldest are removed)")


class HealthConfig(_Section):
    status_file: ConfigPath | None = spec(None, doc="JSON status file (default: <output.dir>/status.json)")
    status_every_s: float = spec(10.0, between=(0.5, 3600.0), doc="seconds between status file updates")
    min_free_mb: float = spec(500.0, between=(0.0, 10_000_000.0),
                              doc="below this much free disk, clips and raw audio stop (detections continue)")
    watchdog: bool = spec(True, doc="ping systemd's watchdog from the processing loop (Type=notify units)")


class ReviewConfig(_Section):
    enabled: bool = spec(False, doc="serve the review web app (`hootwatch review`; needs hootwatch[review])")
    host: str = spec("127.0.0.1", doc="address to listen on (another than loopback needs a token)")
    port: int = spec(8765, between=(1, 65535), doc="port of the review app")
    token: str | None = spec(None, doc="access token the browser must give (required off loopback)")
    max_upload_mb: float = spec(200.0, between=(0.1, 100_000.0), doc="largest upload to POST /api/analyze")
    max_analyze_s: float = spec(7200.0, between=(1.0, 604_800.0), doc="most audio one upload may hold, in seconds")
    allow_hosts: list[str] = spec([], doc='host names the app also answers to (a reverse proxy\'s, e.g. '
                                          '["review.example.org"])')


class DaemonConfig(_Section):
    model: ModelConfig = spec()
    output: OutputConfig = spec()
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    _source_file: Path | None = PrivateAttr(None)  # not a key: where it was read from

    @property
    def source_file(self) -> Path | None:
        return self._source_file

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


def _section_class(annotation):
    """The section model inside an annotation (`FolderConfig | None` -> FolderConfig), else None."""
    for a in (typing.get_args(annotation) or (annotation,)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _problem(err: dict) -> ConfigError:
    """One pydantic error in words: the key, what is wrong with it, and what to do."""
    loc, kind, value = err["loc"], err["type"], err.get("input")
    key = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    cls, field = DaemonConfig, None  # walk down to the field the error is about
    for part in loc:
        if isinstance(part, int) or cls is None or part not in cls.model_fields:
            break
        field = cls.model_fields[part]
        cls = _section_class(field.annotation)
    parent = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
    extra = (field.json_schema_extra or {}) if field is not None else {}
    if kind == "extra_forbidden":
        section = DaemonConfig
        for part in loc[:-1]:
            section = _section_class(section.model_fields[part].annotation)
        where = f" in [{parent}]" if parent else ""
        return _fail(key, "unknown key", f"known keys{where}: {', '.join(section.model_fields)} (check the spelling)")
    if kind == "missing":
        if field is not None and _section_class(field.annotation) is not None:
            return _fail(key, "missing section", f"add a [{key}] section")
        return _fail(key, "missing", extra.get("hint") or f"add `{loc[-1]} = ...` under [{parent}]")
    if kind in ("greater_than_equal", "less_than_equal") and extra.get("between"):
        lo, hi = extra["between"]
        return _fail(key, f"must be between {lo:g} and {hi:g}, got {value:g}")
    if kind == "literal_error" and field is not None:
        choices = typing.get_args(field.annotation)
        return _fail(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
    if (wanted := must_be(err)) is not None:
        return _fail(key, f"must be {wanted}, got {value!r}")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return _fail(key, f"must be a table ([{key}]), got {value!r}")
    if kind == "value_error":
        return _fail(key, str(err["ctx"]["error"]))
    return _fail(key, err["msg"])


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
    if cfg.output.backup_dir is not None and cfg.output.backup_dir == cfg.output.dir:
        problems.append(_fail("output.backup_dir", "must not be the output folder itself",
                              "give a folder on another disk (a USB stick), or at least another folder"))
    if cfg.review.enabled:
        from hootwatch.edge.review.access import is_loopback
        if not is_loopback(cfg.review.host) and not cfg.review.token:
            problems.append(_fail("review.token",
                                  f"missing (needed when review.host = {cfg.review.host!r} is not loopback)",
                                  'add token = "a long random string" under [review], or leave host at "127.0.0.1"'))
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
    try:
        cfg = DaemonConfig.model_validate(data, context={"base": base or Path.cwd()})
    except ValidationError as exc:
        raise all_problems([_problem(e) for e in exc.errors(include_url=False)]) from None
    cfg._source_file = source
    problems = _check_together(cfg)
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
    for name, f in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(value, BaseModel):
            tables.append(to_toml(value, key, comments))
            continue
        doc = f"  # {f.description}" if comments and f.description else ""
        if value is None:
            if prefix != "sources":  # an absent source is simply not there
                lines.append(f"# {name} = (unset){doc}")
            continue
        lines.append(f"{name} = {_toml_value(value)}{doc}")
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
