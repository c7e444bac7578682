"""When a recording started, in absolute time, and which recorder made it.

Sources, first match wins (each detection records which one gave its time as `time_source`):

1. `audiomoth_header`: the AudioMoth WAV comment, "Recorded at HH:MM:SS DD/MM/YYYY (UTC+X) by AudioMoth SERIAL",
   read by our own parser (metamoth rejects the comment formats of the real files we test on). Carries its zone.
2. `guano`: the GUANO `Timestamp` (bat-detector style metadata). Carries its zone when it has an offset.
3. The file name:
   - `filename_utc`: `YYYYMMDDTHHMMSS[_mmm]Z` (UTC, as the daemon names its own raw recordings);
   - `filename_barlt`: Frontier Labs BAR-LT, `20191003T050000+1000_...` (carries its offset);
   - `filename_audiomoth`: `YYYYMMDD_HHMMSS.WAV` (AudioMoth names are UTC, the firmware's default; --tz does
     not change them, but a --tz other than UTC logs a warning once per folder, since a recorder set to local
     time would make them wrong by its offset);
   - `filename_audiomoth_hex`: old AudioMoth names, 8 hex digits = unix time (UTC);
   - `filename_swift`: Cornell Swift, `SWIFTxx_YYYYMMDD_HHMMSS` (recorder local time);
   - `filename_songmeter`: Wildlife Acoustics, `PREFIX_YYYYMMDD_HHMMSS` (the prefix may hold underscores, e.g.
     `S4A03895_0+1_...`; the prefix is the recorder id; recorder local time);
   - `filename_datetime`: any other `YYYYMMDD_HHMMSS` / `YYYYMMDDTHHMMSS` inside the name (local time).
4. `mtime`: the file's modification time minus the recording's duration (with a warning). Recorders close a file
   when they stop writing it, so its modification time is the END of the recording, not its start (copying a
   card can change it too).

Impossible metadata (an AudioMoth comment with day 41, month 13, year 0 or `UTC+25`; a recorder-pattern name with
an impossible date, or one outside the years 1990-2100, such as year 0001 or 9999; an unreadable modification
time) raises `RecorderTimeError` naming the file and the reason: that file fails alone, never with a made-up time
such as 1970.

Sources in recorder local time need the recorder's timezone (`--tz Australia/Melbourne`); without it
`file_time` raises ConfigError naming the file and the flag. Local times are shown in `--tz` when given, else in
the offset the source carries (UTC for AudioMoth names and mtime).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hootwatch.edge.core.errors import ConfigError, HootwatchError

log = logging.getLogger(__name__)

_AM_COMMENT = re.compile(
    r"Recorded at (\d{2}):(\d{2}):(\d{2}) (\d{2})/(\d{2})/(\d{4}) \(UTC([+-]\d{1,2})?(?::?(\d{2}))?\)"
    r"(?: during deployment \S+)? by AudioMoth ([0-9A-Fa-f]{16})")
_UTC_NAME = re.compile(r"^(\d{8})T(\d{6})(?:_(\d{3}))?Z$")
_BARLT = re.compile(r"(\d{8})T(\d{6})([+-])(\d{2}):?(\d{2})")
_AUDIOMOTH = re.compile(r"^(\d{8})_(\d{6})(?:_\d+)?$")
_HEX = re.compile(r"^[0-9A-Fa-f]{8}$")
_PREFIXED = re.compile(r"^(?P<prefix>.+)_(?P<d>\d{8})_(?P<t>\d{6})(?:_\d+)?$")
_ANY = re.compile(r"(?<!\d)(\d{8})[_T-]?(\d{6})(?!\d)")
YEARS = (1990, 2100)    # plausible recording years: outside them the recorder's clock was never set or is broken
MAX_OFFSET_H = 14       # UTC-12 ... UTC+14 are the offsets in use


class RecorderTimeError(HootwatchError):
    """A recording whose time metadata is impossible or unreadable: that file fails alone, with the reason."""


def _bad_time(path: Path, source: str, what: str) -> RecorderTimeError:
    return RecorderTimeError(
        f"{path}: impossible start time in the {source.replace('_', ' ')} ({what})",
        "the recorder's clock was probably not set: fix its clock for the next deployment, and rename this file "
        "to its true start time (e.g. YYYYMMDD_HHMMSS.WAV, UTC) to scan it")


def _plausible(start: datetime, path: Path, source: str) -> datetime:
    if not YEARS[0] <= start.year <= YEARS[1]:
        raise _bad_time(path, source, f"year {start.year}, outside {YEARS[0]}-{YEARS[1]}")
    return start


@dataclass(frozen=True)
class FileTime:
    """Absolute start of a recording. `start_utc` is timezone-aware UTC; `local_tz` shows local times."""
    start_utc: datetime
    local_tz: tzinfo
    source: str
    recorder_id: str = ""

    def at(self, offset_s: float) -> datetime:
        return self.start_utc + timedelta(seconds=offset_s)

    def local(self, utc: datetime) -> datetime:
        return utc.astimezone(self.local_tz)


def parse_tz(name: str | None) -> tzinfo | None:
    """IANA name ("Australia/Melbourne"), "UTC", or a fixed offset "+10:00"; None passes through."""
    if not name:
        return None
    m = re.fullmatch(r"(?:UTC)?([+-])(\d{1,2}):?(\d{2})?", name.strip())
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0)))
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown timezone {name!r}",
                          "use an IANA name such as Australia/Melbourne, or an offset such as +10:00") from None


def _need_tz(path: Path, source: str) -> ConfigError:
    return ConfigError(
        f"{path}: the start time from the {source.replace('_', ' ')} is recorder local time, "
        "and no recorder timezone was given",
        "pass --tz with the recorder's timezone, e.g. --tz Australia/Melbourne (or set `timezone` in the config)")


def _localise(naive: datetime, tz: tzinfo | None, path: Path, source: str) -> datetime:
    _plausible(naive, path, source)
    if tz is None:
        raise _need_tz(path, source)
    return naive.replace(tzinfo=tz).astimezone(timezone.utc)


def _wav_comment(path: Path) -> tuple[str, str]:
    """(comment, artist) of a WAV's INFO chunk; empty strings when absent or unreadable."""
    try:
        import soundfile as sf
        with sf.SoundFile(str(path)) as f:
            meta = f.copy_metadata()
        return meta.get("comment", ""), meta.get("artist", "")
    except Exception:
        return "", ""


def parse_audiomoth_comment(comment: str, path: Path | None = None) -> tuple[datetime, tzinfo, str] | None:
    """(start UTC, recorder offset, serial) from an AudioMoth comment, or None; RecorderTimeError when the comment
    holds an impossible date, time or offset."""
    m = _AM_COMMENT.search(comment or "")
    if not m:
        return None
    hh, mi, ss, dd, mo, yy, oh, om, serial = m.groups()
    where = path or Path("AudioMoth comment")
    hours, minutes = abs(int(oh or 0)), int(om or 0)
    if hours * 60 + minutes > MAX_OFFSET_H * 60 or minutes >= 60:
        raise _bad_time(where, "audiomoth_header", f"offset UTC{oh}{':' + om if om else ''}")
    sign = -1 if (oh or "+").startswith("-") else 1
    offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        local = datetime(int(yy), int(mo), int(dd), int(hh), int(mi), int(ss), tzinfo=offset)
    except ValueError as exc:
        raise _bad_time(where, "audiomoth_header", f"{hh}:{mi}:{ss} {dd}/{mo}/{yy}: {exc}") from None
    _plausible(local, where, "audiomoth_header")
    return local.astimezone(timezone.utc), offset, serial.upper()


def _from_audiomoth_header(path: Path) -> FileTime | None:
    if path.suffix.lower() != ".wav":
        return None
    parsed = parse_audiomoth_comment(_wav_comment(path)[0], path)
    if parsed is None:
        return None
    start, offset, serial = parsed
    return FileTime(start, offset, "audiomoth_header", serial)


def _from_guano(path: Path, tz: tzinfo | None) -> FileTime | None:
    if path.suffix.lower() != ".wav":
        return None
    try:
        import guano
        g = guano.GuanoFile(str(path))
        ts = g.get("Timestamp") if g else None
    except Exception:
        return None
    if not isinstance(ts, datetime):
        return None
    recorder = str(g.get("Serial", "") or g.get("Model", "") or "")
    if ts.tzinfo is None:
        return FileTime(_localise(ts, tz, path, "guano"), tz, "guano", recorder)
    _plausible(ts, path, "guano")
    return FileTime(ts.astimezone(timezone.utc), ts.tzinfo, "guano", recorder)


def _naive(d: str, t: str, path: Path | None = None, source: str = "") -> datetime | None:
    """The date and time of a name; None when they are not a date, unless the name follows a recorder's pattern
    (`path` given): then an impossible date is an error, not a reason to guess."""
    try:
        return datetime.strptime(d + t, "%Y%m%d%H%M%S")
    except ValueError:
        if path is None:
            return None
        raise _bad_time(path, source, f"{d}_{t} is not a valid date and time") from None


def _from_name(path: Path, tz: tzinfo | None) -> FileTime | None:
    stem = path.stem
    if (m := _UTC_NAME.match(stem)) and (naive := _naive(m.group(1), m.group(2))):
        start = naive.replace(tzinfo=timezone.utc) + timedelta(milliseconds=int(m.group(3) or 0))
        return FileTime(start, tz or timezone.utc, "filename_utc", "")
    if m := _BARLT.search(stem):
        naive = _naive(m.group(1), m.group(2), path, "filename_barlt")
        if naive:
            _plausible(naive, path, "filename_barlt")
            if int(m.group(4)) * 60 + int(m.group(5)) > MAX_OFFSET_H * 60:
                raise _bad_time(path, "filename_barlt", f"offset {m.group(3)}{m.group(4)}{m.group(5)}")
            sign = 1 if m.group(3) == "+" else -1
            offset = timezone(sign * timedelta(hours=int(m.group(4)), minutes=int(m.group(5))))
            start = naive.replace(tzinfo=offset).astimezone(timezone.utc)
            return FileTime(start, tz or offset, "filename_barlt", "")
    if m := _AUDIOMOTH.match(stem):
        naive = _naive(m.group(1), m.group(2), path, "filename_audiomoth")
        if naive:
            _plausible(naive, path, "filename_audiomoth")
            return FileTime(naive.replace(tzinfo=timezone.utc), tz or timezone.utc, "filename_audiomoth", "")
    if _HEX.match(stem) and not stem.isdigit():
        start = datetime.fromtimestamp(int(stem, 16), timezone.utc)
        if 2000 <= start.year <= 2100:
            return FileTime(start, tz or timezone.utc, "filename_audiomoth_hex", "")
    if m := _PREFIXED.match(stem):
        prefix = m.group("prefix")
        source = "filename_swift" if prefix.upper().startswith("SWIFT") else "filename_songmeter"
        naive = _naive(m.group("d"), m.group("t"), path, source)
        if naive:
            recorder = prefix.split("_")[0]
            return FileTime(_localise(naive, tz, path, source), tz, source, recorder)
    if m := _ANY.search(stem):
        naive = _naive(m.group(1), m.group(2))
        if naive:
            return FileTime(_localise(naive, tz, path, "filename_datetime"), tz, "filename_datetime", "")
    return None


_UTC_NAMES = {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu", "Universal", "Etc/Universal", "GMT",
              "Etc/GMT"}
_warned_folders: set[tuple[str, str]] = set()


def _is_utc(zone: tzinfo) -> bool:
    if isinstance(zone, ZoneInfo):
        return zone.key in _UTC_NAMES
    return zone.utcoffset(None) == timedelta(0)


def _warn_utc_name(path: Path, zone: tzinfo | None, found: FileTime) -> None:
    """AudioMoth names are read as UTC; say so once per folder when the user gave another zone."""
    if zone is None or _is_utc(zone) or found.source not in ("filename_audiomoth", "filename_audiomoth_hex"):
        return
    key = (str(path.parent), str(zone))
    if key in _warned_folders:
        return
    _warned_folders.add(key)
    log.warning("%s: AudioMoth-style file names (no AudioMoth header) are read as UTC, the AudioMoth default; "
                "--tz %s only sets how local times are shown. If the recorder was set to local time, its times are "
                "off by its UTC offset: rename the files or keep the AudioMoth header", path.parent, zone)


def file_time(path: str | os.PathLike, tz: str | tzinfo | None = None, duration_s: float | None = None) -> FileTime:
    """Start time of `path` from the best source available; ConfigError when a needed timezone is missing,
    RecorderTimeError when its time metadata is impossible. `duration_s` (probed when not given) is only needed
    for the modification-time fallback."""
    p = Path(path)
    zone = parse_tz(tz) if isinstance(tz, str) or tz is None else tz
    for source in (lambda: _from_audiomoth_header(p), lambda: _from_guano(p, zone), lambda: _from_name(p, zone)):
        found = source()
        if found is not None:
            _warn_utc_name(p, zone, found)
            if zone is not None and found.local_tz is not zone:
                found = FileTime(found.start_utc, zone, found.source, found.recorder_id)
            return found
    try:
        mtime = p.stat().st_mtime
        end = datetime.fromtimestamp(mtime, timezone.utc)
    except (OSError, OverflowError, ValueError) as exc:
        raise RecorderTimeError(f"{p}: no time in its header or name, and its modification time cannot be read "
                                f"({exc})", "rename the file to its start time, e.g. YYYYMMDD_HHMMSS.WAV (UTC)") from None
    if duration_s is None:
        from .audio import probe
        duration_s = probe(p).duration_s
    start = _plausible(end - timedelta(seconds=duration_s), p, "mtime")
    log.warning("%s: no time in its header or name; taking its modification time as the END of the recording "
                "(start = modification time - %.1f s duration); copying a card can change it (rename files to the "
                "recorder's pattern, e.g. YYYYMMDD_HHMMSS.WAV)", p, duration_s)
    return FileTime(start, zone or timezone.utc, "mtime", "")
