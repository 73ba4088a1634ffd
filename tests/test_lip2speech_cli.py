"""``avlib lip2speech``: speech for a silent video from the lips (VCA-GAN inference,
:mod:`avlib.lip2speech.infer`).

The inputs are a GRID sentence of a tiny embedded corpus (75 frames, 160 x 160) and a 6-s video
looping it back and forth; the synthesizer is a random ``VCAGAN(width=0.0625)`` (215 k
parameters) saved as a book checkpoint: the tests check the plumbing (lengths, chunks and their
cross-fades, seeds, weights, outputs, errors), not the speech. Griffin-Lim runs few iterations.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from avlib import cli, media
from avlib.checkpoints import save_checkpoint
from avlib.lip2speech import infer
from avlib.lip2speech.infer import (
    Lip2SpeechError,
    chunk_starts,
    load_synthesizer,
    overlap_add,
    speak,
    spectrogram,
    vocode,
)
from avlib.lipsync.infer import pingpong_index
from avlib.models import SyncNet
from avlib.models.mmab import MMAB, MMABConfig
from avlib.models.syncvsr import SyncVSR, SyncVSRConfig
from avlib.models.vcagan import VCAGAN, VCAGANCritics, VCAGANOutput

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WIDTH = 0.0625
FAST = ("--gl-iters", "4")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One GRID sentence (75 frames) and a 6-s video looping it back and forth."""
    from avlib.corpus.make import CorpusConfig, make_corpus

    cfg = CorpusConfig(n_seen_speakers=1, n_unseen_speakers=0, grid_per_speaker=1, lrw_words=2,
                       lrw_train_per_word=1, lrw_val_per_word=0, lrw_test_per_word=0,
                       lrw_unseen_per_word=0, sync_per_split=0)
    out = tmp_path_factory.mktemp("corpus")
    make_corpus(cfg, out, workers=1, progress=False)
    clip = sorted((out / "grid").rglob("*.mp4"))[0]
    frames, _ = media.read_video(clip)
    long = media.write_video(out / "long6s.mp4", frames[pingpong_index(np.arange(150),
                                                                       len(frames))])
    return {"clip": clip, "frames": len(frames), "long": long}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return VCAGAN(width=WIDTH).eval()


@pytest.fixture(scope="module")
def weights(net, tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    save_checkpoint(folder / "G", net)
    return folder / "G.json"


@pytest.fixture(scope="module")
def long_crops(corpus):
    crops, info = infer.video_crops(corpus["long"])
    assert crops.shape == (150, 112, 112) and info["face"].all()
    return crops


@pytest.fixture(scope="module")
def inputs(corpus, tmp_path_factory):
    """Short, face-less, broken and foreign inputs; foreign and official-format weights."""
    import cv2

    root = tmp_path_factory.mktemp("inputs")
    frames, _ = media.read_video(corpus["clip"])
    rng = np.random.default_rng(0)
    blank = rng.integers(100, 140, (160, 160, 3), dtype=np.uint8)
    files = {
        "short": media.write_video(root / "short.mp4", frames[:12]),
        "noface": media.write_video(root / "noface.mp4", np.repeat(blank[None], 30, axis=0)),
    }
    (root / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    files["text"] = root / "notes.mp4"
    cv2.imwrite(str(root / "face.png"), frames[0][..., ::-1])
    files["image"] = root / "face.png"
    # weights of other networks
    torch.manual_seed(1)
    mmab = MMAB(**asdict(MMABConfig.named("cpu", n_classes=4, n_slot=8)))
    save_checkpoint(root / "mmab", mmab)
    files["book_mmab"] = root / "mmab.json"
    torch.save({part: m.state_dict() for part, m in mmab.official_parts().items()},
               root / "GRU_Back_Ckpt.ckpt")
    files["official_mmab"] = root / "GRU_Back_Ckpt.ckpt"
    syncvsr = SyncVSR(**asdict(SyncVSRConfig.named("cpu", n_classes=4)))
    torch.save({"state_dict": syncvsr.state_dict(), "epoch": 1}, root / "syncvsr.ckpt")
    files["official_syncvsr"] = root / "syncvsr.ckpt"
    syncnet = SyncNet(width=0.125)
    torch.save({"state_dict": syncnet.state_dict(), "global_step": 3}, root / "syncnet_v2.pth")
    files["official_syncnet"] = root / "syncnet_v2.pth"
    critics = VCAGANCritics(WIDTH)
    save_checkpoint(root / "D", critics)
    files["book_critics"] = root / "D.json"
    (root / "junk.ckpt").write_bytes(b"\x00not a checkpoint" * 64)
    files["junk"] = root / "junk.ckpt"
    # VCA-GAN's official format (seven parts), narrow: made-up weights of a known width
    torch.manual_seed(2)
    official = VCAGAN(width=WIDTH)
    parts = {**official.official_parts(), **VCAGANCritics(WIDTH).official_parts()}
    torch.save({entry: m.state_dict() for entry, m in parts.items()}, root / "Best_grid.ckpt")
    files["official"], files["official_net"] = root / "Best_grid.ckpt", official
    torch.manual_seed(3)
    plain = VCAGAN(width=WIDTH, postnet=False)
    parts = {**plain.official_parts(), **VCAGANCritics(WIDTH).official_parts()}
    torch.save({entry: {f"module.{k}": v for k, v in m.state_dict().items()}  # DataParallel
                for entry, m in parts.items()}, root / "Best_nopost.ckpt")
    files["official_nopost"] = root / "Best_nopost.ckpt"
    return files


def run(*args) -> int:
    return cli.main(["lip2speech", *map(str, args), "--no-progress"])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "an error message was expected on stderr"
    return err[-1]


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- chunks
def test_chunk_starts_cover_the_video_with_even_overlaps():
    assert chunk_starts(75) == [0] and chunk_starts(20) == [0]
    for n, chunk, overlap in [(150, 75, 15), (76, 75, 15), (1500, 75, 15), (151, 40, 0),
                              (400, 40, 10)]:
        starts = chunk_starts(n, chunk, overlap)
        assert starts[0] == 0 and starts[-1] == n - chunk
        shared = [a + chunk - b for a, b in zip(starts, starts[1:])]
        assert min(shared) >= overlap and max(shared) - min(shared) <= 1
        # as few chunks as that overlap allows
        assert len(starts) == -(-(n - overlap) // (chunk - overlap))
    with pytest.raises(ValueError, match="overlap"):
        chunk_starts(100, 40, 40)


def test_overlap_add_is_a_linear_cross_fade():
    a, b = np.full((2, 10), 1.0), np.full((2, 10), 3.0)
    out = overlap_add([a, b], [0, 6], 16)
    assert out.shape == (2, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :6], 1.0)
    np.testing.assert_allclose(out[:, 10:], 3.0)
    np.testing.assert_allclose(out[0, 6:10], [1.25, 1.75, 2.25, 2.75])  # ramps over 4 columns
    # three pieces over one spot: a convex mix, constants stay constant
    same = [np.full(10, 2.0)] * 3
    np.testing.assert_allclose(overlap_add(same, [0, 3, 6], 16), 2.0)
    with pytest.raises(ValueError, match="gaps"):
        overlap_add([a, b], [0, 12], 22)


class LevelNet(nn.Module):
    """A stand-in synthesizer whose chunks are alternately quiet and 4x louder (one fixed
    spectral shape): what a seam does is plain to see."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.post = nn.Identity()
        self.calls = 0

    def forward(self, video, generator=None):
        t = video.shape[2]
        level = (1.0, 4.0)[self.calls % 2]
        self.calls += 1
        shape = 0.05 / (1 + torch.arange(321.0))[:, None] ** 0.5
        return VCAGANOutput((None, None, None), (level * shape).expand(321, 4 * t)[None, None],
                            None, None)


def test_chunk_seams_are_cross_faded_without_clicks():
    crops = np.zeros((150, 112, 112), np.uint8)
    spec, kind = spectrogram(crops, LevelNet(), chunk=40, overlap=10)
    starts = chunk_starts(150, 40, 10)
    assert kind == "linear" and spec.shape == (321, 600)
    level = spec[0] / spec[0].max()
    # from quiet to loud over each whole overlap (>= 40 columns): steps of at most 3/4 / 40
    assert np.abs(np.diff(level)).max() <= 0.75 / 40 + 1e-6
    for a, b, c in zip(starts, starts[1:], starts[2:] + [150]):
        alone = level[4 * (a + 40):4 * c]  # the second chunk alone, up to the next seam
        assert np.ptp(level[4 * b:4 * (a + 40)]) > 0.5 and np.ptp(alone) < 1e-6
    wav = vocode(spec, kind, gl_iters=8)
    assert wav.shape == (150 * 640,) and np.isfinite(wav).all()
    jumps = np.abs(np.diff(wav))
    near = np.zeros(len(jumps), bool)
    for a, b in zip(starts, starts[1:]):
        near[640 * b:640 * (a + 40)] = True
    assert jumps[near].max() <= 1.1 * jumps[~near].max()  # no click where chunks meet


def test_long_video_is_chunked_to_the_right_length(long_crops, net):
    wav = speak(long_crops, net, chunk=40, overlap=10, gl_iters=4)
    assert wav.dtype == np.float32 and wav.shape == (150 * 640,)
    assert np.isfinite(wav).all() and np.abs(wav).max() <= 1.0 and wav.std() > 0
    starts = chunk_starts(150, 40, 10)
    jumps = np.abs(np.diff(wav))
    near = np.zeros(len(jumps), bool)
    for a, b in zip(starts, starts[1:]):
        near[640 * b:640 * (a + 40)] = True
    assert jumps[near].max() <= 2 * jumps[~near].max()
    # one chunk of the whole video: same length
    assert speak(long_crops, net, chunk=150, gl_iters=2).shape == (150 * 640,)


def test_same_seed_same_speech(long_crops, net):
    crops = long_crops[:60]
    one = speak(crops, net, chunk=40, overlap=10, seed=3, gl_iters=4)
    np.testing.assert_array_equal(one, speak(crops, net, chunk=40, overlap=10, seed=3,
                                             gl_iters=4))
    assert not np.array_equal(one, speak(crops, net, chunk=40, overlap=10, seed=4, gl_iters=4))
    spec, _ = spectrogram(crops, net, seed=3)
    assert not np.array_equal(spec, spectrogram(crops, net, seed=4)[0])  # the noise, too
    assert not net.training


def test_synthesizer_without_postnet_speaks_from_its_mel(long_crops):
    torch.manual_seed(5)
    plain = VCAGAN(width=WIDTH, postnet=False)
    spec, kind = spectrogram(long_crops[:30], plain)
    assert kind == "mel" and spec.shape == (80, 120)
    assert speak(long_crops[:30], plain, gl_iters=2).shape == (30 * 640,)


def test_long_blocks_of_griffin_lim_are_cross_faded(monkeypatch):
    monkeypatch.setattr(infer, "GL_BLOCK", 200)
    monkeypatch.setattr(infer, "GL_OVERLAP", 20)
    spec = np.tile(np.linspace(0.02, 0.001, 321)[:, None], (1, 500)).astype(np.float32)
    wav = vocode(spec, gl_iters=4)
    assert wav.shape == (500 * 160,) and np.isfinite(wav).all()


# --------------------------------------------------------------------------- the command
def test_cli_writes_a_wav_of_the_video_length_and_muxes_it(corpus, weights, tmp_path, capsys):
    out, mux = tmp_path / "speech.wav", tmp_path / "spoken.mp4"
    assert run(corpus["clip"], "-o", out, "--weights", weights, "--mux", mux,
               *FAST) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert str(weights) in printed and "75 frames" in printed and str(mux) in printed
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert info.frames == 640 * corpus["frames"]
    probe = media.probe(mux)
    source = media.probe(corpus["clip"])
    assert probe.has_video and probe.has_audio and probe.audio_sr == 16000
    assert probe.n_frames == source.n_frames  # the picture, copied
    assert probe.audio_duration == pytest.approx(corpus["frames"] / 25, abs=0.07)
    heard = media.read_audio(mux)
    assert abs(len(heard) - 640 * corpus["frames"]) <= 1100  # AAC frames of 1024 samples
    assert sorted(files_in(tmp_path)) == ["speech.wav", "spoken.mp4"]


def test_mux_encodes_a_picture_the_container_cannot_copy(corpus, weights, tmp_path, capsys):
    import subprocess

    avi = tmp_path / "huffyuv.avi"  # lossless HuffYUV: an mp4 cannot hold it
    subprocess.run([media.ffmpeg_exe(), "-loglevel", "error", "-i", str(corpus["clip"]),
                    "-c:v", "huffyuv", "-an", str(avi)], check=True)
    mux = tmp_path / "spoken.mp4"
    assert run(avi, "-o", tmp_path / "speech.wav", "--mux", mux, "--weights", weights,
               *FAST) == cli.EXIT_OK
    assert "re-encoded to H.264" in capsys.readouterr().out
    probe = media.probe(mux)
    assert probe.has_audio and probe.n_frames == corpus["frames"]
    assert sorted(files_in(tmp_path)) == ["huffyuv.avi", "speech.wav", "spoken.mp4"]


def test_cli_speaks_a_long_video_in_chunks(corpus, weights, tmp_path, capsys):
    out = tmp_path / "long.wav"
    assert run(corpus["long"], "-o", out, "--weights", weights, "--chunk", "40",
               "--overlap", "10", *FAST) == cli.EXIT_OK
    assert "5 of up to 40 frames" in capsys.readouterr().out
    wav, sr = sf.read(str(out), dtype="float32")
    assert sr == 16000 and wav.shape == (150 * 640,) and np.isfinite(wav).all()


def test_default_weights_are_the_chapter_product(corpus, weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVLIB_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv(infer.ENV_WEIGHTS, raising=False)
    out = tmp_path / "out.wav"
    assert run(corpus["clip"], "-o", out, *FAST) == cli.EXIT_USAGE
    line = error_line(capsys)
    assert "lip2speech_vcagan" in line and "make run ONLY=05_lip2speech" in line
    assert "--weights" in line and not out.exists()
    product = tmp_path / "artifacts" / "lip2speech_vcagan" / "0123456789ab"
    product.mkdir(parents=True)
    for name in ("G.json", "G.safetensors"):
        (product / name).write_bytes((weights.parent / name).read_bytes())
    assert run(corpus["clip"], "-o", out, *FAST) == cli.EXIT_USAGE  # no artifact.json yet
    capsys.readouterr()
    (product / "artifact.json").write_text("{}")
    assert run(corpus["clip"], "-o", out, *FAST) == cli.EXIT_OK
    assert str(product / "G.json") in capsys.readouterr().out
    # the product's name folder as --weights, and the environment variable
    assert run(corpus["clip"], "-o", out, "--force", "--weights", product.parent,
               *FAST) == cli.EXIT_OK
    monkeypatch.setenv(infer.ENV_WEIGHTS, str(weights))
    assert isinstance(load_synthesizer(), VCAGAN)
    capsys.readouterr()


def test_official_checkpoint_is_recognised_and_loads(corpus, inputs, tmp_path, capsys):
    net = load_synthesizer(inputs["official"])
    expected = inputs["official_net"]
    assert isinstance(net, VCAGAN) and net.cfg.width == WIDTH and net.post is not None
    assert not net.training
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value)
    plain = load_synthesizer(inputs["official_nopost"])
    assert plain.post is None and plain.cfg.width == WIDTH
    out = tmp_path / "official.wav"
    assert run(corpus["clip"], "-o", out, "--weights", inputs["official"], *FAST) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert "official VCA-GAN format" in printed and "critic entries ignored" in printed
    assert sf.info(str(out)).frames == 640 * corpus["frames"]


@pytest.mark.parametrize("case, message", [
    ("missing", "video not found"),
    ("text", "notes.mp4"),
    ("image", "still image"),
    ("noface", "no usable face"),
    ("short", "needs at least 20"),
])
def test_bad_videos_are_refused_and_write_nothing(case, message, inputs, weights, tmp_path,
                                                  capsys):
    video = tmp_path / "absent.mp4" if case == "missing" else inputs[case]
    out, mux = tmp_path / "out" / "speech.wav", tmp_path / "out" / "v.mp4"
    out.parent.mkdir()
    assert run(video, "-o", out, "--mux", mux, "--weights", weights, *FAST) == cli.EXIT_INPUT
    line = error_line(capsys)
    assert line.startswith("avlib lip2speech: ") and message in line
    assert "Traceback" not in line and files_in(out.parent) == []


def test_bad_weights_are_refused(corpus, inputs, tmp_path, capsys):
    out = tmp_path / "speech.wav"
    cases = [
        (tmp_path / "none.json", "weights not found"),
        (tmp_path / "none.ckpt", "weights not found"),
        (inputs["book_mmab"], "holds a 'mmab' model, not VCA-GAN's synthesizer"),
        (inputs["book_critics"], "critics"),
        (inputs["official_mmab"], "holds MMAB's LRW lip reader"),
        (inputs["official_syncvsr"], "holds no VCA-GAN synthesizer (no v_front_state_dict"),
        (inputs["official_syncnet"], "holds SyncNet"),
        (inputs["junk"], "not a readable PyTorch checkpoint"),
    ]
    for weights, message in cases:
        assert run(corpus["clip"], "-o", out, "--weights", weights) == cli.EXIT_INPUT, weights
        line = error_line(capsys)
        assert message in line, (weights, line)
        assert "Traceback" not in line and not out.exists()
    with pytest.raises(Lip2SpeechError, match="holds no VCA-GAN synthesizer"):
        load_synthesizer(inputs["official_syncvsr"])


def test_bad_outputs_and_numbers_are_refused(corpus, weights, tmp_path, capsys):
    clip = corpus["clip"]
    existing = tmp_path / "old.wav"
    existing.write_bytes(b"keep me")
    cases = [
        (["-o", clip], cli.EXIT_USAGE, "must be a new file"),
        (["-o", tmp_path / "a.wav", "--mux", clip], cli.EXIT_USAGE, "must be a new file"),
        (["-o", tmp_path / "a.wav", "--mux", tmp_path / "a.wav"], cli.EXIT_USAGE,
         "other output"),
        (["-o", tmp_path / "a.mp3"], cli.EXIT_USAGE, "must end in .wav"),
        (["-o", tmp_path / "a.wav", "--mux", tmp_path / "a.avi"], cli.EXIT_USAGE,
         "must end in .mp4"),
        (["-o", tmp_path / "absent" / "a.wav"], cli.EXIT_OUTPUT, "does not exist"),
        (["-o", existing], cli.EXIT_OUTPUT, "exists; pass --force"),
        (["-o", tmp_path / "a.wav", "--chunk", "10"], cli.EXIT_USAGE, "--chunk must be"),
        (["-o", tmp_path / "a.wav", "--overlap", "75"], cli.EXIT_USAGE, "--overlap must be"),
        (["-o", tmp_path / "a.wav", "--overlap", "-1"], cli.EXIT_USAGE, "--overlap must be"),
        (["-o", tmp_path / "a.wav", "--seed", "-1"], cli.EXIT_USAGE, "--seed must be"),
        (["-o", tmp_path / "a.wav", "--gl-iters", "0"], cli.EXIT_USAGE, "--gl-iters must be"),
        (["-o", tmp_path / "a.wav", "--device", "tpu:x"], cli.EXIT_USAGE, "unknown device"),
    ]
    for args, code, message in cases:
        assert run(clip, *args, "--weights", weights) == code, args
        line = error_line(capsys)
        assert message in line, (args, line)
    assert existing.read_bytes() == b"keep me"
    assert files_in(tmp_path) == ["old.wav"]
    # --force replaces it
    assert run(clip, "-o", existing, "--weights", weights, "--force", *FAST) == cli.EXIT_OK
    assert sf.info(str(existing)).frames == 640 * corpus["frames"]
    capsys.readouterr()


def test_a_failure_at_the_end_leaves_no_file(corpus, weights, tmp_path, monkeypatch, capsys):
    def broken_mux(video, wav, out, tmp):
        tmp.write_bytes(b"half a video")
        raise media.MediaError("encode_failed", f"ffmpeg failed while muxing into {out}")

    monkeypatch.setattr(infer, "_mux", broken_mux)
    out, mux = tmp_path / "speech.wav", tmp_path / "v.mp4"
    assert run(corpus["clip"], "-o", out, "--mux", mux, "--weights", weights,
               *FAST) == cli.EXIT_OUTPUT
    assert "ffmpeg failed" in error_line(capsys)
    assert files_in(tmp_path) == []  # neither output, no temporary

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(infer, "vocode", interrupted)
    assert run(corpus["clip"], "-o", out, "--weights", weights) == cli.EXIT_INTERRUPTED
    capsys.readouterr()
    assert files_in(tmp_path) == []
