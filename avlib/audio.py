"""Audio features with the official definitions of SyncNet, Wav2Lip, VocaLiST, VCA-GAN and MMAB.

Every feature function takes mono audio at 16 kHz: ``float32``/``float64`` in [-1, 1] or
``int16`` PCM (converted to float by /32768, except :func:`syncnet_mfcc`, which works on the
int16 scale as SyncNet does). Outputs are ``float32`` with shape ``(channels, frames)``.

Frame-rate bookkeeping (video at 25 fps, audio at 16 kHz)
---------------------------------------------------------
=========================  ==========  =======================  ======================
feature                    rate        per video frame          5-frame sync window
=========================  ==========  =======================  ======================
samples                    16000 Hz    640 samples              3200 samples
Wav2Lip / VocaLiST mel     80 Hz       3.2 mel frames           16 mel frames
SyncNet MFCC               100 Hz      4 MFCC frames            20 MFCC frames
VCA-GAN mel / linear       100 Hz      4 frames                 20 frames
MMAB mel                   100 Hz      4 frames                 20 frames
=========================  ==========  =======================  ======================

Video frame ``f`` starts at sample ``640 f``, Wav2Lip/VocaLiST mel column ``floor(3.2 f)`` and
MFCC column ``4 f`` (the MFCC frame ``4 f`` starts at sample ``160 * 4 f = 640 f``).

Frame counts for ``N`` samples: mel (hop 200, centred) ``1 + N // 200``; VCA-GAN (hop 160,
centred) ``1 + N // 160``; MMAB (hop 160, centred, last frame dropped) ``N // 160``; MFCC (25 ms
frames every 10 ms, no centring, last frame zero-padded) ``1 + ceil((N - 400) / 160)`` (1 if
``N <= 400``). E.g. 1 s: 81 mel, 99 MFCC, 101 VCA-GAN, 100 MMAB frames.
"""

from __future__ import annotations

import math
from functools import lru_cache

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import torch

__all__ = [
    "SR",
    "FPS",
    "SAMPLES_PER_FRAME",
    "MEL_FPS",
    "MEL_FRAMES_PER_VIDEO_FRAME",
    "MEL_WINDOW",
    "MFCC_FPS",
    "MFCC_FRAMES_PER_VIDEO_FRAME",
    "MFCC_WINDOW",
    "VCAGAN_MEL_FPS",
    "SYNC_WINDOW_FRAMES",
    "VCAGAN_FMAX_GRID",
    "VCAGAN_FMAX_LRS",
    "num_mel_frames",
    "num_mfcc_frames",
    "num_vcagan_frames",
    "mel_start_index",
    "mel_window",
    "mfcc_window",
    "audio_window",
    "wav2lip_mel",
    "vocalist_mel",
    "vocalist_mel_torch",
    "syncnet_mfcc",
    "vcagan_features",
    "vcagan_mel",
    "vcagan_linear",
    "vcagan_normalise",
    "vcagan_denormalise",
    "vcagan_mel_to_linear",
    "griffin_lim",
    "mmab_mel",
]

# ---------------------------------------------------------------------------------------------
# Bookkeeping constants
# ---------------------------------------------------------------------------------------------
SR = 16000  #: audio sample rate (Hz)
FPS = 25  #: video frame rate (frames/s)
SAMPLES_PER_FRAME = SR // FPS  #: 640 audio samples per video frame
MEL_FPS = 80  #: Wav2Lip/VocaLiST mel frame rate (hop 200 at 16 kHz)
MEL_FRAMES_PER_VIDEO_FRAME = MEL_FPS / FPS  #: 3.2
MEL_WINDOW = 16  #: mel frames per 5-video-frame sync window (0.2 s)
MFCC_FPS = 100  #: SyncNet MFCC frame rate (10 ms step)
MFCC_FRAMES_PER_VIDEO_FRAME = MFCC_FPS // FPS  #: 4
MFCC_WINDOW = 20  #: MFCC frames per 5-video-frame sync window (0.2 s)
VCAGAN_MEL_FPS = 100  #: VCA-GAN mel/linear frame rate (hop 160 at 16 kHz)
SYNC_WINDOW_FRAMES = 5  #: video frames in one SyncNet/Wav2Lip/VocaLiST window
VCAGAN_FMAX_GRID = 7500.0  #: VCA-GAN mel fmax for GRID (`train.py`)
VCAGAN_FMAX_LRS = 7600.0  #: VCA-GAN mel fmax for LRS2/LRS3 (`train_LRS.py`)

# Wav2Lip / VocaLiST mel parameters (Wav2Lip `hparams.py`).
_W2L_N_FFT = 800
_W2L_HOP = 200
_W2L_WIN = 800
_W2L_N_MELS = 80
_W2L_FMIN = 55.0
_W2L_FMAX = 7600.0
_W2L_MIN_LEVEL_DB = -100.0
_W2L_REF_LEVEL_DB = 20.0
_W2L_MAX_ABS = 4.0
_PREEMPH = 0.97

# SyncNet MFCC parameters (python_speech_features 0.6 defaults at 16 kHz).
_MFCC_WIN = 400  # 25 ms
_MFCC_STEP = 160  # 10 ms
_MFCC_NFFT = 512
_MFCC_NFILT = 26
_MFCC_NCEP = 13
_MFCC_LIFTER = 22

# VCA-GAN Tacotron-2 STFT parameters (`src/data/vid_aud_*.py`).
_VCA_N_FFT = 640
_VCA_HOP = 160
_VCA_WIN = 640
_VCA_N_MELS = 80
_VCA_FMIN = 55.0
_VCA_PEAK = 0.9
_VCA_HIGHPASS_ORDER = 7
_LOG_1E5 = math.log(1e-5)

# MMAB (Visual-Audio-Memory's LRW loader: torchaudio Spectrogram, MelScale, AmplitudeToDB, CMVN).
_MMAB_N_FFT = 400
_MMAB_HOP = 160
_MMAB_N_MELS = 80
_MMAB_AMIN = 1e-10  # AmplitudeToDB's floor on the power
_MMAB_EPS = 1e-10  # CMVN: (x - mean) / (eps + std)

# Float inputs above this peak are almost surely int16-scaled (e.g. read as float without
# dividing by 32768); mild overshoot above 1 (resampling ringing) is tolerated.
_MAX_FLOAT_PEAK = 2.0


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------
def _as_mono(wav, what: str) -> tuple[np.ndarray, bool]:
    """Validate a mono waveform; return it as float64 (native scale) and whether it was int16."""
    if isinstance(wav, torch.Tensor):
        raise ValueError(
            f"{what}: expected a numpy array, got a torch.Tensor; pass wav.detach().cpu().numpy() "
            "(or use vocalist_mel_torch for batched GPU tensors)"
        )
    arr = np.asarray(wav)
    if arr.ndim == 2 and min(arr.shape) == 1:
        raise ValueError(
            f"{what}: expected 1-D mono audio, got shape {arr.shape}; drop the singleton axis "
            "with wav.reshape(-1)"
        )
    if arr.ndim == 2 and min(arr.shape) <= 8:
        raise ValueError(
            f"{what}: expected 1-D mono audio, got shape {arr.shape} (multi-channel?); "
            "downmix first, e.g. wav.mean(axis=1) for (N, C) or wav.mean(axis=0) for (C, N)"
        )
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected 1-D mono audio of shape (N,), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what}: the waveform is empty")
    if arr.dtype == np.int16:
        return arr.astype(np.float64), True
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{what}: unsupported dtype {arr.dtype}; pass float32 in [-1, 1] or int16 PCM "
            "(e.g. int32 PCM: wav.astype(np.float32) / 2**31)"
        )
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(f"{what}: waveform has {bad} non-finite samples (NaN/inf); clean it first")
    peak = float(np.max(np.abs(out)))
    if peak > _MAX_FLOAT_PEAK:
        raise ValueError(
            f"{what}: float audio must lie in [-1, 1] but its peak is {peak:.3g}; it looks "
            "int16-scaled: divide by 32768 or pass an int16 array"
        )
    return out, False


def _as_unit_float(wav, what: str, min_len: int) -> np.ndarray:
    """Float64 waveform in [-1, 1] scale (int16 / 32768), at least ``min_len`` samples long."""
    x, was_int16 = _as_mono(wav, what)
    if was_int16:
        x = x / 32768.0
    if x.size < min_len:
        raise ValueError(
            f"{what}: needs at least {min_len} samples (reflect padding of the centred STFT), "
            f"got {x.size}; pad the clip or use a longer one"
        )
    return x


# ---------------------------------------------------------------------------------------------
# Frame counts and windows
# ---------------------------------------------------------------------------------------------
def num_mel_frames(n_samples: int) -> int:
    """Wav2Lip/VocaLiST mel frames for ``n_samples`` (centred STFT, hop 200): ``1 + N // 200``."""
    return 1 + int(n_samples) // _W2L_HOP


def num_mfcc_frames(n_samples: int) -> int:
    """SyncNet MFCC frames for ``n_samples`` (python_speech_features 0.6 framing).

    ``1`` if ``N <= 400`` else ``1 + ceil((N - 400) / 160)``: the last frame is completed with
    zeros, no centring. 1 s -> 99 frames.
    """
    n = int(n_samples)
    if n <= _MFCC_WIN:
        return 1
    return 1 + -(-(n - _MFCC_WIN) // _MFCC_STEP)


def num_vcagan_frames(n_samples: int) -> int:
    """VCA-GAN mel/linear frames for ``n_samples`` (centred STFT, hop 160): ``1 + N // 160``.

    A 3 s GRID clip gives 301 frames; the official loader pads/crops to ``4 * 75 = 300``.
    """
    return 1 + int(n_samples) // _VCA_HOP


def mel_start_index(start_frame: int) -> int:
    """First mel column of video frame ``start_frame``: ``floor(80 * f / 25)`` = ``(16 f) // 5``.

    Upstream writes ``int(80. * (f / 25.))``; the integer form gives the same value (checked for
    every f below 10^5) without float rounding risk.
    """
    return (16 * int(start_frame)) // 5


def _check_start(start_frame: int, what: str) -> int:
    if int(start_frame) != start_frame or start_frame < 0:
        raise ValueError(f"{what}: start_frame must be a non-negative integer, got {start_frame!r}")
    return int(start_frame)


def _take(x, start: int, length: int, at_end: str, pad_value: float, what: str):
    """Slice ``x[..., start:start+length]`` with the chosen end-of-signal policy."""
    total = x.shape[-1]
    if start + length <= total:
        return x[..., start : start + length]
    if at_end == "raise":
        raise ValueError(
            f"{what}: window [{start}, {start + length}) runs past the end ({total}); "
            "use an earlier start_frame, or at_end='pad' / 'right_align'"
        )
    if at_end == "right_align":
        if length > total:
            raise ValueError(f"{what}: signal has {total} columns, shorter than one window ({length})")
        # Wav2Lip inference: the last chunk is taken from the end of the spectrogram.
        return x[..., total - length :]
    if at_end == "pad":
        part = x[..., start:total] if start < total else x[..., :0]
        widths = [(0, 0)] * (x.ndim - 1) + [(0, length - part.shape[-1])]
        return np.pad(part, widths, mode="constant", constant_values=pad_value)
    raise ValueError(f"{what}: at_end must be 'raise', 'pad' or 'right_align', got {at_end!r}")


def mel_window(
    mel: np.ndarray,
    start_frame: int,
    n_mel: int = MEL_WINDOW,
    at_end: str = "raise",
    pad_value: float = 0.0,
) -> np.ndarray:
    """Mel columns for the window starting at video frame ``start_frame`` (Wav2Lip/VocaLiST).

    mel: (80, T) at 80 Hz. Returns ``mel[:, floor(3.2 f) : floor(3.2 f) + n_mel]``, shape
    (80, n_mel). At the end of the clip: ``at_end='raise'`` (default; Wav2Lip/VocaLiST training
    rejects such windows), ``'pad'`` (fill with ``pad_value``; 0 is what VocaLiST's evaluation
    pads with) or ``'right_align'`` (the last ``n_mel`` columns, Wav2Lip inference).
    """
    f = _check_start(start_frame, "mel_window")
    return _take(np.asarray(mel), mel_start_index(f), int(n_mel), at_end, pad_value, "mel_window")


def mfcc_window(
    mfcc: np.ndarray, start_frame: int, n: int = MFCC_WINDOW, at_end: str = "raise", pad_value: float = 0.0
) -> np.ndarray:
    """MFCC columns ``4 f .. 4 f + n - 1`` (SyncNet), shape (13, n). ``at_end`` as in :func:`mel_window`."""
    f = _check_start(start_frame, "mfcc_window")
    return _take(np.asarray(mfcc), MFCC_FRAMES_PER_VIDEO_FRAME * f, int(n), at_end, pad_value, "mfcc_window")


def audio_window(
    wav: np.ndarray, start_frame: int, n_frames: int = SYNC_WINDOW_FRAMES, at_end: str = "raise"
) -> np.ndarray:
    """Samples ``[640 f, 640 f + 640 n_frames)`` (VocaLiST's 3200-sample window for n=5).

    ``at_end='pad'`` fills with zeros (silence); ``'right_align'`` takes the last samples.
    """
    f = _check_start(start_frame, "audio_window")
    length = SAMPLES_PER_FRAME * int(n_frames)
    return _take(np.asarray(wav), SAMPLES_PER_FRAME * f, length, at_end, 0.0, "audio_window")


# ---------------------------------------------------------------------------------------------
# Shared DSP pieces
# ---------------------------------------------------------------------------------------------
def _preemphasis(x: np.ndarray, coeff: float = _PREEMPH) -> np.ndarray:
    """y[n] = x[n] - coeff x[n-1] with y[0] = x[0] (scipy lfilter, zero initial state)."""
    return scipy.signal.lfilter([1.0, -coeff], [1.0], x)


def _deemphasis(x: np.ndarray, coeff: float = _PREEMPH) -> np.ndarray:
    """Inverse of :func:`_preemphasis`: y[n] = x[n] + coeff y[n-1]."""
    return scipy.signal.lfilter([1.0], [1.0, -coeff], x)


def _stft_mag(x: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    """|STFT| (n_fft//2+1, 1 + N//hop): periodic hann, centred with **reflect** padding.

    Reflect padding is explicit on purpose: librosa 0.7 (Wav2Lip's pin), torch.stft (VocaLiST) and
    the Tacotron conv STFT (VCA-GAN) all reflect-pad, whereas librosa >= 0.10 defaults to zeros.
    """
    spec = librosa.stft(
        x, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=True, pad_mode="reflect"
    )
    return np.abs(spec)


@lru_cache(maxsize=8)
def _slaney_mel_basis(n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-scale, Slaney-normalised (area 1 per band in Hz) mel filterbank (n_mels, n_fft//2+1).

    Same matrix as librosa 0.7 ``filters.mel(sr, n_fft, n_mels, fmin, fmax)`` and torchaudio
    ``MelScale(norm='slaney', mel_scale='slaney')`` with ``n_stft = n_fft//2+1``: both place
    n_mels+2 points evenly on the Slaney mel scale, build triangles over the linear FFT bin
    frequencies ``linspace(0, sr/2, n_fft//2+1)`` and scale each by ``2 / (f[i+2] - f[i])``.
    tests/test_audio.py rebuilds it from that formula and checks equality.
    """
    basis = librosa.filters.mel(
        sr=SR, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney", dtype=np.float64
    )
    basis.setflags(write=False)
    return basis


def _w2l_db_normalise(mel: np.ndarray) -> np.ndarray:
    """Wav2Lip amp->dB (ref 20 dB, floor 1e-5) and symmetric clipped normalisation to [-4, 4]."""
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - _W2L_REF_LEVEL_DB
    scaled = 2 * _W2L_MAX_ABS * (db - _W2L_MIN_LEVEL_DB) / (-_W2L_MIN_LEVEL_DB) - _W2L_MAX_ABS
    return np.clip(scaled, -_W2L_MAX_ABS, _W2L_MAX_ABS)


# ---------------------------------------------------------------------------------------------
# Wav2Lip and VocaLiST mel
# ---------------------------------------------------------------------------------------------
def wav2lip_mel(wav) -> np.ndarray:
    """Wav2Lip mel spectrogram (`audio.melspectrogram`), shape (80, 1 + N // 200), float32 in [-4, 4].

    wav: (N,) mono 16 kHz, float in [-1, 1] or int16, N >= 401. Pipeline: pre-emphasis 0.97 ->
    |STFT| (n_fft 800, hop 200, hann 800, centred, reflect pad) -> Slaney mel (80 bands,
    55-7600 Hz) -> 20 log10(max(1e-5, .)) - 20 -> clip(8 (S + 100) / 100 - 4, -4, 4).
    80 frames/s: column ``floor(3.2 f)`` is video frame ``f``. Wav2Lip's training code uses the
    transpose (T, 80); slice windows from this (80, T) layout with :func:`mel_window`.
    """
    x = _as_unit_float(wav, "wav2lip_mel", _W2L_N_FFT // 2 + 1)
    mag = _stft_mag(_preemphasis(x), _W2L_N_FFT, _W2L_HOP, _W2L_WIN)
    mel = _slaney_mel_basis(_W2L_N_FFT, _W2L_N_MELS, _W2L_FMIN, _W2L_FMAX) @ mag
    return _w2l_db_normalise(mel).astype(np.float32)


def vocalist_mel(wav) -> np.ndarray:
    """VocaLiST mel spectrogram, shape (80, 1 + N // 200), float32 in [-4, 4].

    Identical to :func:`wav2lip_mel` except that there is **no pre-emphasis** (VocaLiST computes it
    with torch.stft, whose default pad mode is reflect, and torchaudio's Slaney MelScale, which is
    the same filterbank as librosa's). Numpy twin of :func:`vocalist_mel_torch`.
    """
    x = _as_unit_float(wav, "vocalist_mel", _W2L_N_FFT // 2 + 1)
    mag = _stft_mag(x, _W2L_N_FFT, _W2L_HOP, _W2L_WIN)
    mel = _slaney_mel_basis(_W2L_N_FFT, _W2L_N_MELS, _W2L_FMIN, _W2L_FMAX) @ mag
    return _w2l_db_normalise(mel).astype(np.float32)


_TORCH_MEL_CACHE: dict[tuple[str, torch.dtype], torch.Tensor] = {}


def _vocalist_basis_torch(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (str(device), dtype)
    basis = _TORCH_MEL_CACHE.get(key)
    if basis is None:
        np_basis = _slaney_mel_basis(_W2L_N_FFT, _W2L_N_MELS, _W2L_FMIN, _W2L_FMAX)
        basis = torch.tensor(np_basis, dtype=dtype, device=device)
        _TORCH_MEL_CACHE[key] = basis
    return basis


def vocalist_mel_torch(wav: torch.Tensor) -> torch.Tensor:
    """Batched VocaLiST mel on any device: (B, N) float tensor in [-1, 1] -> (B, 80, 1 + N // 200).

    Same definition as :func:`vocalist_mel` (torch.stft n_fft 800, hop 200, periodic hann,
    centred, reflect pad; |.|; Slaney mel 55-7600 Hz; dB; clip to [-4, 4]). float64 input is
    computed in float64, anything else in float32 (the returned dtype). Differentiable.
    """
    if not isinstance(wav, torch.Tensor):
        raise ValueError(
            f"vocalist_mel_torch: expected a torch.Tensor of shape (B, N), got {type(wav).__name__}; "
            "use vocalist_mel for numpy arrays"
        )
    if wav.ndim != 2:
        raise ValueError(
            f"vocalist_mel_torch: expected shape (B, N), got {tuple(wav.shape)}; "
            "add a batch axis with wav.unsqueeze(0), or downmix channels first"
        )
    if not wav.is_floating_point():
        raise ValueError(
            f"vocalist_mel_torch: expected a float tensor in [-1, 1], got {wav.dtype}; "
            "for int16 PCM use wav.float() / 32768"
        )
    if wav.shape[1] < _W2L_N_FFT // 2 + 1:
        raise ValueError(
            f"vocalist_mel_torch: needs at least {_W2L_N_FFT // 2 + 1} samples per row "
            f"(reflect padding), got {wav.shape[1]}"
        )
    if not bool(torch.isfinite(wav).all()):
        raise ValueError("vocalist_mel_torch: waveform has non-finite samples (NaN/inf); clean it first")
    dtype = torch.float64 if wav.dtype == torch.float64 else torch.float32
    x = wav.to(dtype)
    window = torch.hann_window(_W2L_WIN, periodic=True, dtype=dtype, device=x.device)
    spec = torch.stft(
        x,
        n_fft=_W2L_N_FFT,
        hop_length=_W2L_HOP,
        win_length=_W2L_WIN,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    mel = torch.matmul(_vocalist_basis_torch(x.device, dtype), spec.abs())  # (B, 80, T)
    db = 20.0 * torch.log10(torch.clamp(mel, min=1e-5)) - _W2L_REF_LEVEL_DB
    scaled = 2 * _W2L_MAX_ABS * (db - _W2L_MIN_LEVEL_DB) / (-_W2L_MIN_LEVEL_DB) - _W2L_MAX_ABS
    return torch.clamp(scaled, -_W2L_MAX_ABS, _W2L_MAX_ABS)


# ---------------------------------------------------------------------------------------------
# SyncNet MFCC (python_speech_features 0.6 semantics)
# ---------------------------------------------------------------------------------------------
def _hz_to_mel_htk(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz_htk(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=4)
def _psf_filterbank(nfilt: int, nfft: int, sr: int, lowfreq: float, highfreq: float) -> np.ndarray:
    """python_speech_features-style triangular filterbank (nfilt, nfft//2+1), unnormalised.

    Edges sit on FFT bins ``floor((nfft + 1) * hz / sr)`` of points evenly spaced on the HTK mel
    scale; filter j rises over bins [b_j, b_{j+1}) as (i - b_j)/(b_{j+1} - b_j) and falls over
    [b_{j+1}, b_{j+2}) as (b_{j+2} - i)/(b_{j+2} - b_{j+1}) (peak 1, right edge excluded).
    """
    mels = np.linspace(_hz_to_mel_htk(lowfreq), _hz_to_mel_htk(highfreq), nfilt + 2)
    edges = np.floor((nfft + 1) * _mel_to_hz_htk(mels) / sr)
    bins = np.arange(nfft // 2 + 1, dtype=np.float64)[None, :]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where((bins >= left) & (bins < centre), (bins - left) / (centre - left), 0.0)
        fall = np.where((bins >= centre) & (bins < right), (right - bins) / (right - centre), 0.0)
    fb = rise + fall
    fb.setflags(write=False)
    return fb


def syncnet_mfcc(wav) -> np.ndarray:
    """SyncNet MFCC, shape (13, num_mfcc_frames(N)), float32, 100 frames/s (1 s -> 99 frames).

    Reproduces ``python_speech_features.mfcc(signal, 16000)`` (v0.6 defaults) on the **int16
    scale**, as SyncNet feeds it: float input in [-1, 1] is multiplied by 32768, int16 input is
    used as is. Steps: pre-emphasis 0.97 (first sample kept) -> 400-sample rectangular frames
    every 160 samples, no centring, last frame completed with zeros -> power spectrum
    |rfft(frame, 512)|^2 / 512 -> 26 HTK-mel triangles 0-8000 Hz -> ln -> orthonormal DCT-II,
    first 13 -> lifter 1 + 11 sin(pi n / 22) -> c0 replaced by ln(frame energy) (sum of the
    power spectrum). Zeros in energies are replaced by float eps before the log, as upstream.
    Column ``4 f`` starts at video frame ``f``; SyncNet's audio input is ``mfcc_window(m, f)``.
    """
    x, was_int16 = _as_mono(wav, "syncnet_mfcc")
    if not was_int16:
        x = x * 32768.0
    emph = _preemphasis(x)
    n_frames = num_mfcc_frames(emph.size)
    padded = np.zeros((n_frames - 1) * _MFCC_STEP + _MFCC_WIN, dtype=np.float64)
    padded[: emph.size] = emph
    frames = np.lib.stride_tricks.sliding_window_view(padded, _MFCC_WIN)[::_MFCC_STEP]
    pspec = np.abs(np.fft.rfft(frames, _MFCC_NFFT, axis=1)) ** 2 / _MFCC_NFFT  # (T, 257)
    eps = np.finfo(np.float64).eps
    energy = pspec.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    fbank = pspec @ _psf_filterbank(_MFCC_NFILT, _MFCC_NFFT, SR, 0.0, SR / 2).T  # (T, 26)
    fbank = np.where(fbank == 0, eps, fbank)
    cep = scipy.fft.dct(np.log(fbank), type=2, axis=1, norm="ortho")[:, :_MFCC_NCEP]
    n = np.arange(_MFCC_NCEP)
    cep = cep * (1.0 + (_MFCC_LIFTER / 2.0) * np.sin(np.pi * n / _MFCC_LIFTER))
    cep[:, 0] = np.log(energy)
    return cep.T.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# VCA-GAN (Tacotron-2 STFT) features and inversion
# ---------------------------------------------------------------------------------------------
def vcagan_normalise(log_mag):
    """ln-magnitude -> VCA-GAN scale: (x - ln 1e-5) / (-ln 1e-5 / 2) - 1.

    ln(1e-5) maps to -1 and ln(1) = 0 to +1. Not clipped (as upstream): magnitudes above 1
    give values above +1. Works on numpy arrays and torch tensors.
    """
    return (log_mag - _LOG_1E5) / (-_LOG_1E5 / 2.0) - 1.0


def vcagan_denormalise(x):
    """Inverse of :func:`vcagan_normalise`: VCA-GAN scale -> natural-log magnitude.

    ``np.exp(vcagan_denormalise(x))`` gives magnitudes back. Works on numpy arrays and torch tensors.
    """
    return (x + 1.0) * (-_LOG_1E5 / 2.0) + _LOG_1E5


def _vcagan_prepare(wav, highpass: bool, what: str) -> np.ndarray:
    """VCA-GAN loader audio chain: [55 Hz high-pass] -> peak 0.9 -> pre-emphasis -> clamp ±1."""
    x = _as_unit_float(wav, what, _VCA_N_FFT // 2 + 1)
    if highpass:
        # The GRID loader (vid_aud_grid.py) high-passes again at load time, on top of the
        # preprocessing-time filter: 7th-order Butterworth at fmin, zero-phase (filtfilt).
        b, a = scipy.signal.butter(_VCA_HIGHPASS_ORDER, _VCA_FMIN / (SR / 2), "high")
        x = scipy.signal.filtfilt(b, a, x)
    peak = np.max(np.abs(x))
    # Upstream divides by the peak unconditionally (NaN on digital silence); silence stays silent here.
    if peak > 0:
        x = x / peak * _VCA_PEAK
    return np.clip(_preemphasis(x), -1.0, 1.0)


def vcagan_features(
    wav, fmax: float = VCAGAN_FMAX_GRID, highpass: bool = True, linear: str = "magnitude"
) -> tuple[np.ndarray, np.ndarray]:
    """VCA-GAN targets: (mel (80, T), linear (321, T)), float32, T = 1 + N // 160 (100 Hz).

    wav: (N,) mono 16 kHz, float in [-1, 1] or int16, N >= 321.
    Chain (`src/data/vid_aud_grid.py` / `vid_aud_lrs2.py` + Tacotron-2 `STFT`):
      * ``highpass=True``: 7th-order Butterworth 55 Hz high-pass, filtfilt (GRID loader; the LRS
        loader does not do it: pass ``highpass=False`` together with ``fmax=VCAGAN_FMAX_LRS``);
      * peak-normalise to 0.9, pre-emphasis 0.97, clamp to [-1, 1];
      * |STFT|: filter_length 640, hop 160, periodic hann 640, reflect pad 320 on both sides;
      * mel = Slaney mel (80 bands, 55 Hz - fmax) of the magnitude, then
        ``vcagan_normalise(ln(max(mel, 1e-5)))`` (-1 at the floor, not clipped above).
    The linear output depends on ``linear``:
      * ``'magnitude'`` (default, GRID official): the raw |STFT| magnitude, not compressed — this is
        the postnet's L1 target and what :func:`griffin_lim` inverts;
      * ``'log'``: ``vcagan_normalise(ln(max(|STFT|, 1e-5)))``, the mel's compression applied to the
        linear bins (not used upstream; a bounded-below variant for plotting or custom losses);
      * ``'lrs'``: the LRS loader: divide by the utterance's (max - min) after subtracting the
        min (range [0, 1]), then the same log + normalisation (its inverse assumes a max of 14).
    """
    if linear not in ("magnitude", "log", "lrs"):
        raise ValueError(f"vcagan_features: linear must be 'magnitude', 'log' or 'lrs', got {linear!r}")
    if not 0 < fmax <= SR / 2:
        raise ValueError(f"vcagan_features: fmax must be in (0, {SR // 2}] Hz, got {fmax}")
    x = _vcagan_prepare(wav, highpass, "vcagan_features")
    mag = _stft_mag(x, _VCA_N_FFT, _VCA_HOP, _VCA_WIN)  # (321, T)
    mel = _slaney_mel_basis(_VCA_N_FFT, _VCA_N_MELS, _VCA_FMIN, float(fmax)) @ mag
    mel_out = vcagan_normalise(np.log(np.maximum(mel, 1e-5)))
    if linear == "magnitude":
        lin_out = mag
    elif linear == "log":
        lin_out = vcagan_normalise(np.log(np.maximum(mag, 1e-5)))
    else:
        span = mag.max() - mag.min()
        unit = (mag - mag.min()) / span if span > 0 else np.zeros_like(mag)
        lin_out = vcagan_normalise(np.log(np.maximum(unit, 1e-5)))
    return mel_out.astype(np.float32), lin_out.astype(np.float32)


def vcagan_mel(wav, fmax: float = VCAGAN_FMAX_GRID, highpass: bool = True) -> np.ndarray:
    """VCA-GAN normalised log-mel (80, 1 + N // 160), float32, >= -1. See :func:`vcagan_features`."""
    return vcagan_features(wav, fmax=fmax, highpass=highpass)[0]


def vcagan_linear(wav, highpass: bool = True, linear: str = "magnitude") -> np.ndarray:
    """VCA-GAN linear spectrogram (321, 1 + N // 160), float32. See :func:`vcagan_features`.

    Default: the raw magnitude (GRID postnet target, input of :func:`griffin_lim`).
    """
    return vcagan_features(wav, highpass=highpass, linear=linear)[1]


def vcagan_mel_to_linear(mel, fmax: float = VCAGAN_FMAX_GRID) -> np.ndarray:
    """VCA-GAN's mel-path inversion to a linear magnitude (321, T) for :func:`griffin_lim`.

    mel: (80, T) on the normalised scale. Upstream (`inverse_mel`): denormalise, exp, project with
    the transposed mel basis, then multiply by 1000 (a fixed gain compensating the small Slaney
    weights; Griffin-Lim output is clipped to [-1, 1] afterwards anyway).
    """
    mel = np.asarray(mel, dtype=np.float64)
    if mel.ndim != 2 or mel.shape[0] != _VCA_N_MELS:
        raise ValueError(f"vcagan_mel_to_linear: expected shape (80, T), got {mel.shape}")
    basis = _slaney_mel_basis(_VCA_N_FFT, _VCA_N_MELS, _VCA_FMIN, float(fmax))
    return (basis.T @ np.exp(vcagan_denormalise(mel)) * 1000.0).astype(np.float32)


def griffin_lim(linear_mag, n_iter: int = 60, seed: int = 0, deemphasis: bool = True) -> np.ndarray:
    """VCA-GAN evaluation vocoder: linear magnitude (321, T) -> waveform (160 (T - 1),) float32.

    Plain Griffin-Lim as in Tacotron-2's ``griffin_lim`` (random initial phase, ``n_iter``
    iterations, STFT 640/160/hann, reflect-padded analysis): librosa's default momentum (0.99,
    "fast" Griffin-Lim) is switched off to match. Then de-emphasis (inverse of the 0.97
    pre-emphasis) and clipping to [-1, 1]. ``seed`` fixes the random initial phase.
    linear_mag is a raw magnitude (``vcagan_linear(..., linear='magnitude')`` or
    :func:`vcagan_mel_to_linear`); for the normalised log scale use
    ``np.exp(vcagan_denormalise(x))`` first.
    """
    mag = np.asarray(linear_mag, dtype=np.float64)
    if mag.ndim != 2 or mag.shape[0] != _VCA_N_FFT // 2 + 1:
        raise ValueError(f"griffin_lim: expected shape ({_VCA_N_FFT // 2 + 1}, T), got {mag.shape}")
    if mag.shape[1] < 2:
        raise ValueError("griffin_lim: need at least 2 frames")
    if not np.all(np.isfinite(mag)) or np.any(mag < 0):
        raise ValueError(
            "griffin_lim: magnitudes must be finite and >= 0; if this is a normalised log "
            "spectrogram, convert with np.exp(vcagan_denormalise(x))"
        )
    if n_iter < 1:
        raise ValueError(f"griffin_lim: n_iter must be >= 1, got {n_iter}")
    wav = librosa.griffinlim(
        mag,
        n_iter=int(n_iter),
        hop_length=_VCA_HOP,
        win_length=_VCA_WIN,
        n_fft=_VCA_N_FFT,
        window="hann",
        center=True,
        pad_mode="reflect",
        momentum=0.0,
        init="random",
        random_state=np.random.default_rng(seed),
    )
    if deemphasis:
        wav = _deemphasis(wav)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# MMAB (Visual-Audio-Memory) log-mel with CMVN
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _htk_mel_basis(n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """HTK-scale, **unnormalised** triangular mel filterbank (n_mels, n_fft//2+1): n_mels + 2
    points evenly spaced on ``2595 log10(1 + f / 700)``, triangles of peak 1 over the linear FFT
    bin frequencies ``linspace(0, sr/2, n_fft//2+1)``. The matrix of torchaudio's
    ``MelScale(n_mels, sample_rate, f_min, f_max)`` defaults (``norm=None, mel_scale='htk'``)."""
    basis = librosa.filters.mel(
        sr=SR, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True, norm=None, dtype=np.float64
    )
    basis.setflags(write=False)
    return basis


def mmab_mel(wav, sr: int = SR, n_frames: int | None = None) -> np.ndarray:
    """MMAB's audio input (Visual-Audio-Memory's LRW loader), shape (80, N // 160), float32.

    wav: (N,) mono 16 kHz, float in [-1, 1] or int16, N >= 201. It differs from every other mel
    of the book (no pre-emphasis, power not magnitude, HTK not Slaney, per-utterance CMVN):

    1. power spectrogram as torchaudio ``Spectrogram(win_length=400, hop_length=160, power=2,
       normalized=True)``: n_fft 400, periodic hann 400, centred with reflect padding,
       ``|STFT|^2 / sum(w^2)`` (``normalized`` divides the complex STFT by ``sqrt(sum w^2)``);
    2. ``MelScale(n_mels=80, sample_rate=16000)``: HTK mel, 0-8 kHz, no area normalisation;
    3. ``AmplitudeToDB()``: ``10 log10(max(x, 1e-10))`` (no reference, no top_db clipping);
    4. CMVN per band over time with the **unbiased** std: ``(x - mean) / (1e-10 + std)``;
    5. then the loader pads or crops the time axis to 4 frames per video frame *after* CMVN:
       a 29-frame LRW clip (18,560 samples) gives 117 frames and keeps 116. Here the default
       drops the last frame (``1 + N // 160 - 1 = N // 160``, which is 4 per video frame for
       whole frames of 640 samples); ``n_frames`` crops to that many frames instead, or pads
       with zeros after CMVN when longer (upstream's negative/positive ``ConstantPad2d``).

    Computed in float64 (torchaudio works in float32: expect differences near 1e-5).
    Train-time SpecAugment (frequency mask 10, time mask 20, after CMVN) is not part of it.
    """
    if int(sr) != SR:
        raise ValueError(f"mmab_mel: audio must be at {SR} Hz, got sr={sr}; resample first")
    x = _as_unit_float(wav, "mmab_mel", _MMAB_N_FFT // 2 + 1)
    spec = librosa.stft(
        x, n_fft=_MMAB_N_FFT, hop_length=_MMAB_HOP, win_length=_MMAB_N_FFT, window="hann",
        center=True, pad_mode="reflect",
    )
    window = scipy.signal.get_window("hann", _MMAB_N_FFT, fftbins=True)
    power = np.abs(spec) ** 2 / np.sum(window ** 2)
    mel = _htk_mel_basis(_MMAB_N_FFT, _MMAB_N_MELS, 0.0, SR / 2) @ power
    db = 10.0 * np.log10(np.maximum(mel, _MMAB_AMIN))
    mean = db.mean(axis=1, keepdims=True)
    std = db.std(axis=1, ddof=1, keepdims=True)
    out = (db - mean) / (_MMAB_EPS + std)
    target = out.shape[1] - 1 if n_frames is None else int(n_frames)
    if target < 1:
        raise ValueError(f"mmab_mel: n_frames must be >= 1, got {n_frames}")
    if target <= out.shape[1]:
        out = out[:, :target]
    else:
        out = np.pad(out, ((0, 0), (0, target - out.shape[1])))
    return out.astype(np.float32)


# ------------------------------------------------------------------------------ noise
def rms(x: np.ndarray) -> float:
    """Root-mean-square level of a signal (0 for silence)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def babble(pool: np.ndarray, talkers: int, rng: np.random.Generator, *, exclude: int | None = None,
           speakers=None) -> np.ndarray:
    """Babble noise: ``talkers`` clips of ``pool`` (M, N) summed, each scaled to unit RMS.

    The clips are drawn without replacement from the rows whose speaker differs from row
    ``exclude``'s (``speakers``: one id per row), so the target's own voice is never in it;
    when too few other speakers' clips exist, other clips of any speaker (never ``exclude``
    itself) fill in. Returns float64 (N,) at unit RMS (before summing: each talker equally
    loud)."""
    pool = np.asarray(pool)
    if pool.ndim != 2 or len(pool) < 2:
        raise ValueError(f"pool must be (M >= 2, N) clips of audio, got shape {pool.shape}")
    if int(talkers) < 1:
        raise ValueError(f"talkers must be >= 1, got {talkers}")
    rows = np.array([i for i in range(len(pool)) if i != exclude])
    if speakers is not None and exclude is not None:
        others = np.array([i for i in rows if speakers[i] != speakers[exclude]], dtype=int)
        same = np.array([i for i in rows if speakers[i] == speakers[exclude]], dtype=int)
        rows = np.concatenate([rng.permutation(others), rng.permutation(same)])
        chosen = rows[:min(int(talkers), len(rows))]
    else:
        chosen = rng.choice(rows, size=min(int(talkers), len(rows)), replace=False)
    out = np.zeros(pool.shape[1], np.float64)
    for i in chosen:
        clip = pool[i].astype(np.float64)
        level = rms(clip)
        if level > 0:
            out += clip / level
    return out


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean`` plus ``noise`` scaled so that RMS(clean) / RMS(noise) is ``snr_db`` decibels
    (float32; the noise is cut or tiled to the clean length). Silent noise leaves ``clean``."""
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.resize(np.asarray(noise, dtype=np.float64), clean.shape)
    level = rms(noise)
    if level == 0:
        return clean.astype(np.float32)
    gain = rms(clean) / level * 10 ** (-float(snr_db) / 20)
    return (clean + gain * noise).astype(np.float32)


__all__ += ["rms", "babble", "mix_at_snr"]
