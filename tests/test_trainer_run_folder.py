"""--overwrite deletes only a hootwatch run folder (no training here: the rules are checked directly)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hootwatch.edge.core.errors import ConfigError
from hootwatch.trainer.args import make_args
from hootwatch.trainer.train import prepare_run_dir


class _Quiet:
    def print(self, *a, **k):
        pass


def _overwrite(out: Path, data: Path | str = "D") -> bool:
    return prepare_run_dir(make_args(data=str(data), out=str(out), overwrite=True), _Quiet())


def _fake_run(out: Path) -> Path:
    (out / "checkpoints").mkdir(parents=True)
    (out / "run_config.json").write_text(json.dumps({"args": {}}))
    (out / "metrics.json").write_text("{}")
    return out


def test_overwrite_refuses_a_folder_of_recordings(tmp_path):
    rec = tmp_path / "recordings"
    rec.mkdir()
    (rec / "night1.wav").write_bytes(b"RIFF....")
    with pytest.raises(ConfigError, match="not a hootwatch run folder"):
        _overwrite(rec)
    assert (rec / "night1.wav").is_file()


def test_overwrite_refuses_a_run_holding_other_files(tmp_path):
    out = _fake_run(tmp_path / "run")
    (out / "field_notes.xlsx").write_text("x")
    with pytest.raises(ConfigError, match="field_notes.xlsx"):
        _overwrite(out)
    assert (out / "field_notes.xlsx").is_file() and (out / "run_config.json").is_file()


def test_overwrite_refuses_out_containing_data(tmp_path):
    out = _fake_run(tmp_path / "run")
    (out / "data" / "owl").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds the training data"):
        _overwrite(out, out / "data")
    with pytest.raises(ConfigError, match="holds the training data"):
        _overwrite(out, out)
    assert (out / "data" / "owl").is_dir()


def test_overwrite_refuses_cwd_and_home(tmp_path, monkeypatch):
    out = _fake_run(tmp_path / "run")
    monkeypatch.chdir(out)
    with pytest.raises(ConfigError, match="current folder"):
        _overwrite(Path("."))
    monkeypatch.setenv("HOME", str(out))
    with pytest.raises(ConfigError, match="home folder"):
        _overwrite(Path("~").expanduser())
    assert (out / "run_config.json").is_file()


def test_overwrite_deletes_a_run_folder(tmp_path):
    out = _fake_run(tmp_path / "run")
    (out / "model").mkdir()
    (out / "model" / "hootwatch.json").write_text("{}")
    assert _overwrite(out) is False
    assert out.is_dir() and not any(out.iterdir())


def test_run_meta_is_written_as_before_and_read_back_whole(tmp_path):
    from hootwatch.edge.contract.preprocess import Normalisation
    from hootwatch.trainer.run_folder import RunMeta

    meta = RunMeta(positive_label="owl", sample_rate=16000, window_s=5.0, hop_s=2.5, threshold=0.61,
                   normalisation=Normalisation(highpass_hz=150.0, lowpass_hz=3000.0), backbone="tiny-wav2vec2",
                   labels=("not_owl", "owl"))
    meta.write(tmp_path / "hootwatch.json")
    written = json.loads((tmp_path / "hootwatch.json").read_text())
    assert list(written) == ["positive_label", "sample_rate", "window_s", "hop_s", "threshold", "normalisation",
                             "backbone", "labels"]   # the keys and their order of every earlier run folder
    assert written["normalisation"] == meta.normalisation.to_dict() and written["labels"] == ["not_owl", "owl"]
    assert RunMeta.read(tmp_path / "hootwatch.json", ("not_owl", "owl")) == meta



@pytest.mark.parametrize("key, value, says", [("hop_s", 6.0, "hop_s 6 s must be above 0 and at most"),
                                              ("hop_s", 0.0, "hop_s 0 s must be above 0"),
                                              ("threshold", 1.5, "threshold 1.5 is outside [0, 1]")])
def test_run_meta_out_of_range_names_the_file_and_the_value(tmp_path, key, value, says):
    from hootwatch.edge.contract.preprocess import Normalisation
    from hootwatch.trainer.run_folder import RunMeta

    meta = RunMeta(positive_label="owl", sample_rate=16000, window_s=5.0, hop_s=2.5, threshold=0.5,
                   normalisation=Normalisation(highpass_hz=150.0, lowpass_hz=3000.0), backbone="tiny-wav2vec2",
                   labels=("not_owl", "owl"))
    meta.write(tmp_path / "hootwatch.json")
    data = json.loads((tmp_path / "hootwatch.json").read_text())
    (tmp_path / "hootwatch.json").write_text(json.dumps({**data, key: value}))
    with pytest.raises(ConfigError, match=r"hootwatch\.json: " + says.replace("[", r"\[").replace("]", r"\]")):
        RunMeta.read(tmp_path / "hootwatch.json", ("not_owl", "owl"))
