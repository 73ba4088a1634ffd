"""Tests for avlib.vsr.tokens: token-rate features, the k-means audio tokenizer, phoneme
tokens and the reader of SyncVSR's released token files."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from avlib.checkpoints import CorruptCheckpointError, UnsafeCheckpointError
from avlib.models import syncvsr
from avlib.vsr import tokens as T

SR = 16000
SEGMENT = 0.3  # seconds per tone segment (30 token steps)
TONES = (300.0, 650.0, 1100.0, 2500.0, 4200.0, 6300.0)  # three per mel half
ORDER = (0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5)  # every tone twice, in another context


def tone(freq: float, seconds: float, amp: float = 0.4) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return amp * np.sin(2 * np.pi * freq * t)


def tone_sequence(order=ORDER, seconds=SEGMENT) -> np.ndarray:
    return np.concatenate([tone(TONES[i], seconds) for i in order]).astype(np.float32)


def varied_tones(seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Tones of several frequencies, with random amplitudes and a little noise (many
    distinct frames)."""
    rng = np.random.default_rng(seed)
    parts = [tone(rng.choice(TONES) * rng.uniform(0.9, 1.1), 0.2, rng.uniform(0.05, 0.5))
             for _ in range(int(seconds / 0.2))]
    wav = np.concatenate(parts)
    return (wav + 0.003 * rng.standard_normal(wav.size)).astype(np.float32)


@pytest.fixture(scope="module")
def small_tokenizer() -> T.AudioTokenizer:
    return T.AudioTokenizer.fit([tone_sequence()], n_codes=8, iters=20, seed=0)


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------
def test_constants_match_the_sync_head():
    assert (T.TOKEN_RATE, T.HOP, T.N_GROUPS, T.N_CODES) == (100, 160, 2, 320)
    assert T.STEPS_PER_FRAME == syncvsr.TOKENS_PER_FRAME == 4
    assert (T.N_GROUPS, T.N_CODES) == (syncvsr.TOKEN_GROUPS, syncvsr.TOKEN_VOCAB)


@pytest.mark.parametrize("frames,extra", [(1, 0), (7, 0), (7, 159), (25, 100)])
def test_features_four_steps_per_video_frame(frames, extra):
    wav = np.random.default_rng(frames).uniform(-0.3, 0.3, 640 * frames + extra).astype(np.float32)
    f = T.token_features(wav)
    assert f.shape == (4 * frames, 80) and f.dtype == np.float32
    if frames > 1:
        np.testing.assert_allclose(f.mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(f.std(0), 1.0, atol=1e-3)


def test_features_step_i_is_centred_on_sample_160i():
    wav = np.zeros(640 * 5, np.float32)
    wav[160 * 9] = 0.9  # a click at step 9
    f = T.token_features(wav)
    assert int(np.argmax(f.sum(1))) == 9
    assert np.allclose(f[:7], f[0]) and np.allclose(f[12:], f[0])  # untouched steps: all alike


def test_features_int16_equals_float():
    wav = (np.random.default_rng(0).uniform(-0.5, 0.5, 3200) * 32768).astype(np.int16)
    np.testing.assert_allclose(T.token_features(wav), T.token_features(wav / 32768.0), atol=1e-5)


@pytest.mark.parametrize("wav,sr,match", [
    (np.zeros(3200, np.float32), 8000, "16000"),
    (np.zeros((3200, 2), np.float32), 16000, "mono"),
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.zeros(100, np.float32), 16000, "at least 201"),
])
def test_features_errors(wav, sr, match):
    with pytest.raises(ValueError, match=match):
        T.token_features(wav, sr)


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
def test_tokenizer_shapes_and_dtype(small_tokenizer):
    tok = small_tokenizer
    assert (tok.n_groups, tok.n_codes) == (2, 8)
    assert tuple(tok.centroids.shape) == (2, 8, 40) and tok.centroids.dtype == torch.float32
    wav = tone_sequence()[: 640 * 9 + 50]
    codes = tok.encode(wav)
    assert codes.shape == (36, 2) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 8


def test_tokens_fit_the_sync_loss(small_tokenizer):
    frames = 6
    codes = torch.from_numpy(small_tokenizer.encode(tone_sequence()[: 640 * frames]))[None]
    logits = torch.zeros(1, frames, 8, 8)
    logits.view(1, frames, 4, 2, 8).scatter_(-1, codes.view(1, frames, 4, 2, 1), 20.0)
    assert syncvsr.audio_token_loss(logits, codes).item() < 1e-6  # the right 8 labels per frame


def test_fit_is_deterministic():
    wav = varied_tones(4.0)
    a = T.AudioTokenizer.fit([wav], n_codes=64, iters=10, seed=3)
    b = T.AudioTokenizer.fit([wav], n_codes=64, iters=10, seed=3)
    c = T.AudioTokenizer.fit([wav], n_codes=64, iters=10, seed=4)
    assert torch.equal(a.centroids, b.centroids)
    assert np.array_equal(a.encode(wav), b.encode(wav))
    assert not torch.equal(a.centroids, c.centroids)


def test_codes_separate_sounds_and_repeat_for_the_same_sound(small_tokenizer):
    codes = small_tokenizer.encode(tone_sequence())
    steps = int(SEGMENT * 100)
    pairs = {}
    for k, which in enumerate(ORDER):
        interior = codes[k * steps + 3:(k + 1) * steps - 3]
        uniq = np.unique(interior, axis=0)
        assert len(uniq) == 1, f"segment {k} (tone {TONES[which]} Hz) gets codes {uniq.tolist()}"
        pairs.setdefault(which, set()).add(tuple(uniq[0]))
    assert all(len(p) == 1 for p in pairs.values()), pairs  # same tone, same codes
    assert len({next(iter(p)) for p in pairs.values()}) == len(TONES)  # different tones differ


def test_many_codes_used_on_varied_tones():
    wav = varied_tones(10.0)
    tok = T.AudioTokenizer.fit([wav[: wav.size // 2], wav[wav.size // 2:]], iters=15)
    usage = T.code_usage(tok.encode(wav), tok.n_codes)
    assert usage["n_steps"] == 1000
    for group in usage["groups"]:
        assert group["histogram"].shape == (320,) and group["histogram"].sum() == 1000
        assert group["used"] > 0.5
        assert 100 < group["perplexity"] <= 320
    assert tok.fit_info["n_frames"] == 1000 and len(tok.fit_info["groups"]) == 2


def test_code_usage_by_hand():
    tokens = np.array([[0, 1], [0, 1], [1, 1], [1, -1]])
    usage = T.code_usage(tokens, n_codes=4)
    g0, g1 = usage["groups"]
    assert g0["used"] == 0.5 and g0["perplexity"] == pytest.approx(2.0)
    assert g1["histogram"].tolist() == [0, 3, 0, 0] and g1["perplexity"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        T.code_usage(tokens, n_codes=1)


def test_fit_max_frames_subsamples():
    tok = T.AudioTokenizer.fit([varied_tones(3.0)], n_codes=16, iters=3, max_frames=100)
    assert tok.fit_info["n_frames"] == 100


def test_fit_needs_more_frames_than_codes():
    with pytest.raises(ValueError, match="at least as many frames as codes"):
        T.AudioTokenizer.fit([tone(440.0, 1.0)], n_codes=320)  # 100 frames
    with pytest.raises(ValueError, match="no audio"):
        T.AudioTokenizer.fit([])


def test_save_load_round_trip(small_tokenizer, tmp_path):
    tensors, side = small_tokenizer.save(tmp_path / "tok")
    assert tensors.name == "tok.safetensors" and side.name == "tok.json"
    doc = json.loads(side.read_text())
    assert doc["format"] == T.TOKENIZER_FORMAT and (doc["n_codes"], doc["n_groups"]) == (8, 2)
    loaded = T.AudioTokenizer.load(tmp_path / "tok.json")
    assert torch.equal(loaded.centroids, small_tokenizer.centroids)
    wav = tone_sequence()
    assert np.array_equal(loaded.encode(wav), small_tokenizer.encode(wav))


def test_load_refuses_bad_files(small_tokenizer, tmp_path):
    tensors, side = small_tokenizer.save(tmp_path / "tok")
    good = side.read_text()
    side.write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="not valid JSON"):
        T.AudioTokenizer.load(tmp_path / "tok")
    side.write_text(json.dumps({**json.loads(good), "format": "avlib-checkpoint/1"}))
    with pytest.raises(ValueError, match="format"):
        T.AudioTokenizer.load(tmp_path / "tok")
    side.write_text(json.dumps({k: v for k, v in json.loads(good).items() if k != "format"}))
    with pytest.raises(ValueError, match="not an audio tokenizer"):
        T.AudioTokenizer.load(tmp_path / "tok")
    side.write_text(good)
    tensors.write_bytes(tensors.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        T.AudioTokenizer.load(tmp_path / "tok")
    side.unlink()
    with pytest.raises(FileNotFoundError, match="tok.json"):
        T.AudioTokenizer.load(tmp_path / "tok")


# ---------------------------------------------------------------------------------------------
# Phoneme tokens
# ---------------------------------------------------------------------------------------------
PHONEMES = [  # step i is read at (i + 0.5) / 100 s
    {"label": "b", "start": 0.1, "end": 0.16},   # steps 10..15 (6 steps: 2 per third)
    {"label": "3:", "start": 0.16, "end": 0.25},  # steps 16..24 (9 steps: 3 per third)
    {"label": "d", "start": 0.3, "end": 0.31},   # step 30 alone
]
INVENTORY = ("3:", "b", "d")


def test_phoneme_tokens_exact_codes():
    codes = T.phoneme_tokens(PHONEMES, 40, INVENTORY)
    assert codes.shape == (40, 2) and codes.dtype == np.int64
    assert (codes[:10] == 0).all() and (codes[25:30] == 0).all() and (codes[31:] == 0).all()
    assert codes[10:16, 0].tolist() == [2] * 6  # "b" is inventory[1]
    assert codes[10:16, 1].tolist() == [6, 6, 7, 7, 8, 8]  # 3 * 2 + third
    assert codes[16:25, 0].tolist() == [1] * 9
    assert codes[16:25, 1].tolist() == [3, 3, 3, 4, 4, 4, 5, 5, 5]
    assert codes[30].tolist() == [3, 10]  # read at 0.305 s: the middle third of "d"


def test_phoneme_inventory_and_errors():
    assert T.phoneme_inventory([PHONEMES, [{"label": "a", "start": 0, "end": 1}]]) == ("3:", "a", "b", "d")
    with pytest.raises(ValueError, match="'b'"):
        T.phoneme_tokens(PHONEMES, 40, ("3:", "d"))
    big = tuple(f"p{i}" for i in range(106))
    with pytest.raises(ValueError, match="at most 105"):
        T.phoneme_tokens([], 10, big)
    codes = T.phoneme_tokens([{"label": "p104", "start": 0.0, "end": 0.1}], 10, big[:105])
    assert codes.max() == 3 * 105 + 2 < 320
    with pytest.raises(ValueError, match="ends"):
        T.phoneme_tokens([{"label": "d", "start": 0.2, "end": 0.1}], 40, INVENTORY)


# ---------------------------------------------------------------------------------------------
# Released tokens
# ---------------------------------------------------------------------------------------------
class Payload:
    """A custom class: a pickle holding it is refused by weights_only."""


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def released(n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"vq_tokens": torch.randint(0, 320, (n, 2), generator=g, dtype=torch.int32),
            "wav2vec2_tokens": torch.randint(0, 640, (n // 2,), generator=g)}


def test_load_released_tokens(tmp_path):
    clip = released(116, 0)
    path = tmp_path / "clip.pkl"
    path.write_bytes(saved(clip))
    vq = T.load_released_tokens(path)
    assert vq.dtype == np.int64 and vq.shape == (116, 2)
    assert np.array_equal(vq, clip["vq_tokens"].numpy())
    w2v = T.load_released_tokens(io.BytesIO(path.read_bytes()), key="wav2vec2_tokens")
    assert np.array_equal(w2v, clip["wav2vec2_tokens"].numpy())


def test_load_released_tokens_errors(tmp_path):
    unsafe = tmp_path / "unsafe.pkl"
    unsafe.write_bytes(saved({"vq_tokens": Payload()}))
    with pytest.raises(UnsafeCheckpointError, match="Payload"):
        T.load_released_tokens(unsafe)
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        T.load_released_tokens(io.BytesIO(saved({"vq_tokens": np.zeros((4, 2), np.int64)})))
    with pytest.raises(KeyError, match="'vq_tokens'.*keys present: 'tokens'"):
        T.load_released_tokens(io.BytesIO(saved({"tokens": torch.zeros(4, 2)})))
    with pytest.raises(ValueError, match=r"\(n_steps, 2\)"):
        T.load_released_tokens(io.BytesIO(saved({"vq_tokens": torch.zeros(4, 3, dtype=torch.long)})))
    with pytest.raises(CorruptCheckpointError):
        T.load_released_tokens(io.BytesIO(b"not a pickle at all"))
    with pytest.raises(FileNotFoundError):
        T.load_released_tokens(tmp_path / "absent.pkl")


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def test_iter_released_tokens(tmp_path):
    tar_path = tmp_path / "audio-tokens.tar.gz"
    clips = {"LRW/ABOUT/test/ABOUT_00001": released(116, 1), "LRW/ABOUT/test/ABOUT_00002": released(80, 2)}
    with tarfile.open(tar_path, "w:gz") as archive:
        archive.addfile(_folder("LRW/ABOUT/test"))
        add_member(archive, "README.txt", b"tokens")
        for name, clip in clips.items():
            add_member(archive, name + ".pkl", saved(clip))
    got = list(T.iter_released_tokens(tar_path))
    assert [name for name, _ in got] == list(clips)
    for name, codes in got:
        assert np.array_equal(codes, clips[name]["vq_tokens"].numpy())

    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as archive:
        add_member(archive, "a.pkl", saved(released(8, 3)))
        add_member(archive, "evil.pkl", saved({"vq_tokens": Payload()}))
    reader = T.iter_released_tokens(bad)
    assert next(reader)[0] == "a"
    with pytest.raises(UnsafeCheckpointError, match="evil.pkl"):
        next(reader)


def _folder(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_released_tokens_for_store_clips(tmp_path):
    tar_path = tmp_path / "audio-tokens.tar.gz"
    clips = {"LRW/ABOUT/test/ABOUT_00001": released(120, 1), "LRW/ABOUT/test/ABOUT_00002": released(80, 2)}
    with tarfile.open(tar_path, "w:gz") as archive:
        for name, clip in clips.items():
            add_member(archive, name + ".pkl", saved(clip))
    # Store ids put other folders around the same base names; the order is the store's.
    ids = ["ABOUT/test/ABOUT_00002", "ABOUT/test/ABOUT_00001"]
    got = T.released_tokens_for(ids, tar_path, n_steps=116)
    assert got.shape == (2, 116, 2) and got.dtype == np.int64
    assert np.array_equal(got[1], clips["LRW/ABOUT/test/ABOUT_00001"]["vq_tokens"].numpy()[:116])
    assert np.array_equal(got[0, :80], clips["LRW/ABOUT/test/ABOUT_00002"]["vq_tokens"].numpy())
    assert (got[0, 80:] == -1).all()  # padding the loss ignores
    with pytest.raises(KeyError, match="no tokens for 1 of 2 clips.*ABOUT_00009"):
        T.released_tokens_for(["ABOUT/test/ABOUT_00001", "ABOUT/test/ABOUT_00009"], tar_path, 116)
