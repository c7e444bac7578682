"""The operating point: the score a window needs to be positive (threshold), the positive windows in a row a
detection needs (min_hits, stated at the bundle's hop: `events.windows_at_hop`) and the hop between windows.

Checked here, once, for every place that takes them: the bundle's manifest, `scan` and the Scanner, `detections`,
`export`, the window timing and the event merging. A part left None is not set there (the bundle's is used). Each
place names the settings the way its users wrote them and says how to fix them in their terms (`Wording`).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from numbers import Integral

from hootwatch.edge.core.errors import ConfigError, HootwatchError

THRESHOLD_RANGE = (0.0, 1.0)
LEAST_MIN_HITS = 1


class OperatingPointError(ConfigError, ValueError):
    """A threshold, min_hits or hop out of range: a ConfigError for the user (the CLI prints it and exits 2), and
    a ValueError for code that hands the contract a bad value (as `EventBuilder` and `WindowSpec` always raised)."""


@dataclass(frozen=True)
class Wording:
    """How one place names the three settings, what it tells the user to do about a bad one, and the error it
    raises. `fix_hop` may name `{window_s}` (only where the window is known)."""
    threshold: str = "--threshold"
    min_hits: str = "--min-hits"
    hop: str = "--hop"
    fix_threshold: str = "pass --threshold between 0 and 1"
    fix_min_hits: str = "pass e.g. --min-hits 2"
    fix_hop: str = "pass e.g. --hop 2.5"
    error: type[HootwatchError] = OperatingPointError


FLAGS = Wording()
# the Scanner's settings (from `scan`'s flags or the daemon's config) against the model's window
SETTINGS = Wording("threshold", "min_hits", "hop", fix_hop="pass --hop between 0 and {window_s:g} (hop_s in the "
                                                           "daemon config), or leave it unset to use the bundle's")


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float | None = None
    min_hits: int | None = None
    hop_s: float | None = None
    window_s: InitVar[float | None] = None    # the model's window: the hop may not be longer
    wording: InitVar[Wording] = FLAGS
    complete: InitVar[bool] = False           # threshold and min_hits must be there (a bundle's): None is bad too

    def __post_init__(self, window_s: float | None, wording: Wording, complete: bool) -> None:
        hop, t, k, w = self.hop_s, self.threshold, self.min_hits, wording
        if hop is not None and window_s is not None and not 0 < hop <= window_s:
            raise w.error(f"{w.hop} {hop:g} s must be above 0 and at most the model's window ({window_s:g} s)",
                          w.fix_hop.format(window_s=window_s))
        if hop is not None and window_s is None and hop <= 0:
            raise w.error(f"{w.hop} {hop} must be positive", w.fix_hop)
        lo, hi = THRESHOLD_RANGE
        if (complete or t is not None) and not lo <= t <= hi:
            raise w.error(f"{w.threshold} {t} is outside [{lo:g}, {hi:g}]", w.fix_threshold)
        if (complete or k is not None) and (isinstance(k, bool) or not isinstance(k, Integral)):
            raise w.error(f"{w.min_hits} {k!r} must be a whole number of at least {LEAST_MIN_HITS}", w.fix_min_hits)
        if k is not None and k < LEAST_MIN_HITS:
            raise w.error(f"{w.min_hits} {k} must be at least {LEAST_MIN_HITS}", w.fix_min_hits)
