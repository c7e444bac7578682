"""The systemd unit: its keys (parsed), and `systemd-analyze verify` where systemd is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "hootwatch.service"


def _unit() -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (systemd keys may repeat; configparser's strict mode would refuse that)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_is_a_hardened_notify_service_with_a_dedicated_user():
    s = _unit()["Service"]
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert int(one["WatchdogSec"]) > 0 and one["Restart"] == "on-failure"
    assert one["RestartPreventExitStatus"] == "2"  # the CLI's exit status for a config/bundle error
    assert one["User"] == "hootwatch" and "audio" in one["SupplementaryGroups"].split()
    assert one["StateDirectory"] == "hootwatch"
    assert one["ExecStart"] == "/opt/hootwatch/venv/bin/hootwatch run --config /etc/hootwatch/hootwatch.toml"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "read-only",
                       "PrivateTmp": "yes", "ProtectKernelTunables": "yes", "RestrictAddressFamilies": "AF_UNIX",
                       "CapabilityBoundingSet": ""}.items():
        assert one[key] == value, key
    # a filtered system call must fail (EPERM), not kill the daemon with SIGSYS
    assert s["SystemCallFilter"] and one["SystemCallErrorNumber"] == "EPERM"
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_readme_documents_the_install_steps_the_unit_relies_on():
    readme = (SYSTEMD / "README.md").read_text()
    for step in ("useradd --system", "--groups audio hootwatch", "/opt/hootwatch/venv", "check-config --example",
                 "/etc/hootwatch/hootwatch.toml", "systemctl enable --now hootwatch", "/srv/hootwatch"):
        assert step in readme, step


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify also checks that ExecStart exists: point it at this environment's hootwatch script
    exe = Path(sys.executable).with_name("hootwatch")
    if not exe.is_file():
        pytest.skip("hootwatch console script not installed next to the Python interpreter")
    unit = tmp_path / "hootwatch.service"
    unit.write_text(UNIT.read_text().replace("/opt/hootwatch/venv/bin/hootwatch", str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (r.stdout + r.stderr).splitlines() if "hootwatch.service" in line]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr
