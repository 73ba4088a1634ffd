"""Synthesized speech with exact phoneme and word timings, from espeak-ng driven through ctypes.

The pip package ``espeakng-loader`` ships ``libespeak-ng`` 1.52 and its data. We initialise the
library in synchronous mode with phoneme events switched on, so that every call to
:func:`synthesize` returns the audio together with the events espeak-ng emitted while
producing it: a PHONEME event (mnemonic such as ``b``, ``'aU``, ``t#``) and a WORD event (the
character position of the word in the input) each carry the exact sample index at which they
occur. Synthesis runs at 150-250x real time and is deterministic for equal inputs.

Alignment rules (what the returned segments mean)
-------------------------------------------------
* Each PHONEME event starts a segment that ends where the next one starts; the labels are the
  espeak-ng mnemonics with the stress marks (``'`` primary, ``,`` secondary) removed.
* Pauses: every espeak-ng pause phoneme (``_``, ``_:``, ``_!`` ...) and the silence before the
  first phoneme are labelled :data:`PAUSE` (``"_"``); adjacent pauses are merged, zero-length
  segments (such as the final ``_``) are dropped. Sound-less markers (``;``, linking) are not
  phonemes: the time after them belongs to the previous phoneme.
* Digital silence at the end of a phoneme is given to the following phoneme. It is either the
  closure of a stop (espeak-ng reports voiceless stops at their *release*, after the silent
  closure) or the short gap between two words; either way a /p/ segment then covers the time
  the lips are shut. A stop after a pause takes at most :data:`PAUSE_CLOSURE_S` of the pause
  as its closure.
* A word spans its phonemes (the phoneme events between its WORD event and the next one);
  pauses never belong to a word. Words are the whitespace-separated tokens of the text that
  contain a letter or digit, so ``Utterance.words[i].label`` is the i-th such token, stripped
  of surrounding punctuation. espeak-ng speaks some function-word pairs as one word ("of the",
  "in the": one WORD event); their phonemes are shared out by how many phonemes each word has
  when said alone (``espeak_TextToPhonemes``).

Times are seconds from the start of the returned waveform; the waveform is resampled from
espeak-ng's native 22050 Hz to 16 kHz (``resample_poly(x, 320, 441)``), which keeps times exact.

Engine, determinism and processes
---------------------------------
libespeak-ng keeps its state in globals, some of which (the phase of the pitch "flutter",
counters of the wave generator) no API call resets, so a long-lived instance speaks the same
text slightly differently depending on what it said before. Each call therefore loads a fresh
instance of the library, initialises it, reseeds its noise generator, speaks and unloads it
again: equal inputs give bit-identical outputs, whatever came before and in whichever
process. The price is a few milliseconds per call, mostly loading the voice and dictionary:
a 2-s GRID sentence takes about 8-13 ms in all (150-250x real time on a shared 2-core CPU).
One module-level engine per process, created lazily, holds the ctypes callback and a lock
(threads take turns). Worker processes each get their own engine, with ``fork`` or ``spawn``
alike, since no library instance outlives a call.
"""
from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from scipy.signal import firwin, resample_poly

# The book's audio rate (16 kHz) is defined once, in avlib.audio.
from avlib.audio import SR as SAMPLE_RATE  # sample rate (Hz) of Utterance.wav
ESPEAK_RATE = 22050
"""Native sample rate (Hz) of espeak-ng; event sample indices count at this rate."""
PAUSE = "_"
"""Label of pause segments in :attr:`Utterance.phonemes`."""
PAUSE_CLOSURE_S = 0.06
"""Longest part (s) of a preceding pause that becomes the closure of a stop."""

# espeak-ng constants (speak_lib.h, API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EE_OK = 0
# espeak_TextToPhonemes mode: ASCII mnemonics, "|" between phonemes (bits 8-23).
_PHONEME_SEPARATOR = ord("|") << 8

# |int16| below this counts as digital silence: espeak-ng writes exact zeros in closures and
# pauses, and the threshold (about -54 dBFS) only has to tolerate the edges of a waveform.
_SILENCE_LEVEL = 64
# A phoneme robbed of its silent tail keeps at least this much (s) of its own sound.
_MIN_KEEP_S = 0.01
# Phonemes whose closure precedes the release event: stops and affricates. Their espeak-ng en
# mnemonics start with one of these (p b t t# t2 d d# k g tS dZ, and ? the glottal stop).
_STOP_INITIALS = frozenset("pbtdkg?")
_STRESS_MARKS = "',%="
# Phoneme events that are not sounds: ";" marks linking between words in espeak-ng en.
_MARKERS = frozenset({";"})


class SpeechError(RuntimeError):
    """espeak-ng could not be loaded, rejected a request, or produced an unusable alignment."""


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak-ng voice plus prosody settings.

    language: espeak-ng voice/language name (``"en-us"``, ``"en"``, ``"en-gb-x-rp"`` ...).
    variant: voice variant from ``espeak-ng-data/voices/!v`` (``"m3"``, ``"f2"``) or None.
    pitch: base pitch, 0-100 (50 = variant default).
    pitch_range: intonation range, 0-100 (0 = monotone, 50 = normal).
    rate: speaking rate in words per minute, 80-450.
    volume: amplitude, 0-200 (100 = normal; more clips).
    """

    language: str = "en-us"
    variant: str | None = None
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 160
    volume: int = 100

    def __post_init__(self) -> None:
        _check_range("pitch", self.pitch, 0, 100)
        _check_range("pitch_range", self.pitch_range, 0, 100)
        _check_range("rate", self.rate, 80, 450)
        _check_range("volume", self.volume, 0, 200)
        if not self.language or "+" in self.language:
            raise ValueError(
                f"Voice.language must be a plain espeak-ng voice name such as 'en-us', got "
                f"{self.language!r}; give the variant separately (variant='m3')"
            )

    @property
    def espeak_name(self) -> str:
        """Name passed to ``espeak_SetVoiceByName``: ``language`` or ``language+variant``."""
        return f"{self.language}+{self.variant}" if self.variant else self.language


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"Voice.{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"Voice.{name} must lie in [{low}, {high}], got {value}")


@dataclass
class Segment:
    """A labelled time interval: ``label`` from ``start`` to ``end`` seconds."""

    label: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start

    @property
    def centre(self) -> float:
        """Mid-point in seconds."""
        return 0.5 * (self.start + self.end)


@dataclass
class Utterance:
    """Synthesized speech and its alignment.

    wav: float32 mono waveform in [-1, 1], shape (n_samples,), at ``sr`` Hz (16 kHz).
    phonemes: contiguous segments covering the whole waveform (pauses labelled ``"_"``).
    words: one segment per word of ``text``, in order, labelled with the text word.
    text: the input text.
    voice: the voice that spoke it.
    """

    wav: np.ndarray
    phonemes: list[Segment]
    words: list[Segment]
    text: str
    voice: Voice | None = None
    sr: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Length of ``wav`` in seconds."""
        return len(self.wav) / self.sr


# ---------------------------------------------------------------------------- ctypes binding


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class _RawEvent:
    kind: int  # _EVENT_WORD or _EVENT_PHONEME
    sample: int  # index at 22050 Hz
    text_position: int  # 1-based character index (WORD events)
    phoneme: str  # mnemonic (PHONEME events)


class _Engine:
    """Drives libespeak-ng for this process.

    espeak-ng keeps synthesis state in static variables that no API call resets (the phase of
    its pitch "flutter" oscillator, the voicing and roughness counters of the wave generator):
    the same text would come out slightly different depending on what was spoken before. So
    every request runs in a fresh instance of the library: load, initialise, speak, terminate,
    unload (a few ms, mostly loading the voice). Random generators are reseeded per request.
    """

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise SpeechError(
                "espeakng-loader is not installed; install the project dependencies "
                "(pip install espeakng-loader)"
            ) from exc
        self.lib_path = espeakng_loader.get_library_path()
        self.data_path = Path(espeakng_loader.get_data_path())
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[_RawEvent] = []
        self._callback_error: BaseException | None = None
        # Keep a reference: the C library calls this pointer while it synthesizes.
        self._callback = _CALLBACK(self._on_audio)
        try:
            self._srand = ctypes.CDLL(None).srand
            self._srand.argtypes = [ctypes.c_uint]
            self._srand.restype = None
        except (OSError, AttributeError):  # pragma: no cover - non-glibc platforms
            self._srand = None
        # Fail early, with a clear message, if the library or its data cannot be used.
        with self._session():
            pass

    @contextlib.contextmanager
    def _session(self) -> Iterator[ctypes.CDLL]:
        """A freshly loaded and initialised libespeak-ng, unloaded afterwards (lock held)."""
        try:
            lib = ctypes.CDLL(self.lib_path)
        except OSError as exc:
            raise SpeechError(f"cannot load libespeak-ng from {self.lib_path}: {exc}") from exc
        try:
            _declare_signatures(lib)
            rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
                _INITIALIZE_PHONEME_EVENTS,
            )
            if rate != ESPEAK_RATE:
                raise SpeechError(
                    f"espeak_Initialize returned {rate}, expected {ESPEAK_RATE} Hz "
                    f"(data path {self.data_path})"
                )
            lib.espeak_SetSynthCallback(self._callback)
            # Breath and frication noise come from espeak-ng's generator, and a few variants
            # (e.g. "Alex") draw from the C library's rand(); reseeding the latter is harmless
            # for Python and numpy, which never use it.
            lib.espeak_ng_SetRandSeed(_RAND_SEED)
            if self._srand is not None:
                self._srand(_RAND_SEED)
            yield lib
        finally:
            try:
                lib.espeak_Terminate()
            finally:
                # Unloading drops the static state; the next session starts from scratch.
                _ctypes.dlclose(lib._handle)

    def _on_audio(self, wav, n_samples, events) -> int:
        try:
            if n_samples > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
            i = 0
            while events[i].type != _EVENT_LIST_TERMINATED:
                ev = events[i]
                if ev.type == _EVENT_PHONEME:
                    name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                    self._events.append(
                        _RawEvent(_EVENT_PHONEME, ev.sample, ev.text_position, name)
                    )
                elif ev.type == _EVENT_WORD:
                    self._events.append(_RawEvent(_EVENT_WORD, ev.sample, ev.text_position, ""))
                i += 1
        except BaseException as exc:  # never let an exception unwind through C
            self._callback_error = exc
            return 1
        return 0

    @staticmethod
    def _set_voice(lib: ctypes.CDLL, voice: Voice) -> None:
        # espeak-ng silently ignores an unknown variant: check it here.
        if voice.variant is not None and voice.variant not in _variant_names():
            raise ValueError(
                f"espeak-ng has no voice variant {voice.variant!r}; use one of "
                f"available_variants() ({_variant_hint()}) or None"
            )
        if lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != _EE_OK:
            raise ValueError(
                f"espeak-ng has no voice {voice.espeak_name!r}; use a language such as "
                f"'en-us' and a variant from available_variants() ({_variant_hint()})"
            )
        for param, value in (
            (_PARAM_RATE, voice.rate),
            (_PARAM_PITCH, voice.pitch),
            (_PARAM_RANGE, voice.pitch_range),
            (_PARAM_VOLUME, voice.volume),
        ):
            lib.espeak_SetParameter(param, int(value), 0)

    def run(self, text: str, voice: Voice) -> tuple[np.ndarray, list[_RawEvent]]:
        """Speak ``text``: int16 samples at 22050 Hz and the WORD/PHONEME events, in order."""
        with self.lock, self._session() as lib:
            self._set_voice(lib, voice)
            self._chunks, self._events, self._callback_error = [], [], None
            data = text.encode("utf-8")
            status = lib.espeak_Synth(
                data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
            )
            chunks, events, error = self._chunks, self._events, self._callback_error
            self._chunks, self._events, self._callback_error = [], [], None
        if error is not None:
            raise SpeechError("error while collecting espeak-ng audio") from error
        if status != _EE_OK:
            raise SpeechError(f"espeak_Synth failed with status {status} for text {text!r}")
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return audio.astype(np.int16, copy=False), events

    def phoneme_counts(self, words: list[str], voice: Voice) -> list[int]:
        """How many phonemes espeak-ng uses for each word when it is said on its own."""
        counts = []
        with self.lock, self._session() as lib:
            self._set_voice(lib, voice)
            for word in words:
                buffer = ctypes.create_string_buffer(word.encode("utf-8"))
                cursor = ctypes.c_void_p(ctypes.addressof(buffer))
                names: list[str] = []
                # Returns one clause per call and advances the cursor (NULL at the end).
                while cursor.value:
                    chunk = lib.espeak_TextToPhonemes(
                        ctypes.byref(cursor), _CHARS_UTF8, _PHONEME_SEPARATOR
                    )
                    if not chunk:
                        break
                    names.extend(re.split(r"[| ]", chunk.decode("utf-8", "replace")))
                counts.append(
                    sum(1 for n in names if n and not n.startswith("_") and n not in _MARKERS)
                )
        return counts


def _declare_signatures(lib: ctypes.CDLL) -> None:
    """Argument and return types of the libespeak-ng functions we call."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [
        ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int,
    ]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int


_engine: _Engine | None = None
_engine_lock = threading.Lock()
_RAND_SEED = 1


def _get_engine() -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


def _forget_engine_in_child() -> None:
    # A process forked while another thread held a lock would inherit it locked: start afresh.
    global _engine, _engine_lock
    _engine, _engine_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_engine_in_child)


def _variant_hint() -> str:
    names = available_variants()
    return ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")


@lru_cache(maxsize=1)
def _variant_names() -> frozenset[str]:
    import espeakng_loader

    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return frozenset(p.name for p in folder.iterdir() if p.is_file())


def available_variants() -> list[str]:
    """Names of the voice variants shipped with espeak-ng (``m1``..``m8``, ``f1``..``f5``, ...)."""
    return sorted(_variant_names())


# ---------------------------------------------------------------------------- alignment

_TOKEN = re.compile(r"\S+")
_WORD_CHAR = re.compile(r"\w")
_EDGE_PUNCT = re.compile(r"^[^\w]+|[^\w]+$")


def text_words(text: str) -> list[tuple[str, int, int]]:
    """The words of ``text`` as (word, start, end) character spans.

    A word is a whitespace-separated token containing a letter or digit; the returned word is
    stripped of leading/trailing punctuation (``"now."`` -> ``"now"``), the span is the token's.
    """
    words = []
    for match in _TOKEN.finditer(text):
        if _WORD_CHAR.search(match.group()):
            words.append((_EDGE_PUNCT.sub("", match.group()), match.start(), match.end()))
    return words


def _clean_label(mnemonic: str) -> str:
    if mnemonic.startswith("_"):
        return PAUSE
    return mnemonic.strip(_STRESS_MARKS) or mnemonic


def _align(
    audio: np.ndarray,
    events: list[_RawEvent],
    text: str,
    count_phonemes: Callable[[list[str]], list[int]],
) -> tuple[list[Segment], list[Segment]]:
    """Turn espeak-ng events into phoneme and word segments (seconds), see module docstring."""
    n_total = len(audio)
    # Phoneme onsets, with the index of the WORD event each phoneme belongs to (-1: before any).
    labels: list[str] = []
    onsets: list[int] = []
    owner: list[int] = []
    word_positions: list[int] = []
    for ev in events:
        sample = min(max(ev.sample, 0), n_total)
        if ev.kind == _EVENT_WORD:
            word_positions.append(ev.text_position)
            continue
        label = _clean_label(ev.phoneme)
        if label in _MARKERS:
            # Markers carry no sound of their own: what follows them until the next phoneme
            # continues the previous phoneme.
            continue
        labels.append(label)
        onsets.append(sample)
        owner.append(len(word_positions) - 1)
    if not labels:
        raise SpeechError(f"espeak-ng produced no phonemes for {text!r}")
    # The stretch before the first phoneme is a pause.
    if onsets[0] > 0:
        labels.insert(0, PAUSE)
        onsets.insert(0, 0)
        owner.insert(0, -1)
    ends = onsets[1:] + [n_total]

    silent = np.abs(audio.astype(np.int32)) < _SILENCE_LEVEL
    min_keep = int(round(_MIN_KEEP_S * ESPEAK_RATE))
    pause_closure = int(round(PAUSE_CLOSURE_S * ESPEAK_RATE))
    for i in range(1, len(labels)):
        if labels[i] == PAUSE or ends[i - 1] <= onsets[i - 1]:
            continue
        tail = _silent_tail(silent, onsets[i - 1], onsets[i])
        if labels[i - 1] == PAUSE:
            # A pause only lends its end to a stop closure, never to other sounds.
            shift = min(tail, pause_closure) if labels[i][0] in _STOP_INITIALS else 0
        else:
            shift = max(0, min(tail, onsets[i] - onsets[i - 1] - min_keep))
        onsets[i] -= shift
        ends[i - 1] = onsets[i]

    phonemes: list[Segment] = []
    phoneme_owner: list[int] = []
    for label, start, end, word in zip(labels, onsets, ends, owner):
        if end <= start:
            continue  # zero-length events such as the final "_"
        if label == PAUSE and phonemes and phonemes[-1].label == PAUSE:
            phonemes[-1].end = end / ESPEAK_RATE
            continue
        phonemes.append(Segment(label, start / ESPEAK_RATE, end / ESPEAK_RATE))
        phoneme_owner.append(-1 if label == PAUSE else word)
    phonemes[-1].end = n_total / ESPEAK_RATE

    words = _word_segments(text, word_positions, phonemes, phoneme_owner, count_phonemes)
    return phonemes, words


def _silent_tail(silent: np.ndarray, start: int, stop: int) -> int:
    """Number of silent samples at the end of ``silent[start:stop]``."""
    region = silent[start:stop]
    if region.size == 0 or not region[-1]:
        return 0
    loud = np.flatnonzero(~region)
    return region.size if loud.size == 0 else region.size - 1 - int(loud[-1])


def _word_segments(
    text: str,
    word_positions: list[int],
    phonemes: list[Segment],
    phoneme_owner: list[int],
    count_phonemes: Callable[[list[str]], list[int]],
) -> list[Segment]:
    """Group phonemes by WORD event and map each WORD event onto the words of ``text``.

    ``count_phonemes(words)`` gives the number of phonemes espeak-ng uses for each word said
    on its own; it splits the phonemes of a WORD event that covers several words.
    """
    tokens = text_words(text)
    # WORD events give 1-based character positions; numbers yield one event per spoken word
    # inside the same token, and a position may point at punctuation before the word.
    event_token: list[int] = []
    for position in word_positions:
        char = position - 1
        event_token.append(
            next((k for k, (_, _, end) in enumerate(tokens) if char < end), len(tokens) - 1)
        )
    by_event: dict[int, list[int]] = {}
    for index, event in enumerate(phoneme_owner):
        if phonemes[index].label != PAUSE:
            by_event.setdefault(max(event, 0), []).append(index)

    # espeak-ng speaks some function-word pairs as one word ("of the", "in the"): a single
    # WORD event, and no event for the second word. Such an event covers every token up to
    # the next token that has an event of its own.
    anchors = sorted(set(event_token))
    last_event_of = {token: j for j, token in enumerate(event_token)}
    token_phonemes: dict[int, list[int]] = {}
    for j, token in enumerate(event_token):
        members = by_event.get(j, [])
        later = [a for a in anchors if a > token]
        covered = list(range(token, later[0] if later else len(tokens)))
        if len(covered) == 1 or last_event_of[token] != j:
            token_phonemes.setdefault(token, []).extend(members)
            continue
        counts = _split_counts(count_phonemes([tokens[k][0] for k in covered]), len(members))
        offset = 0
        for k, count in zip(covered, counts):
            token_phonemes.setdefault(k, []).extend(members[offset : offset + count])
            offset += count

    missing = [tokens[k][0] for k in range(len(tokens)) if not token_phonemes.get(k)]
    if missing:
        raise SpeechError(
            f"espeak-ng spoke no phonemes for the word(s) {missing} of {text!r}; spell such "
            "words out (e.g. letters as 'eigh', 'bee') so that each word is pronounced"
        )
    words = []
    for k, (word, _, _) in enumerate(tokens):
        members = token_phonemes[k]
        words.append(Segment(word, phonemes[min(members)].start, phonemes[max(members)].end))
    return words


def _split_counts(counts: list[int], total: int) -> list[int]:
    """Share ``total`` phonemes among words in proportion to ``counts``, at least one each."""
    if total < len(counts):
        return [1] * total + [0] * (len(counts) - total)
    if sum(counts) == total:
        return counts
    weights = np.maximum(np.asarray(counts, dtype=float), 1.0)
    shares = np.maximum(np.floor(weights / weights.sum() * total).astype(int), 1)
    # Hand out (or take back) the rounding remainder from the largest words first.
    order = np.argsort(-weights, kind="stable")
    k = 0
    while shares.sum() != total:
        i = order[k % len(order)]
        if shares.sum() < total:
            shares[i] += 1
        elif shares[i] > 1:
            shares[i] -= 1
        k += 1
    return [int(x) for x in shares]


# ---------------------------------------------------------------------------- public entry


@lru_cache(maxsize=1)
def _resample_filter() -> np.ndarray:
    """The anti-aliasing filter ``resample_poly(x, 320, 441)`` designs by default.

    Designing it takes longer than filtering a sentence, so it is built once and passed in;
    the output is identical to the default call.
    """
    return firwin(2 * 10 * 441 + 1, 1.0 / 441, window=("kaiser", 5.0))


def synthesize(text: str, voice: Voice | None = None) -> Utterance:
    """Speak ``text`` with ``voice`` (default ``Voice()``): 16 kHz audio plus alignment.

    Returns an :class:`Utterance` whose ``wav`` is float32 in [-1, 1] at 16 kHz, including a
    sentence-final pause; ``phonemes`` cover ``[0, duration]`` without gaps and ``words`` hold
    one segment per word of ``text`` (see :func:`text_words`). Deterministic for equal inputs.
    Raises ValueError for empty text or an unknown voice, SpeechError if espeak-ng fails.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if not text_words(text):
        raise ValueError(f"text must contain at least one word to speak, got {text!r}")
    if "\0" in text:
        raise ValueError("text must not contain NUL characters")
    voice = voice if voice is not None else Voice()
    if not isinstance(voice, Voice):
        raise ValueError(f"voice must be an avlib.corpus.speech.Voice, got {type(voice).__name__}")
    engine = _get_engine()
    audio, events = engine.run(text, voice)
    if audio.size == 0:
        raise SpeechError(f"espeak-ng produced no audio for {text!r}")
    phonemes, words = _align(
        audio, events, text, lambda words: engine.phoneme_counts(words, voice)
    )
    wav = resample_poly(audio.astype(np.float64) / 32768.0, 320, 441, window=_resample_filter())
    # The polyphase filter can overshoot slightly at sharp onsets.
    wav = np.clip(wav, -1.0, 1.0).astype(np.float32)
    duration = len(wav) / SAMPLE_RATE
    phonemes[-1].end = duration  # ceil(n*320/441) samples: at most one 16 kHz sample longer
    return Utterance(wav=wav, phonemes=phonemes, words=words, text=text, voice=voice)


__all__ = [
    "ESPEAK_RATE",
    "PAUSE",
    "PAUSE_CLOSURE_S",
    "SAMPLE_RATE",
    "Segment",
    "SpeechError",
    "Utterance",
    "Voice",
    "available_variants",
    "synthesize",
    "text_words",
]
