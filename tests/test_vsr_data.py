"""Word clips for lip reading (avlib.vsr.data): boundaries, nested fractions, SyncVSR's
augmentation and CutMix on constructed inputs, and load_words on a tiny store."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avlib.audio import SAMPLES_PER_FRAME
from avlib.data.store import ClipStore, StoreWriter
from avlib.vsr import data as D

SPF = SAMPLES_PER_FRAME


# ------------------------------------------------------------------------------------ boundary
@pytest.mark.parametrize("duration, start, length", [
    (0.4, 9, 10),     # 10 frames: [(29 - 10) // 2, + 10)
    (0.2, 12, 5),
    (0.48, 8, 12),    # 12 frames: the odd frame left over goes after the word
    (0.0, 14, 1),     # at least one frame
    (-1.0, 14, 1),
    (1.16, 0, 29),    # the whole clip
    (5.0, 0, 29),     # clamped to the clip
])
def test_word_boundary_is_the_centred_word(duration, start, length):
    mask = D.word_boundary(duration)
    assert mask.shape == (29,) and mask.dtype == np.float32
    expected = np.zeros(29, np.float32)
    expected[start:start + length] = 1
    np.testing.assert_array_equal(mask, expected)


def test_word_boundary_without_duration_is_all_ones_and_other_lengths():
    np.testing.assert_array_equal(D.word_boundary(None), np.ones(29, np.float32))
    np.testing.assert_array_equal(D.word_boundary(float("nan")), np.ones(29, np.float32))
    np.testing.assert_array_equal(D.word_boundary(0.12, 10), [0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(D.word_boundary(None, 7), np.ones(7))


# ------------------------------------------------------------------------------------ fractions
LABELS = np.repeat(np.arange(4), [10, 5, 1, 7])


def test_fraction_subset_is_stratified_with_one_clip_per_class_at_least():
    for fraction, per_class in [(0.5, [5, 3, 1, 4]), (0.1, [1, 1, 1, 1]), (0.3, [3, 2, 1, 3]),
                                (1.0, [10, 5, 1, 7])]:
        idx = D.fraction_subset(LABELS, fraction, seed=3)
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)  # sorted, no repeats
        np.testing.assert_array_equal(np.bincount(LABELS[idx], minlength=4), per_class)
    np.testing.assert_array_equal(D.fraction_subset(LABELS, 1.0), np.arange(len(LABELS)))


def test_fraction_subsets_are_nested_for_one_seed():
    fractions = (0.1, 0.25, 0.5, 0.75, 1.0)
    for seed in (0, 1):
        sets = [set(D.fraction_subset(LABELS, f, seed).tolist()) for f in fractions]
        assert all(small <= big for small, big in zip(sets, sets[1:]))
        assert D.fraction_subset(LABELS, 0.5, seed).tolist() == sorted(sets[2])  # deterministic
    assert set(D.fraction_subset(LABELS, 0.5, 0)) != set(D.fraction_subset(LABELS, 0.5, 1))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_fraction_subset_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        D.fraction_subset(LABELS, fraction)


# ------------------------------------------------------------------------------------ augment
def test_eval_augment_is_pure_normalisation():
    video = torch.randint(0, 256, (2, 5, 8, 8), dtype=torch.uint8)
    out = D.augment(video, train=False)
    assert out.shape == (2, 1, 5, 8, 8) and out.dtype == torch.float32
    expected = (video.double() / 255 - 0.421) / 0.165
    torch.testing.assert_close(out[:, 0].double(), expected, atol=1e-5, rtol=0)
    assert (D.MOUTH_MEAN, D.MOUTH_STD) == (0.421, 0.165)


def test_augment_does_not_change_a_float_input():
    video = torch.full((1, 4, 8, 8), 100.0)
    D.augment(video, train=False)
    D.augment(video, train=True, generator=torch.Generator().manual_seed(0))
    assert torch.all(video == 100.0)


def _halves(n: int, t: int = 6, size: int = 16) -> torch.Tensor:
    """Clips whose left half is white and right half black."""
    video = torch.zeros(n, t, size, size, dtype=torch.uint8)
    video[..., : size // 2] = 255
    return video


def test_train_augment_shape_and_determinism():
    video = torch.randint(0, 256, (3, 7, 24, 24), dtype=torch.uint8)
    a = D.augment(video, train=True, generator=torch.Generator().manual_seed(5))
    b = D.augment(video, train=True, generator=torch.Generator().manual_seed(5))
    c = D.augment(video, train=True, generator=torch.Generator().manual_seed(6))
    assert a.shape == (3, 1, 7, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, D.augment(video, train=False))  # training does change clips
    lo, hi = (0 - D.MOUTH_MEAN) / D.MOUTH_STD, (1 - D.MOUTH_MEAN) / D.MOUTH_STD
    assert a.min() >= lo - 1e-5 and a.max() <= hi + 1e-5  # crops interpolate, never extrapolate


def test_train_augment_flips_some_clips_and_not_others():
    n = 40
    x = D.augment(_halves(n), train=True, generator=torch.Generator().manual_seed(0), time_mask=0)
    # The crop keeps the middle column in view (its area is >= 0.6 of the image), so which side
    # is bright says whether the clip was mirrored.
    left, right = x[..., :2].mean(dim=(1, 2, 3, 4)), x[..., -2:].mean(dim=(1, 2, 3, 4))
    flipped = right > left
    assert torch.all((left - right).abs() > 1.0)
    assert 8 <= int(flipped.sum()) <= 32
    no_flip = D.augment(_halves(n), train=True, generator=torch.Generator().manual_seed(0),
                        time_mask=0, flip=False)
    assert torch.all(no_flip[..., :2].mean(dim=(1, 2, 3, 4)) > no_flip[..., -2:].mean(dim=(1, 2, 3, 4)))


def test_time_mask_replaces_one_span_with_the_clip_mean():
    n, t, mask = 32, 20, 8
    levels = torch.arange(t, dtype=torch.float32) * 10 + 20  # frame k: uniform gray 20 + 10 k
    video = levels[None, :, None, None].expand(n, t, 8, 8).to(torch.uint8).contiguous()
    x = D.augment(video, train=True, generator=torch.Generator().manual_seed(1), time_mask=mask)
    gray = x[:, 0].mean(dim=(2, 3)) * D.MOUTH_STD + D.MOUTH_MEAN  # (n, t) in [0, 1]
    assert torch.allclose(x[:, 0], x[:, 0, :, :1, :1].expand_as(x[:, 0]), atol=1e-5)  # still uniform
    original, mean = levels / 255, levels.mean() / 255
    lengths = []
    for clip in gray:
        masked = ~torch.isclose(clip, original, atol=1e-4)
        assert torch.allclose(clip[masked], mean.expand(int(masked.sum())), atol=1e-4)
        where = torch.nonzero(masked).flatten()
        if len(where):
            assert where[-1] - where[0] + 1 == len(where)  # one contiguous span
        lengths.append(len(where))
    assert max(lengths) <= mask and max(lengths) >= 3 and min(lengths) <= 1
    unmasked = D.augment(video, train=True, generator=torch.Generator().manual_seed(1), time_mask=0)
    assert torch.allclose(unmasked[:, 0].mean(dim=(2, 3)) * D.MOUTH_STD + D.MOUTH_MEAN,
                          original.expand(n, t), atol=1e-4)


# ------------------------------------------------------------------------------------ cutmix
def test_cutmix_mixes_frames_targets_boundaries_and_tokens_consistently():
    b, t, c, g = 8, 12, 8, 2
    frame_id = (torch.arange(b)[:, None] * 100 + torch.arange(t)[None]).float()  # clip i, frame k
    video = frame_id[:, None, :, None, None].expand(b, 1, t, 3, 3).contiguous()
    boundary = frame_id / 1000
    targets = F.one_hot(torch.arange(b), c).float()
    steps = torch.arange(4 * t)
    tokens = (torch.arange(b)[:, None, None] * 10000 + steps[None, :, None] * 10
              + torch.arange(g)[None, None]).long()  # clip, step, group
    v2, b2, t2, k2 = D.cutmix(video, boundary, targets, tokens,
                              generator=torch.Generator().manual_seed(0))
    assert v2.shape == video.shape and b2.shape == boundary.shape and k2.shape == tokens.shape
    torch.testing.assert_close(t2.sum(dim=1), torch.ones(b))
    mixed_somewhere = False
    for i in range(b):
        got = v2[i, 0, :, 0, 0]
        source = (got // 100).long()  # the clip each frame now comes from
        replaced = source != i
        if not replaced.any():  # paired with itself: nothing changes
            assert torch.equal(t2[i], targets[i])
            continue
        mixed_somewhere = True
        partners = source[replaced].unique()
        assert len(partners) == 1
        j = int(partners)
        k = torch.nonzero(replaced).flatten()
        assert k[-1] - k[0] + 1 == len(k) and 1 <= len(k) <= t - 1  # one span, never all
        torch.testing.assert_close(got % 100, torch.arange(t).float())  # same frame positions
        share = len(k) / t
        torch.testing.assert_close(t2[i, j], torch.tensor(share))
        torch.testing.assert_close(t2[i, i], torch.tensor(1 - share))
        torch.testing.assert_close(b2[i], torch.where(replaced, boundary[j], boundary[i]))
        # tokens: frame f <-> steps 4f .. 4f + 3
        step_replaced = replaced.repeat_interleave(4)
        want = torch.where(step_replaced[:, None], tokens[j], tokens[i])
        assert torch.equal(k2[i], want)
    assert mixed_somewhere
    # without tokens
    _, _, _, none = D.cutmix(video, boundary, targets, None, generator=torch.Generator().manual_seed(0))
    assert none is None


def test_cutmix_is_deterministic_and_keeps_extra_token_steps():
    b, t = 4, 6
    video = torch.randn(b, 1, t, 4, 4)
    boundary = torch.ones(b, t)
    targets = F.one_hot(torch.arange(b), b).float()
    tokens = torch.arange(b * (4 * t + 3) * 2).view(b, 4 * t + 3, 2)
    a = D.cutmix(video, boundary, targets, tokens, generator=torch.Generator().manual_seed(3))
    c = D.cutmix(video, boundary, targets, tokens, generator=torch.Generator().manual_seed(3))
    for x, y in zip(a, c):
        assert torch.equal(x, y)
    assert torch.equal(a[3][:, 4 * t:], tokens[:, 4 * t:])  # steps past the video stay


# ------------------------------------------------------------------------------------ load_words
def _frames(n: int) -> np.ndarray:
    """(n, 96, 96) gray: the left half of frame k is 20 + 5 k, the right half 50."""
    frames = np.full((n, 96, 96), 50, np.uint8)
    frames[:, :, :48] = (20 + 5 * np.arange(n, dtype=np.uint8))[:, None, None]
    return frames


def _pcm(n: int) -> np.ndarray:
    """int16 audio whose samples under frame k are 100 (k + 1)."""
    return np.repeat((100 * np.arange(1, n + 1)).astype(np.int16), SPF)


def _write(writer, clip_id, split, word, n=29, speaker="s1", duration=0.4, audio=None):
    extra = {} if duration is None else {"word_duration": duration}
    meta = {"dataset": "lrw", "split": split, "speaker": speaker, "transcript": word, "extra": extra}
    writer.write_clip(clip_id, meta, {"mouth96": _frames(n)}, _pcm(n) if audio is None else audio)


@pytest.fixture(scope="module")
def word_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    writer = StoreWriter(root)
    _write(writer, "PAT/train/1", "train", "PAT", speaker="s1", duration=0.4)
    _write(writer, "PAT/train/2", "train", " pat ", n=33, speaker="s2", duration=None)
    _write(writer, "BAT/train/1", "train", "BAT", n=25, speaker="s1", duration=0.2)
    _write(writer, "FAN/train/1", "train", "FAN", speaker="s3",
           audio=np.full(29 * SPF, 0.5, np.float32))
    _write(writer, "none/train/1", "train", None)  # no transcript: not a word clip
    _write(writer, "PAT/val/1", "val", "PAT")
    _write(writer, "ZEBRA/val/1", "val", "ZEBRA")
    writer.finalize()
    return ClipStore(root)


def _at(words: D.WordSet, clip_id: str) -> int:
    return words.ids.index(clip_id)


def test_load_words_labels_vocabulary_boundaries_and_speakers(word_store):
    words = D.load_words(word_store, "train")
    assert words.vocabulary == ("BAT", "FAN", "PAT")  # the split's words, sorted, upper case
    assert len(words) == 4 and sorted(words.ids) == sorted(
        ["PAT/train/1", "PAT/train/2", "BAT/train/1", "FAN/train/1"])
    assert words.words() == [i.split("/")[0] for i in words.ids]
    assert words.labels.dtype == np.int64
    assert words.video.shape == (4, 29, 96, 96) and words.video.dtype == torch.uint8
    assert words.size == 96 and words.skipped == {}
    assert words.boundary.shape == (4, 29) and words.boundary.dtype == torch.float32
    np.testing.assert_array_equal(words.boundary[_at(words, "PAT/train/1")], D.word_boundary(0.4))
    np.testing.assert_array_equal(words.boundary[_at(words, "PAT/train/2")], np.ones(29))
    np.testing.assert_array_equal(words.boundary[_at(words, "BAT/train/1")], D.word_boundary(0.2))
    assert [words.speakers[_at(words, i)] for i in ("PAT/train/1", "PAT/train/2", "FAN/train/1")] \
        == ["s1", "s2", "s3"]
    sub = words.subset([_at(words, "FAN/train/1")])
    assert sub.ids == ["FAN/train/1"] and sub.words() == ["FAN"] and sub.vocabulary == words.vocabulary
    assert sub.audio.shape == (1, 29 * SPF) and sub.video.shape == (1, 29, 96, 96)


def test_load_words_skips_and_counts_unknown_words(word_store):
    train = D.load_words(word_store, "train", with_audio=False)
    val = D.load_words(word_store, "val", vocabulary=train.vocabulary, with_audio=False)
    assert val.vocabulary == train.vocabulary and val.ids == ["PAT/val/1"]
    assert val.skipped == {"unknown_word": 1} and val.words() == ["PAT"] and val.audio is None
    with pytest.raises(ValueError, match="no clip of split 'val' has a word of the vocabulary"):
        D.load_words(word_store, "val", vocabulary=("FAN",))
    with pytest.raises(ValueError, match="no word clips in split 'test'"):
        D.load_words(word_store, "test")


def test_load_words_audio_is_int16_on_the_store_scale(word_store):
    words = D.load_words(word_store, "train")
    assert words.audio.dtype == np.int16 and words.audio.shape == (4, 29 * SPF)
    np.testing.assert_array_equal(words.audio[_at(words, "PAT/train/1")], _pcm(29))
    np.testing.assert_array_equal(words.audio[_at(words, "FAN/train/1")], 16384)  # 0.5 full scale
    np.testing.assert_allclose(word_store.audio("FAN/train/1"), 0.5)  # the store's float view


def _left(video: torch.Tensor) -> np.ndarray:
    """The mean left-half level of every frame (T,)."""
    return video[:, 8:-8, 8:40].double().mean(dim=(1, 2)).numpy()


def test_load_words_crops_and_pads_to_29_frames_with_the_audio_following(word_store):
    words = D.load_words(word_store, "train")
    # 33 frames: the middle 29 (frames 2..30), and the audio of those frames
    i = _at(words, "PAT/train/2")
    np.testing.assert_allclose(_left(words.video[i]), 20 + 5 * np.arange(2, 31), atol=2)
    np.testing.assert_array_equal(words.audio[i], _pcm(33)[2 * SPF:31 * SPF])
    # 25 frames: 2 copies of the first frame before, 2 of the last after; silence under them
    i = _at(words, "BAT/train/1")
    np.testing.assert_allclose(_left(words.video[i]), 20 + 5 * np.r_[0, 0, np.arange(25), 24, 24],
                               atol=2)
    np.testing.assert_array_equal(words.audio[i], np.r_[np.zeros(2 * SPF), _pcm(25), np.zeros(2 * SPF)])


def test_load_words_resizes_once_to_size(word_store):
    full = D.load_words(word_store, "train", with_audio=False)
    small = D.load_words(word_store, "train", size=32, with_audio=False)
    assert small.video.shape == (4, 29, 32, 32) and small.video.dtype == torch.uint8
    assert small.size == 32 and small.ids == full.ids
    i = _at(small, "PAT/train/1")
    np.testing.assert_allclose(small.video[i, :, 4:-4, 2:14].double().mean(dim=(1, 2)).numpy(),
                               20 + 5 * np.arange(29), atol=2)
    np.testing.assert_allclose(small.video[i, :, 4:-4, 18:30].double().mean(dim=(1, 2)).numpy(),
                               50, atol=2)
    area = F.interpolate(full.video.float(), size=(32, 32), mode="area").round()
    assert (area - small.video.float()).abs().max() <= 1


def test_load_words_needs_the_mouth_crops(tmp_path):
    writer = StoreWriter(tmp_path / "faces")
    meta = {"dataset": "lrw", "split": "train", "speaker": "s1", "transcript": "PAT"}
    writer.write_clip("PAT/train/1", meta, {"face96": np.zeros((29, 96, 96, 3), np.uint8)}, _pcm(29))
    writer.finalize()
    with pytest.raises(ValueError, match="no 'mouth96' crops"):
        D.load_words(ClipStore(tmp_path / "faces"), "train")
