"""Installed versions of named packages, as the trainer's run_config.json and the export's manifest record them."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_versions(names: tuple[str, ...], missing: str | None = None) -> dict[str, str | None]:
    """{name: installed version} for each of `names`; `missing` for one that is not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = missing
    return out
