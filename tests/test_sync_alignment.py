"""Alignment regression for every sync model: SyncNet, the Wav2Lip expert, VocaLiST and the
distilled MTDVocaLiST student.

Upstream Wav2Lip shipped an expert trained on pairs indexed one way and scored by its released
evaluation code with windows indexed another way, so its score over audio shifts peaked at a
nonzero shift. Two layers catch that class of bug, on the toy store of ``conftest.py`` (lower
faces brighten with each frame's loudness):

1. **Indexing.** The genuine pair a recipe trains on for (clip, frame f), as the papers draw
   it and as shared-video batches draw it, is exactly the input the protocol's scorer gives the
   network for video window f at offset 0; at offset k the scorer's audio is the recipe's audio
   of frame ``f - k``. Sign: score column j of window i compares video window i with audio
   window ``i - vshift + j`` and ``offset = vshift - j`` (``avlib.sync.protocol``: offset > 0 =
   audio leads). Networks that tag each input with its position in a record (``_Tagger*``) let
   every score say which two tensors it compared.
2. **End to end.** Networks whose score is maximal, by construction, when the two windows come
   from the same time run through ``evaluate_store`` over offsets -3..+3: a network that
   memorised the recipe's genuine pairs (``_Memory*``: what a perfectly trained model knows) and
   one that reads the toy clips' marker, lower-face brightness vs loudness (``_Marker*``: time
   itself). Both must peak at offset 0 on in-sync clips; the marker also recovers known delays.
   Moving the recipe's or the scorer's indexing by one frame (the upstream bug) moves the peak,
   and the check fails.

VocaLiST computes its training mel from the 3200-sample chunk of frame f while the scorer cuts
the utterance's mel at column ``floor(3.2 f)`` (as upstream's training and test code do): the
windows agree on their 13 inner columns, the scorer's starting ``640 f - 200 floor(3.2 f)``
samples (0..160, under a quarter of a frame) earlier, so for VocaLiST the check is that identity
plus "nearest window" rather than equality of whole windows.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avlib import sync
from avlib.audio import SAMPLES_PER_FRAME, mel_start_index, vocalist_mel
from avlib.models import SyncNetConfig, VocaLiSTConfig, from_config
from avlib.sync import protocol
from avlib.sync.distill import DistillRecipe

from conftest import TOY_FRAMES as T, TOY_SYNCNET_SIZE as SYNCNET_SIZE

VSHIFT = 3  # offsets -3..+3
CLIP = "grid/test0"  # layer 1's clip (split "test")
IN_SYNC = ("grid/test0", "grid/unseen0")  # what evaluate_store scores by default
SPLIT = {"grid/test0": "test", "grid/unseen0": "test_unseen", "sync/test/shifted": "test"}
N_WINDOWS = T - 5  # scored windows of a toy clip: min(T, N / 640) - 5
MODELS = ("syncnet", "wav2lip_expert", "vocalist", "mtd_vocalist")
SYNCNET_TINY = SyncNetConfig(width=0.0625, emb_dim=16, img_size=SYNCNET_SIZE)
VOCALIST_TINY = VocaLiSTConfig(d_model=16, prenet_widths=(4, 4, 8, 8, 16), n_layers=1,
                               n_heads=2)
# store features are computed from the float audio, the scorer's from the stored int16 audio:
# they differ by quantisation (MFCC up to ~5e-3 of values ~40, mel ~4e-4), far below the change
# from one window to the next (mean |step| ~3.6 and ~0.3)
AUDIO_ATOL = {"syncnet": 2e-2, "wav2lip_expert": 2e-3}
INNER = slice(2, 15)  # VocaLiST mel columns whose 800-sample STFT frame lies inside the chunk


@pytest.fixture(scope="module")
def store(toy_sync_store):
    return toy_sync_store


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- recipes' pairs
def _recipe(name, store, split="test"):
    """The recipe of ``name`` (``"mtd_vocalist"``: the :class:`DistillRecipe` of a tiny
    teacher), training on ``split``."""
    if name == "mtd_vocalist":
        torch.manual_seed(0)
        return DistillRecipe(from_config(VOCALIST_TINY), store, VOCALIST_TINY, batch_size=2,
                             train_split=split)
    config = {"syncnet": SYNCNET_TINY, "vocalist": VOCALIST_TINY}.get(name)
    return sync.RECIPES[name](store, config, batch_size=2, negatives=2, train_split=split)


class _AlwaysGenuine:
    """An rng for one papers' pair: every coin says "genuine"; any other draw fails."""

    def random(self):
        return 0.0


def _pair(recipe, clip, f, path="paper"):
    """The recipe's genuine pair for (clip, frame f): (video, audio) as the network gets one
    window, e.g. SyncNet ((3, 5, S, S), (1, 13, 20)); the expert and VocaLiST ((15, 48, 96),
    (1, 80, 16))."""
    task = getattr(recipe, "task", recipe)  # DistillRecipe draws VocaLiST's pairs
    pairs = task.pairs(SPLIT[clip])
    if path == "shared":
        starts = task.false_starts(pairs, clip, f)
        video, audio = task.shared_item(pairs, np.random.default_rng(f), clip, f, starts)
        return torch.as_tensor(video), torch.as_tensor(audio[0])[None]  # audio 0 is the true one
    pairs._clip_and_frame = lambda rng: (clip, f)
    try:
        if isinstance(recipe, DistillRecipe):
            assert task.train_split == SPLIT[clip]
            batch = recipe.batch(_AlwaysGenuine())  # what its training_step is fed
        else:
            batch = recipe.paper_batch(pairs, _AlwaysGenuine(), 2)
    finally:
        del pairs._clip_and_frame
    assert batch["y"].tolist() == [1.0, 1.0]
    video = batch["frames" if "frames" in batch else "faces"][0]
    return video, batch["mfcc" if "mfcc" in batch else "mel"][0]


def _pairs(recipe, clip, path="paper"):
    """The recipe's genuine pairs for every scored window of ``clip``: two stacked tensors."""
    video, audio = zip(*(_pair(recipe, clip, f, path) for f in range(N_WINDOWS)))
    return torch.stack(video), torch.stack(audio)


# --------------------------------------------------------------------------- layer 1: tags
class _Tagger(torch.nn.Module):
    """Records every video and audio window it is given (in call order); its outputs encode the
    position of the ``tagged`` stream's window in that record."""

    def __init__(self):
        super().__init__()
        self.reset("video")

    def reset(self, tagged):
        self.tagged, self.video, self.audio = tagged, [], []

    def _keep(self, record, x):
        start = sum(len(t) for t in record)
        record.append(x.detach().clone())
        return torch.arange(start, start + len(x), dtype=torch.float32)

    def recorded(self, stream):
        return torch.cat(getattr(self, stream))


class _TagSyncNet(_Tagger):
    """SyncNet's interface (negative L2 distance): the tagged stream embeds at (p + 1, 0), the
    other at the origin, so a score is -(p + 1)."""

    registry_name, crop_stream, similarity, img_size = "syncnet", "syncnet", "l2", SYNCNET_SIZE

    def _embed(self, stream, x):
        position = self._keep(getattr(self, stream), x)
        if stream != self.tagged:
            return torch.zeros(len(x), 2)
        return torch.stack([position + 1, torch.zeros_like(position)], 1)

    def forward_lip(self, frames):
        return self._embed("video", frames)

    def forward_aud(self, mfcc):
        return self._embed("audio", mfcc)

    @staticmethod
    def decode(scores):
        return np.rint(-scores).astype(int) - 1


class _TagExpert(_Tagger):
    """The expert's interface (cosine): the tagged stream embeds at angle p * STEP, the other
    along the first axis, so a score is cos(p * STEP)."""

    registry_name, crop_stream, similarity = "wav2lip_expert", "face96", "cosine"
    STEP = math.pi / 64

    def _embed(self, stream, x):
        position = self._keep(getattr(self, stream), x)
        angle = position * self.STEP if stream == self.tagged else torch.zeros_like(position)
        return torch.stack([torch.cos(angle), torch.sin(angle)], 1)

    def forward(self, mel, faces):
        return self._embed("audio", mel), self._embed("video", faces)

    @classmethod
    def decode(cls, scores):
        return np.rint(np.arccos(np.clip(scores, -1, 1)) / cls.STEP).astype(int)


class _TagPair(_Tagger):
    """VocaLiST's interface (one logit per pair): logit = 1000 p_video + p_audio, through
    ``forward`` or through ``prenets`` + ``forward_tokens`` (the scorer's prenet cache)."""

    registry_name, crop_stream, similarity = "vocalist", "face96", "logit"

    def prenets(self, faces, mel):
        video = self._keep(self.video, faces)
        return video[:, None, None], self._keep(self.audio, mel)[:, None, None]

    def forward_tokens(self, video, audio):
        return (1000 * video + audio).reshape(-1)

    def forward(self, faces, mel):
        return self.forward_tokens(*self.prenets(faces, mel))

    def decode(self, scores):
        code = np.rint(scores).astype(int)
        return code // 1000 if self.tagged == "video" else code % 1000


class _PlainPair(_TagPair):
    """The same without the prenet methods: the scorer's plain path."""

    prenets = forward_tokens = None

    def forward(self, faces, mel):
        return 1000 * self._keep(self.video, faces) + self._keep(self.audio, mel)


def _scored_inputs(tagger, scorer, frames, wav):
    """What the network was given for every in-range score (i, j): ``(inside (n, width) bool,
    {stream: (n, width, *window) tensor of the inputs})``."""
    inputs, inside = {}, None
    for stream in ("video", "audio"):
        tagger.reset(stream)
        scores = scorer.window_scores(frames, wav, VSHIFT)
        scored = scores > sync.OUT_OF_RANGE / 2
        assert inside is None or np.array_equal(scored, inside)
        inside = scored
        record = tagger.recorded(stream)
        position = np.where(scored, tagger.decode(scores), 0)
        assert position.min() >= 0 and position.max() < len(record), stream
        inputs[stream] = record[torch.from_numpy(position)]
    # every candidate inside the clip is scored, and only those
    assert np.array_equal(~inside, sync.out_of_range_mask(len(inside), VSHIFT))
    return inside, inputs


def _check_index(inside, inputs, video, audio_ok):
    """For every scored (i, j): video window i is the recipe's video of frame i, and the audio is
    (``audio_ok``) the recipe's audio of frame ``i - offset``, offset = VSHIFT - j."""
    n, width = inside.shape
    assert n == N_WINDOWS
    for i, j in zip(*np.nonzero(inside)):
        offset = VSHIFT - j
        assert torch.equal(inputs["video"][i, j], video[i]), (i, offset)
        assert audio_ok(inputs["audio"][i, j], i - offset), (i, offset)
    # each offset column is scored for every window whose shifted audio exists
    assert inside.sum(0).tolist() == [n - abs(VSHIFT - j) for j in range(width)]


def _clip_inputs(store, kind, clip=CLIP):
    return sync.clip_frames(store, clip, kind), store.audio(clip)


@pytest.mark.parametrize("path", ["paper", "shared"])
@pytest.mark.parametrize("name", ["syncnet", "wav2lip_expert"])
def test_embedding_scorer_feeds_the_recipes_pairs(store, name, path):
    recipe = _recipe(name, store)
    video, audio = _pairs(recipe, CLIP, path)
    tagger = _TagSyncNet() if name == "syncnet" else _TagExpert()
    scorer = sync.make_scorer(tagger)  # the scorer the chapters use for this network
    assert isinstance(scorer, sync.EmbeddingScorer) and scorer.kind == name
    inside, inputs = _scored_inputs(tagger, scorer, *_clip_inputs(store, name))

    def audio_ok(x, frame):
        # the recipe's audio of `frame` and not of a neighbour (quantisation aside: see top)
        if not torch.allclose(x, audio[frame], rtol=0, atol=AUDIO_ATOL[name]):
            return False
        gaps = (audio - x).abs().flatten(1).amax(1)
        return int(gaps.argmin()) == frame

    _check_index(inside, inputs, video, audio_ok)


@pytest.mark.parametrize("cache", [True, False], ids=["prenet_cache", "plain"])
@pytest.mark.parametrize("name", ["vocalist", "mtd_vocalist"])
def test_pair_scorer_feeds_the_recipes_pairs(store, name, cache):
    recipe = _recipe(name, store)
    paths = ("paper",) if name == "mtd_vocalist" else ("paper", "shared")
    frames, wav = _clip_inputs(store, "vocalist")
    tagger = _TagPair() if cache else _PlainPair()
    scorer = protocol.PairScorer(tagger, cache_prenets=cache)
    assert scorer.uses_prenet_cache == cache
    inside, inputs = _scored_inputs(tagger, scorer, frames, wav)
    later_mel = {lag: vocalist_mel(wav[lag:]) for lag in (0, 40, 80, 120, 160)}
    scorer_windows = torch.from_numpy(protocol._mel_windows(later_mel[0], N_WINDOWS))
    for path in paths:
        video, audio = _pairs(recipe, CLIP, path)
        for frame in range(N_WINDOWS):
            lag = SAMPLES_PER_FRAME * frame - 200 * mel_start_index(frame)  # 0, 40, .., 160
            assert 0 <= lag <= 160
            # the recipe's chunk mel of `frame` is the utterance's mel window of `frame`
            # computed `lag` samples later, on every column whose STFT frame is in the chunk
            later = later_mel[lag][:, mel_start_index(frame):][:, :16]
            np.testing.assert_allclose(audio[frame, 0, :, INNER].numpy(), later[:, INNER],
                                       atol=2e-3, err_msg=f"{path} frame {frame}")
            if lag == 0:
                assert torch.allclose(audio[frame, ..., INNER], scorer_windows[frame, ..., INNER],
                                      atol=2e-3)
            # ... and nearer to the scorer's window of `frame` than to any other window
            gaps = (scorer_windows - audio[frame]).abs().mean((1, 2, 3))
            assert int(gaps.argmin()) == frame, (path, frame, gaps.numpy().round(3))

        def audio_ok(x, frame):  # the utterance's mel window of `frame`, exactly
            return torch.equal(x, scorer_windows[frame])

        _check_index(inside, inputs, video, audio_ok)


def test_distilled_student_is_trained_and_scored_on_vocalists_pairs(store):
    """MTDVocaLiST's batches are VocaLiST's pairs, fed to the student as (faces, mel), the order
    of the scorer's calls; and the student is scored by the pair scorer."""
    distill, task = _recipe("mtd_vocalist", store), _recipe("vocalist", store)
    for f in (0, 7, N_WINDOWS - 1):
        for got, want in zip(_pair(distill, CLIP, f), _pair(task, CLIP, f)):
            assert torch.equal(got, want)
    models = distill.build()
    seen = []
    models["student"].register_forward_pre_hook(
        lambda module, args: seen.append([a.detach().clone() for a in args]))

    class NoStep:
        def step(self, name, loss):
            assert name == "student" and torch.isfinite(loss)

    batch = distill.batch(np.random.default_rng(0))
    distill.training_step(models, batch, NoStep())
    assert len(seen) == 1
    assert torch.equal(seen[0][0], batch["faces"]) and torch.equal(seen[0][1], batch["mel"])
    assert isinstance(sync.make_scorer(models["student"]), protocol.PairScorer)


# --------------------------------------------------------------------------- layer 2: peaks
def _peak_offsets(scorer, store) -> dict[str, int]:
    """Each in-sync clip's whole-clip offset (the peak of its mean score over offsets -3..+3),
    scored by ``evaluate_store`` as the chapters do."""
    result = sync.evaluate_store(scorer, store, contexts=(5,), vshift=VSHIFT, keep_scores=True)
    return {clip: sync.clip_offset(scores) for clip, scores in result.scores.items()}


def _assert_peaks_at_zero(scorer, store):
    """The regression check: on in-sync clips every clip's mean score peaks at offset 0 only."""
    result = sync.evaluate_store(scorer, store, contexts=(5,), vshift=VSHIFT, keep_scores=True)
    assert sorted(result.scores) == sorted(IN_SYNC)
    for clip, scores in result.scores.items():
        means = sync.clip_mean_scores(scores)  # column j is offset VSHIFT - j
        others = np.delete(means, VSHIFT)
        assert means[VSHIFT] > others.max(), (clip, means.round(3).tolist())


class _Memory(torch.nn.Module):
    """What a perfectly trained network knows: the recipe's genuine pairs. A video window is
    looked up (nearest recorded window) and its audio compared with the audio given."""

    def __init__(self, video, audio):
        super().__init__()
        self.keys, self.values = video.flatten(1), audio.flatten(1)
        self.center = self.values.mean(0)

    def expected(self, video):
        return self.values[torch.cdist(video.flatten(1), self.keys).argmin(1)]


class _MemorySyncNet(_Memory):
    registry_name, crop_stream, similarity, img_size = "syncnet", "syncnet", "l2", SYNCNET_SIZE

    def forward_lip(self, frames):
        return self.expected(frames)

    def forward_aud(self, mfcc):
        return mfcc.flatten(1)


class _MemoryExpert(_Memory):
    registry_name, crop_stream, similarity = "wav2lip_expert", "face96", "cosine"

    def forward(self, mel, faces):
        return mel.flatten(1) - self.center, self.expected(faces) - self.center


class _MemoryPair(_Memory):
    registry_name, crop_stream, similarity = "vocalist", "face96", "logit"

    def prenets(self, faces, mel):
        return self.expected(faces)[:, None], mel.flatten(1)[:, None]

    def forward_tokens(self, video, audio):
        return -(video - audio).norm(dim=-1).reshape(-1)

    def forward(self, faces, mel):
        return self.forward_tokens(*self.prenets(faces, mel))


_MEMORY = {"syncnet": _MemorySyncNet, "wav2lip_expert": _MemoryExpert,
           "vocalist": _MemoryPair, "mtd_vocalist": _MemoryPair}


def _memorised(name, store):
    """A memory of ``name``'s recipe's genuine pairs over the in-sync evaluation clips (each
    drawn by a recipe training on the clip's split)."""
    video, audio = zip(*(_pairs(_recipe(name, store, SPLIT[clip]), clip) for clip in IN_SYNC))
    return _MEMORY[name](torch.cat(video), torch.cat(audio))


class _LateVideo:
    """The store as a recipe off by one frame sees it: video window f is frames f+1..f+5."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def frames(self, clip, stream, start=0, length=None):
        return self._store.frames(clip, stream, start + 1, length)


def _late_scorer_audio(monkeypatch):
    """The scorer off by one frame: its audio window i holds the audio of frame i + 1."""
    mfcc_batch = protocol._mfcc_batch

    def late_mfcc(mfcc, start, stop):
        return mfcc_batch(torch.cat([mfcc[:, 4:], torch.zeros_like(mfcc[:, :4])], 1), start, stop)

    monkeypatch.setattr(protocol, "_mfcc_batch", late_mfcc)
    monkeypatch.setattr(protocol, "mel_start_index", lambda f: mel_start_index(f + 1))


@pytest.mark.parametrize("name", MODELS)
def test_a_model_that_learned_the_recipes_pairs_peaks_at_zero(store, name, monkeypatch):
    model = _memorised(name, store)
    scorer = sync.make_scorer(model)
    _assert_peaks_at_zero(scorer, store)
    result = sync.evaluate_store(scorer, store, contexts=(5,), vshift=VSHIFT)
    assert (result.table[5] == 100.0).all()  # and so does every single window

    # the upstream bug, trained side: pairs drawn one frame late; video window i then best
    # matches audio window i - 1, offset +1
    late = _memorised(name, _LateVideo(store))
    late_scorer = sync.make_scorer(late)
    assert _peak_offsets(late_scorer, store) == {clip: 1 for clip in IN_SYNC}
    with pytest.raises(AssertionError):
        _assert_peaks_at_zero(late_scorer, store)

    # ... and evaluated side: the scorer's audio windows one frame late
    _late_scorer_audio(monkeypatch)
    assert _peak_offsets(scorer, store) == {clip: 1 for clip in IN_SYNC}
    with pytest.raises(AssertionError):
        _assert_peaks_at_zero(scorer, store)


# --------------------------------------------------------------------------- layer 2: markers
MEL_FRAME_COLUMNS = [2, 5, 8, 12, 15]  # the mel column nearest each frame's centre (3.2 t + 2)


def _video_marker(video):
    """(B, 5) lower-face brightness per frame of SyncNet windows (B, 3, 5, S, S) or face windows
    (B, 15, 48, 96) (already the lower halves)."""
    if video.ndim == 5:
        return video[..., video.shape[-2] // 2:, :].mean((1, 3, 4))
    return video.reshape(len(video), 5, -1).mean(2)


def _audio_marker(audio):
    """(B, 5) loudness per frame: SyncNet MFCC (B, 1, 13, 20) c0 = ln(energy) of the 25 ms from
    each frame's start; mel (B, 1, 80, 16) in dB/12.5 around each frame's centre."""
    if audio.shape[-2] == 13:
        return torch.exp(0.5 * audio[:, 0, 0, 0::4].double())
    return 10 ** (audio[:, 0, :, MEL_FRAME_COLUMNS].double().mean(1) / 3.2)


def _unit(x):
    x = x - x.mean(1, keepdim=True)
    return (x / x.norm(dim=1, keepdim=True)).float()


class _MarkerSyncNet(torch.nn.Module):
    """Embeddings = standardised brightness / loudness curves: -L2 = -sqrt(2 - 2 correlation)."""

    registry_name, crop_stream, similarity, img_size = "syncnet", "syncnet", "l2", SYNCNET_SIZE

    def forward_lip(self, frames):
        return _unit(_video_marker(frames))

    def forward_aud(self, mfcc):
        return _unit(_audio_marker(mfcc))


class _MarkerExpert(torch.nn.Module):
    """cosine of the standardised curves = their correlation."""

    registry_name, crop_stream, similarity = "wav2lip_expert", "face96", "cosine"

    def forward(self, mel, faces):
        return _unit(_audio_marker(mel)), _unit(_video_marker(faces))


class _MarkerPair(torch.nn.Module):
    """logit = correlation of the two curves."""

    registry_name, crop_stream, similarity = "vocalist", "face96", "logit"

    def forward(self, faces, mel):
        return (_unit(_video_marker(faces)) * _unit(_audio_marker(mel))).sum(1)


_MARKER = {"syncnet": _MarkerSyncNet, "wav2lip_expert": _MarkerExpert,
           "vocalist": _MarkerPair, "mtd_vocalist": _MarkerPair}


def _marker_score(video, audio):
    return (_unit(_video_marker(video)) * _unit(_audio_marker(audio))).sum(1)


@pytest.mark.parametrize("name", MODELS)
def test_time_markers_peak_at_zero_and_recover_delays(store, name, monkeypatch):
    scorer = sync.make_scorer(_MARKER[name]())
    # the recipe's genuine pairs are in sync in time itself: the marker prefers audio of
    # frame f to audio of frame f + s for |s| <= 3
    video, audio = _pairs(_recipe(name, store), CLIP)
    starts = np.arange(VSHIFT, N_WINDOWS - VSHIFT)
    by_shift = [float(_marker_score(video[starts], audio[starts + s]).mean())
                for s in range(-VSHIFT, VSHIFT + 1)]
    assert int(np.argmax(by_shift)) == VSHIFT and by_shift[VSHIFT] > 0.9, by_shift

    _assert_peaks_at_zero(scorer, store)
    # the sync-test clip, its audio delayed by 3 frames: offset -3
    shifted = sync.evaluate_store(scorer, store, splits=("test",), kind="sync", contexts=(5,),
                                  vshift=VSHIFT, keep_scores=True)
    (clip, scores), = shifted.scores.items()
    assert sync.clip_offset(scores) == sync.true_offset(store.meta(clip)) == -3
    # delays made here: audio delayed by d frames gives offset -d
    kind = "syncnet" if name == "syncnet" else "vocalist"
    frames, wav = _clip_inputs(store, kind)
    for d in (-2, -1, 1, 2):
        scores = scorer.window_scores(frames, sync.delay_audio(wav, d), VSHIFT)
        assert sync.clip_offset(scores) == sync.audio_delay_to_offset(d) == -d

    _late_scorer_audio(monkeypatch)  # the scorer one frame late moves the peak to +1
    assert _peak_offsets(scorer, store) == {clip: 1 for clip in IN_SYNC}
    with pytest.raises(AssertionError):
        _assert_peaks_at_zero(scorer, store)
