"""The README's set-up works as written on a fresh machine, CI runs that very line, and the wheel carries what
the docs install from it."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def readme_command(which: str) -> str:
    out = subprocess.run([sys.executable, str(REPO / ".ci" / "readme_commands.py"), which], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_ci_runs_the_readme_first_command_and_test_line_themselves():
    readme = (REPO / "README.md").read_text()
    setup, demo, test = readme_command("setup"), readme_command("demo"), readme_command("test")
    assert f"```sh\n{demo}\n```" in readme and f"```sh\n{test}\n```" in readme
    assert demo.startswith(setup + " && ") and "hootwatch demo" in demo
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert demo in ci and test in ci  # the README's lines, word for word (set-up and demo), each a line of its own
    assert [line for line in ci if "pip install" in line] == [demo]  # no variant of the set-up line of its own


def test_readme_setup_upgrades_pip_before_installing_the_project():
    # pip 23.2 (what `python3 -m venv` gives on Python 3.11) cannot resolve the Optimum pins
    steps = readme_command("setup").split(" && ")
    upgrade = next(i for i, s in enumerate(steps) if "pip install" in s and "--upgrade pip" in s)
    project = next(i for i, s in enumerate(steps) if "-e " in s and "pip install" in s)
    assert steps[0].startswith("python3 -m venv .venv") and upgrade < project


def _our(extra: str, name: str) -> Requirement:
    reqs = [Requirement(r) for r in md.requires("hootwatch") or []]
    return next(r for r in reqs if r.name == name and r.marker and r.marker.evaluate({"extra": extra}))


@pytest.mark.parametrize("extra", ["export"])
def test_optimum_pin_allows_only_what_optimum_onnx_accepts(extra):
    ours = _our(extra, "optimum").specifier
    theirs = next(Requirement(r) for r in md.requires("optimum-onnx") if Requirement(r).name == "optimum").specifier
    candidates = ["2.1.0", "2.1.1", "2.1.9", "2.2.0", "2.3.0", "3.0.0"]
    assert [v for v in candidates if v in ours] == [v for v in candidates if v in ours and v in theirs]
    assert any(v in ours for v in candidates)


def test_wheel_carries_the_systemd_unit_and_example_config(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                        str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("hootwatch-*.whl"))).namelist()
    assert "hootwatch/systemd/hootwatch.service" in names
    assert "hootwatch/systemd/hootwatch.toml.example" in names
    # and the review app's pages (package data, no front-end build step)
    assert {f"hootwatch/edge/review/static/{f}" for f in ("index.html", "app.js", "style.css")} <= set(names)
    # every module of every package in the tree (an editable install maps whole folders and would hide a
    # sub-package missing from pyproject's list; a wheel would then lack it)
    modules = {f"hootwatch/{f.relative_to(REPO).as_posix()}" for top in ("edge", "trainer", "export", "systemd")
               for f in (REPO / top).rglob("*.py") if (f.parent / "__init__.py").is_file()}
    assert modules - set(names) == set()


def test_systemd_unit_command_points_at_this_installation(tmp_path):
    exe = Path(sys.executable).with_name("hootwatch")
    r = subprocess.run([str(exe), "systemd-unit", "--config", str(tmp_path / "hw.toml")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"ExecStart={exe.absolute()} run --config {tmp_path / 'hw.toml'}" in r.stdout.splitlines()
    assert r.stdout.replace(str(exe.absolute()), "/opt/hootwatch/venv/bin/hootwatch").replace(
        str(tmp_path / "hw.toml"), "/etc/hootwatch/hootwatch.toml") == (REPO / "systemd" / "hootwatch.service").read_text()
