"""Sync evaluation: syncnet_python's offset/LSE protocol, scorers, context accuracy, tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avlib import media, sync
from avlib.audio import MFCC_WINDOW, syncnet_mfcc, vocalist_mel
from avlib.models import SyncNet, Wav2LipExpert, VocaLiST

SPF = 640  # samples per video frame
VSHIFT = sync.DEFAULT_VSHIFT


# --------------------------------------------------------------------------- toy inputs and models
def envelope_noise(n_frames: int, seed: int) -> np.ndarray:
    """Noise whose loudness changes at random from frame to frame: every window is distinctive."""
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.05, 0.5, n_frames).repeat(SPF)
    return (rng.standard_normal(n_frames * SPF) * gains).clip(-1, 1).astype(np.float32)


def index_frames(n_frames: int, size: int) -> np.ndarray:
    """Frame f is filled with the value f, so a toy model can read which frame it sees."""
    assert n_frames <= 256
    return np.broadcast_to(
        np.arange(n_frames, dtype=np.uint8)[:, None, None, None], (n_frames, size, size, 3)
    ).copy()


class LookupSyncNet(nn.Module):
    """Toy SyncNet. Audio embedding = the flattened MFCC window; the video window starting at
    frame f embeds to ``table[f]``. With ``table[f]`` = the MFCC window of audio window f + lag,
    video window i matches audio window i + lag exactly."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)

    def forward_lip(self, frames):
        assert frames.ndim == 5 and frames.shape[1:3] == (3, 5)
        first = frames[:, 0, 0, 0, 0].round().long()
        # the five frames of a window are consecutive: the toy checks the window layout
        assert torch.equal(frames[:, 0, :, 0, 0].round().long(), first[:, None] + torch.arange(5))
        return self.table[first]

    def forward_aud(self, mfcc):
        assert tuple(mfcc.shape[1:]) == (1, 13, MFCC_WINDOW)
        return mfcc.flatten(1)


def lookup_syncnet(wav: np.ndarray, n_frames: int, lag: int, seed: int = 0) -> LookupSyncNet:
    mfcc = syncnet_mfcc(wav)
    n_audio = (mfcc.shape[1] - MFCC_WINDOW) // 4 + 1
    rng = np.random.default_rng(seed)
    table = np.empty((n_frames, 13 * MFCC_WINDOW), dtype=np.float32)
    for f in range(n_frames):
        a = f + lag
        if 0 <= a < n_audio:
            table[f] = mfcc[:, 4 * a : 4 * a + MFCC_WINDOW].reshape(-1)
        else:  # no true partner in the clip: an unrelated vector
            table[f] = rng.normal(0, 10, table.shape[1])
    return LookupSyncNet(torch.from_numpy(table))


class LookupPairModel(nn.Module):
    """Toy VocaLiST: logit = -mean squared difference between the mel window it is given and the
    reference mel window at the lips' frame + lag. Optionally exposes prenets/forward_tokens."""

    def __init__(self, reference: np.ndarray, lag: int):
        super().__init__()
        self.register_buffer("reference", torch.from_numpy(reference))  # (n, 1, 80, 16)
        self.lag = lag
        self.calls = {"forward": 0, "prenets": 0, "forward_tokens": 0}

    def _target(self, first):
        index = first + self.lag
        inside = (index >= 0) & (index < len(self.reference))
        target = self.reference[index.clamp(0, len(self.reference) - 1)].clone()
        target[~inside] = 20.0  # far from every real window (mel lies in [-4, 4])
        return target

    def forward(self, faces, mel):
        self.calls["forward"] += 1
        assert faces.shape[1:] == (15, 48, 96) and mel.shape[1:] == (1, 80, 16)
        first = (faces[:, 0, 0, 0] * 255).round().long()
        return -((mel - self._target(first)) ** 2).mean(dim=(1, 2, 3))


class TokenPairModel(LookupPairModel):
    """The same toy split into prenets + forward_tokens, to exercise the prenet cache."""

    def prenets(self, faces, mel):
        self.calls["prenets"] += 1
        first = (faces[:, 0, 0, 0] * 255).round()
        return first[:, None, None], mel.flatten(1)[:, None, :]

    def forward_tokens(self, video, audio):
        self.calls["forward_tokens"] += 1
        target = self._target(video[:, 0, 0].long()).flatten(1)
        return -((audio[:, 0, :] - target) ** 2).mean(dim=1)


TINY_VOCALIST = dict(d_model=16, n_layers=2, n_heads=4, prenet_widths=(4, 4, 8, 8, 16))


def reference_medfilt(x: np.ndarray, kernel: int) -> np.ndarray:
    """Median filter with zero padding written out by hand (scipy.signal.medfilt semantics)."""
    half = kernel // 2
    padded = np.concatenate([np.zeros(half), x, np.zeros(half)])
    return np.array([np.median(padded[i : i + kernel]) for i in range(len(x))])


# --------------------------------------------------------------------------- syncnet_offset
@pytest.fixture(scope="module")
def toy_clip():
    n_frames = 60
    return index_frames(n_frames, 8), envelope_noise(n_frames, seed=1)


@pytest.mark.parametrize("lag", [2, -3, 0])
def test_syncnet_offset_known_lag(toy_clip, lag):
    frames, wav = toy_clip
    model = lookup_syncnet(wav, len(frames), lag)
    result = sync.syncnet_offset(model, frames, wav)
    n = len(frames) - 5
    assert result.dists.shape == (n, 2 * VSHIFT + 1) and result.n_windows == n
    # video window i matches audio window i + lag, i.e. column vshift + lag, offset = -lag
    assert result.offset == -lag
    inside = [i for i in range(n) if 0 <= i + lag < n]
    exact = np.sqrt(13 * MFCC_WINDOW) * 1e-6  # pairwise_distance adds eps = 1e-6 per coordinate
    np.testing.assert_allclose(result.dists[inside, VSHIFT + lag], exact, rtol=1e-3)
    assert result.lse_d == result.min_dist and result.lse_c == result.confidence


def test_syncnet_offset_formulas(toy_clip):
    frames, wav = toy_clip
    result = sync.syncnet_offset(lookup_syncnet(wav, len(frames), 2), frames, wav)
    d = result.dists.astype(np.float64)
    np.testing.assert_allclose(result.mean_dists, d.mean(axis=0), rtol=1e-5)
    best = int(np.argmin(result.mean_dists))
    assert result.min_dist == pytest.approx(float(result.mean_dists.min()))
    assert result.offset == VSHIFT - best
    median = float(np.median(result.mean_dists))
    assert result.confidence == pytest.approx(median - result.min_dist, rel=1e-5)
    raw = median - d[:, best]
    np.testing.assert_allclose(result.framewise_conf, reference_medfilt(raw, 9), rtol=1e-5, atol=1e-4)
    assert result.framewise_conf.shape == (result.n_windows,)


@pytest.mark.parametrize("n_windows", [25, 4])
def test_summarise_dists_formulas(n_windows):
    rng = np.random.default_rng(2)
    dists = rng.uniform(5, 15, (n_windows, 7)).astype(np.float32)
    dists[:, 4] -= 3.0  # column 4 is best on average: offset 3 - 4 = -1
    result = sync.summarise_dists(dists)
    assert result.vshift == 3 and result.offset == -1
    np.testing.assert_allclose(result.mean_dists, dists.astype(np.float64).mean(axis=0), rtol=1e-6)
    median = float(np.median(result.mean_dists))
    assert result.min_dist == pytest.approx(float(result.mean_dists[4]))
    assert result.confidence == pytest.approx(median - result.min_dist, rel=1e-5)
    raw = median - dists[:, 4].astype(np.float64)
    # frame-wise confidence: median filter of kernel 9, zero-padded (also for clips shorter than 9)
    np.testing.assert_allclose(result.framewise_conf, reference_medfilt(raw, 9), rtol=1e-5, atol=1e-5)
    if n_windows > 9:
        assert not np.allclose(result.framewise_conf, reference_medfilt(raw, 7), atol=1e-3)
        assert not np.allclose(result.framewise_conf, raw, atol=1e-3)
    with pytest.raises(ValueError, match="vshift=3"):
        sync.summarise_dists(dists, vshift=15)


def test_zero_padding_is_not_masked(toy_clip):
    frames, wav = toy_clip
    model = lookup_syncnet(wav, len(frames), 0)
    result = sync.syncnet_offset(model, frames, wav)
    first, last = model.table[0], model.table[len(frames) - 6]
    to_origin = lambda v: float(torch.linalg.vector_norm(v + 1e-6))  # noqa: E731
    # edge windows are compared with zero vectors, not skipped: their distance to the origin
    np.testing.assert_allclose(result.dists[0, :VSHIFT], to_origin(first), rtol=1e-6)
    np.testing.assert_allclose(result.dists[-1, VSHIFT + 1 :], to_origin(last), rtol=1e-6)
    assert np.all(np.isfinite(result.dists))


def test_calc_pdist_matches_a_direct_loop():
    rng = np.random.default_rng(3)
    video = torch.from_numpy(rng.normal(size=(9, 6)).astype(np.float32))
    audio = torch.from_numpy(rng.normal(size=(9, 6)).astype(np.float32))
    dists = sync.calc_pdist(video, audio, vshift=3).numpy()
    for i in range(9):
        for j in range(7):
            a = i - 3 + j
            other = audio[a] if 0 <= a < 9 else torch.zeros(6)
            expected = float(torch.linalg.vector_norm(video[i] - other + 1e-6))
            assert dists[i, j] == pytest.approx(expected, rel=1e-6)


def test_batch_size_does_not_change_the_result(toy_clip):
    frames, wav = toy_clip
    model = lookup_syncnet(wav, len(frames), 1)
    reference = sync.syncnet_offset(model, frames, wav, batch_size=20)
    for batch_size in (1, 7, 100):
        other = sync.syncnet_offset(model, frames, wav, batch_size=batch_size)
        np.testing.assert_allclose(other.dists, reference.dists, rtol=1e-6)
        assert other.offset == reference.offset


@pytest.fixture(scope="module")
def small_syncnet():
    torch.manual_seed(0)
    return SyncNet(width=0.25, img_size=96).eval()


@pytest.mark.parametrize("batch_size", [20, 7])
def test_stream_equals_batch(small_syncnet, batch_size):
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (33, 96, 96, 3), dtype=np.uint8)
    wav = envelope_noise(30, seed=5)  # audio shorter than the video: the stream stops early
    batch = sync.syncnet_offset(small_syncnet, frames, wav, batch_size=batch_size)
    consumed = []

    def frame_source():
        for f in frames:
            consumed.append(1)
            yield f

    stream = sync.syncnet_offset_stream(small_syncnet, frame_source(), wav, batch_size=batch_size)
    assert batch.n_windows == 25
    np.testing.assert_array_equal(stream.dists, batch.dists)
    np.testing.assert_array_equal(stream.framewise_conf, batch.framewise_conf)
    summary = lambda r: (r.offset, r.min_dist, r.confidence)  # noqa: E731
    assert summary(stream) == summary(batch)
    assert len(consumed) <= 31  # frames past floor(len(wav) / 640) = 30 are not needed


def test_stream_equals_batch_on_toy(toy_clip):
    frames, wav = toy_clip
    model = lookup_syncnet(wav, len(frames), -2)
    batch = sync.syncnet_offset(model, frames, wav, batch_size=6)
    stream = sync.syncnet_offset_stream(model, iter(frames), wav, batch_size=6)
    np.testing.assert_array_equal(stream.dists, batch.dists)
    assert stream.offset == 2


def test_model_mode_is_restored(small_syncnet):
    frames = np.zeros((8, 96, 96, 3), np.uint8)
    wav = envelope_noise(8, seed=0)
    small_syncnet.train()
    try:
        sync.syncnet_offset(small_syncnet, frames, wav)
        assert small_syncnet.training
    finally:
        small_syncnet.eval()


def test_syncnet_offset_input_errors(small_syncnet):
    wav = envelope_noise(10, seed=0)
    with pytest.raises(ValueError, match="too short"):
        sync.syncnet_offset(small_syncnet, np.zeros((5, 96, 96, 3), np.uint8), wav)
    with pytest.raises(ValueError, match="too short"):
        sync.syncnet_offset_stream(small_syncnet, iter(np.zeros((4, 96, 96, 3), np.uint8)), wav)
    with pytest.raises(ValueError, match="resize"):
        sync.syncnet_offset(small_syncnet, np.zeros((10, 64, 64, 3), np.uint8), wav)
    with pytest.raises(ValueError, match="uint8"):
        sync.syncnet_offset(small_syncnet, np.zeros((10, 96, 96, 3), np.float32), wav)
    with pytest.raises(ValueError, match="vshift"):
        sync.syncnet_offset(small_syncnet, np.zeros((10, 96, 96, 3), np.uint8), wav, vshift=-1)


# --------------------------------------------------------------------------- sign convention
@pytest.fixture(scope="module")
def remux_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sync_remux")
    n_frames = 50
    wav = envelope_noise(n_frames, seed=7)
    path = media.write_video(folder / "src.mp4", np.zeros((n_frames, 16, 16, 3), np.uint8), audio=wav)
    return folder, path, n_frames


@pytest.mark.parametrize("delay", [3, -2])
def test_sign_convention_with_remux(remux_source, delay):
    folder, src, n_frames = remux_source
    decoded = media.read_audio(src)  # the AAC-coded reference the toy lips are tied to
    shifted_path = media.remux_with_shifted_audio(src, folder / f"shift{delay}.mp4", delay)
    shifted = media.read_audio(shifted_path)
    frames = index_frames(n_frames, 8)
    model = lookup_syncnet(decoded, n_frames, 0)  # lips of frame f <-> sound of frame f
    assert sync.syncnet_offset(model, frames, decoded).offset == 0
    # audio delayed by d frames (sound later than the picture) -> syncnet reports -d
    result = sync.syncnet_offset(model, frames, shifted)
    assert result.offset == sync.audio_delay_to_offset(delay) == -delay


def test_audio_delay_to_offset():
    assert sync.audio_delay_to_offset(3) == -3
    assert sync.audio_delay_to_offset(-4) == 4
    with pytest.raises(ValueError, match="whole frames"):
        sync.audio_delay_to_offset(1.5)


# --------------------------------------------------------------------------- context accuracy
def hand_scores() -> np.ndarray:
    """6 windows, vshift 2 (columns = offsets 2, 1, 0, -1, -2)."""
    s = np.zeros((6, 5))
    s[0, 2] = 1.0  # offset 0
    s[1, 2] = 1.0  # offset 0
    s[2, 0] = 3.0  # offset 2
    s[3, 2] = 1.0  # offset 0
    s[4, 4] = 1.0  # offset -2
    s[5, 3] = 1.5  # offset -1
    return s


def test_offset_accuracy_hand_built():
    s = hand_scores()
    np.testing.assert_array_equal(sync.predicted_offsets(s), [0, 0, 2, 0, -2, -1])
    acc = sync.offset_accuracy(s, contexts=(5, 7))
    # K=5: rows 0, 1, 3, 5 within ±1 of 0
    assert acc[5] == pytest.approx(4 / 6)
    # K=7 (3 windows, 2 at the edges): row0 (r0+r1)/2 -> 0 ok; rows 1-3 are pulled to offset 2
    # by r2's 3.0; row4 (r3+r4+r5)/3 -> col 3 (0.5) -> -1 ok; row5 (r4+r5)/2 -> -1 ok
    assert acc[7] == pytest.approx(3 / 6)
    assert sync.offset_accuracy(s, contexts=(5,), tolerance=0)[5] == pytest.approx(3 / 6)
    assert sync.offset_accuracy(s, true_offset=2, contexts=(5,), tolerance=0)[5] == pytest.approx(1 / 6)
    assert sync.offset_accuracy(s, true_offset=-2, contexts=(5,), tolerance=1)[5] == pytest.approx(2 / 6)


def test_context_average_edges():
    rng = np.random.default_rng(8)
    s = rng.normal(size=(6, 31))
    k9 = sync.context_average(s, 9)  # 5 windows, clipped at the ends
    expected = [s[0:3], s[0:4], s[0:5], s[1:6], s[2:6], s[3:6]]
    for row, rows in zip(k9, expected):
        np.testing.assert_allclose(row, rows.mean(axis=0))
    np.testing.assert_array_equal(sync.context_average(s, 5), s)
    k15 = sync.context_average(s, 15)  # longer than the clip: every row is the clip mean
    np.testing.assert_allclose(k15, np.broadcast_to(s.mean(axis=0), s.shape))


def test_context_and_score_validation():
    with pytest.raises(ValueError, match="odd number"):
        sync.context_average(hand_scores(), 6)
    with pytest.raises(ValueError, match="odd number"):
        sync.offset_accuracy(hand_scores(), contexts=(3,))
    with pytest.raises(ValueError, match="2 \\* vshift \\+ 1"):
        sync.offset_accuracy(np.zeros((4, 30)))


def test_out_of_range_mask():
    mask = sync.out_of_range_mask(4, vshift=2)  # row i, column j <-> audio window i - 2 + j
    expected = np.array(
        [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 1]], dtype=bool
    )
    np.testing.assert_array_equal(mask, expected)


# --------------------------------------------------------------------------- scorers
@pytest.fixture(scope="module")
def pair_clip():
    n_frames = 24
    frames = index_frames(n_frames, 96)
    wav = envelope_noise(n_frames, seed=9)
    n = n_frames - 5
    reference = np.stack(
        [vocalist_mel(wav)[:, (16 * v) // 5 : (16 * v) // 5 + 16][None] for v in range(n)]
    ).astype(np.float32)
    return frames, wav, reference


@pytest.mark.parametrize("lag", [0, 4])
def test_pair_scorer_masks_and_argmax(pair_clip, lag):
    frames, wav, reference = pair_clip
    n = len(reference)
    scorer = sync.PairScorer(LookupPairModel(reference, lag), batch_size=64)
    assert not scorer.uses_prenet_cache
    scores = scorer.window_scores(frames, wav)
    assert scores.shape == (n, 2 * VSHIFT + 1)
    outside = sync.out_of_range_mask(n, VSHIFT)
    assert np.all(scores[outside] == sync.OUT_OF_RANGE)
    assert np.all(scores[~outside] > sync.OUT_OF_RANGE)
    rows = [i for i in range(n) if i + lag < n]
    assert np.all(np.argmax(scores[rows], axis=1) == VSHIFT + lag)
    acc = sync.offset_accuracy(scores[rows], true_offset=-lag, contexts=(5,), tolerance=0)
    assert acc[5] == 1.0
    again = sync.PairScorer(LookupPairModel(reference, lag), batch_size=7).window_scores(frames, wav)
    np.testing.assert_array_equal(again, scores)


def test_pair_scorer_prenet_cache(pair_clip):
    frames, wav, reference = pair_clip
    plain = sync.PairScorer(LookupPairModel(reference, 1), batch_size=50).window_scores(frames, wav)
    model = TokenPairModel(reference, 1)
    scorer = sync.PairScorer(model, batch_size=50)
    assert scorer.uses_prenet_cache
    cached = scorer.window_scores(frames, wav)
    np.testing.assert_allclose(cached, plain, rtol=1e-6)
    assert model.calls["forward"] == 0
    assert model.calls["prenets"] == 2  # 19 windows in one batch + the zero window


def test_pair_scorer_upstream_edge_quirk(pair_clip):
    frames, wav, reference = pair_clip
    n = len(reference)  # 19 < 2 * vshift: every row is one of the first vshift rows
    model = LookupPairModel(reference, 0)
    strict = sync.PairScorer(model).window_scores(frames, wav)
    quirky = sync.PairScorer(model, upstream_edge_quirk=True).window_scores(frames, wav)
    audio_index = np.arange(n)[:, None] - VSHIFT + np.arange(2 * VSHIFT + 1)
    left, right = audio_index < 0, audio_index >= n
    early = np.arange(n)[:, None] < VSHIFT
    assert np.all(quirky[left] == sync.OUT_OF_RANGE)
    assert np.all(quirky[right & early] > sync.OUT_OF_RANGE)  # scored against a zero mel window
    np.testing.assert_array_equal(quirky[~right], strict[~right])
    # the kept value is the logit against an all-zero mel window
    assert right[10, -1]  # window 10 vs audio window 25 of 19
    faces = torch.from_numpy(sync.lower_half_faces(frames[10:15])).reshape(1, 15, 48, 96)
    zero_logit = float(model(faces, torch.zeros(1, 1, 80, 16)))
    assert quirky[10, -1] == pytest.approx(zero_logit)


def test_pair_scorer_with_vocalist():
    torch.manual_seed(0)
    rng = np.random.default_rng(10)
    frames = rng.integers(0, 256, (12, 96, 96, 3), dtype=np.uint8)
    wav = envelope_noise(12, seed=11)
    model = VocaLiST(**TINY_VOCALIST).eval()
    plain_scorer = sync.PairScorer(model, batch_size=32, cache_prenets=False)
    assert not plain_scorer.uses_prenet_cache
    plain = plain_scorer.window_scores(frames, wav, vshift=3)
    cached_scorer = sync.PairScorer(model, batch_size=32)
    assert cached_scorer.uses_prenet_cache
    cached = cached_scorer.window_scores(frames, wav, vshift=3)
    n = 7
    assert plain.shape == (n, 7)
    outside = sync.out_of_range_mask(n, 3)
    assert np.all(plain[outside] == sync.OUT_OF_RANGE)
    assert np.all(np.isfinite(plain[~outside])) and np.all(plain[~outside] > sync.OUT_OF_RANGE)
    np.testing.assert_allclose(cached, plain, rtol=1e-4, atol=1e-5)


def test_embedding_scorer_wav2lip_expert():
    torch.manual_seed(0)
    rng = np.random.default_rng(12)
    frames = rng.integers(0, 256, (14, 96, 96, 3), dtype=np.uint8)
    wav = envelope_noise(14, seed=13)
    model = Wav2LipExpert(width=0.25)
    scorer = sync.EmbeddingScorer(model, batch_size=4)
    assert scorer.kind == "wav2lip_expert" and scorer.similarity == "cosine"
    scores = scorer.window_scores(frames, wav)
    n = 9
    assert scores.shape == (n, 2 * VSHIFT + 1)
    outside = sync.out_of_range_mask(n, VSHIFT)
    assert np.all(scores[outside] == sync.OUT_OF_RANGE)
    inside = scores[~outside]
    assert inside.min() >= 0.0 and inside.max() <= 1.0 + 1e-6
    video, audio = scorer.embed(frames, wav)
    cosine = float(F.cosine_similarity(video[4], audio[6], dim=0))
    assert scores[4, VSHIFT + 2] == pytest.approx(cosine, rel=1e-5)  # window 4 vs audio window 6
    unmasked = sync.EmbeddingScorer(model, mask_out_of_range=False).window_scores(frames, wav)
    assert np.all(unmasked[outside] == 0.0)  # cosine with a zero (padding) embedding
    np.testing.assert_allclose(unmasked[~outside], inside, rtol=1e-5)


def test_embedding_scorer_syncnet_matches_syncnet_offset(small_syncnet):
    rng = np.random.default_rng(14)
    frames = rng.integers(0, 256, (20, 96, 96, 3), dtype=np.uint8)
    wav = envelope_noise(20, seed=15)
    result = sync.syncnet_offset(small_syncnet, frames, wav)
    unmasked = sync.EmbeddingScorer(small_syncnet, mask_out_of_range=False).window_scores(frames, wav)
    np.testing.assert_array_equal(unmasked, -result.dists.astype(np.float64))
    masked = sync.EmbeddingScorer(small_syncnet).window_scores(frames, wav)
    outside = sync.out_of_range_mask(result.n_windows, VSHIFT)
    assert np.all(masked[outside] == sync.OUT_OF_RANGE)
    np.testing.assert_array_equal(masked[~outside], unmasked[~outside])


def test_embedding_scorer_needs_a_kind():
    with pytest.raises(ValueError, match="kind="):
        sync.EmbeddingScorer(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="kind must be"):
        sync.EmbeddingScorer(nn.Linear(2, 2), kind="cosine")


# --------------------------------------------------------------------------- evaluate_sync, tables
class PresetScorer:
    """Toy scorer: clip k (written in frame 0's pixels) predicts the offsets preset for it."""

    def __init__(self, offsets_by_clip: dict[int, list[int]]):
        self.offsets_by_clip = offsets_by_clip

    def window_scores(self, frames, wav, vshift=VSHIFT):
        offsets = self.offsets_by_clip[int(frames[0, 0, 0, 0])]
        scores = np.zeros((len(offsets), 2 * vshift + 1))
        scores[np.arange(len(offsets)), vshift - np.asarray(offsets)] = 1.0
        return scores


def preset_clip(key: int, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    frames = np.full((n_windows + 5, 4, 4, 3), key, np.uint8)
    return frames, np.zeros((n_windows + 5) * SPF, np.float32)


def test_evaluate_sync_per_clip_and_groups():
    scorer = PresetScorer({1: [0] * 10, 2: [0] * 5 + [5] * 5, 3: [-3] * 8})
    clips = [
        ("a", *preset_clip(1, 10), 0, "seen"),
        ("b", *preset_clip(2, 10), 0, "seen"),
        ("c", *preset_clip(3, 8), -3, "unseen"),
        ("short", np.zeros((4, 4, 4, 3), np.uint8), np.zeros(4000, np.float32), 0, "seen"),
    ]
    with pytest.warns(UserWarning, match="skipped 1"):
        result = sync.evaluate_sync(scorer, iter(clips), contexts=(5, 7), progress=False, keep_scores=True)
    assert [c for c, _ in result.skipped] == ["short"]
    per_clip = result.per_clip.set_index("clip_id")
    assert per_clip.loc["a", 5] == 1.0 and per_clip.loc["b", 5] == 0.5 and per_clip.loc["c", 5] == 1.0
    assert per_clip.loc["c", "n_windows"] == 8 and per_clip.loc["c", "true_offset"] == -3
    for clip_id, scores in result.scores.items():
        true = int(per_clip.loc[clip_id, "true_offset"])
        assert per_clip.loc[clip_id, 7] == sync.offset_accuracy(scores, true, (7,))[7]
    table = result.table
    assert list(table.index) == ["seen", "unseen"] and list(table.columns) == [5, 7]
    assert table.loc["seen", 5] == pytest.approx(75.0)  # mean of 100 % and 50 %, in percent
    assert table.loc["unseen", 5] == pytest.approx(100.0)
    assert result.n_clips == {"seen": 2, "unseen": 1}


def test_a_scorer_that_always_finds_the_truth_scores_100_percent():
    # every window's best candidate is the clip's true offset, whatever the offset: the protocol
    # must then report 100 % in every group and at every context, and find every clip's offset
    offsets = {1: 0, 2: -3, 3: 5, 4: -15}
    scorer = PresetScorer({k: [v] * 12 for k, v in offsets.items()})
    clips = [(f"c{k}", *preset_clip(k, 12), v, "seen" if k < 3 else "unseen")
             for k, v in offsets.items()]
    result = sync.evaluate_sync(scorer, clips, contexts=(5, 9, 15), progress=False,
                                keep_scores=True)
    assert (result.table.to_numpy() == 100.0).all()
    assert list(result.table.index) == ["seen", "unseen"]
    for clip_id, scores in result.scores.items():
        assert sync.predicted_offsets(scores).tolist() == [offsets[int(clip_id[1:])]] * 12


def test_evaluate_sync_rejects_bad_clips():
    scorer = PresetScorer({1: [0] * 3})
    with pytest.raises(ValueError, match="clip_id, frames, wav, true_offset, group"):
        sync.evaluate_sync(scorer, [("a", *preset_clip(1, 3))], progress=False)
    with pytest.raises(ValueError, match="window_scores"):
        sync.evaluate_sync(object(), [], progress=False)


def test_paper_table_and_sync_table():
    paper = sync.PAPER_LRS2
    assert paper.loc["VocaLiST", 5] == 92.8 and paper.loc["SyncNet", 15] == 96.1
    assert paper.loc["MTDVocaLiST", "params (M)"] == 13.28
    assert list(paper.columns) == ["params (M)", 5, 7, 9, 11, 13, 15]
    paper.loc["VocaLiST", 5] = 0.0  # callers get a copy: the constant cannot be corrupted
    assert sync.PAPER_LRS2.loc["VocaLiST", 5] == 92.8

    scorer = PresetScorer({1: [0] * 6, 2: [4] * 6})
    clips = [("a", *preset_clip(1, 6), 0, "seen"), ("b", *preset_clip(2, 6), 0, "unseen")]
    ours = sync.evaluate_sync(scorer, clips, progress=False)
    other = pd.DataFrame({c: [50.0] for c in sync.DEFAULT_CONTEXTS}, index=pd.Index(["seen"], name="group"))
    table = sync.sync_table({"ours": ours, "other": other})
    assert table.index.names == ["model", "group"]
    assert list(table.columns) == list(sync.DEFAULT_CONTEXTS)
    assert table.loc[("ours", "seen"), 5] == 100.0 and table.loc[("ours", "unseen"), 5] == 0.0
    assert table.loc[("other", "seen"), 15] == 50.0
    assert table.loc[("SyncNet", "LRS2 (paper)"), 5] == 75.8
    assert len(sync.sync_table({"ours": ours}, paper=False)) == 2
    with pytest.raises(ValueError, match="SyncEvaluation or a DataFrame"):
        sync.sync_table({"bad": [1, 2]})
