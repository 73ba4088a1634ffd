"""``avlib lipsync``: a face video or image + new speech -> a lip-synced video (Wav2Lip inference).

The clips are rendered talking faces (the corpus renderer, 160 x 160, ~3.6 s). Every frame
carries its own index in two grey squares in the top-left corner (far from the face box), so
the tests can read back which source frame each output frame shows (ping-pong, 30 fps
resampling) after H.264. The generator is a tiny random ``Wav2Lip(width=0.0625)``: the tests
check the plumbing, not the lips.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from avlib import cli, media
from avlib.audio import MEL_WINDOW, SR, mel_start_index, wav2lip_mel
from avlib.checkpoints import save_checkpoint
from avlib.corpus.articulation import mouth_trajectory
from avlib.corpus.render import FaceIdentity, render_clip
from avlib.corpus.speech import Voice, synthesize
from avlib.faces import FaceDetector
from avlib.lipsync import infer
from avlib.lipsync.infer import (
    LipsyncError,
    feather_mask,
    inference_mel,
    lipsync,
    mel_chunk_starts,
    mel_chunks,
    paste_face,
    pingpong_index,
)
from avlib.models import Wav2Lip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEECH = "Bin blue at F two now. Place green by seven soon."
WIDTH = 0.0625  # a 0.04 GFLOP generator: 6 ms a frame on one CPU thread


# --------------------------------------------------------------------------- fixtures
def _stamp(frames: np.ndarray) -> np.ndarray:
    """Write each frame's index k into two 16x16 grey squares at the top left: units
    (20 + 20 (k % 10)) and tens (20 + 20 (k // 10))."""
    out = frames.copy()
    for k in range(len(out)):
        out[k, :16, :16] = 20 + 20 * (k % 10)
        out[k, :16, 16:32] = 20 + 20 * (k // 10)
    return out


def _read_stamps(path) -> np.ndarray:
    frames, _ = media.read_video(path)
    units = np.rint((frames[:, 4:12, 4:12].mean(axis=(1, 2, 3)) - 20) / 20).astype(int)
    tens = np.rint((frames[:, 4:12, 20:28].mean(axis=(1, 2, 3)) - 20) / 20).astype(int)
    return 10 * tens + units


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("lipsync")
    utt = synthesize(SPEECH, Voice(variant="m3"))
    n = len(utt.wav) // 640
    mouth = mouth_trajectory(utt.phonemes, n, lead_frames=0.0)
    frames = _stamp(render_clip(FaceIdentity.sample(np.random.default_rng(0)), mouth, seed=0,
                                size=160).frames)
    wav = utt.wav[: n * 640]
    blanked = frames.copy()
    blanked[30:40] = 0
    files = {
        "root": root, "frames": frames, "wav": wav, "n": n,
        "talk": media.write_video(root / "talk.mp4", frames, audio=wav),
        "short": media.write_video(root / "short.mp4", frames[:12]),  # no audio stream
        "talk30": media.write_video(root / "talk30.mp4", frames[:45], fps=30),
        "blanked": media.write_video(root / "blanked.mp4", blanked, audio=wav),
        "noface": media.write_video(root / "noface.mp4", np.full((20, 160, 160, 3), 128, np.uint8),
                                    audio=wav[:20 * 640]),
        "silent": media.write_wav(root / "silent.wav", np.zeros(2 * SR, np.float32), SR),
        "speech": media.write_wav(root / "speech.wav", wav, SR),
    }
    cv2.imwrite(str(root / "still.png"), frames[0][..., ::-1])
    files["still"] = root / "still.png"
    (root / "garbage.wav").write_bytes(b"this is not a sound file\n" * 100)
    files["garbage"] = root / "garbage.wav"
    return files


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Wav2Lip(width=WIDTH).eval()


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    """The tiny generator saved as a book checkpoint, in a folder like a training product's."""
    folder = tmp_path_factory.mktemp("product")
    save_checkpoint(folder / "G", model)
    return folder / "G.json"


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


def run(*args) -> int:
    return cli.main(["lipsync", *map(str, args), "--quiet"])


def leftovers(folder, name: str) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}")]


# --------------------------------------------------------------------------- indices and masks
def test_pingpong_index_goes_back_and_forth():
    assert [pingpong_index(i, 4) for i in range(12)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert [pingpong_index(i, 1) for i in range(3)] == [0, 0, 0]
    assert [pingpong_index(i, 2) for i in range(5)] == [0, 1, 0, 1, 0]
    assert list(pingpong_index(np.arange(6), 10)) == list(range(6))  # long enough: straight
    with pytest.raises(ValueError):
        pingpong_index(0, 0)


def test_inference_mel_windows_have_no_shift_and_the_last_is_right_aligned():
    # floor(80 i / 25) = 0, 3, 6, 9, 12, 16, 19, 22, 25, 28; 40 columns: the last start is 24.
    assert list(mel_chunk_starts(10, 40)) == [0, 3, 6, 9, 12, 16, 19, 22, 24, 24]
    assert all(mel_chunk_starts(30, 200)[i] == mel_start_index(i) for i in range(30))
    mel = np.tile(np.arange(40, dtype=np.float32), (80, 1))  # column value = column index
    chunks = mel_chunks(mel, np.arange(10))
    assert chunks.shape == (10, 1, 80, MEL_WINDOW) and chunks.dtype == np.float32
    assert np.array_equal(chunks[5, 0, 0], np.arange(16, 32))  # frame 5: no -1-frame shift
    assert mel_start_index(5 - 1) == 12  # (training would start one video frame earlier)
    assert np.array_equal(chunks[9, 0, 0], np.arange(24, 40))  # past the end: the last 16
    with pytest.raises(ValueError):
        mel_chunk_starts(3, MEL_WINDOW - 1)


def test_blockwise_mel_equals_the_whole_signal_mel():
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(3 * SR + 123)).astype(np.float32)
    whole = wav2lip_mel(wav)
    for block in (7, 50, 240):
        assert np.allclose(inference_mel(wav, block=block), whole, atol=1e-5)


def test_feather_mask_is_zero_at_the_borders_and_one_over_the_mouth():
    mask = feather_mask(80, 64)
    assert mask.shape == (80, 64) and mask.dtype == np.float32
    assert mask.min() >= 0 and mask.max() == pytest.approx(1.0)
    for edge in (mask[0], mask[-1], mask[:, 0], mask[:, -1]):
        assert np.all(edge == 0)
    assert np.all(mask[: int(0.25 * 80)] == 0)  # upper face: the original's
    assert mask[int(0.7 * 80), 32] == pytest.approx(1.0)  # mouth: the generator's
    assert np.allclose(mask, mask[:, ::-1])  # symmetric
    column = mask[:, 32]
    peak = int(np.argmax(column))
    assert np.all(np.diff(column[:peak + 1]) >= 0) and np.all(np.diff(column[peak:]) <= 0)


def test_paste_changes_only_the_inside_of_the_box():
    frame = np.zeros((60, 80, 3), np.uint8)
    white = np.full((96, 96, 3), 255, np.uint8)
    out = paste_face(frame, white, (10, 5, 50, 55))
    assert out is not frame and np.all(frame == 0)
    outside = np.ones((60, 80), bool)
    outside[5:55, 10:50] = False
    assert np.all(out[outside] == 0)
    assert np.all(out[5, 10:50] == 0) and np.all(out[54, 10:50] == 0)  # box border rows
    assert np.all(out[40, 30] == 255)  # mouth region


# --------------------------------------------------------------------------- end to end
def test_video_face_end_to_end(clips, model, detector, tmp_path):
    out = tmp_path / "out.mp4"
    report = lipsync(clips["talk"], clips["speech"], out, model, progress=False, detector=detector)
    n = clips["n"]
    assert report.frames == n == len(clips["wav"]) // 640
    assert report.no_face_frames == 0 and not report.still and report.face_frames == n
    assert report.duration_s == pytest.approx(n / 25)
    assert report.fps > 0 and report.seconds > 0
    info = media.probe(out)
    assert info.has_audio and info.n_frames == n and info.audio_sr == SR
    assert info.video_duration == pytest.approx(n / 25, abs=1e-3)
    assert info.audio_duration == pytest.approx(n / 25, abs=0.01)
    assert list(_read_stamps(out)) == list(range(n))  # frame for frame, corner untouched
    written, _ = media.read_video(out)
    diff = np.abs(written.astype(int) - clips["frames"].astype(int)).mean(axis=(0, 3))
    assert diff[:30].mean() < 4  # above the face box: unchanged (up to H.264)
    assert diff[100:125, 60:100].mean() > 8  # the mouth: generated (random weights)
    assert leftovers(tmp_path, "out.mp4") == []


def test_still_image_face(clips, model, detector, tmp_path):
    out = tmp_path / "still.mp4"
    report = lipsync(clips["still"], clips["talk"], out, model, progress=False, detector=detector)
    assert report.still and report.face_frames == 1 and report.frames == clips["n"]
    assert report.no_face_frames == 0
    assert set(_read_stamps(out)) == {0}
    assert media.probe(out).n_frames == clips["n"]


def test_short_face_video_plays_back_and_forth(clips, model, detector, tmp_path, monkeypatch):
    # A cache of one batch: going backwards must seek and decode again.
    monkeypatch.setattr(infer, "FRAME_CACHE_BYTES", 1)
    out = tmp_path / "pingpong.mp4"
    report = lipsync(clips["short"], clips["talk"], out, model, progress=False, batch_size=5,
                     detector=detector)
    n = clips["n"]
    assert report.frames == n and report.face_frames == 12
    assert list(_read_stamps(out)) == [pingpong_index(i, 12) for i in range(n)]


def test_a_30_fps_face_video_is_resampled_by_timestamps(clips, model, detector, tmp_path):
    out = tmp_path / "from30.mp4"
    report = lipsync(clips["talk30"], clips["speech"], out, model, progress=False,
                     detector=detector)
    assert report.source_fps == pytest.approx(30.0)
    face_frames = math.ceil(45 / 30 * 25 - 1e-6)  # 1.5 s at 25 fps = 38 frames (37.5 rounded up)
    assert report.face_frames == face_frames
    expected = [math.floor(pingpong_index(i, face_frames) * 30 / 25) for i in range(clips["n"])]
    assert list(_read_stamps(out)) == expected


def test_frames_without_a_face_pass_through_and_are_counted(clips, model, detector, tmp_path):
    out = tmp_path / "blanked_out.mp4"
    report = lipsync(clips["blanked"], clips["speech"], out, model, progress=False,
                     detector=detector)
    assert report.no_face_frames == 10 and report.frames == clips["n"]
    assert report.face_track["no_face"] == 10
    written, _ = media.read_video(out)
    assert written[30:40].max() <= 3  # black in, black out: nothing pasted
    assert written[20].max() > 100


def test_a_failure_mid_stream_leaves_no_output(clips, tmp_path):
    class Broken(torch.nn.Module):
        calls = 0

        def forward(self, audio, face):
            Broken.calls += 1
            if Broken.calls > 1:
                raise RuntimeError("boom")
            return face[:, 3:]

    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        lipsync(clips["talk"], clips["speech"], out, Broken(), progress=False, batch_size=8)
    assert not out.exists() and leftovers(tmp_path, "broken.mp4") == []


# --------------------------------------------------------------------------- the command line
def test_cli_with_a_book_checkpoint_or_its_folder(clips, weights, tmp_path, capsys):
    out = tmp_path / "cli.mp4"
    assert run("--face", clips["talk"], "--audio", clips["speech"], "-o", out, "--weights",
               weights, "--batch-size", "32", "--nosmooth", "--pads", "0", "5", "2", "2") == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and f"{clips['n']} frames" in printed and "Wav2Lip(width=" in printed
    assert media.probe(out).n_frames == clips["n"]
    folder_out = tmp_path / "cli_folder.mkv"
    assert run("--face", clips["still"], "--audio", clips["talk"], "-o", folder_out,
               "--weights", weights.parent, "--precision", "bf16") == 0
    assert media.probe(folder_out).n_frames == clips["n"]


def test_cli_without_weights_says_where_they_come_from(clips, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(infer.ENV_WEIGHTS, raising=False)
    assert run("--face", clips["talk"], "--audio", clips["speech"], "-o",
               tmp_path / "x.mp4") == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--weights" in err and "chapter 04" in err and "wav2lip.pth" in err
    assert not (tmp_path / "x.mp4").exists()


def test_cli_weights_that_are_not_a_generator(clips, tmp_path, capsys):
    bogus = tmp_path / "wav2lip.pth"
    torch.save({"state_dict": {"module.not_a_layer": torch.zeros(1)}}, bogus)
    assert run("--face", clips["talk"], "--audio", clips["speech"], "-o", tmp_path / "x.mp4",
               "--weights", bogus) == cli.EXIT_INPUT
    assert "not a state dict of the full-size Wav2Lip generator" in capsys.readouterr().err
    assert run("--face", clips["talk"], "--audio", clips["speech"], "-o", tmp_path / "x.mp4",
               "--weights", tmp_path / "missing.pth") == cli.EXIT_INPUT


def test_cli_refuses_an_output_that_is_an_input(clips, weights, capsys):
    for face, audio in ((clips["talk"], clips["speech"]), (clips["still"], clips["talk"])):
        assert run("--face", face, "--audio", audio, "-o", clips["talk"],
                   "--weights", weights, "--force") == cli.EXIT_USAGE
        assert "not an input" in capsys.readouterr().err


def test_cli_existing_output_needs_force(clips, weights, tmp_path, capsys, monkeypatch):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"old")
    assert run("--face", clips["still"], "--audio", clips["speech"], "-o", out,
               "--weights", weights) == cli.EXIT_OUTPUT
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"old"
    monkeypatch.setenv(infer.ENV_WEIGHTS, str(weights))  # the weights from the environment
    assert run("--face", clips["still"], "--audio", clips["speech"], "-o", out, "--force") == 0
    assert media.probe(out).n_frames == clips["n"]
    assert str(weights) in capsys.readouterr().out


def test_cli_no_face_anywhere_is_an_input_error_and_writes_nothing(clips, weights, tmp_path,
                                                                    capsys):
    out = tmp_path / "noface_out.mp4"
    assert run("--face", clips["noface"], "--audio", clips["speech"], "-o", out,
               "--weights", weights) == cli.EXIT_INPUT
    assert "no face" in capsys.readouterr().err
    assert not out.exists() and leftovers(tmp_path, "noface_out.mp4") == []


@pytest.mark.parametrize("audio, words", [("garbage", "cannot read the audio"),
                                          ("silent", "silent"),
                                          ("short", "no audio stream")])
def test_cli_unusable_audio(clips, weights, tmp_path, capsys, audio, words):
    out = tmp_path / "a.mp4"
    assert run("--face", clips["still"], "--audio", clips[audio], "-o", out,
               "--weights", weights) == cli.EXIT_INPUT
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_bad_options_are_usage_errors(clips, model, tmp_path):
    for kwargs in ({"pads": (0, 10, 0)}, {"batch_size": 0}, {"precision": "fp16"},
                   {"device": "nonsense"}):
        with pytest.raises(LipsyncError) as err:
            lipsync(clips["still"], clips["speech"], tmp_path / "o.mp4", model, progress=False,
                    **kwargs)
        assert err.value.exit_code == cli.EXIT_USAGE
    with pytest.raises(LipsyncError):
        lipsync(clips["still"], clips["speech"], tmp_path / "o.txt", model, progress=False)
