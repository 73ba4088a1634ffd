"""Tests for avlib.audio: each feature against an independent plain-numpy computation.

The references below are written from the published definitions (explicit reflect padding,
framing, periodic hann, np.fft.rfft, a hand-built Slaney filterbank), not by calling avlib.
SyncNet MFCCs are checked against python_speech_features itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import python_speech_features as psf
import scipy.signal
import torch

from avlib import audio as A

SR = 16000


# ---------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------
def noise(seconds: float, seed: int = 0, amp: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(amp * rng.standard_normal(int(round(seconds * SR))), -1, 1).astype(np.float32)


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speech_like(seconds: float = 1.0, seed: int = 1) -> np.ndarray:
    """Voiced harmonics with a gliding f0 and formant-ish weights, 4 Hz syllables, a fricative
    burst and a stretch of digital silence (exercises the log floors)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    f0 = 110 + 25 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formants = np.array([700.0, 1200.0, 2600.0])
    voiced = np.zeros(n)
    for k in range(1, 40):
        weight = np.exp(-(((k * f0[:, None]) - formants[None, :]) ** 2) / (2 * 150.0**2)).sum(1) + 0.05
        voiced += weight * np.sin(k * phase) / k**0.5
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    wav = 0.15 * voiced * envelope
    burst = slice(int(0.55 * n), int(0.65 * n))
    wav[burst] += 0.1 * rng.standard_normal(burst.stop - burst.start)
    wav[int(0.8 * n) : int(0.9 * n)] = 0.0
    return np.clip(wav, -1, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Independent references (plain numpy)
# ---------------------------------------------------------------------------------------------
def ref_hz_to_slaney(f):
    f = np.asarray(f, dtype=np.float64)
    lin = 3.0 * f / 200.0
    log = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def ref_slaney_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = 200.0 * m / 3.0
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def ref_slaney_filterbank(n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """torchaudio melscale_fbanks(norm='slaney', mel_scale='slaney') written out: triangles on
    linspace(0, sr/2, n_fft//2+1) between Slaney-mel-spaced points, scaled by 2/(f[i+2]-f[i])."""
    freqs = np.linspace(0, SR / 2, n_fft // 2 + 1)
    pts = ref_slaney_to_hz(np.linspace(ref_hz_to_slaney(fmin), ref_hz_to_slaney(fmax), n_mels + 2))
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, mid, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (freqs - lo) / (mid - lo)
        down = (hi - freqs) / (hi - mid)
        fb[i] = np.maximum(0.0, np.minimum(up, down)) * 2.0 / (hi - lo)
    return fb


def ref_stft_mag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred |STFT| with reflect padding, periodic hann, explicit framing: (n_fft//2+1, T)."""
    padded = np.pad(np.asarray(x, dtype=np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (padded.size - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([padded[i * hop : i * hop + n_fft] for i in range(n_frames)])
    return np.abs(np.fft.rfft(frames * window, axis=1)).T


def ref_preemphasis(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])


def ref_w2l_normalise(mel: np.ndarray) -> np.ndarray:
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4)


def ref_wav2lip_mel(x: np.ndarray, preemph: bool = True) -> np.ndarray:
    y = ref_preemphasis(x) if preemph else np.asarray(x, dtype=np.float64)
    mel = ref_slaney_filterbank(800, 80, 55, 7600) @ ref_stft_mag(y, 800, 200)
    return ref_w2l_normalise(mel)


def ref_vcagan(x: np.ndarray, fmax: float, highpass: bool):
    y = np.asarray(x, dtype=np.float64)
    if highpass:
        b, a = scipy.signal.butter(7, 55 / 8000, "high")
        y = scipy.signal.filtfilt(b, a, y)
    y = np.clip(ref_preemphasis(y / np.abs(y).max() * 0.9), -1, 1)
    mag = ref_stft_mag(y, 640, 160)
    mel = ref_slaney_filterbank(640, 80, 55, fmax) @ mag
    ln1e5 = math.log(1e-5)
    mel_n = (np.log(np.maximum(mel, 1e-5)) - ln1e5) / (-ln1e5 / 2) - 1
    return mel_n, mag


def ref_slaney_centres(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    return ref_slaney_to_hz(np.linspace(ref_hz_to_slaney(fmin), ref_hz_to_slaney(fmax), n_mels + 2))[1:-1]


# ---------------------------------------------------------------------------------------------
# Filterbank equivalence (librosa Slaney == torchaudio Slaney)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_fft,fmax", [(800, 7600.0), (640, 7500.0), (640, 7600.0)])
def test_slaney_filterbank_matches_formula(n_fft, fmax):
    ours = A._slaney_mel_basis(n_fft, 80, 55.0, fmax)
    ref = ref_slaney_filterbank(n_fft, 80, 55.0, fmax)
    assert ours.shape == (80, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Wav2Lip / VocaLiST mel
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: noise(1.0), lambda: speech_like(1.3)])
def test_wav2lip_mel_matches_reference(make):
    wav = make()
    mel = A.wav2lip_mel(wav)
    assert mel.dtype == np.float32 and mel.shape == (80, 1 + wav.size // 200)
    np.testing.assert_allclose(mel, ref_wav2lip_mel(wav), atol=2e-5)


def test_wav2lip_mel_uses_reflect_padding_not_zeros():
    # A loud DC-free signal: zero padding (librosa >= 0.10 default) changes the edge frames.
    wav = tone(300.0, 0.5)
    mel = A.wav2lip_mel(wav)
    y = ref_preemphasis(wav)
    padded = np.pad(y, 400, mode="constant")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)
    zero_first = np.abs(np.fft.rfft(padded[:800] * window))
    zero_mel = ref_w2l_normalise(ref_slaney_filterbank(800, 80, 55, 7600) @ zero_first)
    assert np.abs(mel[:, 0] - zero_mel).max() > 0.05
    np.testing.assert_allclose(mel[:, 0], ref_wav2lip_mel(wav)[:, 0], atol=2e-5)


def test_vocalist_mel_has_no_preemphasis():
    wav = speech_like(1.0)
    voc = A.vocalist_mel(wav)
    np.testing.assert_allclose(voc, ref_wav2lip_mel(wav, preemph=False), atol=2e-5)
    assert np.abs(voc - A.wav2lip_mel(wav)).max() > 0.5  # pre-emphasis visibly changes the mel


def test_vocalist_torch_matches_numpy():
    wavs = np.stack([noise(1.0, seed=3), speech_like(1.0), tone(440.0, 1.0)])
    out = A.vocalist_mel_torch(torch.from_numpy(wavs))
    assert out.shape == (3, 80, 81) and out.dtype == torch.float32
    for b in range(3):
        np.testing.assert_allclose(out[b].numpy(), A.vocalist_mel(wavs[b]), atol=1e-4)
    out64 = A.vocalist_mel_torch(torch.from_numpy(wavs.astype(np.float64)))
    assert out64.dtype == torch.float64
    np.testing.assert_allclose(out64[1].numpy(), A.vocalist_mel(wavs[1]), atol=1e-5)


def test_vocalist_torch_is_differentiable():
    wav = torch.from_numpy(noise(0.2, seed=4)[None]).requires_grad_(True)
    A.vocalist_mel_torch(wav).sum().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0


@pytest.mark.parametrize("fn,n_fft,fmax", [
    (A.wav2lip_mel, 800, 7600.0),
    (A.vocalist_mel, 800, 7600.0),
    (A.vcagan_mel, 640, 7500.0),
])
def test_pure_tone_lands_in_the_right_mel_band(fn, n_fft, fmax):
    centres = ref_slaney_centres(80, 55.0, fmax)
    for band in (10, 30, 55):
        mel = fn(tone(float(centres[band]), 0.5))
        inner = mel[:, 3:-3]  # ignore reflect-padded edge frames
        assert int(np.median(np.argmax(inner, axis=0))) == band


def test_wav2lip_value_range_and_floor():
    # The +4 clip needs a mel magnitude of 10; with Slaney-normalised bands even full-scale
    # signals stay well below it, so only the range and the -4 floor are observable.
    for wav in (np.clip(tone(1000.0, 0.5, amp=1.0) * 4, -1, 1), noise(0.5, amp=1.0), speech_like(1.0)):
        mel = A.wav2lip_mel(wav)
        assert mel.min() >= -4 and mel.max() <= 4
    assert np.all(A.wav2lip_mel(np.zeros(8000, dtype=np.float32)) == -4.0)
    np.testing.assert_allclose(ref_w2l_normalise(np.array([10.0, 100.0, 1e-6])), [4.0, 4.0, -4.0])


# ---------------------------------------------------------------------------------------------
# SyncNet MFCC
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make", [lambda: noise(1.0, seed=5), lambda: speech_like(1.16), lambda: noise(0.0125)]
)
def test_syncnet_mfcc_matches_python_speech_features(make):
    wav = make()
    ours = A.syncnet_mfcc(wav)
    ref = psf.mfcc(wav.astype(np.float64) * 32768.0, SR).T
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


def test_syncnet_mfcc_int16_input_used_as_is():
    pcm = (speech_like(1.0) * 32767).astype(np.int16)
    ours = A.syncnet_mfcc(pcm)
    np.testing.assert_allclose(ours, psf.mfcc(pcm, SR).T, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours, A.syncnet_mfcc(pcm.astype(np.float32) / 32768.0), rtol=1e-6, atol=1e-5)


def test_syncnet_mfcc_c0_is_log_energy():
    wav = noise(0.5, seed=6)
    mfcc = A.syncnet_mfcc(wav)
    x = ref_preemphasis(wav.astype(np.float64) * 32768.0)
    first = x[:400]
    energy = np.sum(np.abs(np.fft.rfft(first, 512)) ** 2) / 512
    assert mfcc[0, 0] == pytest.approx(np.log(energy), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Frame counts and bookkeeping
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seconds,n_mel,n_mfcc,n_vca", [(1.0, 81, 99, 101), (3.0, 241, 299, 301), (1.16, 93, 115, 117)]
)
def test_frame_counts(seconds, n_mel, n_mfcc, n_vca):
    wav = noise(seconds, seed=7)
    n = wav.size
    assert (A.num_mel_frames(n), A.num_mfcc_frames(n), A.num_vcagan_frames(n)) == (n_mel, n_mfcc, n_vca)
    assert A.wav2lip_mel(wav).shape[1] == n_mel
    assert A.vocalist_mel(wav).shape[1] == n_mel
    assert A.syncnet_mfcc(wav).shape[1] == n_mfcc == psf.mfcc(wav, SR).shape[0]
    assert n_mfcc == 1 + math.ceil((n - 400) / 160)
    mel, lin = A.vcagan_features(wav)
    assert mel.shape == (80, n_vca) and lin.shape == (321, n_vca)


def test_bookkeeping_constants():
    assert (A.SR, A.FPS, A.SAMPLES_PER_FRAME) == (16000, 25, 640)
    assert (A.MEL_FPS, A.MFCC_FPS, A.VCAGAN_MEL_FPS) == (80, 100, 100)
    assert A.MEL_FRAMES_PER_VIDEO_FRAME == pytest.approx(3.2)
    assert A.MFCC_FRAMES_PER_VIDEO_FRAME == 4
    # 5 video frames <-> 16 mel frames <-> 20 MFCC frames <-> 3200 samples (0.2 s).
    five = A.SYNC_WINDOW_FRAMES
    assert five * A.SAMPLES_PER_FRAME == 3200
    assert five * A.MFCC_FRAMES_PER_VIDEO_FRAME == A.MFCC_WINDOW == 20
    assert five * A.MEL_FRAMES_PER_VIDEO_FRAME == pytest.approx(A.MEL_WINDOW) and A.MEL_WINDOW == 16
    assert 3200 // 200 == A.MEL_WINDOW  # 3200 samples at hop 200


def test_mel_start_index_matches_upstream_float_expression():
    for f in range(10000):
        assert A.mel_start_index(f) == int(80.0 * (f / float(25)))
    # mel column start never lies after the video frame's first sample
    assert all(A.mel_start_index(f) * 200 <= 640 * f for f in range(1000))


def test_windows_slice_the_documented_columns():
    wav = noise(1.0, seed=8)
    mel = A.wav2lip_mel(wav)
    mfcc = A.syncnet_mfcc(wav)
    f = 7
    np.testing.assert_array_equal(A.mel_window(mel, f), mel[:, 22:38])  # floor(3.2*7) = 22
    np.testing.assert_array_equal(A.mfcc_window(mfcc, f), mfcc[:, 28:48])
    np.testing.assert_array_equal(A.audio_window(wav, f), wav[4480:7680])
    assert A.audio_window(wav, f).shape == (3200,)
    # A 3200-sample window has 17 mel frames; VocaLiST training keeps the first 16.
    assert A.vocalist_mel(A.audio_window(wav, f)).shape == (80, 17)


def test_windows_at_the_end():
    wav = noise(1.0, seed=9)  # 25 video frames, 81 mel columns, 99 MFCC columns
    mel = A.wav2lip_mel(wav)
    last_ok = 20  # frames 20..24
    assert A.mel_window(mel, last_ok).shape == (80, 16)  # columns 64..79
    assert A.audio_window(wav, last_ok).shape == (3200,)
    with pytest.raises(ValueError, match="past the end"):
        A.mel_window(mel, 23)
    padded = A.mel_window(mel, 23, at_end="pad")
    np.testing.assert_array_equal(padded[:, :8], mel[:, 73:81])
    assert np.all(padded[:, 8:] == 0.0)
    np.testing.assert_array_equal(A.mel_window(mel, 23, at_end="right_align"), mel[:, -16:])
    mfcc = A.syncnet_mfcc(wav)
    # SyncNet's last evaluated window: lastframe = 25 - 5 = 20, range(0, 20) -> 19 is the last.
    assert A.mfcc_window(mfcc, 19).shape == (13, 20)
    with pytest.raises(ValueError, match="past the end"):
        A.mfcc_window(mfcc, 20)  # needs column 99 of 0..98
    tail = A.audio_window(wav, 22, at_end="pad")
    np.testing.assert_array_equal(tail[:1920], wav[14080:])
    assert np.all(tail[1920:] == 0)
    with pytest.raises(ValueError, match="non-negative"):
        A.mel_window(mel, -1)
    with pytest.raises(ValueError, match="at_end"):
        A.mel_window(mel, 23, at_end="wrap")


# ---------------------------------------------------------------------------------------------
# VCA-GAN
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmax,highpass", [(7500.0, True), (7600.0, False)])
def test_vcagan_features_match_reference(fmax, highpass):
    wav = speech_like(1.2, seed=2)
    mel, lin = A.vcagan_features(wav, fmax=fmax, highpass=highpass)
    ref_mel, ref_mag = ref_vcagan(wav, fmax, highpass)
    np.testing.assert_allclose(mel, ref_mel, atol=2e-5)
    np.testing.assert_allclose(lin, ref_mag, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(A.vcagan_mel(wav, fmax=fmax, highpass=highpass), mel)


def test_vcagan_linear_compressions():
    wav = speech_like(1.0, seed=3)
    _, mag = ref_vcagan(wav, 7500.0, True)
    ln1e5 = math.log(1e-5)
    log_ref = (np.log(np.maximum(mag, 1e-5)) - ln1e5) / (-ln1e5 / 2) - 1
    np.testing.assert_allclose(A.vcagan_linear(wav, linear="log"), log_ref, atol=2e-5)
    unit = (mag - mag.min()) / (mag.max() - mag.min())
    lrs_ref = (np.log(np.maximum(unit, 1e-5)) - ln1e5) / (-ln1e5 / 2) - 1
    lrs = A.vcagan_linear(wav, highpass=True, linear="lrs")
    np.testing.assert_allclose(lrs, lrs_ref, atol=2e-5)
    assert lrs.min() >= -1 and lrs.max() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="linear must be"):
        A.vcagan_linear(wav, linear="db")


def test_vcagan_value_range_and_normalisation():
    mel = A.vcagan_mel(speech_like(1.0))
    assert mel.min() >= -1.0 and mel.max() <= 1.0
    assert np.all(A.vcagan_mel(np.zeros(4000, dtype=np.float32)) == -1.0)  # silence: floor, no NaN
    assert A.vcagan_normalise(math.log(1e-5)) == pytest.approx(-1.0)
    assert A.vcagan_normalise(0.0) == pytest.approx(1.0)
    x = np.linspace(-1, 1.5, 11)
    np.testing.assert_allclose(A.vcagan_normalise(A.vcagan_denormalise(x)), x, atol=1e-12)
    t = torch.linspace(-1, 1, 5)
    assert torch.allclose(A.vcagan_denormalise(t), torch.from_numpy(A.vcagan_denormalise(t.numpy())))


def dominant_frequency(wav: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(wav.size)))
    return float(np.argmax(spec) * SR / wav.size)


def energy_fraction_near(wav: np.ndarray, freq: float, half_width: float = 50.0) -> float:
    power = np.abs(np.fft.rfft(wav * np.hanning(wav.size))) ** 2
    freqs = np.arange(power.size) * SR / wav.size
    return float(power[np.abs(freqs - freq) <= half_width].sum() / power.sum())


def test_griffin_lim_reconstructs_tone_frequency():
    wav = tone(1000.0, 1.0, amp=0.5)
    lin = A.vcagan_linear(wav)
    out = A.griffin_lim(lin, n_iter=30)
    assert out.dtype == np.float32 and out.shape == (160 * (lin.shape[1] - 1),)
    assert np.abs(out).max() <= 1.0
    # Griffin-Lim phase errors smear the line a little (peak within +-10 Hz over seeds).
    assert abs(dominant_frequency(out[1600:-1600]) - 1000.0) <= 10.0
    assert energy_fraction_near(out[1600:-1600], 1000.0) > 0.99
    np.testing.assert_array_equal(out, A.griffin_lim(lin, n_iter=30))  # seeded initial phase


def test_vcagan_mel_to_linear_then_griffin_lim():
    mel = A.vcagan_mel(tone(700.0, 0.5))
    lin = A.vcagan_mel_to_linear(mel)
    assert lin.shape == (321, mel.shape[1]) and np.all(lin >= 0)
    assert abs(int(np.argmax(lin[:, 20])) * 25 - 700) <= 50  # bin spacing 25 Hz
    out = A.griffin_lim(lin, n_iter=20)
    assert abs(dominant_frequency(out[800:-800]) - 700.0) <= 30.0
    assert energy_fraction_near(out[800:-800], 700.0, half_width=100.0) > 0.9


def test_griffin_lim_rejects_bad_input():
    with pytest.raises(ValueError, match="321"):
        A.griffin_lim(np.ones((80, 10)))
    with pytest.raises(ValueError, match="vcagan_denormalise"):
        A.griffin_lim(-np.ones((321, 10)))


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [A.wav2lip_mel, A.vocalist_mel, A.syncnet_mfcc, A.vcagan_mel])
def test_input_validation(fn):
    wav = noise(0.1)
    with pytest.raises(ValueError, match="downmix"):
        fn(np.stack([wav, wav]))
    with pytest.raises(ValueError, match="downmix"):
        fn(np.stack([wav, wav], axis=1))
    with pytest.raises(ValueError, match="reshape"):
        fn(wav[None])
    with pytest.raises(ValueError, match="dtype"):
        fn((wav * 2**31).astype(np.int32))
    bad = wav.copy()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        fn(bad)
    with pytest.raises(ValueError, match="int16-scaled"):
        fn(wav * 32768)
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="numpy array"):
        fn(torch.from_numpy(wav))


def test_short_input_and_int16_for_mels():
    with pytest.raises(ValueError, match="at least 401"):
        A.wav2lip_mel(np.zeros(400, dtype=np.float32))
    pcm = (speech_like(0.5) * 32767).astype(np.int16)
    np.testing.assert_array_equal(A.wav2lip_mel(pcm), A.wav2lip_mel(pcm.astype(np.float64) / 32768.0))


def test_vocalist_torch_validation():
    with pytest.raises(ValueError, match="unsqueeze"):
        A.vocalist_mel_torch(torch.zeros(1000))
    with pytest.raises(ValueError, match="float"):
        A.vocalist_mel_torch(torch.zeros(1, 1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="non-finite"):
        A.vocalist_mel_torch(torch.full((1, 1000), float("nan")))
    with pytest.raises(ValueError, match="torch.Tensor"):
        A.vocalist_mel_torch(np.zeros((1, 1000), dtype=np.float32))


def test_mix_at_snr_sets_the_level_ratio():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=16000)
    noise = rng.normal(size=8000) * 7  # shorter: tiled to the clean length
    for snr in (20, 0, -5):
        mixed = A.mix_at_snr(clean, noise, snr)
        added = mixed - clean
        assert 20 * np.log10(A.rms(clean) / A.rms(added)) == pytest.approx(snr, abs=1e-3)
    assert np.allclose(A.mix_at_snr(clean, np.zeros(10), 0), clean, atol=1e-6)


def test_babble_uses_other_speakers_at_equal_levels():
    rng = np.random.default_rng(0)
    pool = np.stack([np.full(100, float(i + 1)) * (1 if i % 2 else -1) for i in range(6)])
    speakers = ["a", "a", "b", "b", "c", "c"]
    mix = A.babble(pool, 2, rng, exclude=0, speakers=speakers)
    # Each talker is at unit RMS: constant clips of +-1, so the sum of two is -2, 0 or 2.
    assert set(np.round(np.unique(mix), 6)) <= {-2.0, 0.0, 2.0}
    picked = [A.babble(pool, 4, np.random.default_rng(s), exclude=0, speakers=speakers)
              for s in range(5)]
    assert all(np.isfinite(p).all() for p in picked)
    # With more talkers than other speakers' clips, the target's other clips fill in, never itself.
    solo = A.babble(pool[:2], 3, rng, exclude=0, speakers=["a", "a"])
    assert np.allclose(solo, 1.0)  # only clip 1 (+2 scaled to unit RMS) is available
    with pytest.raises(ValueError, match="talkers"):
        A.babble(pool, 0, rng)
