"""GRID grammar and ids, LRW-like vocabulary, homophene groups, carrier phrases."""
from __future__ import annotations

import numpy as np
import pytest

from avlib.corpus.speech import synthesize
from avlib.corpus.text import (
    GRID_SENTENCE_COUNT,
    GRID_SLOTS,
    GRID_VOCABULARY,
    HOMOPHENE_GROUPS,
    LRW_CARRIERS,
    LRW_WORDS,
    GridSentence,
    grid_id,
    grid_sentence,
    grid_spoken_text,
    grid_words_from_id,
    lrw_prompt,
)


def test_grid_grammar():
    assert [name for name, _ in GRID_SLOTS] == [
        "command", "colour", "preposition", "letter", "digit", "adverb",
    ]
    assert [len(words) for _, words in GRID_SLOTS] == [4, 4, 4, 25, 10, 4]
    assert len(GRID_VOCABULARY) == len(set(GRID_VOCABULARY)) == 51
    assert "w" not in dict(GRID_SLOTS)["letter"]
    assert GRID_SENTENCE_COUNT == 64000


def test_grid_ids_follow_the_corpus_convention():
    assert grid_words_from_id("bbaf2n") == ("bin", "blue", "at", "f", "two", "now")
    assert grid_id(("bin", "blue", "at", "f", "two", "now")) == "bbaf2n"
    assert grid_words_from_id("SWWZ9S") == ("set", "white", "with", "z", "nine", "soon")
    assert grid_id(("lay", "green", "in", "a", "zero", "please")) == "lgia0p"


def test_grid_ids_round_trip_and_are_unique():
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(400):
        sentence = grid_sentence(rng)
        assert isinstance(sentence, GridSentence)
        assert grid_words_from_id(sentence.id) == sentence.words
        assert grid_id(sentence.words) == sentence.id
        assert seen.setdefault(sentence.id, sentence.words) == sentence.words
    assert len(seen) > 350  # 400 draws from 64,000 sentences rarely repeat


def test_grid_sentence_is_reproducible():
    a = [grid_sentence(np.random.default_rng(7)).id for _ in range(3)]
    assert len(set(a)) == 1
    rng = np.random.default_rng(7)
    drawn = [grid_sentence(rng) for _ in range(300)]
    for slot, (_, words) in enumerate(GRID_SLOTS):
        used = {s.words[slot] for s in drawn}
        assert len(used) >= min(len(words), 20)  # every slot is really sampled


@pytest.mark.parametrize("bad", ["bbaf2", "bbaf2nn", "xbaf2n", "bbawan", "bbafxn", 123])
def test_invalid_grid_ids(bad):
    with pytest.raises(ValueError):
        grid_words_from_id(bad)


def test_invalid_grid_words_and_rng():
    with pytest.raises(ValueError, match="not a GRID letter"):
        grid_id(("bin", "blue", "at", "w", "two", "now"))
    with pytest.raises(ValueError, match="6 words"):
        grid_spoken_text(("bin", "blue"))
    with pytest.raises(ValueError, match="Generator"):
        grid_sentence(7)  # type: ignore[arg-type]


def test_grid_text_and_spoken_text():
    sentence = GridSentence("bbaa2n", grid_words_from_id("bbaa2n"))
    assert sentence.text == "bin blue at a two now"
    assert sentence.spoken_text == "bin blue at eigh two now"
    assert grid_spoken_text(grid_words_from_id("pwbk9s")) == "place white by K nine soon"


def test_every_grid_letter_is_spoken_as_its_name():
    for letter in dict(GRID_SLOTS)["letter"]:
        words = ("bin", "blue", "at", letter, "two", "now")
        utt = synthesize(grid_spoken_text(words))
        assert len(utt.words) == 6, letter
        spoken = utt.words[3]
        phonemes = [
            p.label for p in utt.phonemes if spoken.start <= p.start and p.end <= spoken.end
        ]
        assert phonemes, letter
        if letter == "a":
            assert phonemes == ["eI"]  # the letter name, not the article /@/
        if letter == "e":
            assert phonemes == ["i:"]


def test_lrw_vocabulary():
    assert len(LRW_WORDS) >= 50
    assert len(set(LRW_WORDS)) == len(LRW_WORDS)
    assert all(w.isupper() and w.isalpha() for w in LRW_WORDS)
    assert {"ABOUT", "BETTER"} <= set(LRW_WORDS)


def test_homophene_groups():
    assert len(HOMOPHENE_GROUPS) >= 5
    for group in HOMOPHENE_GROUPS:
        assert len(group) >= 2 and len(set(group)) == len(group)
        assert set(group) <= set(LRW_WORDS)
    members = [w for g in HOMOPHENE_GROUPS for w in g]
    assert len(members) == len(set(members))  # a word belongs to one group
    onsets = {w[0] for g in HOMOPHENE_GROUPS for w in g}
    assert {"P", "B", "M", "F", "V"} <= onsets


def test_lrw_prompt_places_the_word():
    rng = np.random.default_rng(3)
    carriers = set()
    for word in LRW_WORDS[:20]:
        text, index = lrw_prompt(word, rng)
        assert text.split()[index] == word.lower()
        carriers.add(text.replace(word.lower(), "{word}"))
    assert len(carriers) >= 3
    assert carriers <= set(LRW_CARRIERS)


def test_lrw_prompt_index_matches_the_synthesized_words():
    rng = np.random.default_rng(11)
    for word in ("ABOUT", "PARK", "QUESTION", "WHERE"):
        text, index = lrw_prompt(word, rng)
        utt = synthesize(text)
        assert utt.words[index].label == word.lower()
        assert len(utt.words) == len(text.split())


def test_lrw_prompt_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        lrw_prompt("TWO WORDS", rng)
    with pytest.raises(ValueError):
        lrw_prompt("", rng)
    with pytest.raises(ValueError):
        lrw_prompt("ABOUT", None)  # type: ignore[arg-type]
