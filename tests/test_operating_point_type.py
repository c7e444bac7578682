"""One check of threshold, min_hits and hop (edge/contract/operating_point.py), worded as each place's users see it."""

from argparse import Namespace
from types import SimpleNamespace

import numpy as np
import pytest

from hootwatch.edge.contract.bundle import Manifest
from hootwatch.edge.contract.events import EventBuilder
from hootwatch.edge.contract.operating_point import OperatingPoint, OperatingPointError
from hootwatch.edge.contract.preprocess import Normalisation
from hootwatch.edge.contract.windows import WindowSpec
from hootwatch.edge.core.errors import BundleError, ConfigError


def _manifest(**kw) -> Manifest:
    return Manifest(**{"labels": ("not_owl", "owl"), "positive_label": "owl", "sample_rate": 8000, "window_s": 5.0,
                       "hop_s": 2.5, "normalisation": Normalisation("zero_mean_unit_var"), "threshold": 0.5} | kw)


def _says(exc: pytest.ExceptionInfo, message: str, hint: str) -> None:
    assert (exc.value.message, exc.value.hint) == (message, hint)


def test_a_valid_point_keeps_its_values_and_unset_parts_stay_unset():
    p = OperatingPoint(0.7, 2, 1.0, window_s=5.0)
    assert (p.threshold, p.min_hits, p.hop_s) == (0.7, 2, 1.0)
    assert OperatingPoint() == OperatingPoint(None, None, None)
    assert OperatingPoint(0.0, 1, 5.0, window_s=5.0).hop_s == 5.0 and OperatingPoint(1.0).threshold == 1.0  # ends


def test_numpy_numbers_are_numbers():
    p = OperatingPoint(np.float64(0.7), np.int64(2), np.float32(1.0), window_s=np.float64(5.0))
    assert (p.threshold, p.min_hits, p.hop_s) == (0.7, 2, 1.0)
    assert EventBuilder(0.5, np.int64(2)).min_hits == 2 and EventBuilder(0.5, np.int32(3)).min_hits == 3
    with pytest.raises(OperatingPointError, match="min_hits 0 must be at least 1"):
        EventBuilder(0.5, np.int64(0))
    for bad in (np.float64(2.0), np.bool_(True), True):
        with pytest.raises(OperatingPointError, match="must be a whole number"):
            OperatingPoint(min_hits=bad)


def test_the_error_is_a_config_error_and_a_value_error():
    with pytest.raises(OperatingPointError) as exc:
        OperatingPoint(threshold=1.5)
    assert isinstance(exc.value, ConfigError) and isinstance(exc.value, ValueError)


def test_scan_flags_are_named_as_flags():
    from hootwatch.edge.commands.scan import _settings

    def settings(**kw):
        return _settings(Namespace(**{"hop": None, "threshold": None, "min_hits": None, "batch_size": None,
                                      "tz": None, "clips": False} | kw))

    with pytest.raises(ConfigError) as exc:
        settings(hop=-1.0)
    _says(exc, "--hop -1.0 must be positive", "pass e.g. --hop 2.5")
    with pytest.raises(ConfigError) as exc:
        settings(threshold=2.0)
    _says(exc, "--threshold 2.0 is outside [0, 1]", "pass --threshold between 0 and 1")
    with pytest.raises(ConfigError) as exc:
        settings(min_hits=0)
    _says(exc, "--min-hits 0 must be at least 1", "pass e.g. --min-hits 2")
    assert settings(hop=1.0, threshold=0.7, min_hits=2).min_hits == 2


def test_the_scanner_checks_the_hop_against_the_models_window():
    from hootwatch.edge.scan.engine import Scanner, ScanSettings

    detector = SimpleNamespace(manifest=_manifest())
    with pytest.raises(ConfigError) as exc:
        Scanner(detector, None, ScanSettings(hop_s=10.0))
    _says(exc, "hop 10 s must be above 0 and at most the model's window (5 s)",
          "pass --hop between 0 and 5 (hop_s in the daemon config), or leave it unset to use the bundle's")
    with pytest.raises(ConfigError) as exc:
        Scanner(detector, None, ScanSettings(threshold=-0.1))
    _says(exc, "threshold -0.1 is outside [0, 1]", "pass --threshold between 0 and 1")
    with pytest.raises(ConfigError) as exc:
        Scanner(detector, None, ScanSettings(min_hits=0))
    _says(exc, "min_hits 0 must be at least 1", "pass e.g. --min-hits 2")
    run = Scanner(detector, None, ScanSettings(hop_s=1.0, threshold=0.7, min_hits=2)).run
    assert (run.threshold, run.hop_s, run.min_hits) == (0.7, 1.0, 5)  # 2 x 2.5 s at a 1 s hop


def test_the_manifest_says_re_export_with_a_bundle_error():
    with pytest.raises(BundleError) as exc:
        _manifest(threshold=1.5)
    _says(exc, "threshold 1.5 is outside [0, 1]", "re-export the model")
    for bad in ("2", 1.5, True, None):
        with pytest.raises(BundleError) as exc:
            _manifest(min_hits=bad)
        _says(exc, f"min_hits {bad!r} must be a whole number of at least 1", "re-export the model")
    with pytest.raises(BundleError, match="min_hits 0 must be at least 1"):
        _manifest(min_hits=0)


def test_rebuild_and_export_keep_their_hints():
    from hootwatch.edge.scan.rebuild import rebuild
    from hootwatch.export.core import ExportOptions

    with pytest.raises(ConfigError) as exc:
        rebuild(None, "run", threshold=1.2)
    _says(exc, "--threshold 1.2 is outside [0, 1]", "pass e.g. --threshold 0.7")
    with pytest.raises(ConfigError) as exc:
        rebuild(None, "run", threshold=0.5, min_hits=0)
    _says(exc, "--min-hits 0 must be at least 1", "pass e.g. --min-hits 2")
    with pytest.raises(ConfigError) as exc:
        ExportOptions(source=".", out="b", threshold=1.2)
    _says(exc, "--threshold 1.2 is outside [0, 1]", "pass a probability such as 0.5")
    with pytest.raises(ConfigError) as exc:
        ExportOptions(source=".", out="b", min_hits=1.5)
    _says(exc, "--min-hits 1.5 must be a whole number of at least 1", "pass e.g. --min-hits 2 (or leave it unset: 1)")


def test_the_contract_raises_value_errors_for_bad_values_handed_to_it():
    with pytest.raises(ValueError, match="hop 6 s must be above 0 and at most the model's window"):
        WindowSpec(8000, 5.0, 6.0)
    with pytest.raises(ValueError, match="hop 0 s"):
        WindowSpec(8000, 5.0, 0.0)
    with pytest.raises(ValueError, match="min_hits 0 must be at least 1"):
        EventBuilder(0.5, 0)


def test_the_daemon_config_bounds_are_the_operating_points():
    from hootwatch.edge.daemon.config import ModelConfig

    fields = ModelConfig.model_fields
    assert fields["threshold"].json_schema_extra["between"] == (0.0, 1.0)
    assert fields["min_hits"].json_schema_extra["between"][0] == 1
