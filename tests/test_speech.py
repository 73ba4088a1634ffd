"""espeak-ng synthesis: audio format, phoneme/word alignment, voices, determinism."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from avlib.corpus.speech import (
    PAUSE,
    SAMPLE_RATE,
    Segment,
    Utterance,
    Voice,
    available_variants,
    synthesize,
    text_words,
)

GRID_TEXT = "bin blue at eigh two now"


@pytest.fixture(scope="module")
def grid_utt() -> Utterance:
    return synthesize(GRID_TEXT, Voice(variant="m3"))


def _rms(wav: np.ndarray, seg: Segment, sr: int = SAMPLE_RATE) -> float:
    part = wav[int(round(seg.start * sr)) : int(round(seg.end * sr))].astype(np.float64)
    return float(np.sqrt(np.mean(part**2))) if part.size else 0.0


def _f0(utt: Utterance) -> float:
    """Median F0 (Hz) over loud 40-ms frames, by autocorrelation in 60-400 Hz."""
    wav, sr = utt.wav.astype(np.float64), utt.sr
    size, hop = int(0.04 * sr), int(0.01 * sr)
    frames = [wav[i : i + size] for i in range(0, len(wav) - size, hop)]
    energy = np.array([np.sqrt(np.mean(f**2)) for f in frames])
    lags = np.arange(sr // 400, sr // 60)
    estimates = []
    for frame, e in zip(frames, energy):
        if e < 0.3 * energy.max():
            continue
        frame = frame - frame.mean()
        ac = np.array([np.dot(frame[:-lag], frame[lag:]) for lag in lags])
        estimates.append(sr / lags[int(np.argmax(ac))])
    return float(np.median(estimates))


def test_waveform_format(grid_utt):
    assert grid_utt.sr == SAMPLE_RATE == 16000
    assert grid_utt.wav.dtype == np.float32 and grid_utt.wav.ndim == 1
    assert np.abs(grid_utt.wav).max() <= 1.0
    assert np.abs(grid_utt.wav).max() > 0.1  # real speech, not silence
    assert 1.5 <= grid_utt.duration <= 3.0  # a GRID sentence, final pause included


def test_phonemes_are_contiguous_and_cover_the_clip(grid_utt):
    phonemes = grid_utt.phonemes
    assert phonemes[0].start == 0.0
    assert phonemes[-1].end == pytest.approx(grid_utt.duration, abs=1e-9)
    for before, after in zip(phonemes, phonemes[1:]):
        assert after.start == pytest.approx(before.end, abs=1e-9)
        assert after.label != PAUSE or before.label != PAUSE  # pauses are merged
    assert all(p.duration > 0 for p in phonemes)
    assert phonemes[-1].label == PAUSE  # sentence-final pause (espeakENDPAUSE)
    labels = [p.label for p in phonemes if p.label != PAUSE]
    assert labels[:3] == ["b", "I", "n"]  # "bin", stress marks stripped
    assert "eI" in labels  # the letter name "a"
    assert all("'" not in p.label and "," not in p.label for p in phonemes)


def test_words_match_text_and_cover_the_speech(grid_utt):
    words = grid_utt.words
    assert [w.label for w in words] == GRID_TEXT.split()
    for before, after in zip(words, words[1:]):
        assert before.start < before.end <= after.start + 1e-9
    # Every spoken phoneme lies in exactly one word; pauses in none.
    for p in grid_utt.phonemes:
        inside = [w for w in words if w.start - 1e-9 <= p.start and p.end <= w.end + 1e-9]
        assert len(inside) == (0 if p.label == PAUSE else 1), p
    # Each word lasts like a spoken word (0.1-0.8 s at 160 words/min).
    assert all(0.08 < w.duration < 0.8 for w in words)


def test_pauses_are_quiet_compared_with_words():
    utt = synthesize("place red, by nine please", Voice())
    pauses = [p for p in utt.phonemes if p.label == PAUSE and p.duration > 0.05]
    assert len(pauses) >= 2  # the comma pause and the final pause
    word_rms = np.median([_rms(utt.wav, w) for w in utt.words])
    for pause in pauses:
        assert _rms(utt.wav, pause) < 0.02 * word_rms


def test_stop_closure_belongs_to_the_stop():
    # espeak-ng reports /p/ at its release; the silent closure before it is moved into /p/.
    utt = synthesize("happy", Voice())
    labels = [p.label for p in utt.phonemes]
    k = labels.index("p")
    stop, vowel = utt.phonemes[k], utt.phonemes[k - 1]
    closure = Segment("closure", stop.start, stop.start + 0.02)
    vowel_tail = Segment("tail", vowel.end - 0.01, vowel.end)
    assert _rms(utt.wav, closure) < 0.005
    assert _rms(utt.wav, vowel_tail) > 0.01


def test_words_espeak_joins_are_split_back():
    # espeak-ng speaks "of the" as one word (one WORD event); each text word still gets a segment.
    utt = synthesize("the people of the moon")
    assert [w.label for w in utt.words] == ["the", "people", "of", "the", "moon"]
    of, the = utt.words[2], utt.words[3]
    assert of.end == pytest.approx(the.start)
    inside_the = [p.label for p in utt.phonemes if the.start <= p.start and p.end <= the.end]
    assert inside_the == ["D", "@2"]


def test_numbers_and_punctuation_map_to_text_words():
    utt = synthesize("it's 25 degrees, ok?")
    assert [w.label for w in utt.words] == ["it's", "25", "degrees", "ok"]
    assert utt.words[1].duration > utt.words[0].duration  # "twenty five"
    assert text_words("-- hi --") == [("hi", 3, 5)]


def test_deterministic_for_equal_inputs():
    voice = Voice(variant="f2", pitch=60, rate=170)
    first = synthesize("say better now", voice)
    synthesize("lay green with q one soon", Voice(variant="m1", pitch=10, rate=300))
    again = synthesize("say better now", voice)
    np.testing.assert_array_equal(first.wav, again.wav)
    assert first.phonemes == again.phonemes and first.words == again.words


def test_pitch_setting_changes_f0():
    low = _f0(synthesize(GRID_TEXT, Voice(variant="m3", pitch=15)))
    high = _f0(synthesize(GRID_TEXT, Voice(variant="m3", pitch=85)))
    assert 60 < low < 300 and 60 < high < 400
    assert high > 1.3 * low


def test_voices_and_rates_differ():
    male = synthesize(GRID_TEXT, Voice(variant="m3"))
    female = synthesize(GRID_TEXT, Voice(variant="f2"))
    assert _f0(female) > 1.2 * _f0(male)
    slow = synthesize(GRID_TEXT, Voice(rate=100))
    fast = synthesize(GRID_TEXT, Voice(rate=300))
    speech = lambda u: u.words[-1].end - u.words[0].start  # noqa: E731
    assert speech(slow) > 2.0 * speech(fast)


def test_threads_take_turns_and_get_their_own_results():
    texts = ["bin blue at eigh two now", "say better now", "the word is question", "hello"]
    expected = [synthesize(t).wav for t in texts]
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        results[k] = synthesize(texts[k]).wav

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k, wav in enumerate(expected):
        np.testing.assert_array_equal(results[k], wav)


def test_forked_child_synthesizes_like_the_parent():
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    parent = synthesize("say better now").wav
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether it reproduced the parent's samples
        try:
            same = np.array_equal(synthesize("say better now").wav, parent)
            os.write(write_end, b"1" if same else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert answer == b"1"


def test_fast_enough():
    synthesize("warm up")
    start = time.perf_counter()
    utt = synthesize(GRID_TEXT)
    elapsed = time.perf_counter() - start
    # ~8 ms for 1.7 s of speech on a shared 2-core machine; allow a wide margin.
    assert elapsed < 0.25 * utt.duration


def test_available_variants_lists_shipped_voices():
    names = available_variants()
    assert {"m1", "m3", "f2"} <= set(names)


@pytest.mark.parametrize(
    "kwargs",
    [dict(pitch=101), dict(pitch_range=-1), dict(rate=50), dict(volume=300), dict(pitch=1.5),
     dict(language="en-us+m3"), dict(language="")],
)
def test_voice_validation(kwargs):
    with pytest.raises(ValueError):
        Voice(**kwargs)


def test_bad_requests_raise_clear_errors():
    with pytest.raises(ValueError, match="at least one word"):
        synthesize("   ")
    with pytest.raises(ValueError, match="at least one word"):
        synthesize("?!")
    with pytest.raises(ValueError, match="str"):
        synthesize(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="available_variants"):
        synthesize("hello", Voice(variant="no-such-variant"))
    # The engine still works after a rejected voice.
    assert [w.label for w in synthesize("hello there").words] == ["hello", "there"]
