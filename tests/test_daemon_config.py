"""Daemon config validation, check-config, the schedule (pure), sd_notify, the status file and the disk guard."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import tomllib
from pathlib import Path

import pytest

from hootwatch.edge.commands.main import main as cli_main
from hootwatch.edge.daemon.config import ScheduleConfig, config_from_dict, example_toml, load_config
from hootwatch.edge.daemon.diskguard import DiskGuard
from hootwatch.edge.daemon.health import Health, write_json_atomic
from hootwatch.edge.daemon.notify import Heartbeats, Notifier
from hootwatch.edge.daemon.schedule import active_windows, is_active, next_change
from hootwatch.edge.core.errors import ConfigError

MINIMAL = """
[model]
bundle = "/path/to/bundle"
[sources.folder]
path = "/path/to/incoming"
[output]
dir = "/path/to/detections"
timezone = "Australia/Sydney"
"""

UTC = dt.timezone.utc


def _with(extra: str, section: str = "[sources.folder]") -> dict:
    if extra.startswith("["):  # a whole new section goes at the end
        return tomllib.loads(f"{MINIMAL}\n{extra}\n")
    return tomllib.loads(MINIMAL.replace(section, f"{section}\n{extra}", 1))


def test_minimal_config_runs_a_folder_watcher_with_defaults():
    cfg = config_from_dict(tomllib.loads(MINIMAL))
    assert cfg.sources.folder.path == Path("/path/to/incoming")
    assert cfg.sources.microphone is None
    assert cfg.schedule.mode == "always" and cfg.health.watchdog is True
    assert cfg.status_file == Path("/path/to/detections/status.json")


@pytest.mark.parametrize("extra, section, message", [
    ("poll_interval_s = 0", "[sources.folder]",
     "sources.folder.poll_interval_s: must be between 0.5 and 3600, got 0"),
    ("pol = true", "[sources.folder]", "sources.folder.pol: unknown key"),
    ('after = "burn"', "[sources.folder]", "sources.folder.after: must be one of"),
    ('after = "archive"', "[sources.folder]", "sources.folder.archive_dir: missing"),
    ('settle_s = "5"', "[sources.folder]", "sources.folder.settle_s: must be a number"),
    ("recursive = 1", "[sources.folder]", "sources.folder.recursive: must be true or false"),
    ("threads = 2.5", "[model]", "model.threads: must be a whole number"),
    ("threshold = 1.5", "[model]", "model.threshold: must be between 0 and 1, got 1.5"),
    ("[sources.microphone]\nsample_rate = 100", "[output]", "sources.microphone.sample_rate: must be between"),
    ('[schedule]\nmode = "dusk_to_dawn"', "[output]", "schedule.latitude: missing"),
    ('[schedule]\nmode = "windows"\nwindows = ["7pm-6am"]', "[output]", "schedule.windows[0]: must look like"),
    ("[schedule]\nlatitude = -91", "[output]", "schedule.latitude: must be between -90 and 90, got -91"),
    ("[healt]", "[output]", "healt: unknown key"),
])
def test_invalid_values_are_rejected_naming_the_key(extra, section, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(_with(extra, section))
    assert message in e.value.message
    assert e.value.hint


def test_bad_timezone_and_missing_source_are_named():
    with pytest.raises(ConfigError, match="output.timezone: unknown time zone 'Australia/Sydny'"):
        config_from_dict(tomllib.loads(MINIMAL.replace("Australia/Sydney", "Australia/Sydny")))
    with pytest.raises(ConfigError, match="sources: no source configured"):
        config_from_dict(tomllib.loads(MINIMAL.replace('[sources.folder]\npath = "/path/to/incoming"', "")))


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    f = tmp_path / "site" / "hootwatch.toml"
    f.parent.mkdir()
    f.write_text(MINIMAL.replace('"/path/to/incoming"', '"incoming"'))
    assert load_config(f).sources.folder.path == tmp_path / "site" / "incoming"


def _on_this_machine(tmp_path) -> str:
    """MINIMAL with a real bundle and watched folder (check-config checks that they exist)."""
    from tiny_bundles import tone_bundle
    bundle = tone_bundle(tmp_path / "bundle")
    (tmp_path / "incoming").mkdir()
    return (MINIMAL.replace("/path/to/bundle", str(bundle)).replace("/path/to/incoming", str(tmp_path / "incoming"))
            .replace("/path/to/detections", str(tmp_path / "detections")))


def test_check_config_prints_effective_config_or_the_error(tmp_path, capsys):
    minimal = _on_this_machine(tmp_path)
    good = tmp_path / "good.toml"
    good.write_text(minimal)
    assert cli_main(["check-config", str(good)]) == 0
    printed = capsys.readouterr().out
    effective = tomllib.loads(printed)  # the effective config is itself valid TOML...
    assert effective["sources"]["folder"]["settle_s"] == 5.0  # ...with the defaults filled in
    assert config_from_dict(effective) == config_from_dict(tomllib.loads(minimal))
    bad = tmp_path / "bad.toml"
    bad.write_text(minimal.replace("[output]", "[output]\nexport_every_min = -1"))
    assert cli_main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "output.export_every_min: must be between 0 and 1440, got -1" in err and "bad.toml" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\n")
    assert cli_main(["check-config", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_example_validates_and_its_microphone_section_validates_when_uncommented(capsys):
    assert cli_main(["check-config", "--example"]) == 0
    text = capsys.readouterr().out
    assert text == example_toml()
    cfg = config_from_dict(tomllib.loads(text))
    assert cfg.sources.microphone is None and cfg.sources.folder is not None
    uncommented = "\n".join(line[2:] if line.startswith("# [sources.microphone]") or
                            (line.startswith("# ") and "=" in line and "(unset)" not in line and
                             not line.startswith("# #")) else line
                            for line in text.splitlines())
    # only the microphone block is commented key = value lines (unset keys are doubly commented)
    assert config_from_dict(tomllib.loads(uncommented)).sources.microphone.sample_rate == 48000


def test_systemd_example_config_is_the_generated_example():
    example = Path(__file__).resolve().parents[1] / "systemd" / "hootwatch.toml.example"
    assert example.read_text() == example_toml()


# ---------------------------------------------------------------- schedule (pure, no sleeping)

SYDNEY = ScheduleConfig(mode="dusk_to_dawn", latitude=-33.87, longitude=151.21)


def test_dusk_to_dawn_in_sydney_midwinter_and_midsummer():
    (start, end), = active_windows(dt.date(2026, 6, 21), SYDNEY, "Australia/Sydney")
    local = lambda t: t.astimezone(dt.timezone(dt.timedelta(hours=10)))  # AEST, no DST in June
    assert 17 <= local(start).hour < 18 and local(start).date() == dt.date(2026, 6, 21)  # civil dusk ~17:20
    assert 6 <= local(end).hour < 7 and local(end).date() == dt.date(2026, 6, 22)  # civil dawn ~06:30
    (s2, e2), = active_windows(dt.date(2026, 12, 21), SYDNEY, "Australia/Sydney")
    assert (e2 - s2) < (end - start) - dt.timedelta(hours=3)  # summer nights are much shorter
    assert start.tzinfo == UTC


def test_offsets_shift_dusk_and_dawn():
    day = dt.date(2026, 6, 21)
    (s0, e0), = active_windows(day, SYDNEY, "Australia/Sydney")
    shifted = ScheduleConfig(mode="dusk_to_dawn", latitude=-33.87, longitude=151.21, dusk_offset_min=-30,
                             dawn_offset_min=45)
    (s1, e1), = active_windows(day, shifted, "Australia/Sydney")
    assert s0 - s1 == dt.timedelta(minutes=30) and e1 - e0 == dt.timedelta(minutes=45)


def test_is_active_across_midnight_and_not_at_noon():
    tz = "Australia/Sydney"
    aest = dt.timezone(dt.timedelta(hours=10))
    assert is_active(dt.datetime(2026, 6, 22, 2, 0, tzinfo=aest), SYDNEY, tz)   # last night's window
    assert is_active(dt.datetime(2026, 6, 21, 22, 0, tzinfo=aest), SYDNEY, tz)
    assert not is_active(dt.datetime(2026, 6, 21, 12, 0, tzinfo=aest), SYDNEY, tz)
    assert is_active(dt.datetime(2026, 6, 21, 12, 0, tzinfo=aest), ScheduleConfig(), tz)  # always


def test_fixed_windows_cross_midnight_and_follow_daylight_saving():
    w = ScheduleConfig(mode="windows", windows=["19:00-06:00"])
    tz = "Australia/Sydney"
    (s, e), = active_windows(dt.date(2026, 4, 4), w, tz)  # DST ends at 03:00 on 5 April 2026: 12 h night
    assert s == dt.datetime(2026, 4, 4, 8, 0, tzinfo=UTC) and e == dt.datetime(2026, 4, 4, 20, 0, tzinfo=UTC)
    assert e - s == dt.timedelta(hours=12)
    aest = dt.timezone(dt.timedelta(hours=10))
    assert is_active(dt.datetime(2026, 6, 22, 5, 59, tzinfo=aest), w, tz)
    assert not is_active(dt.datetime(2026, 6, 22, 6, 0, tzinfo=aest), w, tz)
    assert next_change(dt.datetime(2026, 6, 22, 5, 0, tzinfo=aest), w, tz) == dt.datetime(2026, 6, 21, 20, 0,
                                                                                          tzinfo=UTC)


def test_polar_summer_has_no_night_and_polar_winter_is_all_night():
    svalbard = ScheduleConfig(mode="dusk_to_dawn", latitude=78.2, longitude=15.6)
    assert active_windows(dt.date(2026, 6, 21), svalbard, "Arctic/Longyearbyen") == []
    (s, e), = active_windows(dt.date(2026, 12, 21), svalbard, "Arctic/Longyearbyen")
    assert e - s == dt.timedelta(hours=24)


# ---------------------------------------------------------------- sd_notify, status file, disk guard

def test_notifier_sends_datagrams_to_a_path_socket_and_pings_at_a_quarter_of_watchdogsec(tmp_path):
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(1.0)
    n = Notifier(address=str(path), watchdog_usec="400000", watchdog_pid=str(os.getpid()))
    assert n.ready("warm") and server.recv(100) == b"READY=1\nSTATUS=warm"
    assert n.watchdog() and server.recv(100) == b"WATCHDOG=1"
    assert not n.watchdog()  # within 0.1 s of the last ping: not repeated
    time.sleep(0.12)
    assert n.watchdog()
    server.close()
    assert not Notifier(address="").ready()  # outside systemd: a no-op
    assert Notifier(address=str(path), watchdog_usec="1000", watchdog_pid="1").watchdog_s is None


def test_heartbeats_stop_pinging_when_one_loop_stalls(tmp_path):
    path = tmp_path / "n.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    # WatchdogSec 1 s: a loop is stalled after 0.5 s without a beat (wide enough for a loaded CI machine)
    beats = Heartbeats(Notifier(address=str(path), watchdog_usec="1000000", watchdog_pid=str(os.getpid())),
                       names=("folder", "microphone"))
    beats.beat("folder")
    beats.beat("microphone")
    assert server.recv(100) == b"WATCHDOG=1"
    time.sleep(0.6)  # only the folder loop keeps beating: the microphone loop is stalled
    for _ in range(3):
        assert not beats.beat("folder")
        time.sleep(0.05)
    assert beats.stalled() == ["microphone"]
    with pytest.raises(BlockingIOError):
        server.recv(100)
    server.close()


def test_status_file_is_replaced_atomically(tmp_path):
    h = Health()
    h.add(files_done=2, overruns=1)
    h.update(state="running")
    target = tmp_path / "status" / "status.json"
    write_json_atomic(target, h.snapshot())
    data = json.loads(target.read_text())
    assert data["files_done"] == 2 and data["overruns"] == 1 and data["state"] == "running"
    assert [p.name for p in target.parent.iterdir()] == ["status.json"]  # no temporary left behind


def test_disk_guard_pauses_below_floor_and_resumes_above_it(tmp_path, caplog):
    g = DiskGuard(tmp_path, min_free_mb=500)
    assert g.check(free_mb=800) and g.writes_allowed
    assert not g.check(free_mb=400)
    assert "disk low" in caplog.text
    assert not g.check(free_mb=510)  # just above the floor: hysteresis, no flapping
    assert g.check(free_mb=700) and "resumed" in caplog.text
    assert g.free_space_mb() > 0  # a real measurement of tmp_path's file system


def test_dusk_to_dawn_is_one_night_even_when_the_zone_is_not_the_sites():
    # a Sydney site with timezone = "UTC": the night must still end at the first dawn after dusk
    for day in (dt.date(2026, 6, 21), dt.date(2026, 12, 21)):
        (s_utc, e_utc), = active_windows(day, SYDNEY, "UTC")
        assert dt.timedelta(hours=8) < e_utc - s_utc < dt.timedelta(hours=15)
    (s_syd, e_syd), = active_windows(dt.date(2026, 6, 21), SYDNEY, "Australia/Sydney")
    (s_utc, e_utc), = active_windows(dt.date(2026, 6, 21), SYDNEY, "UTC")
    assert (s_utc, e_utc) == (s_syd, e_syd)  # 21 June 07:2x UTC is that evening in Sydney too
    aest = dt.timezone(dt.timedelta(hours=10))
    for hour in (10, 12, 14):
        assert not is_active(dt.datetime(2026, 6, 22, hour, 0, tzinfo=aest), SYDNEY, "UTC")  # Sydney daytime
    assert is_active(dt.datetime(2026, 6, 22, 2, 0, tzinfo=aest), SYDNEY, "UTC")
    assert is_active(dt.datetime(2026, 6, 21, 22, 0, tzinfo=aest), SYDNEY, "UTC")


def test_timezone_is_required_and_recorder_timezone_defaults_to_it():
    with pytest.raises(ConfigError) as e:
        config_from_dict(tomllib.loads(MINIMAL.replace('timezone = "Australia/Sydney"', "")))
    assert e.value.message == "output.timezone: missing"
    assert 'timezone = "Australia/Sydney"' in e.value.hint and "Song Meter" in e.value.hint
    assert config_from_dict(_with("")).recorder_timezone == "Australia/Sydney"
    cfg = config_from_dict(_with('recorder_timezone = "+10:00"'))
    assert cfg.recorder_timezone == "+10:00" and cfg.output.timezone == "Australia/Sydney"
    with pytest.raises(ConfigError, match="sources.folder.recorder_timezone: unknown time zone 'Sydney'"):
        config_from_dict(_with('recorder_timezone = "Sydney"'))


def test_every_problem_of_a_file_is_reported_at_once():
    data = _with('poll_interval_s = 0\nafter = "burn"\npol = true')
    data["model"]["threads"] = 2.5
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    msg = e.value.message
    assert msg.startswith("4 problems:")
    for part in ("sources.folder.poll_interval_s: must be between", "sources.folder.after: must be one of",
                 "sources.folder.pol: unknown key", "model.threads: must be a whole number"):
        assert part in msg, part
    assert msg.count("fix:") == 4


def test_check_config_checks_what_run_checks_and_reports_it_all(tmp_path, capsys, monkeypatch):
    """A bundle or watched folder that is not there, and a microphone without PortAudio: all named at once, and
    `run` refuses the same config with the same words (exit 2), before writing anything."""
    import builtins
    real_import = builtins.__import__

    def no_portaudio(name, *a, **kw):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    cfg = tmp_path / "h.toml"
    cfg.write_text(MINIMAL.replace("/path/to/bundle", str(tmp_path / "nobundle"))
                   .replace("/path/to/incoming", str(tmp_path / "not_mounted"))
                   .replace("/path/to/detections", str(tmp_path / "out")) + "[sources.microphone]\n")
    assert cli_main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "3 problems" in err and "Traceback" not in err
    assert "model.bundle:" in err and "no such bundle folder" in err
    assert "sources.folder.path:" in err and "not_mounted does not exist" in err
    assert "the microphone cannot work: PortAudio library not found" in err and "libportaudio2" in err
    import signal
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert cli_main(["run", "--config", str(cfg)]) == 2
    finally:
        for sig, h in handlers.items():  # `run` installs its own; give pytest its Ctrl-C back
            signal.signal(sig, h)
    assert capsys.readouterr().err.split("error: ", 1)[1] == err.split("error: ", 1)[1]
    assert not (tmp_path / "out").exists()


def test_check_config_says_the_review_app_needs_its_extra(tmp_path, capsys, monkeypatch):
    """[review] enabled without hootwatch[review]: refused at check-config (and so before `run` starts
    anything), not after the model, watcher and microphone are up."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    from tiny_bundles import tone_bundle
    bundle = tone_bundle(tmp_path / "bundle")
    (tmp_path / "in").mkdir()
    cfg = tmp_path / "h.toml"
    cfg.write_text(MINIMAL.replace("/path/to/bundle", str(bundle)).replace("/path/to/incoming", str(tmp_path / "in"))
                   .replace("/path/to/detections", str(tmp_path / "out")) + "[review]\nenabled = true\n")
    assert cli_main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "review.enabled: the review app needs fastapi" in err and "hootwatch[review]" in err


def test_check_config_refuses_a_hop_longer_than_the_bundles_window(tmp_path, capsys):
    cfg = tmp_path / "long-hop.toml"
    cfg.write_text(_on_this_machine(tmp_path).replace("[model]", "[model]\nhop_s = 30"))
    assert cli_main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "model.hop_s: must be at most the model's window (" in err and ", got 30" in err
    assert "remove it to use the bundle's" in err
