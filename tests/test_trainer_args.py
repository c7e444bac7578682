"""Training options: config values are checked and converted to each option's type; no torch needed."""

from __future__ import annotations

import json

import pytest

from hootwatch.edge.core.errors import ConfigError
from hootwatch.trainer.args import make_args


def _cfg(tmp_path, values: dict, suffix: str = ".json"):
    p = tmp_path / f"c{suffix}"
    p.write_text(json.dumps({"data": "D", "out": "R", **values}))
    return str(p)


def test_string_values_are_converted_to_the_option_type(tmp_path):
    args = make_args(_cfg(tmp_path, {"epochs": "10", "tiny": "false", "learning_rate": "1e-3",
                                     "augment": "no", "sample_rate": 8000.0}))
    assert args.epochs == 10 and isinstance(args.epochs, int)
    assert args.tiny is False and args.augment is False  # "false" is not a truthy string
    assert args.learning_rate == 1e-3 and args.sample_rate == 8000 and isinstance(args.sample_rate, int)
    assert make_args(_cfg(tmp_path, {"tiny": "TRUE"})).tiny is True


@pytest.mark.parametrize("key,value", [("epochs", "ten"), ("epochs", 2.5), ("tiny", "maybe"), ("tiny", 3),
                                       ("learning_rate", [1, 2]), ("base", 12), ("batch_size", True)])
def test_wrong_typed_values_name_the_key_and_the_file(tmp_path, key, value):
    path = _cfg(tmp_path, {key: value})
    with pytest.raises(ConfigError) as exc:
        make_args(path)
    assert repr(key) in str(exc.value) and path in str(exc.value)


def test_optional_options_accept_null_and_snr_db_is_not_an_option(tmp_path):
    assert make_args(_cfg(tmp_path, {"learning_rate": None})).learning_rate is None
    with pytest.raises(ConfigError, match="snr_db"):
        make_args(_cfg(tmp_path, {"snr_db": [0, 10]}))
    with pytest.raises(ConfigError, match="snr_db"):
        make_args(data="D", out="R", snr_db=(0, 10))


def test_band_limit_defaults_to_the_owls_band_and_is_checked(tmp_path):
    args = make_args(data="D", out="R")
    assert (args.highpass_hz, args.lowpass_hz) == (150.0, 3000.0)
    off = make_args(data="D", out="R", highpass_hz=0, lowpass_hz=0)   # 0 switches it off
    assert (off.highpass_hz, off.lowpass_hz) == (None, None)
    with pytest.raises(ConfigError, match="highpass_hz .* must be below lowpass_hz"):
        make_args(data="D", out="R", highpass_hz=3000, lowpass_hz=200)
    with pytest.raises(ConfigError, match="lowpass_hz must be 0"):
        make_args(data="D", out="R", lowpass_hz=-5)


def test_a_run_saved_before_the_band_limit_resumes_without_one(tmp_path):
    # its model learned unfiltered windows: resuming it with today's default band would change its input
    run = tmp_path / "old_run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"args": {"data": "D", "out": str(run), "tiny": True}}))
    args = make_args(out=str(run), resume=True)
    assert args.resume and args.tiny and args.highpass_hz is None and args.lowpass_hz is None
    # saying "no filter" again, as 0, is the same setting, not a change
    assert make_args(out=str(run), resume=True, highpass_hz=0, lowpass_hz=0).highpass_hz is None


def test_nan_and_inf_are_refused_naming_the_key(tmp_path):
    # the hand-written checks let `learning_rate = nan` (TOML) or "inf" through to training
    for text, key in (("learning_rate = nan", "learning_rate"), ("window_s = inf", "window_s"),
                      ('snr_max_db = "-inf"', "snr_max_db")):
        path = tmp_path / "c.toml"
        path.write_text(f'data = "D"\nout = "R"\n{text}\n')
        with pytest.raises(ConfigError) as exc:
            make_args(str(path))
        assert f"option {key!r} must be a finite number" in exc.value.message and str(path) in exc.value.message
        assert exc.value.hint == f"fix the value of {key} in config file {path}"
    with pytest.raises(ConfigError, match="'learning_rate' must be a finite number or left out"):
        make_args(data="D", out="R", learning_rate=float("nan"))   # `--learning-rate nan`


@pytest.mark.parametrize("key,value,must_be", [("tiny", 1, "true or false"), ("tiny", "10", "true or false"),
                                               ("learning_rate", True, "a number or left out"),
                                               ("epochs", False, "a whole number")])
def test_numbers_and_switches_stay_apart(tmp_path, key, value, must_be):
    # pydantic's lax mode alone would read 1 as true and true as 1
    path = _cfg(tmp_path, {key: value})
    with pytest.raises(ConfigError) as exc:
        make_args(path)
    assert exc.value.message == f"config file {path}: option {key!r} must be {must_be}, got {value!r}"


@pytest.mark.parametrize("key,value,must_be", [("data", 5, "text"), ("label_column", 5, "text or left out"),
                                               ("epochs", float("inf"), "a whole number"),
                                               ("sample_rate", float("nan"), "a whole number or left out"),
                                               ("epochs", [1], "a whole number")])
def test_wrong_values_are_said_in_the_options_words(key, value, must_be):
    # the words are the daemon config's (hootwatch.edge.core.validation), but text is "text" and a whole number
    # stays "a whole number" for nan and inf
    with pytest.raises(ConfigError) as exc:
        make_args(**{"data": "D", "out": "R", key: value})
    assert exc.value.message == f"the command line: option {key!r} must be {must_be}, got {value!r}"


def test_the_first_wrong_key_as_written_is_named_and_unknown_keys_come_first(tmp_path):
    with pytest.raises(ConfigError, match="option 'tiny' must be"):
        make_args(_cfg(tmp_path, {"tiny": "maybe", "epochs": "x"}))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['snr_db', 'zz'\]"):
        make_args(_cfg(tmp_path, {"epochs": "x", "zz": 1, "snr_db": 2}))
