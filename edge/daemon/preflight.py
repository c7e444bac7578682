"""What `hootwatch run` needs from this machine, checked before anything starts (and by `check-config`).

The config file can be valid and still name a bundle that is not there, a watched folder that is not mounted,
or a microphone on a box without PortAudio. `run` refuses those with exit status 2 (which systemd does not
restart), so `check-config` checks exactly the same list, and both report every problem at once.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from hootwatch.edge.contract.bundle import load_bundle
from hootwatch.edge.contract.operating_point import OperatingPoint, OperatingPointError
from hootwatch.edge.core.errors import BundleError, ConfigError
from .config import DaemonConfig

PORTAUDIO_FIX = ("install PortAudio (`sudo apt-get install libportaudio2` on Debian, Ubuntu or Raspberry Pi OS; "
                 "`brew install portaudio` on a Mac), then start again; or remove [sources.microphone]")


def _writable(key: str, path: Path) -> ConfigError | None:
    """None when `path` is (or can be created as) a folder this user can write."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return ConfigError(f"{key}: {path} cannot be created ({p} is a file)", "choose another folder")
    if not os.access(p, os.W_OK | os.X_OK):
        return ConfigError(f"{key}: {path} is not writable by this user ({p})",
                           "give the hootwatch user write access (chown/chmod), or choose another folder")
    return None


def microphone_problem(device: str | None) -> ConfigError | None:
    """Why the microphone cannot work here (no PortAudio, no such input device), or None."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice imports, but its C library is missing
        return ConfigError(f"sources.microphone: the microphone cannot work: {exc}", PORTAUDIO_FIX)
    except ImportError:
        return ConfigError("sources.microphone: the microphone cannot work: the Python package 'sounddevice' "
                           "is not installed", "pip install 'hootwatch[edge]'")
    dev = int(device) if device is not None and device.isdigit() else device
    try:
        sd.query_devices(dev, "input")
    except Exception as exc:  # ValueError (no such device), PortAudioError (no default input)
        return ConfigError(f"sources.microphone.device: no input device {device or '(default)'} ({exc})",
                           "plug in the microphone or sound card; `python -m sounddevice` lists the devices "
                           "(use a name or number from it)")
    return None


def preflight(cfg: DaemonConfig, check_microphone: bool = True) -> list[ConfigError]:
    """Every problem `run` would meet at start-up, each naming its key and its fix (empty: ready to run)."""
    problems: list[ConfigError] = []
    try:
        manifest = load_bundle(cfg.model.bundle).manifest
        OperatingPoint(hop_s=cfg.model.hop_s, window_s=manifest.window_s)
    except BundleError as exc:
        problems.append(ConfigError(f"model.bundle: {exc.message}", exc.hint))
    except OperatingPointError:  # the config's own bounds (above 0) held when it was read: only the window is left
        problems.append(ConfigError(f"model.hop_s: must be at most the model's window ({manifest.window_s:g} s), "
                                    f"got {cfg.model.hop_s:g}",
                                    "use a smaller hop_s, or remove it to use the bundle's"))
    folder = cfg.sources.folder
    if folder is not None:
        if not folder.path.is_dir():
            what = "is not a folder" if folder.path.exists() else "does not exist"
            problems.append(ConfigError(f"sources.folder.path: {folder.path} {what}",
                                        "create it, or mount the card there, then start again"))
        if folder.after == "archive" and folder.archive_dir is not None:
            problems.append(_writable("sources.folder.archive_dir", folder.archive_dir))
    problems.append(_writable("output.dir", cfg.output.dir))
    if cfg.health.status_file is not None:
        problems.append(_writable("health.status_file", cfg.health.status_file.parent))
    mic = cfg.sources.microphone
    if mic is not None:
        if check_microphone:
            problems.append(microphone_problem(mic.device))
        if mic.record_raw:
            problems.append(_writable("sources.microphone.raw_dir", cfg.raw_dir))
    if cfg.review.enabled:
        missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(ConfigError(f"review.enabled: the review app needs {', '.join(missing)}, which "
                                        "is not installed", "pip install 'hootwatch[review]', or set enabled = "
                                        "false under [review]"))
    return [p for p in problems if p is not None]
