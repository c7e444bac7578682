"""The house rules of the layout: the top level is the user's, the edge's packages keep to their layers (import-linter,
configured in pyproject.toml), and the edge imports no trainer, export or heavy ML library."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = {"trainer", "export", "edge", "systemd", "tests", "bench", "docs", "pyproject.toml", "README.md",
             "LICENSE", ".ci", ".gitignore"}


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    # import-linter is in the [test] extra; its CLI reads [tool.importlinter] from pyproject.toml in the cwd
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code, "--no-cache", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)


def importlinter_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def edge_layers() -> list[str]:
    return next(c["layers"] for c in importlinter_config()["contracts"]
                if c["type"] == "layers" and c["layers"][0].startswith("hootwatch.edge."))


def test_the_import_contracts_hold():
    r = lint_imports()
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_the_layer_contract_really_checks(tmp_path):
    # the same tool with the layers upside down must fail: the contract is read and the graph is built
    upside_down = "\n".join(f'    "{name}",' for name in reversed(edge_layers()))
    (tmp_path / "reversed.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["hootwatch.edge"]\n\n[[tool.importlinter.contracts]]\n'
        f'name = "reversed"\ntype = "layers"\nlayers = [\n{upside_down}\n]\n')
    r = lint_imports("--config", str(tmp_path / "reversed.toml"))
    assert r.returncode != 0 and "BROKEN" in r.stdout


def test_every_edge_package_has_its_place_in_the_layers():
    named = {part.strip() for layer in edge_layers() for part in layer.split("|")}
    packages = {f"hootwatch.edge.{p.name}" for p in (ROOT / "edge").iterdir() if (p / "__init__.py").is_file()}
    assert packages == named, f"edge packages outside the layer contract: {sorted(packages - named)}"
    flat = sorted(p.name for p in (ROOT / "edge").glob("*.py") if p.name != "__init__.py")
    assert not flat, f"modules directly in edge/ (put each in the package that says what it holds): {flat}"


def test_the_top_level_is_the_users():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    top = {line.split("/")[0] for line in tracked.splitlines() if line}
    assert top <= TOP_LEVEL, f"unexpected top-level entries: {sorted(top - TOP_LEVEL)}"
