"""From phonemes to moving mouths: articulatory targets and coarticulation.

Every espeak-ng en-us phoneme mnemonic that :func:`avlib.corpus.speech.synthesize` produces
maps to one or more *gestures*. A gesture belongs to a viseme class (:data:`VISEMES`) and has
a target mouth vector over :data:`~avlib.corpus.mouth.MOUTH_PARAMS`. Monophthongs and
consonants are one gesture; diphthongs and r-coloured vowels are a sequence
(``aI`` = open vowel then spread vowel, ``A@`` = open vowel then /r/), placed one after the
other inside the phoneme's segment.

Coarticulation (Cohen & Massaro, 1993)
--------------------------------------
Each gesture exerts a *dominance* over every mouth parameter: flat at its magnitude ``alpha``
over the gesture's core, then decaying exponentially, ``alpha * exp(-theta * distance)``, with
its own rate before (anticipation) and after (carry-over). The mouth parameter at time t is the
dominance-weighted mean of all targets,
``F(t) = sum_i D_i(t) T_i / sum_i D_i(t)``. Dominance is per parameter: a bilabial gesture
dominates ``lip_close`` and ``lip_press`` so strongly that the lips seal fully whatever the
neighbours, but barely constrains lip rounding, which it inherits from the surrounding vowels
(the rounded /b/ of "blue"); vowels constrain the jaw softly, so it glides between them.
Bilabials and labiodentals also dominate the jaw: the jaw rises to bring the lips together (or
the lower lip to the upper teeth), so sealed lips sit on a nearly closed jaw (``jaw_open``
about 0.1-0.35 during a /p b m/ closure between open vowels) and the rendered opening, which
the face mesh measures, follows ``jaw_open`` through closures too.

Time convention: the mouth leads the sound. Trajectories are sampled at frame centres,
``t_k = (k + 0.5) / fps``, and the phoneme times are moved earlier by ``lead_frames / fps``.

Homophenes
----------
/p b m/ share the bilabial viseme (lips sealed) but keep small, learnable differences, set
per phoneme. The "core" is the part of the phoneme's segment over which the gesture is held
(fractions of the segment; espeak-ng's /p/ segment holds the closure then the release burst
and aspiration, a /m/ segment is nasal murmur with the lips shut throughout):

=====  =========  =========  ====================  ==========================================
phon.  lip_close  lip_press  core (segment frac.)  why
=====  =========  =========  ====================  ==========================================
p      1.0        0.90       0.00 - 0.60           pressure build-up before a voiceless burst
b      1.0        0.50       0.10 - 0.55           short voiced closure, lighter seal
m      1.0        0.25       0.05 - 0.90           long relaxed closure through the murmur
=====  =========  =========  ====================  ==========================================

With espeak-ng's segment lengths this gives, in "I said pat/bat/mat again" (voice m3, 160
words/min), lips sealed (``lip_close`` > 0.9) for about 74 ms for /p/, 47 ms for /b/ and
79 ms for /m/, with peak ``lip_press`` 0.89, 0.49 and 0.25. Likewise /f/ tucks the lower lip
a little harder (``labiodental`` 1.0) than /v/ (0.85).

Unknown phonemes
----------------
:func:`viseme_of` and :func:`gestures_of` accept any string. A mnemonic not in the table is, in
order: a pause if it starts with ``_``; stripped of stress marks (``' , %  =``); stripped of
trailing modifier characters (``# / - : ; ~ ^ .`` and digits, so ``t#2`` -> ``t``); matched by
its longest known prefix; and otherwise given the ``"unknown"`` viseme, a relaxed half-open
mouth with weak dominance, so that it borrows its shape from the neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from .mouth import INDEX, MOUTH_PARAMS, N_MOUTH
from .speech import PAUSE, Segment

# ---------------------------------------------------------------------------- viseme classes


def _vec(**values: float) -> np.ndarray:
    """A mouth vector (N_MOUTH,) float64 from keyword values; unspecified parameters are 0."""
    unknown = set(values) - set(MOUTH_PARAMS)
    if unknown:
        raise ValueError(f"unknown mouth parameters {sorted(unknown)}; use {MOUTH_PARAMS}")
    out = np.zeros(N_MOUTH)
    for name, value in values.items():
        out[INDEX[name]] = value
    return out


@dataclass(frozen=True)
class VisemeClass:
    """Articulatory behaviour shared by a group of phonemes.

    target: mouth vector (N_MOUTH,) in [0, 1] the gesture aims at.
    alpha: dominance magnitude per parameter (N_MOUTH,): how strongly the target must be met.
    theta_before / theta_after: decay rates (1/s) of the dominance before the core
        (anticipation) and after it (carry-over); large = crisp, local gesture.
    core: (start, end) fractions of the phoneme's share of the segment held at full dominance.
    """

    name: str
    target: np.ndarray
    alpha: np.ndarray
    theta_before: float
    theta_after: float
    core: tuple[float, float]
    description: str


def _alpha(default: float, **per_param: float) -> np.ndarray:
    out = np.full(N_MOUTH, float(default))
    for name, value in per_param.items():
        out[INDEX[name]] = value
    return out


# Vowels and most consonants keep the lips apart and the lower lip and tongue in place with a
# moderate dominance; closures, tucks and tongue protrusion are made by the classes that own
# them, with dominances an order of magnitude higher, so that they are reached in full.
_OPEN_LIPS = dict(lip_close=8.0, lip_press=8.0, labiodental=6.0, tongue=4.0)

_CLASSES: tuple[VisemeClass, ...] = (
    VisemeClass(
        "silence", _vec(jaw_open=0.06, lip_spread=0.15, lip_round=0.1, lip_close=0.7),
        _alpha(0.6), 8.0, 8.0, (0.2, 0.8),
        "pause: the mouth relaxes towards rest, lips lightly together, if the pause is long",
    ),
    VisemeClass(
        "bilabial", _vec(jaw_open=0.1, lip_close=1.0, lip_press=0.5),
        _alpha(0.3, jaw_open=20.0, lip_close=200.0, lip_press=200.0, labiodental=20.0, tongue=5.0),
        160.0, 160.0, (0.05, 0.6),
        "p b m: lips sealed (full closure is mandatory) on a raised jaw, rounding borrowed from "
        "neighbours",
    ),
    VisemeClass(
        "labiodental", _vec(jaw_open=0.14, lip_spread=0.2, labiodental=1.0),
        _alpha(0.3, jaw_open=8.0, lip_close=8.0, lip_press=8.0, labiodental=60.0, tongue=5.0),
        90.0, 90.0, (0.15, 0.75),
        "f v: lower lip tucked under the upper teeth, jaw raised to get it there",
    ),
    VisemeClass(
        "dental", _vec(jaw_open=0.22, lip_spread=0.3, tongue=1.0),
        _alpha(0.4, jaw_open=2.0, lip_close=8.0, lip_press=8.0, labiodental=8.0, tongue=40.0),
        80.0, 80.0, (0.2, 0.75),
        "T D (th): tongue tip between the teeth",
    ),
    VisemeClass(
        "alveolar", _vec(jaw_open=0.22, lip_spread=0.3, tongue=0.1),
        _alpha(0.4, jaw_open=1.5, **_OPEN_LIPS),
        45.0, 45.0, (0.25, 0.75),
        "t d n: tongue tip behind the upper teeth, hardly visible; jaw half closed",
    ),
    VisemeClass(
        "sibilant", _vec(jaw_open=0.1, lip_spread=0.5),
        _alpha(0.6, jaw_open=5.0, lip_spread=1.5, **_OPEN_LIPS),
        55.0, 55.0, (0.2, 0.8),
        "s z: teeth nearly together, lips slightly spread",
    ),
    VisemeClass(
        "postalveolar", _vec(jaw_open=0.14, lip_round=0.7),
        _alpha(0.6, jaw_open=4.0, lip_round=5.0, lip_spread=3.0, **_OPEN_LIPS),
        55.0, 55.0, (0.2, 0.8),
        "S Z tS dZ (sh, zh, ch, j): teeth close, lips protruded",
    ),
    VisemeClass(
        "lateral", _vec(jaw_open=0.3, lip_spread=0.3, tongue=0.55),
        _alpha(0.4, jaw_open=1.5, lip_close=4.0, lip_press=4.0, labiodental=4.0, tongue=10.0),
        50.0, 50.0, (0.25, 0.75),
        "l: tongue tip raised and visible behind the teeth",
    ),
    VisemeClass(
        "rhotic", _vec(jaw_open=0.28, lip_spread=0.05, lip_round=0.45),
        _alpha(0.4, jaw_open=1.5, lip_round=2.5, lip_spread=2.0, **_OPEN_LIPS),
        40.0, 40.0, (0.25, 0.75),
        "r and r-coloured vowels: slight lip rounding, mid jaw",
    ),
    VisemeClass(
        "velar", _vec(jaw_open=0.3, lip_spread=0.25),
        _alpha(0.3, jaw_open=1.0, **_OPEN_LIPS),
        40.0, 40.0, (0.25, 0.75),
        "k g N (ng): made at the soft palate, lips follow the neighbours",
    ),
    VisemeClass(
        "glottal", _vec(jaw_open=0.35, lip_spread=0.25),
        _alpha(0.1, lip_close=3.0, lip_press=3.0, labiodental=3.0, tongue=2.0),
        30.0, 30.0, (0.3, 0.7),
        "h and the glottal stop: the mouth already shapes the next vowel",
    ),
    VisemeClass(
        "rounded_glide", _vec(jaw_open=0.12, lip_round=1.0),
        _alpha(0.8, jaw_open=3.0, lip_round=12.0, lip_spread=8.0, **_OPEN_LIPS),
        60.0, 60.0, (0.2, 0.7),
        "w: tight rounding and protrusion",
    ),
    VisemeClass(
        "palatal_glide", _vec(jaw_open=0.2, lip_spread=0.65),
        _alpha(0.5, jaw_open=2.0, lip_spread=3.0, **_OPEN_LIPS),
        50.0, 50.0, (0.2, 0.7),
        "j (y): spread lips, high jaw",
    ),
    VisemeClass(
        "open_vowel", _vec(jaw_open=0.9, lip_spread=0.3, lip_round=0.05),
        _alpha(1.5, jaw_open=3.0, **_OPEN_LIPS),
        20.0, 20.0, (0.3, 0.7),
        "a A: aa 0 (father, cat, lot): widest jaw",
    ),
    VisemeClass(
        "mid_vowel", _vec(jaw_open=0.55, lip_spread=0.4),
        _alpha(1.5, jaw_open=2.5, **_OPEN_LIPS),
        20.0, 20.0, (0.3, 0.7),
        "E e V (bed, cut): mid jaw, neutral lips",
    ),
    VisemeClass(
        "spread_vowel", _vec(jaw_open=0.3, lip_spread=0.85),
        _alpha(1.5, jaw_open=2.5, lip_spread=3.0, **_OPEN_LIPS),
        20.0, 20.0, (0.3, 0.7),
        "i: I (see, bit): high jaw, spread lips",
    ),
    VisemeClass(
        "rounded_vowel", _vec(jaw_open=0.4, lip_round=0.85),
        _alpha(1.5, jaw_open=2.5, lip_round=3.0, lip_spread=2.0, **_OPEN_LIPS),
        20.0, 20.0, (0.3, 0.7),
        "u: U O: o (blue, put, law, go): rounded, protruded lips",
    ),
    VisemeClass(
        "neutral_vowel", _vec(jaw_open=0.38, lip_spread=0.3, lip_round=0.05),
        _alpha(0.6, jaw_open=1.0, **_OPEN_LIPS),
        25.0, 25.0, (0.3, 0.7),
        "@ a# I# (schwa, reduced vowels): short, relaxed, shaped by the neighbours",
    ),
    VisemeClass(
        "unknown", _vec(jaw_open=0.35, lip_spread=0.3),
        _alpha(0.3, **_OPEN_LIPS),
        25.0, 25.0, (0.3, 0.7),
        "fallback for mnemonics not in the table: relaxed half-open mouth",
    ),
)

VISEME_CLASSES: dict[str, VisemeClass] = {c.name: c for c in _CLASSES}
"""Viseme classes by name."""
VISEMES: tuple[str, ...] = tuple(c.name for c in _CLASSES)
"""Names of the viseme classes (``"unknown"`` is the fallback)."""
FALLBACK_VISEME = "unknown"
_UNKNOWN_GESTURE = "<unknown>"  # gesture name of unmatched mnemonics: fallback viseme

# ---------------------------------------------------------------------------- phoneme table

_SIMPLE_PHONEMES: dict[str, str] = {
    PAUSE: "silence",
    # consonants
    "p": "bilabial", "b": "bilabial", "m": "bilabial", "m-": "bilabial",
    "f": "labiodental", "v": "labiodental", "v#": "labiodental",
    "T": "dental", "D": "dental",
    "t": "alveolar", "d": "alveolar", "n": "alveolar", "t#": "alveolar", "t2": "alveolar",
    "d#": "alveolar", "n-": "alveolar",
    "s": "sibilant", "z": "sibilant", "z#": "sibilant", "z/2": "sibilant",
    "S": "postalveolar", "Z": "postalveolar", "tS": "postalveolar", "dZ": "postalveolar",
    "l": "lateral", "l/": "lateral", "l#": "lateral", "l-": "lateral",
    "r": "rhotic", "r-": "rhotic", "r/": "rhotic",
    "k": "velar", "g": "velar", "N": "velar", "x": "velar",
    "h": "glottal", "?": "glottal",
    "w": "rounded_glide", "w#": "rounded_glide",
    "j": "palatal_glide", "C": "palatal_glide",
    # vowels
    "a": "open_vowel", "aa": "open_vowel", "a2": "open_vowel", "A:": "open_vowel",
    "A#": "open_vowel", "A~": "open_vowel", "0": "open_vowel", "0#": "open_vowel",
    "02": "open_vowel", "O2": "open_vowel",
    "E": "mid_vowel", "E#": "mid_vowel", "E2": "mid_vowel", "e": "mid_vowel",
    "e:": "mid_vowel", "V": "mid_vowel",
    "i": "spread_vowel", "i:": "spread_vowel", "I": "spread_vowel", "I2": "spread_vowel",
    "I2#": "spread_vowel",
    "u:": "rounded_vowel", "U": "rounded_vowel", "O": "rounded_vowel", "O:": "rounded_vowel",
    "o": "rounded_vowel", "o:": "rounded_vowel", "O~": "rounded_vowel",
    "@": "neutral_vowel", "@2": "neutral_vowel", "@5": "neutral_vowel", "@#": "neutral_vowel",
    "a#": "neutral_vowel", "a#2": "neutral_vowel", "I#": "neutral_vowel", "e#": "neutral_vowel",
    "3": "rhotic", "3:": "rhotic",
}

# Phonemes made of several gestures, in temporal order (each element is a simple phoneme).
_COMPOUND_PHONEMES: dict[str, tuple[str, ...]] = {
    "aI": ("a", "i"), "aU": ("a", "U"), "eI": ("e", "i"), "oU": ("o", "u:"),
    "oU#": ("o", "u:"), "OI": ("O", "i"),
    "i@": ("i", "@"), "i@3": ("I", "3"), "e@": ("E", "3"), "U@": ("U", "3"),
    "A@": ("A:", "3"), "o@": ("O", "3"), "O@": ("O", "3"), "IR": ("I", "3"), "VR": ("V", "3"),
    "aI@": ("a", "i", "@"), "aI3": ("a", "i", "3"), "aU@": ("a", "U", "3"),
    "@L": ("@", "l"),
}

# Per-phoneme refinements of the class target (the homophene table of the module docstring
# and vowel qualities within a class).
_TARGET_OVERRIDES: dict[str, dict[str, float]] = {
    "p": dict(lip_press=0.9),
    "b": dict(lip_press=0.5),
    "m": dict(lip_press=0.25),
    "m-": dict(lip_press=0.25),
    "f": dict(labiodental=1.0),
    "v": dict(labiodental=0.85),
    "a": dict(jaw_open=0.8, lip_spread=0.45),
    "A:": dict(jaw_open=0.95, lip_spread=0.2),
    "0": dict(jaw_open=0.9, lip_spread=0.2, lip_round=0.15),
    "O2": dict(jaw_open=0.8, lip_spread=0.15, lip_round=0.3),
    "V": dict(jaw_open=0.6, lip_spread=0.3),
    "e": dict(jaw_open=0.45, lip_spread=0.5),
    "i:": dict(jaw_open=0.22, lip_spread=0.9),
    "i": dict(jaw_open=0.28, lip_spread=0.75),
    "I": dict(jaw_open=0.35, lip_spread=0.7),
    "u:": dict(jaw_open=0.22, lip_round=1.0),
    "U": dict(jaw_open=0.35, lip_round=0.7),
    "O": dict(jaw_open=0.6, lip_round=0.7),
    "O:": dict(jaw_open=0.65, lip_round=0.7),
    "o": dict(jaw_open=0.45, lip_round=0.8),
    "3:": dict(jaw_open=0.35, lip_round=0.5),
    "t": dict(jaw_open=0.2), "d": dict(jaw_open=0.22), "n": dict(jaw_open=0.25),
}

# Per-phoneme core (fractions of the segment) where it differs from the class default.
_CORE_OVERRIDES: dict[str, tuple[float, float]] = {
    "p": (0.0, 0.6),
    "b": (0.1, 0.55),
    "m": (0.05, 0.9),
    "m-": (0.05, 0.9),
}

KNOWN_PHONEMES: frozenset[str] = frozenset(_SIMPLE_PHONEMES) | frozenset(_COMPOUND_PHONEMES)
"""Every mnemonic with an explicit entry in the table (no fallback rule needed)."""

_STRESS = "',%="
_MODIFIERS = "#/-:;~^.0123456789"


@lru_cache(maxsize=512)
def gestures_of(phoneme: str) -> tuple[str, ...]:
    """The simple phonemes (gestures) a mnemonic is articulated as, in order.

    ``"b"`` -> ``("b",)``; ``"aI"`` -> ``("a", "i")``; unknown mnemonics follow the fallback
    rule of the module docstring and yield ``("<unknown>",)``.
    """
    if not isinstance(phoneme, str):
        raise ValueError(f"phoneme must be a str mnemonic, got {type(phoneme).__name__}")
    if phoneme.startswith("_"):
        return (PAUSE,)
    candidates = [phoneme, phoneme.strip(_STRESS)]
    stripped = candidates[-1]
    while stripped and stripped[-1] in _MODIFIERS:
        stripped = stripped[:-1]
        candidates.append(stripped)
    for candidate in candidates:
        if candidate in _COMPOUND_PHONEMES:
            return _COMPOUND_PHONEMES[candidate]
        if candidate in _SIMPLE_PHONEMES:
            return (candidate,)
    base = candidates[1]
    for length in range(len(base) - 1, 0, -1):
        prefix = base[:length]
        if prefix in _COMPOUND_PHONEMES:
            return _COMPOUND_PHONEMES[prefix]
        if prefix in _SIMPLE_PHONEMES:
            return (prefix,)
    return (_UNKNOWN_GESTURE,)


def _viseme_of_simple(simple: str) -> str:
    return _SIMPLE_PHONEMES.get(simple, FALLBACK_VISEME)


def viseme_of(phoneme: str) -> str:
    """Viseme class of a phoneme mnemonic (of its first gesture for diphthongs).

    ``viseme_of("b") == "bilabial"``, ``viseme_of("'aU") == "open_vowel"``; returns
    ``"unknown"`` only when the fallback rule finds nothing (see the module docstring).
    """
    return _viseme_of_simple(gestures_of(phoneme)[0])


def visemes_of(phoneme: str) -> tuple[str, ...]:
    """Viseme classes of all gestures of a phoneme, in order.

    ``visemes_of("aI") == ("open_vowel", "spread_vowel")``.
    """
    return tuple(_viseme_of_simple(g) for g in gestures_of(phoneme))


@lru_cache(maxsize=512)
def target_of(simple: str) -> np.ndarray:
    """Target mouth vector (N_MOUTH,) float64 of a simple phoneme (a gesture)."""
    cls = VISEME_CLASSES[_viseme_of_simple(simple)]
    target = cls.target.copy()
    for name, value in _TARGET_OVERRIDES.get(simple, {}).items():
        target[INDEX[name]] = value
    target.setflags(write=False)
    return target


# ---------------------------------------------------------------------------- trajectories


@dataclass(frozen=True)
class ArticulationParams:
    """Speaker habits applied on top of the phoneme targets.

    jaw_scale: multiplies every jaw_open target (a speaker who opens wide or mumbles).
    lip_scale: multiplies lip_spread and lip_round targets (expressive vs. flat lips).
    coarticulation: >1 spreads every gesture further in time (slurred, anticipatory speech),
        <1 makes gestures more local (careful speech); divides all decay rates.
    """

    jaw_scale: float = 1.0
    lip_scale: float = 1.0
    coarticulation: float = 1.0

    def __post_init__(self) -> None:
        for name in ("jaw_scale", "lip_scale", "coarticulation"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(
                    f"ArticulationParams.{name} must be a positive number, got {value}"
                )


@dataclass(frozen=True)
class _Gesture:
    start: float  # core start (s)
    end: float  # core end (s)
    target: np.ndarray  # (N_MOUTH,)
    alpha: np.ndarray  # (N_MOUTH,)
    theta_before: float
    theta_after: float


def _gestures(phonemes: Sequence[Segment], params: ArticulationParams) -> list[_Gesture]:
    out = []
    scale = np.ones(N_MOUTH)
    scale[INDEX["jaw_open"]] = params.jaw_scale
    scale[INDEX["lip_spread"]] = params.lip_scale
    scale[INDEX["lip_round"]] = params.lip_scale
    previous_end = -np.inf
    for seg in phonemes:
        if not isinstance(seg, Segment):
            raise ValueError(f"phonemes must be Segment objects, got {type(seg).__name__}")
        if not (np.isfinite(seg.start) and np.isfinite(seg.end)) or seg.end < seg.start:
            raise ValueError(f"phoneme segment {seg} has invalid times (need start <= end)")
        if seg.start < previous_end - 1e-6:
            raise ValueError(
                f"phoneme segments must be in time order without overlap; {seg} starts before "
                f"the previous one ends ({previous_end:.3f} s)"
            )
        previous_end = seg.end
        parts = gestures_of(seg.label)
        share = seg.duration / len(parts)
        for k, simple in enumerate(parts):
            cls = VISEME_CLASSES[_viseme_of_simple(simple)]
            core = _CORE_OVERRIDES.get(simple, cls.core)
            part_start = seg.start + k * share
            out.append(
                _Gesture(
                    start=part_start + core[0] * share,
                    end=part_start + core[1] * share,
                    target=np.clip(target_of(simple) * scale, 0.0, 1.0),
                    alpha=cls.alpha,
                    theta_before=cls.theta_before / params.coarticulation,
                    theta_after=cls.theta_after / params.coarticulation,
                )
            )
    return out


def mouth_curve(
    phonemes: Sequence[Segment],
    times: np.ndarray,
    lead_s: float = 0.04,
    params: ArticulationParams | None = None,
) -> np.ndarray:
    """Mouth parameters at arbitrary times: array (len(times), N_MOUTH) float32 in [0, 1].

    times: seconds on the audio clock; the mouth is evaluated ``lead_s`` seconds ahead
    (``lead_s > 0``: the mouth moves before the sound it makes). Use a fine grid
    (e.g. 1 ms) for plots; :func:`mouth_trajectory` samples video frames.
    """
    params = params if params is not None else ArticulationParams()
    if not isinstance(params, ArticulationParams):
        raise ValueError(f"params must be ArticulationParams or None, got {type(params).__name__}")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1:
        raise ValueError(f"times must be a 1-D array of seconds, got shape {times.shape}")
    if not np.isfinite(lead_s):
        raise ValueError(f"lead_s must be a finite number of seconds, got {lead_s}")
    if not phonemes:
        raise ValueError("phonemes is empty: pass the Utterance.phonemes of a synthesized clip")
    gestures = _gestures(phonemes, params)
    t = times[:, None] + lead_s  # (T, 1): the mouth shows now what is heard lead_s later
    weighted = np.zeros((len(times), N_MOUTH))
    total = np.zeros((len(times), N_MOUTH))
    for g in gestures:
        # Distance outside the core, before and after it (0 inside the core).
        before = np.maximum(g.start - t, 0.0)
        after = np.maximum(t - g.end, 0.0)
        decay = np.exp(-(g.theta_before * before + g.theta_after * after))  # (T, 1)
        dominance = decay * g.alpha  # (T, N_MOUTH)
        weighted += dominance * g.target
        total += dominance
    # Far from every gesture (before the clip, long after it) all dominances underflow: rest.
    rest = VISEME_CLASSES["silence"].target
    tiny = 1e-12
    out = (weighted + tiny * rest) / (total + tiny)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def mouth_trajectory(
    phonemes: Sequence[Segment],
    n_frames: int,
    fps: float = 25.0,
    lead_frames: float = 1.0,
    params: ArticulationParams | None = None,
) -> np.ndarray:
    """Coarticulated mouth trajectory: array (n_frames, N_MOUTH) float32 in [0, 1].

    Row k is the mouth at the centre of video frame k, ``(k + 0.5) / fps`` seconds, showing
    the sound heard ``lead_frames`` frames later (the mouth leads the audio).
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 0:
        raise ValueError(f"n_frames must be a non-negative integer, got {n_frames!r}")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps}")
    times = (np.arange(int(n_frames)) + 0.5) / fps
    return mouth_curve(phonemes, times, lead_s=lead_frames / fps, params=params)


def n_frames_for(duration_s: float, fps: float = 25.0) -> int:
    """Number of whole video frames in ``duration_s`` seconds at ``fps`` (floor)."""
    if not np.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s must be a non-negative number of seconds, got {duration_s}")
    return int(np.floor(duration_s * fps + 1e-9))


__all__ = [
    "ArticulationParams",
    "FALLBACK_VISEME",
    "KNOWN_PHONEMES",
    "VISEMES",
    "VISEME_CLASSES",
    "VisemeClass",
    "gestures_of",
    "mouth_curve",
    "mouth_trajectory",
    "n_frames_for",
    "target_of",
    "viseme_of",
    "visemes_of",
]
