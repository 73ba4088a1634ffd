"""Phoneme -> viseme targets -> coarticulated mouth trajectories."""
from __future__ import annotations

import numpy as np
import pytest

from avlib.corpus.articulation import (
    FALLBACK_VISEME,
    KNOWN_PHONEMES,
    VISEME_CLASSES,
    VISEMES,
    ArticulationParams,
    gestures_of,
    mouth_curve,
    mouth_trajectory,
    n_frames_for,
    target_of,
    viseme_of,
    visemes_of,
)
from avlib.corpus.mouth import INDEX, MOUTH_PARAMS, N_MOUTH
from avlib.corpus.speech import PAUSE, Segment, Voice, synthesize
from avlib.corpus.text import (
    GRID_SLOTS,
    HOMOPHENE_GROUPS,
    LRW_CARRIERS,
    LRW_WORDS,
    grid_spoken_text,
)

CLOSE, PRESS, JAW = INDEX["lip_close"], INDEX["lip_press"], INDEX["jaw_open"]
FINE_FPS = 1000.0


@pytest.fixture(scope="module")
def vocabulary_phonemes() -> set[str]:
    """Every phoneme label synthesize() produces for the GRID and LRW material."""
    texts = []
    slots = [words for _, words in GRID_SLOTS]
    for k in range(max(len(w) for w in slots)):  # every GRID word appears at least once
        texts.append(grid_spoken_text(tuple(words[k % len(words)] for words in slots)))
    for k, word in enumerate(LRW_WORDS):
        texts.append(LRW_CARRIERS[k % len(LRW_CARRIERS)].format(word=word.lower()))
    labels = set()
    for k, text in enumerate(texts):
        voice = Voice(variant=("m3", "f2", "m1")[k % 3])
        labels.update(p.label for p in synthesize(text, voice).phonemes)
    return labels


def _curve(phonemes, lead_s=0.0, params=None):
    duration = phonemes[-1].end
    times = (np.arange(int(duration * FINE_FPS)) + 0.5) / FINE_FPS
    return times, mouth_curve(phonemes, times, lead_s=lead_s, params=params)


def _at(times, curve, t):
    return curve[int(np.clip(np.searchsorted(times, t), 0, len(times) - 1))]


def test_vocabulary_is_fully_mapped(vocabulary_phonemes):
    assert len(vocabulary_phonemes) > 30
    for label in vocabulary_phonemes:
        assert label in KNOWN_PHONEMES, label
        assert FALLBACK_VISEME not in visemes_of(label), label
        assert all(v in VISEMES for v in visemes_of(label))


def test_viseme_classes():
    assert {viseme_of(p) for p in ("p", "b", "m")} == {"bilabial"}
    assert {viseme_of(p) for p in ("f", "v")} == {"labiodental"}
    assert {viseme_of(p) for p in ("T", "D")} == {"dental"}
    assert {viseme_of(p) for p in ("k", "g", "N")} == {"velar"}
    assert viseme_of("w") == "rounded_glide"
    assert viseme_of("u:") == "rounded_vowel" and viseme_of("i:") == "spread_vowel"
    assert viseme_of("A:") == "open_vowel" and viseme_of(PAUSE) == "silence"
    assert visemes_of("aI") == ("open_vowel", "spread_vowel")
    assert visemes_of("'aU") == ("open_vowel", "rounded_vowel")  # stress marks ignored
    assert len(VISEMES) == len(set(VISEMES)) and FALLBACK_VISEME in VISEMES


def test_targets_are_valid_mouth_vectors():
    for phoneme in KNOWN_PHONEMES:
        for gesture in gestures_of(phoneme):
            target = target_of(gesture)
            assert target.shape == (N_MOUTH,)
            assert np.all((0 <= target) & (target <= 1))
    for cls in VISEME_CLASSES.values():
        assert cls.alpha.shape == (N_MOUTH,) and np.all(cls.alpha > 0)
        assert 0 <= cls.core[0] < cls.core[1] <= 1


def test_unknown_phonemes_fall_back_without_crashing():
    assert viseme_of("t#9") == "alveolar"  # trailing modifiers stripped
    assert viseme_of("_!!") == "silence"  # any pause mnemonic
    assert viseme_of("pX") == "bilabial"  # longest known prefix
    assert viseme_of("%%") == FALLBACK_VISEME
    assert viseme_of("") == FALLBACK_VISEME
    traj = mouth_trajectory([Segment("zzq", 0.0, 0.2), Segment("@@", 0.2, 0.4)], 10)
    assert traj.shape == (10, N_MOUTH) and np.all(np.isfinite(traj))
    with pytest.raises(ValueError):
        viseme_of(3)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pat_bat_mat():
    return {w: synthesize(f"I said {w} again", Voice(variant="m3")) for w in ("pat", "bat", "mat")}


def test_bilabials_close_the_lips_fully(pat_bat_mat):
    utt = synthesize("bin blue at eigh two now, maybe place me by my mop", Voice(variant="f2"))
    times, curve = _curve(utt.phonemes)
    bilabials = [p for p in utt.phonemes if viseme_of(p.label) == "bilabial"]
    assert len(bilabials) >= 8
    for seg in bilabials:
        assert _at(times, curve, seg.centre)[CLOSE] > 0.95, seg
    # ... and vowels open them again.
    for seg in utt.phonemes:
        if viseme_of(seg.label).endswith("_vowel") and seg.duration > 0.06:
            assert _at(times, curve, seg.centre)[CLOSE] < 0.2, seg


def test_open_vowels_open_the_jaw_more_than_bilabials():
    utt = synthesize("papa bob father palm", Voice())
    times, curve = _curve(utt.phonemes)
    jaw = {"open": [], "bilabial": []}
    for seg in utt.phonemes:
        key = {"open_vowel": "open", "bilabial": "bilabial"}.get(viseme_of(seg.label))
        if key:
            jaw[key].append(_at(times, curve, seg.centre)[JAW])
    assert len(jaw["open"]) >= 3 and len(jaw["bilabial"]) >= 4
    assert min(jaw["open"]) > max(jaw["bilabial"]) + 0.3


def test_closures_raise_the_jaw():
    """Sealed lips sit on a nearly closed jaw, and /f v/ raise it to the upper teeth, so the
    visible opening follows jaw_open through consonants (what the face mesh measures)."""
    utt = synthesize("papa bob father palm, five fat vans", Voice(variant="m3"))
    times, curve = _curve(utt.phonemes)
    sealed = curve[:, CLOSE] > 0.9
    assert sealed.sum() > 100 and curve[sealed, JAW].max() < 0.4
    by_viseme: dict[str, list[float]] = {"bilabial": [], "labiodental": [], "open_vowel": []}
    for seg in utt.phonemes:
        visemes = visemes_of(seg.label)  # monophthongs only: a diphthong's centre is a glide
        if len(visemes) == 1 and visemes[0] in by_viseme:
            by_viseme[visemes[0]].append(_at(times, curve, seg.centre)[JAW])
    assert len(by_viseme["bilabial"]) >= 5 and len(by_viseme["labiodental"]) >= 3
    assert max(by_viseme["bilabial"]) < 0.2 and max(by_viseme["labiodental"]) < 0.3
    assert min(by_viseme["open_vowel"]) > 0.6


def test_trajectory_shape_range_and_smoothness():
    utt = synthesize("place red by I nine please", Voice(variant="m3"))
    n = n_frames_for(utt.duration)
    traj = mouth_trajectory(utt.phonemes, n)
    assert traj.shape == (n, N_MOUTH) == (n, len(MOUTH_PARAMS))
    assert traj.dtype == np.float32
    assert traj.min() >= 0.0 and traj.max() <= 1.0
    assert traj.std(axis=0)[[JAW, CLOSE]].min() > 0.1  # the mouth really moves
    # No jumps: at 1 kHz every parameter changes by < 0.06 per ms, < 0.35 per 5 ms.
    _, fine = _curve(utt.phonemes)
    assert np.abs(np.diff(fine, axis=0)).max() < 0.06
    assert np.abs(fine[5:] - fine[:-5]).max() < 0.35


@pytest.mark.parametrize("lead", [1, 2, 3])
def test_lead_shifts_the_trajectory_by_whole_frames(lead):
    utt = synthesize("bin blue at eigh two now", Voice())
    n = n_frames_for(utt.duration)
    base = mouth_trajectory(utt.phonemes, n, lead_frames=0)
    led = mouth_trajectory(utt.phonemes, n, lead_frames=lead)
    np.testing.assert_allclose(led[:-lead], base[lead:], atol=1e-6)
    # Cross-correlation of the lip-closure tracks peaks at the lead.
    a = base[:, CLOSE] - base[:, CLOSE].mean()
    b = led[:, CLOSE] - led[:, CLOSE].mean()
    lags = np.arange(-5, 6)
    score = [np.dot(a[max(0, k) : n + min(0, k)], b[max(0, -k) : n - max(0, k)]) for k in lags]
    assert lags[int(np.argmax(score))] == lead


def test_mouth_leads_the_audio():
    utt = synthesize("I said mat again", Voice())
    m = next(p for p in utt.phonemes if p.label == "m")
    times, curve = _curve(utt.phonemes, lead_s=0.04)
    closed = times[curve[:, CLOSE] > 0.9]
    assert closed.min() < m.start  # lips shut before the nasal murmur is heard
    assert m.start - 0.06 < closed.min()


def test_p_b_m_are_distinguishable(pat_bat_mat):
    press, closure = {}, {}
    for word, utt in pat_bat_mat.items():
        times, curve = _curve(utt.phonemes)
        seg = next(p for p in utt.phonemes if p.label == word[0])
        inside = (times > seg.start - 0.05) & (times < seg.end + 0.05)
        press[word] = curve[inside, PRESS].max()
        closure[word] = (curve[inside, CLOSE] > 0.9).sum() / FINE_FPS
    assert press["pat"] > press["bat"] + 0.2 > press["mat"] + 0.4
    assert closure["mat"] > closure["pat"] > closure["bat"]
    assert closure["bat"] > 0.02  # all three really close the lips


def test_homophenes_share_visemes_but_not_phonemes():
    for group in HOMOPHENE_GROUPS:
        sequences, phonemes = set(), set()
        for word in group:
            labels = [p.label for p in synthesize(word.lower()).phonemes if p.label != PAUSE]
            phonemes.add(tuple(labels))
            sequences.add(tuple(v for label in labels for v in visemes_of(label)))
        assert len(sequences) == 1, group  # same mouth shapes ...
        assert len(phonemes) == len(group), group  # ... different sounds


def test_articulation_params_change_the_speaker_style():
    utt = synthesize("father calm", Voice())
    n = n_frames_for(utt.duration)
    normal = mouth_trajectory(utt.phonemes, n)
    small = mouth_trajectory(utt.phonemes, n, params=ArticulationParams(jaw_scale=0.5))
    assert small[:, JAW].max() < 0.7 * normal[:, JAW].max()
    slurred = mouth_trajectory(utt.phonemes, n, params=ArticulationParams(coarticulation=2.0))
    assert np.abs(np.diff(slurred, axis=0)).sum() < np.abs(np.diff(normal, axis=0)).sum()
    with pytest.raises(ValueError):
        ArticulationParams(jaw_scale=0)


def test_long_pause_relaxes_to_rest():
    segments = [Segment("b", 0.0, 0.08), Segment("A:", 0.08, 0.3), Segment(PAUSE, 0.3, 1.5)]
    traj = mouth_trajectory(segments, n_frames_for(1.5), lead_frames=0)
    rest = VISEME_CLASSES["silence"].target
    np.testing.assert_allclose(traj[-5:], np.broadcast_to(rest, (5, N_MOUTH)), atol=0.05)
    assert traj[5, JAW] > 0.6  # the /A:/ opened the jaw before


def test_bad_input_raises_clear_errors():
    seg = [Segment("a", 0.0, 0.2)]
    with pytest.raises(ValueError, match="n_frames"):
        mouth_trajectory(seg, -1)
    with pytest.raises(ValueError, match="fps"):
        mouth_trajectory(seg, 5, fps=0)
    with pytest.raises(ValueError, match="empty"):
        mouth_trajectory([], 5)
    with pytest.raises(ValueError, match="time order"):
        mouth_trajectory([Segment("a", 0.2, 0.4), Segment("b", 0.0, 0.1)], 5)
    with pytest.raises(ValueError, match="Segment"):
        mouth_trajectory([("a", 0.0, 0.1)], 5)  # type: ignore[list-item]
    assert mouth_trajectory(seg, 0).shape == (0, N_MOUTH)
