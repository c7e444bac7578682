"""Errors a user can act on. Each carries what went wrong and what to do; the CLI prints both, no traceback."""

from __future__ import annotations


class HootwatchError(Exception):
    """A problem the user can fix. `hint` says how."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class AudioReadError(HootwatchError):
    """A file that cannot be decoded as audio (corrupt, truncated, empty, not audio, unreadable)."""


class BundleError(HootwatchError):
    """A model bundle that is missing, incomplete, tampered with or of another format version."""


class ConfigError(HootwatchError):
    """A configuration file or option that is invalid."""


class MissingExtraError(HootwatchError):
    """A command needs an optional dependency group that is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this command needs '{module}', which is not installed",
            f"pip install 'hootwatch[{extra}]'",
        )
        self.extra = extra
