"""Discrete audio tokens for SyncVSR's sync head (spec §4.1): a tokenizer of vq-wav2vec's shape.

SyncVSR's extra head predicts, for every 25 fps video frame, the audio tokens of that frame.
Upstream's tokens come from fairseq's ``vq-wav2vec_kmeans.pt``; neither fairseq nor its weights
are available here, so the book learns a tokenizer of the same shape without labels, like the
first iteration of HuBERT: k-means on acoustic frames.

Rates, shapes and units
-----------------------
=======================  =============================================================
audio                    mono, 16 kHz (:data:`SR`), float in [-1, 1] or int16 PCM
token rate               100 Hz (:data:`TOKEN_RATE`), hop :data:`HOP` = 160 samples
steps per video frame    4 (640 samples at 25 fps); ``n_steps = len(audio) // 160``
step ``i``               centred on sample ``160 i`` (time ``i / 100`` s; its 25 ms
                         analysis window covers samples ``160 i - 200 .. 160 i + 199``)
features                 ``(n_steps, 80)`` float32: 80-band Slaney log-mel, n_fft 400
                         (25 ms hann), 20-7600 Hz, natural log of the magnitude floored
                         at 1e-5, then per-clip mean/variance normalised per band
tokens                   ``(n_steps, N_GROUPS)`` int64, codes in ``[0, N_CODES)``
groups                   2 (:data:`N_GROUPS`) x 320 codes (:data:`N_CODES`); group ``g``
                         quantises bands ``[40 g, 40 (g + 1))`` (low / high half)
labels per video frame   4 steps x 2 groups = 8, as ``audio_token_loss`` expects
=======================  =============================================================

A clip of ``T`` video frames (``640 T`` samples) gives exactly ``4 T`` token steps, the
``(>= 4 T, 2)`` rows :func:`avlib.models.syncvsr.audio_token_loss` reads for ``T`` frames.

Also here:

* :func:`phoneme_tokens`: the labelled upper bound, tokens from exact phoneme timings
  (group 0 = phoneme, group 1 = phoneme x third of the phoneme), same shape and rate.
* :func:`load_released_tokens` / :func:`iter_released_tokens`: upstream's released
  pre-tokenised audio (``audio-tokens.tar.gz``, one pickled dict per clip with keys
  ``vq_tokens`` and ``wav2vec2_tokens``), read with ``torch.load(..., weights_only=True)`` only.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as _load_safetensors
from safetensors.torch import save_file as _save_safetensors

from avlib.artifacts import atomic_path, atomic_write_json
from avlib.audio import SR, SAMPLES_PER_FRAME, _as_unit_float, _slaney_mel_basis, _stft_mag
from avlib.checkpoints import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    _checkpoint_paths,
    _refused_global,
    _sha256,
    _unpickler_reason,
)
from avlib.progress import progress_bar

__all__ = [
    "TOKEN_RATE",
    "HOP",
    "N_GROUPS",
    "N_CODES",
    "N_MELS",
    "N_FFT",
    "STEPS_PER_FRAME",
    "TOKENIZER_FORMAT",
    "FEATURE_SETTINGS",
    "RELEASED_KEYS",
    "token_features",
    "num_token_steps",
    "AudioTokenizer",
    "code_usage",
    "phoneme_inventory",
    "phoneme_tokens",
    "load_released_tokens",
    "iter_released_tokens",
]

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------
TOKEN_RATE = 100  #: token steps per second
HOP = SR // TOKEN_RATE  #: 160 samples (10 ms) between token steps at 16 kHz
N_GROUPS = 2  #: codebook groups (vq-wav2vec)
N_CODES = 320  #: codes per group (vq-wav2vec)
N_MELS = 80  #: mel bands of :func:`token_features`
N_FFT = 400  #: 25 ms analysis window at 16 kHz
FMIN = 20.0  #: lowest mel edge (Hz)
FMAX = 7600.0  #: highest mel edge (Hz), as the book's other mels
STEPS_PER_FRAME = SAMPLES_PER_FRAME // HOP  #: 4 token steps per 25 fps video frame
TOKENIZER_FORMAT = "avlib-audio-tokenizer/1"
#: What :func:`token_features` computes; saved with a tokenizer and checked when loading it.
FEATURE_SETTINGS = {"sr": SR, "hop": HOP, "n_fft": N_FFT, "n_mels": N_MELS, "fmin": FMIN,
                    "fmax": FMAX, "log_floor": 1e-5, "normalise": "per-clip mean/var per band",
                    "std_floor": 1e-2}
RELEASED_KEYS = ("vq_tokens", "wav2vec2_tokens")  #: keys of upstream's per-clip token dicts
_MIN_SAMPLES = N_FFT // 2 + 1  # reflect padding of the centred STFT
_LOG_FLOOR = 1e-5
_STD_FLOOR = 1e-2  # per-band std floor (log units): a constant band maps to 0, not to noise
_CHUNK = 65536  # rows per distance block (65536 x 320 float32 = 80 MiB)
_TOKEN_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth")


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------
def num_token_steps(n_samples: int) -> int:
    """Token steps of ``n_samples`` of 16 kHz audio: ``n_samples // 160`` (4 per video frame)."""
    return int(n_samples) // HOP


def token_features(audio: np.ndarray, sr: int = SR) -> np.ndarray:
    """Acoustic frames at the token rate: per-clip normalised 80-band log-mel.

    Parameters
    ----------
    audio : np.ndarray
        ``(N,)`` mono audio, float in [-1, 1] or int16 PCM, ``N >= 201``.
    sr : int
        Sample rate of ``audio``; must be 16000.

    Returns
    -------
    np.ndarray
        ``(N // 160, 80)`` float32. Row ``i`` is centred on sample ``160 i`` (hann window of
        400 samples, reflect padding at the ends); each band has zero mean and unit variance
        over the clip (variance floored, so a constant band is all zeros).

    Raises
    ------
    ValueError
        Wrong sample rate, not 1-D, empty or shorter than 201 samples, not finite.
    """
    if int(sr) != SR:
        raise ValueError(f"token_features: audio must be sampled at {SR} Hz, got sr={sr}; "
                         "resample it first (e.g. librosa.resample(audio, orig_sr=sr, target_sr=16000))")
    x = _as_unit_float(audio, "token_features", _MIN_SAMPLES)
    n_steps = num_token_steps(x.size)
    mag = _stft_mag(x, N_FFT, HOP, N_FFT)[:, :n_steps]
    mel = _slaney_mel_basis(N_FFT, N_MELS, FMIN, FMAX) @ mag
    logmel = np.log(np.maximum(mel, _LOG_FLOOR)).T  # (n_steps, n_mels)
    mean = logmel.mean(axis=0, keepdims=True)
    std = np.maximum(logmel.std(axis=0, keepdims=True), _STD_FLOOR)
    return ((logmel - mean) / std).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------------------------
def _seed_for(seed: int, purpose: int) -> int:
    """Independent seeds from one user seed: purpose 0 draws the frame subsample, ``g + 1`` the
    k-means++ centres of group ``g``."""
    return int(np.random.SeedSequence([int(seed), int(purpose)]).generate_state(1)[0])


def _nearest(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest centroid for each row of ``x``."""
    c_sq = (centroids * centroids).sum(1)
    idx, dist = [], []
    for start in range(0, x.shape[0], _CHUNK):
        block = x[start:start + _CHUNK]
        d = c_sq[None, :] - 2.0 * (block @ centroids.T)  # ||x||^2 does not change the argmin
        best, arg = d.min(dim=1)
        idx.append(arg)
        dist.append((best + (block * block).sum(1)).clamp_min(0.0))
    return torch.cat(idx), torch.cat(dist)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (float64): each new centre drawn with probability proportional to the
    squared distance to the nearest centre so far; when all points are covered (fewer distinct
    points than codes) the remaining centres repeat the first point and stay empty."""
    n = x.shape[0]
    centres = np.empty((k, x.shape[1]), np.float64)
    centres[0] = x[rng.integers(n)]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for j in range(1, k):
        cum = np.cumsum(d2)
        total = cum[-1]
        if total <= 0.0:
            centres[j:] = centres[0]
            break
        i = int(np.searchsorted(cum, rng.random() * total, side="right"))
        centres[j] = x[min(i, n - 1)]
        d2 = np.minimum(d2, ((x - centres[j]) ** 2).sum(1))
    return centres


def _lloyd(x: torch.Tensor, centroids: torch.Tensor, iters: int, bar) -> tuple[torch.Tensor, dict]:
    """Lloyd iterations; empty clusters move to the points farthest from their centres."""
    k = centroids.shape[0]
    previous = None
    inertia: list[float] = []
    done = 0
    for _ in range(iters):
        assign, dist = _nearest(x, centroids)
        inertia.append(float(dist.double().mean()))
        done += 1
        bar.update(1)
        if previous is not None and torch.equal(assign, previous):
            break
        previous = assign
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids, dtype=torch.float64).index_add_(0, assign, x.double())
        full = counts > 0
        updated = centroids.clone()
        updated[full] = (sums[full] / counts[full, None]).float()
        empty = torch.nonzero(~full).flatten()
        if empty.numel():
            # Farthest points first; a stable sort keeps ties in index order (deterministic).
            order = np.argsort(-dist.numpy(), kind="stable")[: empty.numel()]
            updated[empty] = x[torch.from_numpy(order)]
        centroids = updated
    bar.update(iters - done)
    return centroids, {"iterations": done, "inertia": inertia}


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
class AudioTokenizer:
    """k-means audio tokenizer: ``N_GROUPS`` codebooks over the low/high mel halves.

    Parameters
    ----------
    centroids : torch.Tensor or np.ndarray
        ``(n_groups, n_codes, n_mels // n_groups)`` codebooks in the units of
        :func:`token_features`.

    Attributes
    ----------
    centroids : torch.Tensor
        float32, ``(n_groups, n_codes, dims_per_group)``.
    n_codes, n_groups : int
    fit_info : dict
        Filled by :meth:`fit`: ``n_frames`` used, and per group ``iterations`` and ``inertia``
        (mean squared distance to the nearest centre at each iteration).
    """

    def __init__(self, centroids) -> None:
        c = centroids if isinstance(centroids, torch.Tensor) else torch.from_numpy(np.asarray(centroids))
        if c.ndim != 3 or c.shape[0] < 1 or c.shape[1] < 1:
            raise ValueError(f"centroids must be (n_groups, n_codes, dims), got {tuple(c.shape)}")
        if c.shape[0] * c.shape[2] != N_MELS:
            raise ValueError(f"{c.shape[0]} groups x {c.shape[2]} dims do not split the "
                             f"{N_MELS} mel bands of token_features")
        if not torch.isfinite(c).all():
            raise ValueError("centroids hold non-finite values")
        self.centroids = c.detach().to("cpu", torch.float32).contiguous()
        self.n_groups = int(c.shape[0])
        self.n_codes = int(c.shape[1])
        self.fit_info: dict = {}

    def __repr__(self) -> str:
        return f"AudioTokenizer(n_groups={self.n_groups}, n_codes={self.n_codes})"

    @property
    def dims_per_group(self) -> int:
        """Mel bands per group (40 for 2 groups)."""
        return int(self.centroids.shape[2])

    # -- learning --------------------------------------------------------------------------
    @classmethod
    def fit(cls, audios: Iterable[np.ndarray], n_codes: int = N_CODES, n_groups: int = N_GROUPS,
            iters: int = 20, seed: int = 0, max_frames: int = 200_000,
            progress: bool = False) -> "AudioTokenizer":
        """Learn the codebooks by k-means (k-means++ seeding, Lloyd iterations in torch).

        Parameters
        ----------
        audios : iterable of np.ndarray
            16 kHz mono clips (see :func:`token_features`); each is normalised on its own.
        n_codes, n_groups : int
            Codes per group; groups (must divide 80).
        iters : int
            Maximum Lloyd iterations per group (stops early when no assignment changes).
        seed : int
            Seeds the frame subsample and the k-means++ draws: same input and seed give
            bit-identical centroids.
        max_frames : int
            At most this many frames (a seeded uniform subsample of all clips' frames) are
            clustered. All clips' features are held in memory first (320 bytes per frame).
        progress : bool
            Show a bar over the Lloyd iterations.

        Raises
        ------
        ValueError
            Bad settings, no audio, or fewer frames than codes.
        """
        n_codes, n_groups, iters = int(n_codes), int(n_groups), int(iters)
        if n_codes < 1 or iters < 1 or n_groups < 1 or N_MELS % n_groups or seed < 0 or max_frames < 1:
            raise ValueError(f"need n_codes >= 1, iters >= 1, n_groups dividing {N_MELS}, seed >= 0 "
                             f"and max_frames >= 1; got n_codes={n_codes}, n_groups={n_groups}, "
                             f"iters={iters}, seed={seed}, max_frames={max_frames}")
        if isinstance(audios, np.ndarray) and audios.ndim == 1:
            raise ValueError("fit takes an iterable of clips; wrap a single clip as [audio]")
        feats = [token_features(a) for a in audios]
        if not feats:
            raise ValueError("fit got no audio clips")
        x = np.concatenate(feats, axis=0)
        n_total = x.shape[0]
        if n_total < n_codes:
            raise ValueError(f"fit needs at least as many frames as codes: got {n_total} frames "
                             f"(100 per second) for {n_codes} codes; give more audio (at least "
                             f"{math.ceil(n_codes / TOKEN_RATE)} s) or fewer codes")
        if n_total > max_frames:
            keep = np.random.default_rng(_seed_for(seed, 0)).choice(n_total, int(max_frames),
                                                                       replace=False)
            x = x[np.sort(keep)]
        dims = N_MELS // n_groups
        centroids, info = [], {"n_frames": int(x.shape[0]), "groups": []}
        with progress_bar(n_groups * iters, "audio tokenizer k-means", "iteration",
                          disable=not progress) as bar:
            for g in range(n_groups):
                part = np.ascontiguousarray(x[:, g * dims:(g + 1) * dims], dtype=np.float64)
                start = _kmeans_pp(part, n_codes, np.random.default_rng(_seed_for(seed, g + 1)))
                c, group_info = _lloyd(torch.from_numpy(part).float(),
                                       torch.from_numpy(start).float(), iters, bar)
                centroids.append(c)
                info["groups"].append(group_info)
        tok = cls(torch.stack(centroids))
        tok.fit_info = info
        return tok

    # -- use -------------------------------------------------------------------------------
    def encode_features(self, features: np.ndarray) -> np.ndarray:
        """Nearest code per group for ``(n_steps, 80)`` features -> ``(n_steps, n_groups)`` int64."""
        f = np.asarray(features, dtype=np.float32)
        if f.ndim != 2 or f.shape[1] != N_MELS:
            raise ValueError(f"features must be (n_steps, {N_MELS}), got {f.shape}")
        x = torch.from_numpy(np.ascontiguousarray(f))
        dims = self.dims_per_group
        codes = [_nearest(x[:, g * dims:(g + 1) * dims].contiguous(), self.centroids[g])[0]
                 for g in range(self.n_groups)]
        return torch.stack(codes, dim=1).numpy().astype(np.int64)

    def encode(self, audio: np.ndarray, sr: int = SR) -> np.ndarray:
        """Tokens of one clip: ``(len(audio) // 160, n_groups)`` int64 in ``[0, n_codes)``."""
        return self.encode_features(token_features(audio, sr))

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<name>.safetensors`` (centroids) and ``<name>.json`` atomically, JSON last.

        The JSON holds the format, ``n_codes``, ``n_groups``, :data:`FEATURE_SETTINGS`, the
        fit summary and the SHA-256 of the tensor file. Returns both paths.
        """
        tensors_path, json_path = _checkpoint_paths(path)
        with atomic_path(tensors_path) as tmp:
            _save_safetensors({"centroids": self.centroids.contiguous()}, str(tmp),
                              metadata={"format": TOKENIZER_FORMAT})
            digest = _sha256(tmp)
        document = {"format": TOKENIZER_FORMAT, "n_codes": self.n_codes, "n_groups": self.n_groups,
                    "features": dict(FEATURE_SETTINGS), "sha256": digest,
                    "fit": {"n_frames": self.fit_info.get("n_frames"),
                            "iterations": [g["iterations"] for g in self.fit_info.get("groups", [])]}}
        atomic_write_json(json_path, document, default=None)
        return tensors_path, json_path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AudioTokenizer":
        """Read a tokenizer written by :meth:`save` (``<name>``, ``.safetensors`` or ``.json``).

        Raises
        ------
        FileNotFoundError
            A file is missing.
        CorruptCheckpointError
            The JSON is unreadable, the tensor file does not match its recorded SHA-256 or
            is not a safetensors file.
        ValueError
            Not an audio-tokenizer description (wrong/missing format), or made for other
            features or shapes.
        """
        tensors_path, json_path = _checkpoint_paths(path)
        if not json_path.is_file():
            raise FileNotFoundError(f"audio tokenizer description not found: {json_path} (save "
                                    "writes it last; a missing file means the save did not complete)")
        try:
            doc = json.loads(json_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise CorruptCheckpointError(f"{json_path} is not valid JSON ({err}): the tokenizer "
                                         "description is damaged; save the tokenizer again") from None
        if not isinstance(doc, dict) or doc.get("format") != TOKENIZER_FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"{json_path} is not an audio tokenizer description: format "
                             f"{found!r}, expected {TOKENIZER_FORMAT!r}")
        if doc.get("features") != FEATURE_SETTINGS:
            raise ValueError(f"{json_path} was fitted on other features ({doc.get('features')}) "
                             f"than token_features computes ({FEATURE_SETTINGS}); fit it again")
        if not tensors_path.is_file():
            raise FileNotFoundError(f"audio tokenizer centroids not found: {tensors_path}")
        if doc.get("sha256") != _sha256(tensors_path):
            raise CorruptCheckpointError(f"{tensors_path} does not match the SHA-256 recorded in "
                                         f"{json_path}: the file was changed after saving")
        try:
            centroids = _load_safetensors(str(tensors_path))["centroids"]
        except (SafetensorError, KeyError, OSError) as err:
            raise CorruptCheckpointError(f"{tensors_path} holds no readable centroids ({err})") from err
        expected = (doc.get("n_groups"), doc.get("n_codes"))
        if tuple(centroids.shape[:2]) != expected:
            raise ValueError(f"{tensors_path}: centroids {tuple(centroids.shape)} do not match "
                             f"n_groups, n_codes = {expected} in {json_path}")
        return cls(centroids)


def code_usage(tokens: np.ndarray, n_codes: int = N_CODES) -> dict:
    """How a token sequence uses each codebook.

    Parameters
    ----------
    tokens : np.ndarray
        ``(n_steps, n_groups)`` integer codes (negative codes, i.e. padding, are left out).
    n_codes : int
        Codebook size.

    Returns
    -------
    dict
        ``{"groups": [{"used": fraction of codes seen, "perplexity": exp(entropy of the code
        histogram) in codes (1 = one code, n_codes = uniform), "histogram": (n_codes,) int64
        counts}, ...], "n_steps": rows counted}``.
    """
    t = np.asarray(tokens)
    if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"tokens must be an (n_steps, n_groups) integer array, got {t.dtype} {t.shape}")
    if t.size and t.max() >= n_codes:
        raise ValueError(f"code {int(t.max())} is outside [0, {n_codes}): wrong n_codes?")
    groups = []
    for g in range(t.shape[1]):
        col = t[:, g]
        hist = np.bincount(col[col >= 0], minlength=n_codes).astype(np.int64)
        total = hist.sum()
        if total:
            p = hist[hist > 0] / total
            perplexity = float(np.exp(-(p * np.log(p)).sum()))
        else:
            perplexity = 0.0
        groups.append({"used": float((hist > 0).mean()), "perplexity": perplexity, "histogram": hist})
    return {"groups": groups, "n_steps": int(t.shape[0])}


# ---------------------------------------------------------------------------------------------
# Phoneme tokens (the labelled upper bound)
# ---------------------------------------------------------------------------------------------
def phoneme_inventory(phoneme_lists: Iterable[Sequence[dict]]) -> tuple[str, ...]:
    """Sorted unique phoneme labels of many clips' phoneme lists (sidecar ``phonemes``)."""
    return tuple(sorted({str(p["label"]) for phonemes in phoneme_lists for p in phonemes}))


def phoneme_tokens(phonemes: Sequence[dict], n_steps: int, inventory: Sequence[str]) -> np.ndarray:
    """Token-shaped labels from exact phoneme timings.

    Parameters
    ----------
    phonemes : list of dict
        ``{"label", "start", "end"}`` with times in seconds (corpus sidecars). Where phonemes
        overlap, the one listed first wins.
    n_steps : int
        Token steps to produce (``len(audio) // 160``).
    inventory : sequence of str
        All labels (see :func:`phoneme_inventory`); the order fixes the codes.

    Returns
    -------
    np.ndarray
        ``(n_steps, 2)`` int64. Step ``i`` is read at ``(i + 0.5) / 100`` s. Group 0:
        ``1 + inventory.index(label)`` of the phoneme covering it (``start <= t < end``), 0 for
        silence (none). Group 1: ``3 * group0 + third``, where ``third`` in {0, 1, 2} is the
        third of the phoneme's duration the step falls in (0 for silence). Codes < 320.

    Raises
    ------
    ValueError
        Labels not in the inventory (named), an inventory too large for 320 codes or with
        repeats, a phoneme ending before it starts, negative ``n_steps``.
    """
    n_steps = int(n_steps)
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    inventory = [str(s) for s in inventory]
    if len(set(inventory)) != len(inventory):
        raise ValueError("the phoneme inventory repeats labels; build it with phoneme_inventory")
    if 3 * (len(inventory) + 1) > N_CODES:
        raise ValueError(f"an inventory of {len(inventory)} phonemes needs {3 * (len(inventory) + 1)} "
                         f"group-1 codes, more than {N_CODES}; at most {N_CODES // 3 - 1} phonemes fit")
    index = {label: i + 1 for i, label in enumerate(inventory)}
    unknown = sorted({str(p["label"]) for p in phonemes} - set(index))
    if unknown:
        raise ValueError(f"phoneme labels not in the inventory: {', '.join(map(repr, unknown))}")
    out = np.zeros((n_steps, 2), np.int64)
    times = (np.arange(n_steps) + 0.5) / TOKEN_RATE
    free = np.ones(n_steps, bool)
    for p in phonemes:
        start, end = float(p["start"]), float(p["end"])
        if not end >= start:
            raise ValueError(f"phoneme {p['label']!r} ends ({end}) before it starts ({start})")
        hit = free & (times >= start) & (times < end)
        if not hit.any():
            continue
        code = index[str(p["label"])]
        third = np.minimum((3.0 * (times[hit] - start) / (end - start)).astype(np.int64), 2)
        out[hit, 0] = code
        out[hit, 1] = 3 * code + third
        free &= ~hit
    return out


# ---------------------------------------------------------------------------------------------
# Released tokens (upstream's audio-tokens.tar.gz)
# ---------------------------------------------------------------------------------------------
def _safe_load(source, name: str) -> object:
    """``torch.load(source, weights_only=True)`` with the refusals of avlib.checkpoints."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err).lower()
        if not any(word in message for word in ("global", "unrecognized function", "unsupported class")):
            raise CorruptCheckpointError(
                f"{name} is not a readable torch.save file: it is empty, truncated or another "
                f"kind of file (torch said: {_unpickler_reason(err)})") from err
        refused = _refused_global(err)
        what = f"the Python object {refused}" if refused else "Python objects other than tensors"
        raise UnsafeCheckpointError(
            f"{name} was refused: unpickling it needs {what}, and loading such a file could run "
            "code from it. Released token files hold a dict of tensors; numpy arrays are refused "
            "too (convert them with torch.from_numpy before saving).") from err
    except (EOFError, RuntimeError, KeyError, ValueError, AttributeError, IndexError) as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise CorruptCheckpointError(
            f"{name} is not a readable torch.save file: it is empty, truncated or another kind "
            f"of file ({type(err).__name__}: {first})") from err


def _tokens_from(obj: object, key: str, name: str) -> np.ndarray:
    if not isinstance(obj, dict):
        raise ValueError(f"{name} holds a {type(obj).__name__}, not the dict of token tensors "
                         f"({', '.join(RELEASED_KEYS)}) released token files hold")
    if key not in obj:
        present = ", ".join(repr(k) for k in obj) or "none"
        raise KeyError(f"{name} has no {key!r} entry; keys present: {present}")
    value = obj[key]
    try:
        arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name}: {key!r} is a {type(value).__name__}, not a token array") from err
    if arr.size and not (np.issubdtype(arr.dtype, np.integer)
                         or (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))):
        raise ValueError(f"{name}: {key!r} holds {arr.dtype} values, not integer codes")
    arr = arr.astype(np.int64)
    if key == "vq_tokens" and (arr.ndim != 2 or arr.shape[1] != N_GROUPS):
        raise ValueError(f"{name}: vq_tokens must be (n_steps, {N_GROUPS}), got {arr.shape}")
    return arr


def load_released_tokens(path_or_fileobj: str | os.PathLike | BinaryIO,
                         key: str = "vq_tokens") -> np.ndarray:
    """One clip's released tokens, read with ``torch.load(..., weights_only=True)`` only.

    Parameters
    ----------
    path_or_fileobj : path or binary file object
        A per-clip file saved by ``torch.save`` holding a dict with ``vq_tokens``
        (``(n_steps, 2)``, 100 Hz) and/or ``wav2vec2_tokens`` (50 Hz).
    key : str
        Which entry to return.

    Returns
    -------
    np.ndarray
        int64 codes; ``vq_tokens`` as ``(n_steps, 2)``, other keys in their stored shape.

    Raises
    ------
    FileNotFoundError
        No such file.
    UnsafeCheckpointError
        The pickle needs other Python objects than tensors and plain containers (custom
        classes, numpy arrays): it is not loaded.
    CorruptCheckpointError
        Not a ``torch.save`` file (empty, truncated, other bytes).
    KeyError
        ``key`` is absent (the message lists the keys present).
    ValueError
        Not a dict, non-integer values, ``vq_tokens`` not ``(n_steps, 2)``.
    """
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        path = Path(path_or_fileobj)
        if not path.is_file():
            raise FileNotFoundError(f"released token file not found: {path}")
        name, source = str(path), path
    else:
        name, source = getattr(path_or_fileobj, "name", None) or "<file object>", path_or_fileobj
    return _tokens_from(_safe_load(source, name), key, name)


def iter_released_tokens(tar_path: str | os.PathLike,
                         key: str = "vq_tokens") -> Iterator[tuple[str, np.ndarray]]:
    """Stream ``(clip name, tokens)`` from a ``.tar.gz`` of per-clip token files.

    Members are read one by one into memory (nothing is extracted to disk). Token files are
    regular members ending in ``.pkl``, ``.pickle``, ``.pt`` or ``.pth``; the clip name is the
    member path without that suffix. Folders and other files are skipped.

    Raises
    ------
    FileNotFoundError
        No such archive.
    CorruptCheckpointError
        The archive itself is unreadable.
    UnsafeCheckpointError, CorruptCheckpointError, KeyError, ValueError
        A member cannot be read (see :func:`load_released_tokens`); the message names the
        member (``archive:member``).
    """
    tar_path = Path(tar_path)
    if not tar_path.is_file():
        raise FileNotFoundError(f"released token archive not found: {tar_path}")
    try:
        with tarfile.open(tar_path, mode="r|*") as archive:
            for member in archive:
                if not member.isfile() or not member.name.endswith(_TOKEN_SUFFIXES):
                    continue
                handle = archive.extractfile(member)
                data = handle.read() if handle is not None else b""
                buffer = io.BytesIO(data)
                buffer.name = f"{tar_path}:{member.name}"
                yield os.path.splitext(member.name)[0], load_released_tokens(buffer, key)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CorruptCheckpointError(f"{tar_path} is not a readable tar archive ({err})") from err


def released_tokens_for(clip_ids: Sequence[str], archive: str | os.PathLike, n_steps: int,
                        key: str = "vq_tokens") -> np.ndarray:
    """The released tokens of ``clip_ids`` from SyncVSR's archive, as one ``(N, n_steps, 2)``
    int64 array (cropped, or padded with -1: ignored by the loss).

    Clips are matched by their base name (LRW's ``ABOUT_00001`` is unique across the dataset),
    whatever folders the archive and the store put around it. Raises ``KeyError`` naming up to
    five clips the archive lacks."""
    wanted = {Path(str(c)).name: i for i, c in enumerate(clip_ids)}
    out = np.full((len(clip_ids), int(n_steps), N_GROUPS), -1, np.int64)
    found = np.zeros(len(clip_ids), bool)
    for name, tokens in iter_released_tokens(archive, key):
        i = wanted.get(Path(name).name)
        if i is None:
            continue
        n = min(len(tokens), int(n_steps))
        out[i, :n] = tokens[:n]
        found[i] = True
    if not found.all():
        missing = [str(clip_ids[i]) for i in np.flatnonzero(~found)[:5]]
        raise KeyError(f"{archive} has no tokens for {int((~found).sum())} of {len(clip_ids)} "
                       f"clips, e.g. {missing}")
    return out


__all__ += ["released_tokens_for"]
