"""When to listen: always, from dusk to dawn at the site (astral), or in fixed local-time windows.

`active_windows(date, settings, tz)` and `is_active(now, settings, tz)` are pure functions (no clock, no
sleeping) so the schedule is tested for any date and place. A night belongs to the date it starts on: the
dusk-to-dawn window of 2026-06-21 runs from that evening's dusk to the first dawn after it (computed from the
site's latitude and longitude, whatever zone `output.timezone` names). The daemon
re-evaluates `is_active` every few seconds from an apscheduler job rather than sleeping until a computed
instant, so a clock step (NTP on a field box without an RTC) never leaves it deaf.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from .config import ScheduleConfig, parse_window

DEPRESSION = {"civil": 6.0, "nautical": 12.0, "astronomical": 18.0}

Window = tuple[dt.datetime, dt.datetime]


def _local_midnight(date: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(date, dt.time(0), tzinfo=tz)


def _first_dawn_after(obs, after: dt.datetime, s: ScheduleConfig) -> dt.datetime | None:
    """The first sunrise/dawn after `after`, computed on UTC dates from the site's latitude and longitude, so
    the display zone cannot move it (a site whose zone is not the configured one still gets a one-night window)."""
    from astral import sun

    utc = dt.timezone.utc
    day = after.astimezone(utc).date()
    for k in range(3):
        d = day + dt.timedelta(days=k)
        try:
            t = (sun.sunrise(obs, d, tzinfo=utc) if s.twilight == "sunset"
                 else sun.dawn(obs, d, tzinfo=utc, depression=DEPRESSION[s.twilight]))
        except ValueError:  # no dawn that day (polar night)
            continue
        if t > after:
            return t
    return None


def _dusk_dawn(date: dt.date, s: ScheduleConfig, tz: ZoneInfo) -> Window | None:
    from astral import Observer
    from astral import sun

    obs = Observer(latitude=s.latitude, longitude=s.longitude)
    nxt = date + dt.timedelta(days=1)
    try:
        if s.twilight == "sunset":
            start = sun.sunset(obs, date, tzinfo=tz)
        else:
            start = sun.dusk(obs, date, tzinfo=tz, depression=DEPRESSION[s.twilight])
    except ValueError:
        start = None
    end = _first_dawn_after(obs, start, s) if start is not None else None
    if start is None or end is None:
        # polar day or night: the sun never crosses the chosen depression. Listen all night-day if it is
        # dark at local noon, not at all if it is light at midnight.
        noon = dt.datetime.combine(date, dt.time(12), tzinfo=tz)
        threshold = 0.0 if s.twilight == "sunset" else -DEPRESSION[s.twilight]
        if sun.elevation(obs, noon) < threshold:
            return _local_midnight(date, tz), _local_midnight(nxt, tz)
        return None
    start += dt.timedelta(minutes=s.dusk_offset_min)
    end += dt.timedelta(minutes=s.dawn_offset_min)
    return (start, end) if end > start else None


def active_windows(date: dt.date, settings: ScheduleConfig, tz: ZoneInfo | str = "UTC") -> list[Window]:
    """The listening windows that start on local `date`, as (start, end) aware datetimes in UTC."""
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    utc = dt.timezone.utc
    if settings.mode == "always":
        wins = [(_local_midnight(date, tz), _local_midnight(date + dt.timedelta(days=1), tz))]
    elif settings.mode == "dusk_to_dawn":
        w = _dusk_dawn(date, settings, tz)
        wins = [w] if w else []
    else:
        wins = []
        for i, text in enumerate(settings.windows):
            t0, t1 = parse_window(text, f"schedule.windows[{i}]")
            start = dt.datetime.combine(date, t0, tzinfo=tz)
            end_day = date if t1 > t0 else date + dt.timedelta(days=1)  # crosses midnight
            wins.append((start, dt.datetime.combine(end_day, t1, tzinfo=tz)))
    return sorted((a.astimezone(utc), b.astimezone(utc)) for a, b in wins)


def is_active(now: dt.datetime, settings: ScheduleConfig, tz: ZoneInfo | str = "UTC") -> bool:
    """Whether `now` (aware) lies in a listening window (yesterday's night may still be running)."""
    if settings.mode == "always":
        return True
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(tz).date()
    for day in (today - dt.timedelta(days=1), today):
        if any(a <= now < b for a, b in active_windows(day, settings, tz)):
            return True
    return False


def next_change(now: dt.datetime, settings: ScheduleConfig, tz: ZoneInfo | str = "UTC") -> dt.datetime | None:
    """The next instant listening starts or stops (for the status file and logs); None for `always`."""
    if settings.mode == "always":
        return None
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    today = now.astimezone(tz).date()
    edges = sorted(t for d in range(-1, 3) for w in active_windows(today + dt.timedelta(days=d), settings, tz)
                   for t in w if t > now)
    return edges[0] if edges else None
