"""Judging generated speech as the lip-to-speech papers do, with real pretrained speech models.

Every judge is a model trained by others that ships inside a pip wheel, so nothing downloads at
run time (install them with ``pip install -e '.[speech]'``):

===============================  ==============================================================
function                         what
===============================  ==============================================================
:func:`stoi`, :func:`estoi`      intelligibility against the true audio (``pystoi``, 16 kHz),
                                 0-1, higher is better
:func:`pesq_nb`                  PESQ narrow-band, both signals resampled to 8 kHz: the number
                                 VCA-GAN reports (P.862 MOS-LQO, about 1-4.5)
:func:`pesq_wb`                  PESQ wide-band at 16 kHz (P.862.2, about 1-4.6); **not
                                 comparable with** :func:`pesq_nb` (other filter, other
                                 mapping): never put the two in one column
:class:`GridASR`                 PocketSphinx's en-us acoustic model restricted to the GRID
                                 grammar (:func:`grid_grammar`): the words a listener would
                                 write down; :func:`word_errors`, :func:`wer` and
                                 :func:`slot_errors` count what it got wrong
:func:`speaker_similarity`       cosine of Resemblyzer speaker embeddings (:class:`SpeakerJudge`):
                                 does the voice sound like the speaker's?
:func:`dnsmos`                   Microsoft's DNSMOS (no reference): predicted listener ratings
                                 ``ovrl``, ``sig``, ``bak`` (P.835) and ``p808`` (P.808), 1-5
:func:`ceiling`                  the true audio through VCA-GAN's analysis and Griffin-Lim:
                                 the best any spectrogram predictor can score
:func:`score_speech`             all of the above for one clip; :func:`score_set` for many,
                                 :func:`summarise` for the table row
===============================  ==============================================================

Audio is mono at 16 kHz, float in [-1, 1] or int16 PCM, as everywhere in avlib; NaN or inf
samples raise ValueError. Against a reference, the reference is truncated to the generated
length as upstream does (and the generated audio to the reference's, should it be longer).

Generated spectrograms become waveforms with :func:`avlib.audio.griffin_lim` (VCA-GAN's
evaluation vocoder: 60 iterations, de-emphasis, clipping); :func:`ceiling` is that chain run
on the true audio.

Undefined scores. PESQ finds no utterance in silence, STOI needs about 0.4 s of speech, a
speaker embedding needs speech: such scores are :class:`Undefined`, a NaN that carries its
``reason``, and :func:`score_speech` lists the reasons in the row's ``notes``.

What the judges give on the corpus (espeak-ng voices, 16 kHz, measured with this module):
GridASR's WER on true audio is 2.8 % on 12 sentences of corpus voices s1, s4, s7 and 11 % on
51 sentences of all 17 voices (0-39 % per voice), most of it the letter slot (35 % of letters
misheard: the E-set b/d/e/p/t/v and g); through :func:`ceiling` it is 1.4 % and 8.8 %. The
ceiling scores STOI 0.99, ESTOI 0.97, PESQ-nb 4.1, PESQ-wb 3.7 against the raw audio. Speaker
similarity: same voice ~0.83, different voices ~0.60. DNSMOS ovrl of clean speech: 2.0-2.9.
"""
from __future__ import annotations

import importlib
import math
import tempfile
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from avlib.audio import SR, _as_mono, griffin_lim, vcagan_linear
from avlib.corpus.text import GRID_SLOTS, grid_id

__all__ = [
    "JUDGES",
    "SLOTS",
    "Undefined",
    "grid_grammar",
    "GridASR",
    "word_errors",
    "wer",
    "slot_errors",
    "stoi",
    "estoi",
    "pesq_nb",
    "pesq_wb",
    "SpeakerJudge",
    "speaker_similarity",
    "dnsmos",
    "ceiling",
    "score_speech",
    "score_set",
    "summarise",
]

JUDGES = ("stoi", "estoi", "pesq_nb", "pesq_wb", "wer", "similarity", "dnsmos")
"""Every judge :func:`score_speech` knows, in the order of its row."""
SLOTS = tuple(name for name, _ in GRID_SLOTS)
"""The six GRID slots: command, colour, preposition, letter, digit, adverb."""
DNSMOS_KEYS = ("ovrl", "sig", "bak", "p808")

_EXTRA = "pip install -e '.[speech]'"
_NEEDS_REFERENCE = frozenset({"stoi", "estoi", "pesq_nb", "pesq_wb", "similarity"})
_SILENT_PEAK = 1e-4  # below -80 dBFS: digital silence for every judge here
_PESQ_MIN_S = 0.25  # the PESQ library rejects shorter buffers
_DNSMOS_MIN_S = 0.5  # DNSMOS tiles short clips to 9 s: a shorter clip is mostly repetition
_SPEAKER_MIN_S = 0.5  # speech left after Resemblyzer's VAD

# How PocketSphinx's en-us dictionary spells the corpus words that differ from their GRID
# spelling. Letters are one-letter dictionary words (b = B IY, ...) except "a": the word "a" is
# AH | EY and loses to the schwa; "ay" (EY | AY) halves the errors on the letter a (20 -> 7 of
# 35 on corpus speech). British corpus voices (language "en") say "zed".
_DICT_SPELLINGS = {"a": ("ay",), "z": ("z", "zed")}
_CORPUS_WORD = {spoken: word for word, spellings in _DICT_SPELLINGS.items() for spoken in spellings}


class Undefined(float):
    """A NaN score that says why it is undefined: ``math.isnan(x)`` holds and ``x.reason`` is
    a sentence such as ``"PESQ: No utterances detected"``. Arithmetic gives plain NaN."""

    reason: str

    def __new__(cls, reason: str):
        obj = super().__new__(cls, math.nan)
        obj.reason = str(reason)
        return obj

    def __reduce__(self):
        return (Undefined, (self.reason,))

    def __repr__(self) -> str:
        return f"Undefined({self.reason!r})"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------
# Inputs and optional packages
# --------------------------------------------------------------------------------------------
def _require(module: str, package: str):
    """Import an optional judge package, or say which pip extra provides it."""
    try:
        with warnings.catch_warnings():
            # webrtcvad (under Resemblyzer) imports pkg_resources; Resemblyzer imports
            # scipy.ndimage.morphology. Neither warning is ours to act on.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated",
                                    category=UserWarning)
            warnings.filterwarnings("ignore", message=".*scipy.ndimage.morphology",
                                    category=DeprecationWarning)
            return importlib.import_module(module)
    except ImportError as err:
        if getattr(err, "name", None) == "pkg_resources":
            raise ImportError(
                f"{package} needs pkg_resources (webrtcvad imports it), which setuptools 81 "
                f"removed: pip install 'setuptools<81', or {_EXTRA}") from err
        raise ImportError(
            f"avlib.lip2speech.metrics needs {package} for this judge; install the speech "
            f"extra: {_EXTRA}") from err


def _wav(wav, what: str, min_s: float = 0.0) -> np.ndarray:
    """Float64 mono waveform in [-1, 1] (int16 divided by 32768), at least ``min_s`` long."""
    x, was_int16 = _as_mono(wav, what)
    if was_int16:
        x = x / 32768.0
    if x.size < min_s * SR:
        raise ValueError(f"{what}: needs at least {min_s:g} s of audio ({int(min_s * SR)} "
                         f"samples at {SR} Hz), got {x.size} samples")
    return x


def _silent(x: np.ndarray) -> bool:
    return float(np.max(np.abs(x))) < _SILENT_PEAK


def _pair(reference, generated, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (reference, generated), both cut to the shorter length (upstream truncates the
    reference to the generated length)."""
    ref = _wav(reference, f"{what}: reference")
    gen = _wav(generated, f"{what}: generated")
    n = min(ref.size, gen.size)
    return ref[:n], gen[:n]


# --------------------------------------------------------------------------------------------
# Words: PocketSphinx with the GRID grammar, word and slot errors
# --------------------------------------------------------------------------------------------
def grid_grammar() -> str:
    """A JSGF grammar of GRID sentences: ``<command> <colour> <preposition> <letter> <digit>
    <adverb>``, one rule per slot, written with the words of PocketSphinx's en-us dictionary
    (``ay`` for the letter a, ``z`` | ``zed`` for z; :class:`GridASR` maps them back)."""
    rules = []
    for name, words in GRID_SLOTS:
        spoken = [s for w in words for s in _DICT_SPELLINGS.get(w, (w,))]
        rules.append(f"<{name}> = {' | '.join(spoken)} ;")
    sentence = " ".join(f"<{name}>" for name in SLOTS)
    return "\n".join(["#JSGF V1.0;", "grammar grid;", *rules,
                      f"public <sentence> = {sentence} ;", ""])


class GridASR:
    """PocketSphinx (en-us acoustic model from the wheel) decoding GRID sentences only.

    ``GridASR().transcribe(wav)`` -> the GRID words heard, in corpus spelling, e.g.
    ``("bin", "blue", "at", "a", "two", "now")``; ``()`` when nothing is recognised (silence,
    noise). The grammar forces six-word sentences, but a clip that ends early can give fewer
    words (the best partial path).

    Decoding is deterministic and independent of earlier calls: PocketSphinx's dither (needed:
    espeak-ng's digital silence makes its log energies degenerate, 15 % WER without dither
    against 3 % with it) and its cepstral mean are reset before every utterance. One instance
    holds one decoder (about 0.1 s to build); calls are serialised by a lock.
    """

    def __init__(self):
        ps = _require("pocketsphinx", "pocketsphinx")
        # The Decoder reads the grammar from a file (the lm=None + add_jsgf_string route
        # crashes pocketsphinx 5.1.1); the file is only needed while it loads.
        with tempfile.TemporaryDirectory(prefix="avlib-grid-") as tmp:
            path = Path(tmp) / "grid.gram"
            path.write_text(grid_grammar())
            self._decoder = ps.Decoder(samprate=SR, jsgf=str(path), dither=True,
                                       loglevel="FATAL")
        self._lock = threading.Lock()

    def transcribe(self, wav) -> tuple[str, ...]:
        """The GRID words in ``wav`` (mono 16 kHz, float in [-1, 1] or int16), corpus spelling."""
        arr = np.asarray(wav)
        if arr.dtype == np.int16 and arr.ndim == 1 and arr.size:
            pcm = arr
        else:
            x = _wav(wav, "GridASR.transcribe")
            pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
        with self._lock:
            dec = self._decoder
            dec.reinit_feat()  # fresh CMN and dither: the result depends on this clip alone
            dec.start_utt()
            dec.process_raw(pcm.tobytes(), full_utt=True)
            dec.end_utt()
            hyp = dec.hyp()
        if hyp is None:
            return ()
        return tuple(_CORPUS_WORD.get(w, w) for w in hyp.hypstr.split())


@lru_cache(maxsize=1)
def _default_asr() -> GridASR:
    return GridASR()


def _words(words, what: str) -> tuple[str, ...]:
    if isinstance(words, str):
        return tuple(words.split())
    words = tuple(words)
    if not all(isinstance(w, str) for w in words):
        raise ValueError(f"{what}: expected a sequence of words (str), got {words!r}")
    return words


def _align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, int | None, int | None]]:
    """A minimum-edit alignment: ``(op, ref index, hyp index)`` with op in ``"="`` (match),
    ``"s"`` (substitution), ``"d"`` (deletion: ref word missing), ``"i"`` (insertion).

    Ties prefer match/substitution, then deletion, then insertion."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]),
                             cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    ops = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append(("=" if ref[i - 1] == hyp[j - 1] else "s", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            ops.append(("d", i - 1, None))
            i -= 1
        else:
            ops.append(("i", None, j - 1))
            j -= 1
    return ops[::-1]


def word_errors(ref, hyp) -> tuple[int, int]:
    """(substitutions + deletions + insertions, number of reference words), by Levenshtein
    distance over words. ``ref``/``hyp``: sequences of words (a str is split on whitespace)."""
    ref, hyp = _words(ref, "word_errors: ref"), _words(hyp, "word_errors: hyp")
    return sum(op != "=" for op, _, _ in _align(ref, hyp)), len(ref)


def wer(refs: Sequence, hyps: Sequence) -> float:
    """Corpus word error rate: all errors over all reference words (not a mean of per-clip
    rates). ``refs``/``hyps``: equally long lists of word sequences."""
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"wer: {len(refs)} references but {len(hyps)} hypotheses")
    errors = total = 0
    for ref, hyp in zip(refs, hyps):
        e, n = word_errors(ref, hyp)
        errors, total = errors + e, total + n
    if total == 0:
        raise ValueError("wer: the references hold no words")
    return errors / total


def slot_errors(ref, hyp) -> list[bool]:
    """Which of the six GRID slots were misheard: ``[command, colour, preposition, letter,
    digit, adverb]``, True where the reference word was substituted or deleted in the minimum-
    edit alignment. Inserted words count against no slot (they count in :func:`word_errors`)."""
    ref, hyp = _words(ref, "slot_errors: ref"), _words(hyp, "slot_errors: hyp")
    if len(ref) != len(SLOTS):
        raise ValueError(f"slot_errors: a GRID reference has {len(SLOTS)} words, got {ref!r}")
    wrong = [False] * len(SLOTS)
    for op, i, _ in _align(ref, hyp):
        if op in ("s", "d"):
            wrong[i] = True
    return wrong


# --------------------------------------------------------------------------------------------
# Against the reference: STOI, ESTOI, PESQ
# --------------------------------------------------------------------------------------------
def _stoi(reference, generated, extended: bool, what: str) -> float:
    pystoi = _require("pystoi", "pystoi")
    ref, gen = _pair(reference, generated, what)
    if _silent(ref):
        return Undefined(f"{what}: the reference is silent")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi.stoi(ref, gen, SR, extended=extended))
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            # pystoi then returns 1e-5: a sentinel, not a score
            return Undefined(f"{what}: fewer than 30 frames (384 ms) of speech in the reference")
    return value


def stoi(reference, generated) -> float:
    """STOI (Taal et al., 2011) of ``generated`` against ``reference``, 0-1, via ``pystoi`` at
    16 kHz (it resamples to 10 kHz and drops the reference's silent frames). Undefined for a
    silent reference or under ~0.4 s of speech."""
    return _stoi(reference, generated, False, "stoi")


def estoi(reference, generated) -> float:
    """Extended STOI (Jensen & Taal, 2016), 0-1, otherwise as :func:`stoi`."""
    return _stoi(reference, generated, True, "estoi")


def _pesq(ref: np.ndarray, gen: np.ndarray, fs: int, mode: str, what: str) -> float:
    pesq = _require("pesq", "pesq")
    if ref.size < _PESQ_MIN_S * fs:
        return Undefined(f"{what}: shorter than {_PESQ_MIN_S} s")
    if _silent(ref):
        return Undefined(f"{what}: the reference is silent")
    if _silent(gen):
        return Undefined(f"{what}: the generated audio is silent")
    try:
        return float(pesq.pesq(fs, ref, gen, mode))
    except (pesq.PesqError, ValueError) as err:
        # PesqError: NoUtterancesError, BufferTooShortError, ...; ValueError: the library's
        # level alignment failing on degenerate signals (a NaN it cannot round)
        message = err.args[0] if err.args else type(err).__name__
        if isinstance(message, bytes):
            message = message.decode(errors="replace")
        return Undefined(f"{what}: PESQ failed: {message}")


def pesq_nb(reference, generated) -> float:
    """PESQ **narrow-band** (ITU-T P.862, MOS-LQO about 1-4.5) as VCA-GAN reports it: both
    signals resampled 16 -> 8 kHz (``resample_poly(x, 1, 2)``), ``pesq(8000, ref, deg, 'nb')``.

    Not comparable with :func:`pesq_wb`: a narrow-band score is computed on telephone-band
    speech with another mapping and runs higher for the same audio. Undefined (NaN with a
    reason) when PESQ finds no utterance, for silence, or under 0.25 s."""
    ref, gen = _pair(reference, generated, "pesq_nb")
    return _pesq(resample_poly(ref, 1, 2), resample_poly(gen, 1, 2), 8000, "nb", "pesq_nb")


def pesq_wb(reference, generated) -> float:
    """PESQ **wide-band** (ITU-T P.862.2, about 1-4.6) at 16 kHz, ``pesq(16000, ref, deg,
    'wb')``. Not comparable with :func:`pesq_nb` (the papers' number); undefined as there."""
    ref, gen = _pair(reference, generated, "pesq_wb")
    return _pesq(ref, gen, SR, "wb", "pesq_wb")


# --------------------------------------------------------------------------------------------
# Speaker similarity (Resemblyzer)
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _voice_encoder():
    resemblyzer = _require("resemblyzer", "Resemblyzer")
    return resemblyzer.VoiceEncoder("cpu", verbose=False)


class SpeakerJudge:
    """Resemblyzer's speaker encoder (GE2E, 256-d, ``pretrained.pt`` from the wheel), loaded
    once per process and shared by every judge.

    ``embed(wav)`` -> unit-norm (256,) float32 embedding of ``preprocess_wav(wav, 16000)``
    (volume normalised, long silences cut by webrtcvad); ``similarity(a, b)`` -> their cosine.
    On corpus voices the same voice gives about 0.8, different voices about 0.6.
    """

    def __init__(self, min_speech_s: float = _SPEAKER_MIN_S):
        self.min_speech_s = float(min_speech_s)
        self._encoder = _voice_encoder()
        self._audio = _require("resemblyzer.audio", "Resemblyzer")

    def _embed(self, wav, what: str) -> tuple[np.ndarray | None, str]:
        x = _wav(wav, what)
        if _silent(x):
            return None, f"{what}: the audio is silent"
        with np.errstate(all="ignore"):
            speech = self._audio.preprocess_wav(x.astype(np.float32), source_sr=SR)
        if speech.size < self.min_speech_s * SR:
            return None, (f"{what}: {speech.size / SR:.2f} s of speech after voice activity "
                          f"detection, under {self.min_speech_s:g} s")
        return np.asarray(self._encoder.embed_utterance(speech), dtype=np.float32), ""

    def embed(self, wav) -> np.ndarray:
        """Unit-norm (256,) embedding; ValueError for silent audio or too little speech."""
        emb, reason = self._embed(wav, "SpeakerJudge.embed")
        if emb is None:
            raise ValueError(reason)
        return emb

    def similarity(self, a, b) -> float:
        """Cosine of the two clips' embeddings, in [-1, 1]; :class:`Undefined` when either clip
        is silent or holds too little speech."""
        ea, reason_a = self._embed(a, "similarity: first clip")
        eb, reason_b = self._embed(b, "similarity: second clip")
        if ea is None or eb is None:
            return Undefined(reason_a or reason_b)
        return float(np.dot(ea, eb) / (np.linalg.norm(ea) * np.linalg.norm(eb)))


@lru_cache(maxsize=1)
def _default_judge() -> SpeakerJudge:
    return SpeakerJudge()


def speaker_similarity(a, b) -> float:
    """Cosine similarity of Resemblyzer embeddings of two clips (see :class:`SpeakerJudge`)."""
    return _default_judge().similarity(a, b)


# --------------------------------------------------------------------------------------------
# DNSMOS (no reference)
# --------------------------------------------------------------------------------------------
def dnsmos(wav) -> dict[str, float]:
    """DNSMOS predicted listener ratings (1-5) of one clip, no reference needed:
    ``ovrl`` (overall), ``sig`` (speech signal), ``bak`` (background) from the P.835 model and
    ``p808`` (P.808 model), via ``speechmos.dnsmos.run`` at 16 kHz.

    The model scores 9 s windows; shorter clips are tiled to 9 s first (upstream behaviour), so
    clips under 0.5 s give :class:`Undefined` values. Clean espeak-ng speech scores ovrl ~3.
    """
    x = _wav(wav, "dnsmos")
    if x.size < _DNSMOS_MIN_S * SR:
        reason = f"dnsmos: shorter than {_DNSMOS_MIN_S} s"
        return {key: Undefined(reason) for key in DNSMOS_KEYS}
    model = _require("speechmos.dnsmos", "speechmos (and onnxruntime)")
    out = model.run(np.clip(x, -1.0, 1.0).astype(np.float32), SR)
    return {key: float(out[f"{key}_mos"]) for key in DNSMOS_KEYS}


# --------------------------------------------------------------------------------------------
# The reference ceiling
# --------------------------------------------------------------------------------------------
def ceiling(wav, n_iter: int = 60, seed: int = 0) -> np.ndarray:
    """The true audio through VCA-GAN's analysis and vocoder: ``griffin_lim(vcagan_linear(wav),
    n_iter)`` (high-pass, peak 0.9, pre-emphasis, |STFT| 640/160, then 60 Griffin-Lim
    iterations, de-emphasis, clipping). float32 of ``160 * (N // 160)`` samples, at most N.

    Scoring this against the raw audio gives the ceiling row: what a perfect linear-spectrogram
    predictor would reach once its phase is guessed by Griffin-Lim."""
    x = _wav(wav, "ceiling")
    return griffin_lim(vcagan_linear(x), n_iter=n_iter, seed=seed)


# --------------------------------------------------------------------------------------------
# One clip, a set, a summary
# --------------------------------------------------------------------------------------------
def _check_judges(judges) -> tuple[str, ...]:
    judges = (judges,) if isinstance(judges, str) else tuple(judges)
    unknown = [j for j in judges if j not in JUDGES]
    if unknown:
        raise ValueError(f"unknown judges {unknown}; choose from {JUDGES}")
    return judges


def score_speech(generated, reference, words, *, asr: GridASR | None = None,
                 judges: Sequence[str] = JUDGES, speaker: SpeakerJudge | None = None) -> dict:
    """Every metric of one generated clip, as a flat dict (one row of a table).

    generated, reference: mono 16 kHz (float in [-1, 1] or int16); ``reference`` (the true
    audio of the clip) may be None when only ``wer`` and ``dnsmos`` are asked for.
    words: the clip's six GRID words (corpus spelling); may be None without ``wer``.
    asr, speaker: shared judges (default: one per process).

    Keys, for the judges asked: ``stoi``, ``estoi``, ``pesq_nb``, ``pesq_wb``, ``similarity``
    (generated vs reference), ``dnsmos_ovrl``/``_sig``/``_bak``/``_p808`` (of the generated
    clip), and for ``wer``: ``hyp`` (the words heard, space-separated), ``word_errors``,
    ``n_words``, ``wer`` (= word_errors / n_words) and ``slot_<name>`` (True where that slot
    was misheard). Undefined scores are NaN; ``notes`` lists why ("" if none).
    """
    judges = _check_judges(judges)
    gen = _wav(generated, "score_speech: generated")
    ref = None
    if reference is not None:
        ref = _wav(reference, "score_speech: reference")
    elif _NEEDS_REFERENCE.intersection(judges):
        raise ValueError(f"score_speech: judges {sorted(_NEEDS_REFERENCE.intersection(judges))} "
                         "need the reference audio")
    if "wer" in judges:
        if words is None:
            raise ValueError("score_speech: the wer judge needs the clip's GRID words")
        words = _words(words, "score_speech: words")
        grid_id(words)  # ValueError unless six GRID words
    row: dict = {}
    notes: list[str] = []

    def put(key, value):
        if isinstance(value, Undefined):
            notes.append(value.reason)
        row[key] = float(value)

    for name, fn in (("stoi", stoi), ("estoi", estoi), ("pesq_nb", pesq_nb), ("pesq_wb", pesq_wb)):
        if name in judges:
            put(name, fn(ref, gen))
    if "wer" in judges:
        hyp = (asr or _default_asr()).transcribe(gen)
        errors, n = word_errors(words, hyp)
        row.update(hyp=" ".join(hyp), word_errors=errors, n_words=n, wer=errors / n)
        for name, wrong in zip(SLOTS, slot_errors(words, hyp)):
            row[f"slot_{name}"] = wrong
    if "similarity" in judges:
        put("similarity", (speaker or _default_judge()).similarity(gen, ref))
    if "dnsmos" in judges:
        for key, value in dnsmos(gen).items():
            put(f"dnsmos_{key}", value)
    row["notes"] = "; ".join(dict.fromkeys(notes))
    return row


def score_set(items: Iterable, *, asr: GridASR | None = None, judges: Sequence[str] = JUDGES,
              progress: bool = True) -> list[dict]:
    """:func:`score_speech` over many clips, with a progress bar; one dict per clip.

    items: mappings with ``generated``, ``reference`` and ``words`` (any other keys, such as
    ``id`` or ``speaker``, are copied to the front of the row), or ``(generated, reference,
    words)`` tuples. ``pandas.DataFrame(rows)`` makes the table; :func:`summarise` its row.
    """
    from avlib.progress import progress_bar

    judges = _check_judges(judges)
    items = list(items)
    asr = asr or (_default_asr() if "wer" in judges else None)
    speaker = _default_judge() if "similarity" in judges else None
    rows = []
    bar = progress_bar(len(items), "scoring speech", "clip", disable=not progress)
    try:
        for k, item in enumerate(items):
            if isinstance(item, Mapping):
                missing = {"generated", "reference", "words"} - set(item)
                if missing:
                    raise ValueError(f"score_set: item {k} lacks {sorted(missing)}")
                extra = {key: v for key, v in item.items()
                         if key not in ("generated", "reference", "words")}
                gen, ref, words = item["generated"], item["reference"], item["words"]
            else:
                if len(item) != 3:
                    raise ValueError(f"score_set: item {k} must be (generated, reference, "
                                     "words) or a mapping with those keys")
                extra, (gen, ref, words) = {}, item
            rows.append({**extra, **score_speech(gen, ref, words, asr=asr, judges=judges,
                                                 speaker=speaker)})
            bar.update(1)
    finally:
        bar.close()
    return rows


def summarise(rows: Sequence[Mapping]) -> dict:
    """One table row for a set of :func:`score_speech` rows.

    ``n`` clips; the mean of every score over the clips where it is defined (``stoi``, ...,
    ``dnsmos_p808``); ``wer`` = corpus WER (all word errors / all reference words);
    ``slot_<name>`` = share of clips whose slot was misheard; ``undefined`` = how many clips
    had no value, per score (only scores with any).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("summarise: no rows")
    out: dict = {"n": len(rows)}
    undefined = {}
    scores = ["stoi", "estoi", "pesq_nb", "pesq_wb", "similarity",
              *(f"dnsmos_{k}" for k in DNSMOS_KEYS)]
    for key in scores:
        if not any(key in r for r in rows):
            continue
        values = np.array([r.get(key, math.nan) for r in rows], dtype=np.float64)
        ok = np.isfinite(values)
        out[key] = float(values[ok].mean()) if ok.any() else math.nan
        if not ok.all():
            undefined[key] = int((~ok).sum())
    if any("word_errors" in r for r in rows):
        scored = [r for r in rows if "word_errors" in r]
        out["wer"] = sum(r["word_errors"] for r in scored) / sum(r["n_words"] for r in scored)
        for name in SLOTS:
            out[f"slot_{name}"] = float(np.mean([bool(r[f"slot_{name}"]) for r in scored]))
    out["undefined"] = undefined
    return out
