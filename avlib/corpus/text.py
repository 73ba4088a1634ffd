"""What the corpus speakers say: the GRID grammar, an LRW-like word list, homophenes, carriers.

GRID (Cooke et al., 2006) sentences follow a fixed six-slot grammar,
``command colour preposition letter digit adverb``, e.g. "bin blue at f two now", with the
51-word vocabulary of :data:`GRID_SLOTS` (the letter slot has the 25 letters without "w").
A GRID id names a sentence with one character per slot: the initial of the command, colour,
preposition, the letter itself, the digit as 0-9 and the initial of the adverb
(``bbaf2n`` = "bin blue at f two now"); the initials are unique within every slot.

LRW (Chung & Zisserman, 2016) clips show one target word, labelled in upper case, inside
running speech. :data:`LRW_WORDS` is our stand-in vocabulary. It contains
:data:`HOMOPHENE_GROUPS`: words that differ only in sounds a viewer cannot tell apart on the
lips (/p b m/, /f v/, /t d n/, /k g/), the classic hard cases of visual speech recognition.

Words are stored in their dataset spelling (GRID lower case, LRW upper case). What is passed
to the synthesizer is produced by :func:`grid_spoken_text` and :func:`lrw_prompt`: lower-case
words, since espeak-ng spells short all-capital words letter by letter ("US" -> "you ess"),
and the letter "a" written as "eigh", since espeak-ng reads a lone "a" as the article.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID_SLOTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("command", ("bin", "lay", "place", "set")),
    ("colour", ("blue", "green", "red", "white")),
    ("preposition", ("at", "by", "in", "with")),
    ("letter", tuple("abcdefghijklmnopqrstuvxyz")),
    ("digit", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")),
    ("adverb", ("again", "now", "please", "soon")),
)
"""The six GRID slots in sentence order, each with its words (dataset spelling)."""

GRID_VOCABULARY: tuple[str, ...] = tuple(w for _, words in GRID_SLOTS for w in words)
"""All 51 GRID words."""

GRID_SENTENCE_COUNT = int(np.prod([len(words) for _, words in GRID_SLOTS]))
"""Number of distinct GRID sentences (64,000)."""

# How espeak-ng must be asked to say a letter name: upper case keeps single letters from being
# read as words, and "a" needs a spelling of its own (a lone "A" is read as the article /@/).
_LETTER_SPOKEN = {letter: letter.upper() for letter in GRID_SLOTS[3][1]}
_LETTER_SPOKEN["a"] = "eigh"


def _id_char(slot: int, word: str) -> str:
    if slot == 3:
        return word
    if slot == 4:
        return str(GRID_SLOTS[4][1].index(word))
    return word[0]


@dataclass(frozen=True)
class GridSentence:
    """A GRID sentence: its id (``"bbaf2n"``) and its six words in dataset spelling."""

    id: str
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        """The sentence as written in GRID ``.align`` files: ``"bin blue at f two now"``."""
        return " ".join(self.words)

    @property
    def spoken_text(self) -> str:
        """The text to give the synthesizer (see :func:`grid_spoken_text`)."""
        return grid_spoken_text(self.words)


def grid_id(words: tuple[str, ...] | list[str]) -> str:
    """The GRID id of six slot words: ``("bin","blue","at","f","two","now")`` -> ``"bbaf2n"``."""
    _check_grid_words(words)
    return "".join(_id_char(slot, word.lower()) for slot, word in enumerate(words))


def grid_words_from_id(sentence_id: str) -> tuple[str, ...]:
    """The six words of a GRID id: ``"bbaf2n"`` -> ``("bin", "blue", "at", "f", "two", "now")``."""
    if not isinstance(sentence_id, str) or len(sentence_id) != len(GRID_SLOTS):
        raise ValueError(
            f"a GRID id has {len(GRID_SLOTS)} characters (e.g. 'bbaf2n'), got {sentence_id!r}"
        )
    words = []
    for slot, char in enumerate(sentence_id.lower()):
        name, choices = GRID_SLOTS[slot]
        matches = [w for w in choices if _id_char(slot, w) == char]
        if not matches:
            allowed = "".join(_id_char(slot, w) for w in choices)
            raise ValueError(
                f"GRID id {sentence_id!r}: character {slot + 1} ({char!r}) is not a valid "
                f"{name}; expected one of {allowed!r}"
            )
        words.append(matches[0])
    return tuple(words)


def _check_grid_words(words) -> None:
    if len(words) != len(GRID_SLOTS):
        raise ValueError(
            f"a GRID sentence has {len(GRID_SLOTS)} words, got {len(words)}: {words!r}"
        )
    for (name, choices), word in zip(GRID_SLOTS, words):
        if not isinstance(word, str) or word.lower() not in choices:
            raise ValueError(f"{word!r} is not a GRID {name}; expected one of {choices}")


def grid_sentence(rng: np.random.Generator) -> GridSentence:
    """Draw a GRID sentence uniformly (each slot independently) from ``rng``."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator, e.g. np.random.default_rng(seed)")
    words = tuple(choices[int(rng.integers(len(choices)))] for _, choices in GRID_SLOTS)
    return GridSentence(grid_id(words), words)


def grid_spoken_text(words: tuple[str, ...] | list[str]) -> str:
    """Synthesizer text for six GRID words: the letter as its name, the rest as written.

    ``("bin","blue","at","a","two","now")`` -> ``"bin blue at eigh two now"``. Each word of the
    result is one word of the sentence, so word alignments map back slot by slot.
    """
    _check_grid_words(words)
    spoken = [w.lower() for w in words]
    spoken[3] = _LETTER_SPOKEN[spoken[3]]
    return " ".join(spoken)


# ---------------------------------------------------------------------------- LRW-like words

HOMOPHENE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("PAT", "BAT", "MAT"),  # /p b m/ onsets: one bilabial closure on the lips
    ("PARK", "BARK", "MARK"),
    ("PAN", "BAN", "MAN"),
    ("PEAK", "BEAK", "MEEK"),
    ("FAN", "VAN"),  # /f v/: lower lip under the upper teeth either way
    ("FINE", "VINE"),
    ("TOWN", "DOWN", "NOUN"),  # /t d n/: tongue behind the teeth, hardly visible
    ("CAME", "GAME"),  # /k g/: articulated at the velum, invisible
)
"""Groups of words whose visible mouth movements are near-identical (same viseme sequence)."""

_OTHER_LRW_WORDS = (
    "ABOUT", "ABSOLUTELY", "AGAIN", "ALLOWED", "BETTER", "BUSINESS", "CHANGE", "CHILDREN",
    "COUNTRY", "DIFFERENT", "EVERYTHING", "FAMILY", "GOVERNMENT", "GREAT", "HAPPEN", "HOUSE",
    "IMPORTANT", "LEADERS", "MONEY", "MORNING", "NUMBER", "OFTEN", "PEOPLE", "POLITICS",
    "QUESTION", "RIGHT", "SCHOOL", "SPEAKING", "THINK", "UNDER", "WATER", "WEATHER", "WHERE",
    "WORLD", "YEARS", "YOUNG",
)

LRW_WORDS: tuple[str, ...] = tuple(
    sorted({w for group in HOMOPHENE_GROUPS for w in group} | set(_OTHER_LRW_WORDS))
)
"""The LRW-like vocabulary (upper-case labels, sorted), homophene groups included."""

LRW_CARRIERS: tuple[str, ...] = (
    "I said {word} again",
    "say {word} now",
    "the word is {word}",
    "we heard {word} today",
    "{word} is what she said",
    "please write {word} down",
)
"""Carrier phrases that put the target word in running speech; ``{word}`` marks its place."""


def lrw_prompt(word: str, rng: np.random.Generator) -> tuple[str, int]:
    """A carrier sentence around ``word``: (synthesizer text, index of the target word).

    The index counts whitespace-separated words of the text, which is also the index of the
    target in ``synthesize(text).words``. The word is written in lower case so that espeak-ng
    reads it as a word rather than spelling it.
    """
    if not isinstance(word, str) or not word.strip() or " " in word.strip():
        raise ValueError(f"word must be a single non-empty word, got {word!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator, e.g. np.random.default_rng(seed)")
    carrier = LRW_CARRIERS[int(rng.integers(len(LRW_CARRIERS)))]
    tokens = carrier.split()
    index = tokens.index("{word}")
    tokens[index] = word.strip().lower()
    return " ".join(tokens), index


__all__ = [
    "GRID_SENTENCE_COUNT",
    "GRID_SLOTS",
    "GRID_VOCABULARY",
    "GridSentence",
    "HOMOPHENE_GROUPS",
    "LRW_CARRIERS",
    "LRW_WORDS",
    "grid_id",
    "grid_sentence",
    "grid_spoken_text",
    "grid_words_from_id",
    "lrw_prompt",
]
