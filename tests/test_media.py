"""Tests for avlib.media: small clips are written into tmp_path with write_video and decoded back."""

from __future__ import annotations

import math
import pickle
import subprocess

import av
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate, resample_poly

from avlib import media
from avlib.media import MediaError

SR = 16000
FPS = 25.0
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def smooth_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Moving low-frequency pattern (RGB uint8 (n, H, W, 3)): H.264-friendly, so PSNR is meaningful."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        lum = 96 + 60 * np.sin((x + 2 * t) / 9) * np.cos((y - t) / 11)
        frames[t, ..., 0] = np.clip(lum + 40 * np.sin(t / 8), 0, 255)
        frames[t, ..., 1] = np.clip(lum, 0, 255)
        frames[t, ..., 2] = np.clip(lum + 30 * x / width, 0, 255)
    return frames


def index_frames(n: int, step: int = 5, size: int = 32) -> np.ndarray:
    """Uniform grey frames whose intensity encodes the frame index: 10 + step * i."""
    values = 10 + step * np.arange(n)
    assert values[-1] <= 250
    return np.broadcast_to(values[:, None, None, None], (n, size, size, 3)).astype(np.uint8)


def decode_index(frames: np.ndarray, step: int = 5) -> np.ndarray:
    """Inverse of index_frames (H.264 keeps flat grey within +-2 levels)."""
    return np.round((frames.reshape(len(frames), -1).mean(axis=1) - 10) / step).astype(int)


def speechlike(n: int, sr: int, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonics plus noise: float32 mono in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(h * phase) / h for h in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    x = 0.25 * envelope * voiced + 0.02 * rng.standard_normal(n)
    return (x / np.abs(x).max() * 0.8).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def lag_of(signal: np.ndarray, reference: np.ndarray) -> int:
    """Samples by which ``signal`` is delayed relative to ``reference`` (argmax of the cross-correlation)."""
    c = correlate(signal, reference, mode="full", method="fft")
    return int(np.argmax(c)) - (len(reference) - 1)


def ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def leftovers(folder, keep) -> list[str]:
    """Files in ``folder`` other than ``keep`` (temporary files left behind)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def av_clip(tmp_path_factory):
    """2 s clip: smooth frames, speech-like audio 1.2345 s (shorter than the video on purpose)."""
    folder = tmp_path_factory.mktemp("av")
    frames = smooth_frames(50)
    audio = speechlike(int(1.2345 * SR), SR)
    path = media.write_video(folder / "clip.mp4", frames, fps=FPS, audio=audio, sr=SR)
    return path, frames, audio


# ----------------------------------------------------------------------------- writing and round trips


def test_video_round_trip_psnr_count_and_probe(av_clip):
    path, frames, audio = av_clip
    decoded, timestamps = media.read_video(path, fps=FPS)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert psnr(decoded, frames) > 30.0
    np.testing.assert_allclose(timestamps, np.arange(50) / FPS)

    info = media.probe(path)
    assert (info.width, info.height, info.n_frames) == (64, 48, 50)
    assert info.fps == pytest.approx(25.0)
    assert info.video_duration == pytest.approx(2.0)
    assert info.has_video and info.has_audio and not info.variable_frame_rate
    assert (info.audio_sr, info.audio_channels) == (SR, 1)
    assert info.audio_duration == pytest.approx(len(audio) / SR, abs=1e-3)
    # The container lasts as long as its longest stream (the audio is stored unpadded).
    assert info.duration == pytest.approx(2.0, abs=0.05)


def test_25fps_passes_through_frame_for_frame(tmp_path):
    path = media.write_video(tmp_path / "idx.mp4", index_frames(40), fps=25)
    frames, _ = media.read_video(path, fps=25)
    np.testing.assert_array_equal(decode_index(frames), np.arange(40))


def test_audio_round_trip_length_and_correlation(av_clip):
    path, _, audio = av_clip
    decoded = media.read_audio(path, sr=SR)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    # AAC decodes whole 1024-sample frames: the tail must be trimmed to the written length.
    assert abs(len(decoded) - len(audio)) <= SR // 1000
    n = min(len(decoded), len(audio))
    assert np.corrcoef(decoded[:n], audio[:n])[0, 1] > 0.98
    assert lag_of(decoded, audio) == 0  # the AAC priming delay is removed


def test_read_av_returns_both_streams_on_one_clock(av_clip):
    path, frames, audio = av_clip
    clip = media.read_av(path)
    assert clip.frames.shape == frames.shape
    assert abs(len(clip.audio) - len(audio)) <= SR // 1000
    assert (clip.fps, clip.sr) == (25.0, SR)
    assert clip.info.n_frames == 50


def test_av_alignment_click_and_flash(tmp_path):
    frames = np.zeros((25, 32, 32, 3), np.uint8)
    frames[10] = 255
    audio = np.zeros(25 * SAMPLES_PER_FRAME, np.float32)
    click = 10 * SAMPLES_PER_FRAME
    audio[click : click + 16] = 0.9
    path = media.write_video(tmp_path / "sync.mp4", frames, audio=audio)

    clip = media.read_av(path)
    flash_frame = int(np.argmax(clip.frames.reshape(25, -1).mean(axis=1)))
    click_time = np.argmax(np.abs(clip.audio)) / SR
    assert flash_frame == 10
    assert abs(click_time - flash_frame / FPS) <= 0.005


def test_audio_placed_by_timestamps_when_it_starts_late(tmp_path):
    """An audio stream that starts 0.2 s after the video is preceded by silence, not pulled to zero."""
    audio = np.zeros(SR, np.float32)
    audio[4000:4016] = 0.9
    wav = media.write_wav(tmp_path / "click.wav", audio, SR)
    video = media.write_video(tmp_path / "v.mp4", np.zeros((25, 32, 32, 3), np.uint8))
    late = tmp_path / "late.mp4"
    ffmpeg("-i", str(video), "-itsoffset", "0.2", "-i", str(wav), "-map", "0:v", "-map", "1:a",
           "-c:v", "copy", "-c:a", "aac", str(late))
    decoded = media.read_audio(late)
    assert abs(np.argmax(np.abs(decoded)) - (4000 + 3200)) <= 80
    assert np.abs(decoded[:3000]).max() < 0.01
    assert abs(len(decoded) - (SR + 3200)) <= SR // 1000


def test_write_wav_round_trip_and_clipping(tmp_path):
    audio = speechlike(8000, SR)
    audio[100] = 1.7  # beyond full scale: clipped, not wrapped around
    path = media.write_wav(tmp_path / "x.wav", audio, SR)
    back, sr = sf.read(path, dtype="float32")
    assert sr == SR and len(back) == len(audio)
    assert back[100] == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(np.delete(back, 100), np.delete(audio, 100), atol=1e-4)
    np.testing.assert_allclose(media.read_audio(path), back, atol=1e-6)


def test_odd_frame_size_raises_or_pads(tmp_path):
    frames = np.full((5, 33, 47, 3), 100, np.uint8)
    with pytest.raises(ValueError, match="even width and height"):
        media.write_video(tmp_path / "odd.mp4", frames)
    path = media.write_video(tmp_path / "odd.mp4", frames, pad_odd=True)
    decoded, _ = media.read_video(path)
    assert decoded.shape == (5, 34, 48, 3)
    assert np.abs(decoded.astype(int) - 100).max() <= 3


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        media.write_video(tmp_path / "f.mp4", np.zeros((3, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        media.write_video(tmp_path / "f.mp4", np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="mono"):
        media.write_video(tmp_path / "f.mp4", np.zeros((3, 16, 16, 3), np.uint8), audio=np.zeros((100, 2)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        media.write_video(tmp_path / "nope" / "f.mp4", np.zeros((3, 16, 16, 3), np.uint8))
    assert leftovers(tmp_path, set()) == []


def test_write_video_accepts_a_frame_generator(tmp_path):
    frames = index_frames(12)
    path = media.write_video(tmp_path / "gen.mp4", (f for f in frames))
    decoded, _ = media.read_video(path)
    np.testing.assert_array_equal(decode_index(decoded), np.arange(12))


# ----------------------------------------------------------------------------- frame-rate conversion


@pytest.mark.parametrize("src_fps, n_src", [(30.0, 30), (50.0, 40), (30000 / 1001, 30)])
def test_frame_rate_conversion_to_25(tmp_path, src_fps, n_src):
    path = media.write_video(tmp_path / "src.mp4", index_frames(n_src), fps=src_fps)
    info = media.probe(path)
    assert info.fps == pytest.approx(src_fps, rel=1e-4) and not info.variable_frame_rate

    frames, timestamps = media.read_video(path, fps=25)
    duration = n_src / src_fps
    assert len(frames) == math.ceil(duration * 25 - 1e-6)
    # Output frame k shows the source frame on screen at k / 25 (nearest earlier).
    expected = np.floor(np.arange(len(frames)) * src_fps / 25 + 1e-6).astype(int)
    np.testing.assert_array_equal(decode_index(frames), expected)
    np.testing.assert_allclose(timestamps, np.arange(len(frames)) / 25)


def test_variable_frame_rate_detected_and_converted(tmp_path):
    n = 24
    cfr = media.write_video(tmp_path / "cfr.mp4", index_frames(n), fps=25)
    # Irregular intervals 29, 58, 62 ms repeating; millisecond time base so the times are exact.
    starts_ms = np.array([(i // 3) * 149 + (0, 29, 87)[i % 3] for i in range(n)])
    vfr = tmp_path / "vfr.mp4"
    ffmpeg("-i", str(cfr),
           "-vf", r"settb=1/1000,setpts='floor(N/3)*149+eq(mod(N,3)\,1)*29+eq(mod(N,3)\,2)*87'",
           "-fps_mode", "passthrough", "-enc_time_base", "1/1000", "-video_track_timescale", "1000",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", str(vfr))

    assert not media.probe(cfr).variable_frame_rate
    info = media.probe(vfr)
    assert info.variable_frame_rate and info.n_frames == n

    frames, _ = media.read_video(vfr, fps=25)
    assert len(frames) == math.ceil(info.video_duration * 25 - 1e-6)
    out_ms = np.arange(len(frames)) * 40
    # The design keeps every source start >= 3 ms away from an output instant (except at 0),
    # so the expected choice does not hinge on rounding.
    gaps = np.abs(starts_ms[1:, None] - out_ms[None, :])
    assert gaps.min() >= 3
    expected = np.searchsorted(starts_ms, out_ms, side="right") - 1
    np.testing.assert_array_equal(decode_index(frames), expected)


def test_iter_video_streams_same_frames_and_seeks(av_clip):
    path, _, _ = av_clip
    full, _ = media.read_video(path)
    stream = media.iter_video(path)
    assert iter(stream) is stream  # a generator, not a list
    items = list(stream)
    assert [i for i, _ in items] == list(range(50))
    np.testing.assert_array_equal(np.stack([f for _, f in items]), full)

    tail = list(media.iter_video(path, start_frame=37))
    assert [i for i, _ in tail] == list(range(37, 50))
    np.testing.assert_array_equal(np.stack([f for _, f in tail]), full[37:])
    assert list(media.iter_video(path, start_frame=50)) == []


def test_iter_video_seek_past_a_keyframe(tmp_path):
    """x264 puts a keyframe near frame 250: starting after it must seek, not decode from 0."""
    n = 270
    frames = np.zeros((n, 32, 32, 3), np.uint8)
    frames[:, :, :16] = (np.arange(n) % 50 * 5)[:, None, None, None]  # left half: index mod 50
    frames[:, :, 16:] = (np.arange(n) // 50 * 40)[:, None, None, None]  # right half: index // 50
    path = media.write_video(tmp_path / "long.mp4", frames)
    with av.open(str(path)) as container:
        keyframes = [p.pts for p in container.demux(video=0) if p.size and p.is_keyframe]
    assert len(keyframes) >= 2

    tail = list(media.iter_video(path, start_frame=260))
    assert [i for i, _ in tail] == list(range(260, n))
    got = np.stack([f for _, f in tail]).astype(int)
    assert np.abs(got - frames[260:]).max() <= 6


def test_size_guards(av_clip):
    path, _, _ = av_clip
    with pytest.raises(MediaError) as err:
        media.read_video(path, max_pixels=32 * 32)
    assert err.value.reason == "too_large" and "max_side" in str(err.value)
    frames, _ = media.read_video(path, max_pixels=32 * 32, max_side=32)
    assert frames.shape == (50, 24, 32, 3)
    with pytest.raises(MediaError) as err:
        media.read_video(path, max_bytes=1000)
    assert err.value.reason == "too_large" and "iter_video" in str(err.value)


# ----------------------------------------------------------------------------- other audio formats


def test_stereo_44k_wav_read_as_16k_mono(tmp_path):
    sr = 44100
    left, right = speechlike(sr, sr, seed=1), speechlike(sr, sr, seed=2)
    path = media.write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), sr, subtype="FLOAT")
    info = media.probe(path)
    assert (info.has_video, info.audio_sr, info.audio_channels) == (False, sr, 2)

    mono = media.read_audio(path, sr=SR)
    assert mono.dtype == np.float32 and len(mono) == SR
    native = media.read_audio(path, sr=None)
    np.testing.assert_allclose(native, (left + right) / 2, atol=1e-6)
    reference = resample_poly((left.astype(np.float64) + right) / 2, 160, 441)
    np.testing.assert_allclose(mono, reference, atol=1e-5)


def test_stereo_48k_aac_in_mp4_read_as_16k_mono(tmp_path):
    sr = 48000
    left = speechlike(sr, sr, seed=3)
    stereo = np.stack([left, 0.5 * left], axis=1)
    wav = media.write_wav(tmp_path / "st48.wav", stereo, sr, subtype="FLOAT")
    video = media.write_video(tmp_path / "v.mp4", np.zeros((25, 32, 32, 3), np.uint8))
    mp4 = tmp_path / "st48.mp4"
    ffmpeg("-i", str(video), "-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
           "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2", str(mp4))
    info = media.probe(mp4)
    assert (info.audio_sr, info.audio_channels) == (sr, 2)

    mono = media.read_audio(mp4, sr=SR)
    assert abs(len(mono) - SR) <= SR // 1000
    reference = resample_poly(0.75 * left.astype(np.float64), 1, 3)
    n = min(len(mono), len(reference))
    assert np.corrcoef(mono[:n], reference[:n])[0, 1] > 0.98
    assert lag_of(mono, reference) == 0


# ----------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(MediaError) as err:
        media.probe(tmp_path / "absent.mp4")
    assert err.value.reason == "missing" and "not found" in str(err.value)
    assert err.value.path == str(tmp_path / "absent.mp4")
    # Corpus workers send errors between processes: reason and path must survive pickling.
    copy = pickle.loads(pickle.dumps(err.value))
    assert (copy.reason, copy.path, str(copy)) == (err.value.reason, err.value.path, str(err.value))
    with pytest.raises(ValueError, match="unknown MediaError reason"):
        MediaError("odd", "message")


def test_text_file_renamed_mp4_is_not_media(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are lecture notes, not a video\n" * 20)
    for reader in (media.probe, media.read_video, media.read_audio):
        with pytest.raises(MediaError) as err:
            reader(path)
        assert err.value.reason == "not_media"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError) as err:
        media.read_video(empty)
    assert err.value.reason == "not_media" and "empty" in str(err.value)


def test_truncated_and_corrupt_files(tmp_path):
    rng = np.random.default_rng(0)
    # Noise makes the video data large, so a cut lands in the middle of the frames.
    frames = rng.integers(0, 256, (25, 48, 64, 3), dtype=np.uint8)
    path = media.write_video(tmp_path / "full.mp4", frames, audio=speechlike(SR, SR))
    data = path.read_bytes()

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    for reader in (media.probe, media.read_video, media.read_audio, media.read_av):
        with pytest.raises(MediaError) as err:
            reader(cut)
        assert err.value.reason == "truncated", reader.__name__
    with pytest.raises(MediaError) as err:
        next(media.iter_video(cut))
    assert err.value.reason == "truncated"

    # Cut inside the header: recognisably an mp4, but no usable stream.
    header_only = tmp_path / "header.mp4"
    header_only.write_bytes(data[:200])
    with pytest.raises(MediaError) as err:
        media.read_video(header_only)
    assert err.value.reason == "corrupt"

    # An mp4 signature followed by garbage.
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(data[:12] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError) as err:
        media.read_video(garbage)
    assert err.value.reason == "corrupt"


def test_video_without_audio(tmp_path):
    path = media.write_video(tmp_path / "silent.mp4", index_frames(10))
    assert not media.probe(path).has_audio
    for reader in (media.read_audio, media.read_av):
        with pytest.raises(MediaError) as err:
            reader(path)
        assert err.value.reason == "no_audio"


def test_audio_only_file(tmp_path):
    wav = media.write_wav(tmp_path / "a.wav", speechlike(SR, SR), SR)
    m4a = tmp_path / "a.m4a"
    ffmpeg("-i", str(wav), "-c:a", "aac", str(m4a))
    for path in (wav, m4a):
        info = media.probe(path)
        assert info.has_audio and not info.has_video and info.n_frames == 0
        assert abs(len(media.read_audio(path)) - SR) <= SR // 1000
        for reader in (media.read_video, media.read_av):
            with pytest.raises(MediaError) as err:
                reader(path)
            assert err.value.reason == "no_video"
        with pytest.raises(MediaError) as err:
            next(media.iter_video(path))
        assert err.value.reason == "no_video"


# ----------------------------------------------------------------------------- remux with shifted audio


@pytest.fixture(scope="module")
def remux_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("remux")
    audio = speechlike(2 * SR, SR, seed=5)
    path = media.write_video(folder / "src.mp4", smooth_frames(50), audio=audio)
    return path, media.read_audio(path)


@pytest.mark.parametrize("shift_frames", [2.5, -3.0])
def test_remux_shift_is_exact_and_video_untouched(tmp_path, remux_source, shift_frames):
    src, reference = remux_source
    dst = media.remux_with_shifted_audio(src, tmp_path / "shifted.mp4", shift_frames, fps=FPS)

    shifted = media.read_audio(dst)
    expected_lag = shift_frames * SAMPLES_PER_FRAME  # positive shift = audio later than video
    assert abs(lag_of(shifted, reference) - expected_lag) <= SR // 1000
    assert abs(len(shifted) - len(reference)) <= SR // 1000  # duration kept

    def video_packets(path):
        with av.open(str(path)) as container:
            return [(p.pts, bytes(p)) for p in container.demux(video=0) if p.size]

    assert video_packets(dst) == video_packets(src)
    assert leftovers(tmp_path, {"shifted.mp4"}) == []


def test_remux_requires_audio(tmp_path):
    src = media.write_video(tmp_path / "silent.mp4", index_frames(10))
    with pytest.raises(MediaError) as err:
        media.remux_with_shifted_audio(src, tmp_path / "out.mp4", 1)
    assert err.value.reason == "no_audio"
    assert leftovers(tmp_path, {"silent.mp4"}) == []


# ----------------------------------------------------------------------------- atomic writes


def test_failed_writes_leave_nothing_behind(tmp_path):
    dst = tmp_path / "clip.mp4"
    media.write_video(dst, index_frames(5))
    before = dst.read_bytes()

    def frames_then_crash():
        yield from index_frames(5)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        media.write_video(dst, frames_then_crash(), audio=speechlike(SR, SR))
    # ffmpeg itself failing (invalid bit rate) is reported with its message.
    with pytest.raises(MediaError) as err:
        media.write_video(dst, index_frames(5), audio=speechlike(SR, SR), audio_bitrate="lots")
    assert err.value.reason == "encode_failed" and "ffmpeg" in str(err.value)
    # A frame of the wrong size part-way through the stream.
    bad = [np.zeros((32, 32, 3), np.uint8)] * 3 + [np.zeros((16, 16, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 3"):
        media.write_video(dst, bad)
    with pytest.raises(Exception):
        media.write_wav(tmp_path / "x.wav", speechlike(100, SR), SR, subtype="NOT_A_SUBTYPE")

    assert dst.read_bytes() == before  # the previous complete file survives
    assert leftovers(tmp_path, {"clip.mp4"}) == []
