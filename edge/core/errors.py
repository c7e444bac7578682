"""Errors a user can act on. Each carries what went wrong and what to do; the CLI prints both, no traceback."""

from __future__ import annotations

# where a message sends a person for more: the docs pages online (an installed wheel carries none of docs/)
DOCS = "https://github.com/hootwatch/hootwatch/blob/main/docs"


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


class DiskFullError(HootwatchError):
    """The disk holding the store or the exports is full. Not the recording's fault: it is never counted against
    a file; intake pauses and resumes when space returns."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether an OSError / sqlite3 error means 'no space left' (ENOSPC, EDQUOT, SQLITE_FULL)."""
    import errno
    import sqlite3

    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == 13 or "database or disk is full" in str(exc)  # 13 = SQLITE_FULL
    return False
