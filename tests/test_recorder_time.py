from datetime import datetime, timezone

import pytest

from hootwatch.edge.core.errors import ConfigError, HootwatchError
from hootwatch.edge.contract.recorder_time import RecorderTimeError, file_time, parse_audiomoth_comment, parse_tz


def utc(*a):
    return datetime(*a, tzinfo=timezone.utc)


def touch(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    return p


def test_real_audiomoth_header(shared_real):
    t = file_time(shared_real / "recorder_fixtures/metadata.wav")
    assert (t.start_utc, t.source, t.recorder_id) == (utc(2020, 4, 4, 10, 25), "audiomoth_header", "24526B065D325963")


def test_real_songmeter_names_need_tz_then_use_it(shared_real):
    p = shared_real / "soundscape_sm4/S4A03895_20190522_003000.wav"
    with pytest.raises(ConfigError, match="--tz") as e:
        file_time(p)
    assert "S4A03895_20190522_003000.wav" in str(e.value)
    t = file_time(p, "Australia/Melbourne")  # AEST, UTC+10 in May
    assert (t.start_utc, t.source, t.recorder_id) == (utc(2019, 5, 21, 14, 30), "filename_songmeter", "S4A03895")
    assert t.local(t.start_utc).isoformat() == "2019-05-22T00:30:00+10:00"


def test_audiomoth_comment_with_offset():
    start, offset, serial = parse_audiomoth_comment(
        "Recorded at 21:00:00 14/02/2022 (UTC+10) by AudioMoth 24F319055FDF2F5B at medium gain")
    assert start == utc(2022, 2, 14, 11, 0) and serial == "24F319055FDF2F5B"
    assert parse_audiomoth_comment("Recorded at 01:30:00 01/01/2022 (UTC-3:30) by AudioMoth 0000000000000001")[0] \
        == utc(2022, 1, 1, 5, 0)


@pytest.mark.parametrize("name, tz, expected, source, recorder", [
    ("20200404_102500.WAV", None, utc(2020, 4, 4, 10, 25), "filename_audiomoth", ""),
    ("5E886084.WAV", None, utc(2020, 4, 4, 10, 25, 8), "filename_audiomoth_hex", ""),
    ("20191003T050000+1000_REC.flac", None, utc(2019, 10, 2, 19, 0), "filename_barlt", ""),
    ("20191003T050000+1030_Site3_-35.1+149.2.flac", None, utc(2019, 10, 2, 18, 30), "filename_barlt", ""),
    ("SMM04127_0+1_20210305_213000.wav", "Australia/Sydney", utc(2021, 3, 5, 10, 30), "filename_songmeter", "SMM04127"),
    ("SWIFT08_20220110_190000.wav", "+10:00", utc(2022, 1, 10, 9, 0), "filename_swift", "SWIFT08"),
    ("site_12_20200101_120000_30_0.wav", "UTC", utc(2020, 1, 1, 12, 0), "filename_datetime", ""),
])
def test_file_name_patterns(tmp_path, name, tz, expected, source, recorder):
    t = file_time(touch(tmp_path, name), tz)
    assert (t.start_utc, t.source, t.recorder_id) == (expected, source, recorder)


def _wav(path, seconds, comment=None, sr=8000):
    import numpy as np
    import soundfile as sf

    with sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16") as f:
        if comment:
            f.comment = comment
        f.write(np.zeros(int(seconds * sr), np.float32))
    return path


def test_mtime_fallback_is_the_end_of_the_recording(tmp_path, caplog):
    """Recorders (and copies) set the modification time when the file is closed: the start is mtime - duration."""
    p = _wav(tmp_path / "nightrecording.wav", 60.0)
    import os
    os.utime(p, (1_600_000_000, 1_600_000_000))
    t = file_time(p)
    assert t.source == "mtime" and t.start_utc == datetime.fromtimestamp(1_600_000_000 - 60, timezone.utc)
    assert file_time(p, duration_s=30.0).start_utc == datetime.fromtimestamp(1_600_000_000 - 30, timezone.utc)
    assert "modification time" in caplog.text and "END of the recording" in caplog.text


def test_unreadable_mtime_fails_the_file_never_1970(tmp_path, monkeypatch):
    p = _wav(tmp_path / "nightrecording.wav", 1.0)
    real_stat = type(p).stat

    def stat(self, *a, **k):
        if self.name == "nightrecording.wav":
            raise PermissionError(13, "Permission denied")
        return real_stat(self, *a, **k)

    monkeypatch.setattr(type(p), "stat", stat)
    with pytest.raises(RecorderTimeError, match="modification time cannot be read") as e:
        file_time(p)
    assert "nightrecording.wav" in str(e.value) and "YYYYMMDD_HHMMSS" in str(e.value)


AM = "Recorded at {} ({}) by AudioMoth 24F319055FDF2F5B at medium gain"


@pytest.mark.parametrize("when, zone, reason", [
    ("21:00:00 41/02/2022", "UTC+10", "day is out of range"),
    ("21:00:00 14/13/2022", "UTC", "month must be in 1..12"),
    ("21:00:00 14/02/0000", "UTC", "year 0"),
    ("21:00:00 14/02/2022", "UTC+25", "offset UTC+25"),
])
def test_impossible_audiomoth_header_fails_that_file_with_the_reason(tmp_path, when, zone, reason):
    p = _wav(tmp_path / "rec.WAV", 0.1, AM.format(when, zone))
    with pytest.raises(RecorderTimeError) as e:
        file_time(p, "UTC")
    assert isinstance(e.value, HootwatchError) and "rec.WAV" in str(e.value) and reason in str(e.value)
    assert "audiomoth header" in str(e.value) and "clock" in e.value.hint


@pytest.mark.parametrize("name, tz, reason", [
    ("SMM04127_00010101_213000.wav", "Australia/Sydney", "year 1, outside 1990-2100"),
    ("SMM04127_00010101_213000.wav", None, "year 1"),          # not the missing --tz: this file alone fails
    ("99991231_235959.WAV", None, "year 9999"),
    ("SWIFT08_99991231_190000.wav", "+10:00", "year 9999"),
    ("site_12_99991231_120000_30_0.wav", "UTC", "year 9999"),
    ("20191003T050000+9900_REC.flac", None, "offset +9900"),
    ("SMM04127_20211305_213000.wav", "UTC", "20211305_213000 is not a valid date"),
])
def test_impossible_file_name_times_fail_that_file_with_the_reason(tmp_path, name, tz, reason):
    with pytest.raises(RecorderTimeError) as e:
        file_time(touch(tmp_path, name), tz)
    assert name in str(e.value) and reason in str(e.value)


def test_bad_tz_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown timezone"):
        parse_tz("Mars/Olympus")


def test_real_audiomoth_header_carries_its_zone(shared_real):
    t = file_time(shared_real / "recorder_fixtures/metadata.wav", "Australia/Sydney")
    assert (t.start_utc, t.source, t.recorder_id) == (utc(2020, 4, 4, 10, 25), "audiomoth_header", "24526B065D325963")


def test_audiomoth_header_in_local_time_is_converted_to_utc(tmp_path):
    import numpy as np
    import soundfile as sf

    p = tmp_path / "20220214_210000.WAV"  # the name says 21:00 (as if UTC); the header says UTC+10
    with sf.SoundFile(str(p), "w", 8000, 1, subtype="PCM_16") as f:
        f.comment = "Recorded at 21:00:00 14/02/2022 (UTC+10) by AudioMoth 24F319055FDF2F5B at medium gain"
        f.write(np.zeros(800, np.float32))
    t = file_time(p)
    assert (t.start_utc, t.source, t.recorder_id) == (utc(2022, 2, 14, 11, 0), "audiomoth_header", "24F319055FDF2F5B")
    assert t.local(t.start_utc).isoformat() == "2022-02-14T21:00:00+10:00"


def test_audiomoth_names_stay_utc_and_warn_once_when_another_tz_is_given(tmp_path, caplog):
    a, b = touch(tmp_path, "20200404_102500.WAV"), touch(tmp_path, "20200404_112500.WAV")
    assert file_time(a, "UTC").start_utc == utc(2020, 4, 4, 10, 25) and "read as UTC" not in caplog.text
    assert file_time(a, "Australia/Sydney").start_utc == utc(2020, 4, 4, 10, 25)
    assert file_time(b, "Australia/Sydney").start_utc == utc(2020, 4, 4, 11, 25)
    assert caplog.text.count("read as UTC") == 1 and "Australia/Sydney" in caplog.text
