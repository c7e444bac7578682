"""Powerful owl (Ninox strenua) territorial call synthesiser.

The territorial call is a slow, far-carrying double hoot "woo-hoo". Every parameter below is drawn from a
distribution so a model trained on the output learns the call's structure, not one template.

Sources and honesty about them. No real powerful owl recording was available to this project, and the
references below were not re-read page by page while writing this code: the ranges are the ones commonly
quoted from them (and given in the project's issue #2), and where a value is our own estimate it says so.

- Higgins, P.J. (ed.) 1999. Handbook of Australian, New Zealand and Antarctic Birds (HANZAB), vol. 4,
  Parrots to Dollarbird. Oxford University Press, Melbourne. -- the call as a slow double note "woo-hoo",
  each note roughly 0.3-0.8 s, second note often slightly higher pitched; male voice deeper than female;
  calls repeated in bouts, sometimes for many minutes.
- Menkhorst, P. & Franklin, K. (eds) The Australian Bird Guide (CSIRO Publishing). -- "slow, deep double
  hoot, second note usually higher"; carries over 1 km or more.
- Pavey, C.R. (1995, 1998) powerful owl ecology and Soderquist, T.R. & Gibbons, D. (2007, Wildlife Research)
  home range / call-broadcast surveys. -- calling in bouts; a few to ~15 s between calls (used for the
  3-15 s between calls here).
- Cooke, R., Wallis, R. et al. (2002-2006) powerful owl work in Melbourne and call-playback surveys. --
  sexes distinguishable by pitch: female F0 about 450-550 Hz, male about 330-430 Hz (as quoted in issue #2).

Estimates (ours, not from a source): onset-to-onset 0.9 s +- 0.08 s; pitch arch of 60-180 Hz within a
note (issue: "~120 Hz bandwidth"); harmonic roll-off 12-28 dB per harmonic, only below 2 kHz; jitter
0.3-1.2 % of F0 and shimmer 3-10 % of amplitude, both smoothed at ~20-60 Hz; attack 40-150 ms; the
probability that the second note is higher (80 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEMALE_F0_HZ = (450.0, 550.0)
MALE_F0_HZ = (330.0, 430.0)
HARMONIC_CEILING_HZ = 2000.0
BOUT_GAP_S = (3.0, 15.0)
OWL_BAND_HZ = (250.0, 1200.0)   # band used for the SNR of an owl call (F0 plus the 2nd harmonic)


@dataclass(frozen=True)
class NoteParams:
    duration_s: float
    peak_hz: float           # top of the pitch arch (where the note spends most time, so the spectral peak)
    arch_hz: float           # how far below the peak the note starts and ends
    arch_skew: float         # >1 peak late, <1 peak early
    attack_s: float
    release_s: float


@dataclass(frozen=True)
class CallParams:
    sex: str                 # "female" or "male"
    first: NoteParams
    second: NoteParams
    onset_to_onset_s: float
    harmonic_db: tuple[float, ...]   # level of harmonics 2, 3, ... relative to F0
    jitter: float            # relative F0 perturbation (std)
    shimmer: float           # relative amplitude perturbation (std)
    breath_db: float         # level of a faint noise component following the tone

    @property
    def duration_s(self) -> float:
        return self.onset_to_onset_s + self.second.duration_s


@dataclass(frozen=True)
class Individual:
    """A calling bird: its voice stays within a narrow range across a bout."""
    sex: str
    peak_hz: float
    note_s: float
    onset_to_onset_s: float
    rolloff_db: float


def sample_individual(rng: np.random.Generator, sex: str | None = None) -> Individual:
    sex = sex or ("female" if rng.random() < 0.5 else "male")
    lo, hi = FEMALE_F0_HZ if sex == "female" else MALE_F0_HZ
    return Individual(
        sex=sex,
        peak_hz=float(rng.uniform(lo + 10, hi - 15)),
        note_s=float(rng.uniform(0.4, 0.65)),
        onset_to_onset_s=float(np.clip(rng.normal(0.9, 0.06), 0.78, 1.05)),
        rolloff_db=float(rng.uniform(12.0, 28.0)),
    )


def _note(rng: np.random.Generator, duration_s: float, peak_hz: float) -> NoteParams:
    return NoteParams(
        duration_s=float(np.clip(duration_s, 0.3, 0.8)),
        peak_hz=float(peak_hz),
        arch_hz=float(rng.uniform(60.0, 180.0)),
        arch_skew=float(rng.uniform(0.7, 1.4)),
        attack_s=float(rng.uniform(0.04, 0.15)),
        release_s=float(rng.uniform(0.08, 0.25)),
    )


def sample_call_params(rng: np.random.Generator, individual: Individual | None = None) -> CallParams:
    """One call's parameters: the individual's voice plus call-to-call variation."""
    ind = individual or sample_individual(rng)
    lo, hi = FEMALE_F0_HZ if ind.sex == "female" else MALE_F0_HZ
    ioi = float(np.clip(ind.onset_to_onset_s + rng.normal(0, 0.03), 0.75, 1.1))
    peak1 = float(np.clip(ind.peak_hz + rng.normal(0, 6), lo, hi))
    shift = rng.uniform(3, 35) if rng.random() < 0.8 else rng.uniform(-20, 0)
    peak2 = float(np.clip(peak1 + shift, lo, hi))
    d1 = min(ind.note_s + rng.normal(0, 0.05), ioi - 0.12)
    d2 = ind.note_s + rng.normal(0.03, 0.06)
    n_harm = 6
    harmonic_db = tuple(float(-(ind.rolloff_db + rng.normal(0, 3)) * (k + 1)) for k in range(n_harm))
    return CallParams(
        sex=ind.sex,
        first=_note(rng, d1, peak1),
        second=_note(rng, d2, peak2),
        onset_to_onset_s=ioi,
        harmonic_db=harmonic_db,
        jitter=float(rng.uniform(0.003, 0.012)),
        shimmer=float(rng.uniform(0.03, 0.10)),
        breath_db=float(rng.uniform(-40.0, -25.0)),
    )


def smooth_noise(rng: np.random.Generator, n: int, sample_rate: int, rate_hz: float) -> np.ndarray:
    """Unit-variance random curve varying about `rate_hz` times per second (linear interpolation of knots)."""
    knots = max(2, int(np.ceil(n / sample_rate * rate_hz)) + 2)
    values = rng.standard_normal(knots)
    return np.interp(np.linspace(0, knots - 1, n), np.arange(knots), values)


def _envelope(n: int, sample_rate: int, attack_s: float, release_s: float, decline: float) -> np.ndarray:
    t = np.arange(n) / sample_rate
    dur = n / sample_rate
    a = np.clip(t / attack_s, 0, 1)
    r = np.clip((dur - t) / release_s, 0, 1)
    attack = 0.5 - 0.5 * np.cos(np.pi * a)
    release = 0.5 - 0.5 * np.cos(np.pi * r)
    return attack * release * (1.0 - decline * t / dur)


def render_note(note: NoteParams, params: CallParams, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    n = int(round(note.duration_s * sample_rate))
    u = np.linspace(0.0, 1.0, n) ** note.arch_skew
    arch = np.sin(np.pi * u) ** 0.6          # flat top: most time near the peak
    f0 = note.peak_hz - note.arch_hz * (1.0 - arch)
    f0 = f0 * (1.0 + params.jitter * smooth_noise(rng, n, sample_rate, rng.uniform(20, 60)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate + rng.uniform(0, 2 * np.pi)
    tone = np.sin(phase)
    for k, level_db in enumerate(params.harmonic_db, start=2):
        if note.peak_hz * k >= min(HARMONIC_CEILING_HZ, 0.45 * sample_rate):
            break
        tone += 10 ** (level_db / 20) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    # faint breathy noise, amplitude-modulated by the tone so it stays in the note
    breath = 10 ** (params.breath_db / 20) * rng.standard_normal(n) * np.abs(np.sin(phase / 2))
    env = _envelope(n, sample_rate, note.attack_s, note.release_s, rng.uniform(0.0, 0.4))
    env = env * (1.0 + params.shimmer * smooth_noise(rng, n, sample_rate, rng.uniform(20, 60)))
    return (env * (tone + breath)).astype(np.float32)


def render_call(params: CallParams, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The dry double note, peak-normalised to 1, starting at the first note's onset."""
    n = int(round(params.duration_s * sample_rate)) + 1
    out = np.zeros(n, np.float32)
    a = render_note(params.first, params, sample_rate, rng)
    b = render_note(params.second, params, sample_rate, rng)
    out[: len(a)] += a
    start = int(round(params.onset_to_onset_s * sample_rate))
    out[start: start + len(b)] += b[: n - start] * np.float32(10 ** (rng.normal(0.5, 1.0) / 20))
    return out / np.float32(np.abs(out).max() + 1e-12)


def owl_call(rng: np.random.Generator, sample_rate: int,
             individual: Individual | None = None) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """One dry double-note call -> (audio, [(start_s, end_s)])."""
    params = sample_call_params(rng, individual)
    audio = render_call(params, sample_rate, rng)
    return audio, [(0.0, params.duration_s)]


def owl_bout(rng: np.random.Generator, sample_rate: int, n_calls: int | None = None,
             individual: Individual | None = None,
             gap_s: tuple[float, float] = BOUT_GAP_S) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A bout of calls by one bird, 3-15 s between call onsets -> (audio, one (start, end) per call)."""
    ind = individual or sample_individual(rng)
    n_calls = int(n_calls if n_calls is not None else rng.integers(2, 8))
    calls, spans, t = [], [], 0.0
    for i in range(n_calls):
        audio, _ = owl_call(rng, sample_rate, ind)
        gain = 10 ** (rng.normal(0, 1.5) / 20)   # the bird turns its head; loudness drifts a little
        calls.append((t, audio * np.float32(gain)))
        spans.append((t, t + len(audio) / sample_rate))
        t += float(rng.uniform(*gap_s))
    total = int(round(spans[-1][1] * sample_rate)) + 1
    out = np.zeros(total, np.float32)
    for start, audio in calls:
        i = int(round(start * sample_rate))
        out[i: i + len(audio)] += audio[: total - i]
    return out, spans


__all__ = [
    "CallParams", "NoteParams", "Individual", "sample_individual", "sample_call_params", "render_note",
    "render_call", "owl_call", "owl_bout", "smooth_noise", "FEMALE_F0_HZ", "MALE_F0_HZ", "OWL_BAND_HZ",
    "BOUT_GAP_S", "HARMONIC_CEILING_HZ",
]
