"""``avlib lip2speech``: speech for a silent video, from the speaker's lips (VCA-GAN inference).

What it does with a video (any frame rate; resampled to 25 fps by timestamps, as everywhere in the
book, :mod:`avlib.media`):

1. **Mouth crops**, exactly as the clip store's ``vcagan112`` stream that the synthesizer was
   trained on (:func:`avlib.vsr.infer.mouth_crops`, the chain ``avlib lipread`` uses): BlazeFace on
   every frame, the speaker's face track, the face mesh, the face aligned to a reference by a
   similarity transform and the 136 x 136 mouth box resized to 112 x 112 gray. Then
   :func:`avlib.lip2speech.data.normalise_video` (Normalize(0.4136, 0.17) of [0, 1] pixels). A
   synthesizer whose config reads smaller mouths (``input_size``, the CPU profile) resizes them
   itself in :meth:`avlib.models.VCAGAN.forward`.
2. **Chunks.** The synthesizer, in eval mode, runs on overlapping chunks of ``chunk`` video frames
   (default :data:`DEFAULT_CHUNK` = 75, GRID's 3 s: the length the models are tested on; training
   windows are 40 frames). A video of at most ``chunk`` frames is one chunk. A longer one gets
   ``m = ceil((n - overlap) / (chunk - overlap))`` chunks whose starts are spread evenly from 0 to
   ``n - chunk`` (:func:`chunk_starts`), so every seam overlaps by at least ``overlap`` frames
   (default :data:`DEFAULT_OVERLAP` = 15, 0.6 s) and no chunk is shorter than the others.
3. **Spectrogram.** Each chunk gives 4 spectrogram frames (100 Hz) per video frame: the
   postnet's linear spectrogram (raw |STFT| magnitude, 321 bins; clamped at 0, since upstream's
   Griffin-Lim would read a negative value as a phase flip), or, for a synthesizer without a
   postnet (``postnet=False``), its finest 80-band mel, turned into a linear magnitude after the
   cross-fade by :func:`avlib.audio.vcagan_mel_to_linear`. Overlapping chunks are **cross-faded**
   in that spectrogram domain with linear ramps over each overlap (a weighted overlap-add
   normalised by the summed weights: a plain linear cross-fade where two chunks overlap, a convex
   mix where more do), so a seam has no jump (:func:`overlap_add`).
4. **Griffin-Lim** (:func:`avlib.audio.griffin_lim`: 640/160 Hann STFT, ``gl_iters`` iterations,
   de-emphasis) over the whole spectrogram, one edge column appended so the waveform has exactly
   ``640 x frames`` samples at 16 kHz (the video's duration). A spectrogram longer than
   :data:`GL_BLOCK` columns (60 s) is vocoded in blocks of that size overlapping by
   :data:`GL_OVERLAP` columns (1 s), their waveforms cross-faded the same way: Griffin-Lim's
   memory and its FFTs then stay those of 60 s whatever the length (its iterations are per block
   anyway: a block's phase hardly depends on audio seconds away).

The randomness is reproducible: the generator's noise (drawn in eval mode too, as upstream) comes
from one ``torch.Generator`` seeded by ``seed`` and used chunk after chunk, and Griffin-Lim's random
initial phase from ``seed`` (block ``k``: ``seed + k``). The same video, weights, options and
seed give the same samples. Upstream's test-time average of the video's and its mirror's mels is
not done (one pass per chunk).

Memory: the crops (12.5 kB a frame: 19 MB a minute) and the spectrogram (5 kB a frame) are held
whole; the video is decoded in chunks when long (:func:`avlib.vsr.infer.mouth_crops`).

**Shortest video:** :data:`MIN_FRAMES` = 20 frames (0.8 s). The synthesizer itself runs on
fewer, but 20 frames is the shortest stretch VCA-GAN's training critics can score at all (their
unpadded 5 x 5 convolutions need a mel of 80 frames, 20 video frames): anything shorter is a
length the adversarial training never shaped (training windows are 40 frames), and its BiGRU
context would be a handful of frames.

Weights (``--weights``, else the environment variable :data:`ENV_WEIGHTS`, else the default
product): a book checkpoint (``G.json`` + ``G.safetensors``, a :class:`avlib.models.VCAGAN`, as
chapter 05's trainer writes them), a product folder (``<artifacts>/lip2speech_vcagan/<key>/``, or
``<artifacts>/lip2speech_vcagan/``: its newest complete product), or an official VCA-GAN
checkpoint (``Best_*.ckpt``: seven ``<part>_state_dict`` entries, read with
``weights_only=True``; its synthesizer's ``v_front``, ``gen`` and ``post`` are loaded by
:meth:`avlib.models.VCAGAN.from_official`, the width, postnet, attention and noise read off the
tensors). The **default** is the newest complete ``lip2speech_vcagan`` product of the ``cpu``
profile under the artifacts root (``$AVLIB_ARTIFACTS`` or ``_build/artifacts/cpu/``), made by
``make run ONLY=05_lip2speech``. A file of another network is refused, naming it when
:func:`avlib.checkpoints.identify_state_dict` knows it.

Outputs: the WAV (16-bit PCM, 16 kHz mono) and, with ``--mux OUT.mp4``, the input video with the
generated speech as its only sound track: the video stream copied bit for bit when the container
takes it, else re-encoded to H.264 (the source's frame rate kept), the speech as AAC 16 kHz
mono. Both go through hidden temporaries renamed when complete (:mod:`avlib.artifacts`): an error
or Ctrl-C leaves neither a half-written file nor one without the other. An output must differ
from the input and from the other output, and must not exist unless ``--force``.

Errors are one line with an exit code (:mod:`avlib.cli`): 2 for options (bad numbers, device,
output names, no default weights), 3 for inputs (missing, unreadable or damaged video, a still
image, no face, fewer than :data:`MIN_FRAMES` frames, weights missing or not a VCA-GAN
synthesizer), 4 for outputs (an existing output without ``--force``, an unwritable folder, a
full disk), 5 for Ctrl-C.

Command line::

    avlib lip2speech VIDEO -o OUT.wav [--mux OUT.mp4] [--weights FILE_OR_FOLDER] [--device cpu]
                     [--chunk 75] [--overlap 15] [--seed 0] [--gl-iters 60] [--force]
                     [--no-progress]
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from avlib import media
from avlib.artifacts import atomic_path, probe_writable, resolve_artifacts_root, same_file
from avlib.audio import FPS, SAMPLES_PER_FRAME, SR, griffin_lim, vcagan_mel_to_linear
from avlib.checkpoints import (
    CheckpointMismatch,
    identify_state_dict,
    load_checkpoint,
    read_checkpoint_info,
    read_official,
)
from avlib.cli import EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, CommandError, torch_device
from avlib.lip2speech.data import MEL_PER_FRAME, STREAM, normalise_video
from avlib.lipsync.infer import IMAGE_SUFFIXES
from avlib.lipsync.infer import OUTPUT_SUFFIXES as MUX_SUFFIXES
from avlib.progress import progress_bar
from avlib.vsr.infer import _first_problem, _products, mouth_crops

__all__ = [
    "ENV_WEIGHTS",
    "DEFAULT_PROFILE",
    "PRODUCT",
    "PRODUCER",
    "DEFAULT_CHUNK",
    "DEFAULT_OVERLAP",
    "DEFAULT_SEED",
    "DEFAULT_GL_ITERS",
    "MIN_FRAMES",
    "GL_BLOCK",
    "GL_OVERLAP",
    "MUX_SUFFIXES",
    "Lip2SpeechError",
    "Lip2SpeechReport",
    "default_weights",
    "load_synthesizer",
    "video_crops",
    "chunk_starts",
    "overlap_add",
    "spectrogram",
    "vocode",
    "speak",
    "lip2speech",
    "add_arguments",
    "main_from_args",
]

#: Environment variable naming the default synthesizer weights (before the default product).
ENV_WEIGHTS = "AVLIB_LIP2SPEECH_WEIGHTS"
#: Profile whose artifacts hold the default synthesizer.
DEFAULT_PROFILE = "cpu"
#: The default product's name under the artifacts root, and the chapter that makes it.
PRODUCT = "lip2speech_vcagan"
PRODUCER = "05_lip2speech"
#: Video frames per chunk (GRID's 3 s: what the models are tested on).
DEFAULT_CHUNK = 75
#: Frames shared by neighbouring chunks, cross-faded (0.6 s).
DEFAULT_OVERLAP = 15
DEFAULT_SEED = 0
#: Griffin-Lim iterations (:func:`avlib.audio.griffin_lim`'s default).
DEFAULT_GL_ITERS = 60
#: Shortest video (0.8 s): the shortest the training critics can score (see the module docstring).
MIN_FRAMES = 20
#: Spectrogram columns (100 Hz) vocoded by one Griffin-Lim run (60 s); longer ones go in blocks.
GL_BLOCK = 6000
#: Columns shared by neighbouring Griffin-Lim blocks, their waveforms cross-faded (1 s).
GL_OVERLAP = 100
#: What the command writes: WAV (16-bit PCM).
WAV_SUFFIXES = (".wav",)
#: Parts of an official checkpoint that make the synthesizer (the critics are not needed).
_SYNTH_PARTS = ("v_front_state_dict", "gen_state_dict")
_TASK = "lip-to-speech"
_SYNTH = "VCA-GAN's synthesizer"


class Lip2SpeechError(CommandError):
    """Lip-to-speech cannot run on this input or with these options; the message says why and
    what to do. ``exit_code`` is its command-line class (:mod:`avlib.cli`): an input problem
    unless said otherwise."""


@dataclass
class Lip2SpeechReport:
    """What :func:`lip2speech` did.

    Attributes:
        output: the WAV written.
        mux: the video written with the speech as its sound, or None.
        mux_video: how its video stream was written: ``"copy"`` (bit for bit) or ``"h264"``
            (re-encoded), None without ``mux``.
        frames: video frames read (25 fps); the speech has ``640 x frames`` samples.
        samples: samples written (16 kHz).
        duration_s: seconds of speech (``samples / 16000``).
        face_frames: frames on which the face was tracked and meshed (the others' crops are
            interpolated).
        chunks: chunks the synthesizer ran on.
        chunk, overlap, seed, gl_iters: the settings.
        seconds: wall time of the whole run.
        speed: seconds of speech per second of wall time.
        weights: where the synthesizer came from.
        device: where it ran.
        stages: seconds per stage: ``crops`` (decoding, face detection and tracking, face mesh,
            crops), ``network`` (the synthesizer, chunk by chunk, and the cross-fade),
            ``griffin_lim`` (the mel-to-linear projection if any, and Griffin-Lim), ``write``
            (the WAV, and the mux).
    """

    output: str
    mux: str | None
    mux_video: str | None
    frames: int
    samples: int
    duration_s: float
    face_frames: int
    chunks: int
    chunk: int
    overlap: int
    seed: int
    gl_iters: int
    seconds: float
    speed: float
    weights: str
    device: str
    stages: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------
def _check_int(value, what: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise Lip2SpeechError(f"{what} must be a whole number {bound}, got {value!r}", EXIT_USAGE)
    return int(value)


def _check_settings(chunk, overlap, seed, gl_iters=DEFAULT_GL_ITERS,
                    names=("chunk", "overlap", "seed", "gl_iters")) -> tuple[int, int, int, int]:
    chunk = _check_int(chunk, names[0], MIN_FRAMES)
    overlap = _check_int(overlap, names[1], 0, chunk - 1)
    seed = _check_int(seed, names[2], 0, 2**63 - 1)
    gl_iters = _check_int(gl_iters, names[3], 1)
    return chunk, overlap, seed, gl_iters


def _device(device) -> torch.device:
    return torch_device(device, Lip2SpeechError)


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def default_weights(profile: str = DEFAULT_PROFILE) -> Path:
    """The newest complete ``lip2speech_vcagan`` product under the profile's artifacts root
    (``$AVLIB_ARTIFACTS`` or ``_build/artifacts/<profile>/``), as
    :func:`avlib.vsr.infer.default_weights` finds the lip readers'. Raises
    :class:`Lip2SpeechError` (exit 2) saying how to make it when there is none."""
    folder = resolve_artifacts_root(None, profile) / PRODUCT
    found = _products(folder)
    if not found:
        raise Lip2SpeechError(
            f"no --weights given and no default lip-to-speech synthesizer: {folder} holds no "
            f"trained {PRODUCT!r} product. Make it with `make run ONLY={PRODUCER}` (chapter 05, "
            f"{profile} profile), or pass --weights FILE (a chapter-05 G.json or product folder, "
            f"or an official VCA-GAN Best_*.ckpt), or set {ENV_WEIGHTS}", EXIT_USAGE)
    return found[-1]


def _checkpoint_name(path: Path) -> str | None:
    return read_checkpoint_info(path).get("config", {}).get("name")


def _checkpoint_in(folder: Path, origin: str) -> Path:
    """The synthesizer's checkpoint (``.json``) in a product folder (``G.json`` when there are
    several); a product name folder (holding ``<key>/`` products) gives its newest complete
    product's."""
    found, others = [], set()
    for candidate in sorted(folder.glob("*.json")):
        try:
            name = _checkpoint_name(candidate)
        except (ValueError, OSError):
            continue  # artifact.json, history.json, ...: not checkpoints
        if name == "vcagan":
            found.append(candidate)
        elif name is not None:
            others.add(str(name))
    if not found:
        products = _products(folder)
        if products:
            return _checkpoint_in(products[-1], origin)
        held = f" (it holds checkpoints of {', '.join(sorted(others))})" if others else ""
        raise Lip2SpeechError(f"{folder}{origin} holds no {_SYNTH} checkpoint (a .json/"
                              f".safetensors pair of a 'vcagan' model){held}; pass the G.json of "
                              "a chapter-05 product, or its folder")
    if len(found) > 1:
        named = [p for p in found if p.name == "G.json"]
        if named:
            return named[0]
        raise Lip2SpeechError(f"{folder}{origin} holds several {_SYNTH} checkpoints "
                              f"({', '.join(p.name for p in found)}); pass the .json of one")
    return found[0]


def _load_book(path: Path, origin: str) -> tuple[torch.nn.Module, Path, str]:
    json_path = path.with_suffix(".json")
    try:
        name = _checkpoint_name(json_path)
    except FileNotFoundError:
        raise Lip2SpeechError(f"checkpoint description not found: {json_path}{origin}; a book "
                              "checkpoint is a pair <name>.json + <name>.safetensors") from None
    except ValueError as err:
        raise Lip2SpeechError(f"{json_path}{origin} is not a book checkpoint: {err}") from None
    if name != "vcagan":
        hint = ("the critics only score speech in training: pass the synthesizer's G.json"
                if str(name).startswith("vcagan_") else
                "pass the G.json of a chapter-05 (lip-to-speech) product")
        raise Lip2SpeechError(f"{json_path}{origin} holds a {name!r} model, not {_SYNTH} "
                              f"('vcagan'); {hint}")
    tensors = path.with_suffix(".safetensors")
    if not tensors.is_file():
        raise Lip2SpeechError(f"checkpoint tensors not found: {tensors}{origin} (next to "
                              f"{json_path.name})")
    try:
        net, config = load_checkpoint(json_path)
    except CheckpointMismatch as err:
        raise Lip2SpeechError(f"{json_path}{origin} cannot be loaded: "
                              f"{_first_problem(err)}") from None
    kwargs = config.get("kwargs", {})
    shown = ", ".join(f"{k}={kwargs[k]}" for k in ("width", "postnet", "input_size")
                      if k in kwargs)
    return net, json_path, f"book checkpoint, VCAGAN({shown})"


def _tensor(part: Mapping, name: str) -> torch.Tensor | None:
    """``part[name]``, also under DataParallel's ``module.`` prefix."""
    for key in (name, f"module.{name}"):
        value = part.get(key)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _official_config(raw: Mapping) -> list[dict]:
    """Candidate :class:`~avlib.models.vcagan.VCAGANConfig` changes for an official dict, read
    off its tensors: the postnet (its entry), the attention (``att1`` keys), the width (the
    stem's 64 and the features' 512 channels) and the noise channels (the generator's first
    block reads ``512 + 128`` channels, times the width)."""
    from avlib.models.blocks import scale_channels

    front, gen = raw["v_front_state_dict"], raw["gen_state_dict"]
    base = {"postnet": isinstance(raw.get("post_state_dict"), Mapping),
            "attention": any(str(k).replace("module.", "", 1).startswith("att1.") for k in gen)}
    widths = []
    stem, fc = _tensor(front, "frontend.0.weight"), _tensor(front, "fc.weight")
    for tensor, official in ((fc, 512), (stem, 64)):
        if tensor is not None and tensor.dim() >= 2:
            w = float(tensor.shape[0]) / official
            if w > 0 and w not in widths:
                widths.append(w)
    candidates = []
    first = _tensor(gen, "decode.0.conv1.weight")
    for width in widths or [1.0]:
        changes = dict(base, width=width)
        if first is not None and first.dim() == 4:
            noise = int(first.shape[1]) - scale_channels(512, width)
            if noise <= 0:
                changes["noise_dim"] = 0
            elif noise != scale_channels(128, width):
                changes["noise_dim"] = max(1, round(noise / width))
        candidates.append(changes)
    return candidates


def _load_official(path: Path, origin: str) -> tuple[torch.nn.Module, Path, str]:
    from avlib.models.vcagan import VCAGAN

    if not path.is_file():
        raise Lip2SpeechError(f"lip-to-speech weights not found: {path}{origin}")
    raw = read_official(path)  # weights_only=True; unsafe or corrupt files: exit code 3
    if not (isinstance(raw, Mapping) and all(isinstance(raw.get(p), Mapping)
                                             for p in _SYNTH_PARTS)):
        what = identify_state_dict(raw)
        held = (f"holds {what}, not {_SYNTH}" if what else
                f"holds no VCA-GAN synthesizer (no {' and '.join(_SYNTH_PARTS)} entries)")
        raise Lip2SpeechError(f"{path}{origin} {held}; pass a chapter-05 G.json or product "
                              "folder, or an official VCA-GAN Best_*.ckpt")
    problem = None
    for changes in _official_config(raw):
        try:
            net, report = VCAGAN.from_official(raw, **changes)
        except (CheckpointMismatch, ValueError) as err:
            problem = problem or err
            continue
        parts = "v_front, gen" + (", post" if net.post is not None else "")
        ignored = (f", {len(report.ignored_entries)} critic entries ignored"
                   if report.ignored_entries else "")
        size = "official size" if net.cfg.width == 1.0 else f"width {net.cfg.width:g}"
        return net, path, f"official VCA-GAN format, {size}, {parts}{ignored}"
    raise Lip2SpeechError(f"{path}{origin} has VCA-GAN's entries but they do not load into "
                          f"{_SYNTH}: {_first_problem(problem)}")


def _load(weights) -> tuple[torch.nn.Module, str]:
    """(synthesizer in eval mode on the CPU, one line saying where it came from)."""
    if weights is not None and str(weights).strip():
        path, origin = Path(weights).expanduser(), ""
    elif os.environ.get(ENV_WEIGHTS, "").strip():
        path, origin = Path(os.environ[ENV_WEIGHTS]).expanduser(), f" (from ${ENV_WEIGHTS})"
    else:
        path, origin = default_weights(), " (the default product)"
    if path.is_dir():
        path = _checkpoint_in(path, origin)
    elif path.suffix == "" and Path(f"{path}.json").is_file():
        path = Path(f"{path}.json")
    elif not path.exists():
        raise Lip2SpeechError(f"lip-to-speech weights not found: {path}{origin}")
    if path.suffix in (".json", ".safetensors"):
        net, shown, what = _load_book(path, origin)
    else:
        net, shown, what = _load_official(path, origin)
    n_params = sum(p.numel() for p in net.parameters())
    return net.eval(), f"{shown}{origin} ({what}, {n_params:,} parameters)"


def load_synthesizer(weights=None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """VCA-GAN's synthesizer (:class:`avlib.models.VCAGAN`), in eval mode on ``device``.

    ``weights``: a book checkpoint (``G.json`` / ``G.safetensors`` / ``G``), a product folder
    (``<artifacts>/lip2speech_vcagan/<key>/`` or ``<artifacts>/lip2speech_vcagan/``), or an
    official VCA-GAN ``.ckpt`` (seven ``<part>_state_dict`` entries; its size is read off the
    tensors); None: ``$AVLIB_LIP2SPEECH_WEIGHTS``, else the default product
    (:func:`default_weights`). Raises :class:`Lip2SpeechError`: exit code 2 (no default weights,
    unknown device) or 3 (a missing file, or one that is not VCA-GAN's synthesizer).
    """
    dev = _device(device)
    net, _ = _load(weights)
    return net.to(dev)


# ---------------------------------------------------------------------------------------------
# video -> crops -> spectrogram -> waveform
# ---------------------------------------------------------------------------------------------
def video_crops(video: str | os.PathLike, *, progress: bool = False) -> tuple[np.ndarray, dict]:
    """The ``vcagan112`` mouth crops of every 25 fps frame of ``video``: uint8 (T, 112, 112) and
    ``{"frames", "size", "face"}`` (:func:`avlib.vsr.infer.mouth_crops`). Raises
    :class:`Lip2SpeechError` (missing, a still image, no face, fewer than :data:`MIN_FRAMES`
    frames) or :class:`avlib.media.MediaError` (not a video, damaged)."""
    path = Path(video)
    if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        raise Lip2SpeechError(f"{path} is a still image: {_TASK} reads the lips moving, give a "
                              "video of the speaker talking")
    return mouth_crops(path, progress=progress, stream=STREAM, min_frames=MIN_FRAMES,
                       task=_TASK, error=Lip2SpeechError)


def chunk_starts(n_frames: int, chunk: int = DEFAULT_CHUNK,
                 overlap: int = DEFAULT_OVERLAP) -> list[int]:
    """First frames of the chunks over ``n_frames``: ``[0]`` when ``n_frames <= chunk``, else
    ``m = ceil((n - overlap) / (chunk - overlap))`` starts spread evenly (rounded) from 0 to
    ``n - chunk``: neighbours overlap by at least ``overlap`` frames."""
    n, chunk, overlap = int(n_frames), int(chunk), int(overlap)
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap must be in [0, {chunk - 1}], got {overlap}")
    if n <= chunk:
        return [0]
    m = math.ceil((n - overlap) / (chunk - overlap))
    return sorted({int(round(s)) for s in np.linspace(0, n - chunk, m)})


def _ramp(n: int) -> np.ndarray:
    """``n`` rising weights strictly inside (0, 1): ``(k + 0.5) / n``."""
    return (np.arange(n) + 0.5) / n


def overlap_add(pieces: Sequence[np.ndarray], starts: Sequence[int], total: int) -> np.ndarray:
    """Cross-fade pieces ``(..., L_i)`` placed at ``starts`` (increasing) along the last axis of
    a ``(..., total)`` result.

    Each piece is weighted by a linear ramp rising over its overlap with the previous piece and
    falling over its overlap with the next (weight 1 elsewhere), and the sum is divided by the
    summed weights: where two pieces overlap that is a plain linear cross-fade (the ramps add up
    to 1), where more do a convex mix; a spot covered by one piece is that piece. Every position
    in ``[0, total)`` must be covered. Returns float32.
    """
    if not pieces or len(pieces) != len(starts):
        raise ValueError(f"{len(pieces)} pieces for {len(starts)} starts")
    ends = [int(s) + p.shape[-1] for s, p in zip(starts, pieces)]
    out = np.zeros(pieces[0].shape[:-1] + (int(total),), np.float64)
    weight = np.zeros(int(total), np.float64)
    for i, (piece, start) in enumerate(zip(pieces, starts)):
        start, length = int(start), piece.shape[-1]
        w = np.ones(length)
        left = max(0, ends[i - 1] - start) if i > 0 else 0
        right = max(0, ends[i] - int(starts[i + 1])) if i + 1 < len(pieces) else 0
        left, right = min(left, length), min(right, length)
        if left:
            w[:left] = np.minimum(w[:left], _ramp(left))
        if right:
            w[length - right:] = np.minimum(w[length - right:], _ramp(right)[::-1])
        out[..., start:start + length] += piece * w
        weight[start:start + length] += w
    if np.any(weight <= 0):
        raise ValueError("the pieces leave gaps: every position needs one")
    return (out / weight).astype(np.float32)


def _as_crops(video) -> np.ndarray:
    crops = video.numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    if crops.ndim != 3 or crops.shape[1] != crops.shape[2] or crops.shape[1] < 16:
        raise Lip2SpeechError(f"mouth crops must be (T, S, S) gray, e.g. (T, 112, 112) uint8, "
                              f"got shape {crops.shape}", EXIT_USAGE)
    if crops.dtype != np.uint8:
        raise Lip2SpeechError(f"mouth crops must be uint8 pixels, got {crops.dtype}", EXIT_USAGE)
    if len(crops) < MIN_FRAMES:
        raise Lip2SpeechError(f"{len(crops)} frames of mouth crops ({len(crops) / FPS:.2f} s); "
                              f"{_TASK} needs at least {MIN_FRAMES} ({MIN_FRAMES / FPS:.1f} s)")
    return crops


@contextlib.contextmanager
def _eval_mode(net):
    was_training = bool(net.training)
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def spectrogram(crops, net: torch.nn.Module, *, chunk: int = DEFAULT_CHUNK,
                overlap: int = DEFAULT_OVERLAP, seed: int = DEFAULT_SEED,
                progress: bool = False) -> tuple[np.ndarray, str]:
    """The synthesizer's spectrogram of a whole video, chunk by chunk, cross-faded.

    ``crops``: uint8 (T, S, S) mouths (the ``vcagan112`` stream, :func:`video_crops`); ``net``: a
    :class:`avlib.models.VCAGAN` (run in eval mode on its own device). Returns ``(spec, kind)``:
    ``kind`` ``"linear"``, spec (321, 4 T) the postnet's magnitude clamped at 0, or ``"mel"``
    for a synthesizer without a postnet, spec (80, 4 T) on the normalised log-mel scale. The
    noise comes from a ``torch.Generator`` seeded by ``seed``, used chunk after chunk.
    """
    chunk, overlap, seed, _ = _check_settings(chunk, overlap, seed)
    crops = _as_crops(crops)
    n = len(crops)
    param = next(net.parameters())
    generator = torch.Generator(device=param.device).manual_seed(seed)
    starts = chunk_starts(n, chunk, overlap)
    kind = "linear" if getattr(net, "post", None) is not None else "mel"
    pieces = []
    with _eval_mode(net), torch.inference_mode(), progress_bar(
            total=len(starts), desc=_TASK, unit="chunk", leave=False,
            disable=not progress or len(starts) < 2) as bar:
        for s in starts:
            x = normalise_video(crops[s:s + chunk])[None, None]
            out = net(x.to(device=param.device, dtype=param.dtype), generator=generator)
            spec = out.linear.clamp_min(0) if kind == "linear" else out.mels[2]
            pieces.append(spec[0, 0].float().cpu().numpy())
            bar.update(1)
    return overlap_add(pieces, [MEL_PER_FRAME * s for s in starts], MEL_PER_FRAME * n), kind


def vocode(spec: np.ndarray, kind: str = "linear", *, gl_iters: int = DEFAULT_GL_ITERS,
           seed: int = DEFAULT_SEED) -> np.ndarray:
    """A (321, 4 T) linear magnitude (``kind="linear"``) or a (80, 4 T) normalised mel
    (``kind="mel"``, through :func:`avlib.audio.vcagan_mel_to_linear`) -> float32 waveform of
    ``640 T`` samples at 16 kHz: :func:`avlib.audio.griffin_lim` over the spectrogram plus one
    edge column (so the last frame's 160 samples exist), in blocks of :data:`GL_BLOCK` columns
    overlapping by :data:`GL_OVERLAP`, cross-faded, when longer."""
    gl_iters = _check_int(gl_iters, "gl_iters", 1)
    seed = _check_int(seed, "seed", 0, 2**63 - 1)
    if kind not in ("linear", "mel"):
        raise ValueError(f"kind must be 'linear' or 'mel', got {kind!r}")
    spec = np.asarray(spec, np.float32)
    if kind == "mel":
        spec = vcagan_mel_to_linear(spec)
    if spec.ndim != 2 or spec.shape[1] < 1:
        raise ValueError(f"spec must be (bins, columns), got {spec.shape}")
    if not np.all(np.isfinite(spec)):
        raise ValueError("the spectrogram holds NaN or inf")
    spec = np.maximum(spec, 0.0)
    cols = spec.shape[1]
    full = np.concatenate([spec, spec[:, -1:]], axis=1)  # cols + 1 frames -> 160 * cols samples
    if cols <= GL_BLOCK:
        return griffin_lim(full, gl_iters, seed)
    starts = chunk_starts(cols, GL_BLOCK, GL_OVERLAP)
    pieces = [griffin_lim(full[:, s:s + GL_BLOCK + 1], gl_iters, seed + k)
              for k, s in enumerate(starts)]
    hop = SAMPLES_PER_FRAME // MEL_PER_FRAME
    return overlap_add(pieces, [hop * s for s in starts], hop * cols)


def speak(video_path_or_crops, net: torch.nn.Module | None = None, *,
          chunk: int = DEFAULT_CHUNK, overlap: int = DEFAULT_OVERLAP, seed: int = DEFAULT_SEED,
          progress: bool = False, gl_iters: int = DEFAULT_GL_ITERS) -> np.ndarray:
    """Speech for a silent video: float32 (640 T,) waveform at 16 kHz in [-1, 1].

    ``video_path_or_crops``: a video (any frame rate; its ``vcagan112`` mouth crops are made
    with :func:`video_crops`) or the crops themselves, uint8 (T, 112, 112) (e.g. the clip
    store's). ``net``: a :class:`avlib.models.VCAGAN` (:func:`load_synthesizer`; None loads the
    default weights). See the module docstring for ``chunk``, ``overlap``, ``seed`` and
    ``gl_iters``. Raises :class:`Lip2SpeechError`, :class:`avlib.media.MediaError`.
    """
    chunk, overlap, seed, gl_iters = _check_settings(chunk, overlap, seed, gl_iters)
    if net is None:
        net, _ = _load(None)
    if isinstance(video_path_or_crops, (str, os.PathLike)):
        crops, _ = video_crops(video_path_or_crops, progress=progress)
    else:
        crops = video_path_or_crops
    spec, kind = spectrogram(crops, net, chunk=chunk, overlap=overlap, seed=seed,
                             progress=progress)
    return vocode(spec, kind, gl_iters=gl_iters, seed=seed)


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------
def _check_output(out: Path, suffixes: tuple[str, ...], what: str, taken: Sequence[Path],
                  overwrite: bool) -> None:
    """Refuse an output that is the input or the other output, a folder, of another format, in
    a missing or unwritable folder, or (without ``overwrite``) an existing file -- before any
    work."""
    for other in taken:
        if same_file(out, other):
            raise Lip2SpeechError(f"the output {out} must be a new file, not the input or the "
                                  f"other output ({other})", EXIT_USAGE)
    if out.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"the output {out} is a folder; give a file name "
                                f"such as {out / ('speech' + suffixes[0])}", str(out))
    if out.suffix.lower() not in suffixes:
        raise Lip2SpeechError(f"the {what} {out} must end in {' or '.join(suffixes)}",
                              EXIT_USAGE)
    if not out.parent.is_dir():
        state = "is a file" if out.parent.exists() else "does not exist (create it first)"
        raise Lip2SpeechError(f"cannot write {out}: folder {out.parent} {state}", EXIT_OUTPUT)
    if out.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, f"{out} exists; pass --force (Python: "
                              "overwrite=True) to replace it, or choose another name", str(out))
    probe_writable(out)  # read-only mounts and permissions show only when tried


def _mux(video: Path, wav: Path, out: Path, tmp: Path) -> str:
    """``video``'s picture with ``wav`` as its only sound into ``tmp`` (the temporary of
    ``out``): the video stream copied, or re-encoded to H.264 when the container refuses the
    copy. Returns ``"copy"`` or ``"h264"``."""
    head = ["-i", str(video), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0"]
    tail = ["-c:a", "aac", "-b:a", "64k", "-ar", str(SR), "-ac", "1"]
    if out.suffix.lower() in (".mp4", ".m4v", ".mov"):
        tail += ["-movflags", "+faststart"]
    tail.append(str(tmp))
    try:
        media._run_ffmpeg(head + ["-c:v", "copy"] + tail, f"muxing {video} into {out}",
                          output=(tmp, out))
        return "copy"
    except media.MediaError:  # a codec this container cannot hold: encode the picture
        with contextlib.suppress(OSError):
            tmp.unlink()
    encode = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
              "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    media._run_ffmpeg(head + encode + tail, f"encoding {video} into {out}", output=(tmp, out))
    return "h264"


def _write(wav: np.ndarray, out: Path, mux: Path | None, video: Path) -> str | None:
    """The WAV, and the muxed video, each through a temporary renamed when complete; the video
    is renamed first, the WAV last, so an error leaves neither."""
    blob = media._wav_bytes(np.clip(wav, -1.0, 1.0).astype(np.float32), SR, "PCM_16")
    with atomic_path(out, make_parents=False) as tmp_wav:
        with open(tmp_wav, "xb") as handle:
            handle.write(blob)
        if mux is None:
            return None
        with atomic_path(mux, make_parents=False) as tmp_mux:
            return _mux(video, tmp_wav, mux, tmp_mux)


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def lip2speech(video, out, net: torch.nn.Module | None = None, *, weights=None, mux=None,
               overwrite: bool = False, chunk: int = DEFAULT_CHUNK,
               overlap: int = DEFAULT_OVERLAP, seed: int = DEFAULT_SEED,
               gl_iters: int = DEFAULT_GL_ITERS, device: str | torch.device = "cpu",
               progress: bool = True) -> Lip2SpeechReport:
    """Speak ``video`` from its speaker's lips: write the speech to the WAV ``out`` (16-bit PCM,
    16 kHz mono) and, with ``mux``, the video with that speech as its sound.

    Args:
        video: a video of the speaker's face (any frame rate; read at 25 fps), at least
            :data:`MIN_FRAMES` frames.
        out: the WAV to write (``.wav``), a new file unless ``overwrite``.
        net: a :class:`avlib.models.VCAGAN`; None loads ``weights`` (:func:`load_synthesizer`).
        mux: a video file to write too (``.mp4``/``.m4v``/``.mov``/``.mkv``), or None.
        overwrite: replace existing outputs.
        chunk, overlap, seed, gl_iters: see the module docstring.
        device: torch device of the synthesizer.
        progress: progress bars (:mod:`avlib.progress`).

    Returns a :class:`Lip2SpeechReport`. Raises :class:`Lip2SpeechError`,
    :class:`avlib.media.MediaError`, OSError / FileExistsError (the outputs). Nothing is left at
    ``out`` or ``mux`` (or next to them) when it fails or is interrupted.
    """
    t_start = time.perf_counter()
    chunk, overlap, seed, gl_iters = _check_settings(chunk, overlap, seed, gl_iters)
    dev = _device(device)
    video_path, out_path = Path(video), Path(out)
    mux_path = None if mux is None or not str(mux).strip() else Path(mux)
    if not video_path.exists():
        raise Lip2SpeechError(f"video not found: {video_path}")
    _check_output(out_path, WAV_SUFFIXES, "output", [video_path], overwrite)
    if mux_path is not None:
        _check_output(mux_path, MUX_SUFFIXES, "--mux video", [video_path, out_path], overwrite)
    if net is None:
        net, described = _load(weights)
    else:
        described = f"{type(net).__name__} object"
    net = net.to(dev)
    stages = {}
    t0 = time.perf_counter()
    crops, info = video_crops(video_path, progress=progress)
    stages["crops"] = time.perf_counter() - t0
    n = len(crops)
    t0 = time.perf_counter()
    spec, kind = spectrogram(crops, net, chunk=chunk, overlap=overlap, seed=seed,
                             progress=progress)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    stages["network"] = time.perf_counter() - t0
    del crops
    t0 = time.perf_counter()
    wav = vocode(spec, kind, gl_iters=gl_iters, seed=seed)
    stages["griffin_lim"] = time.perf_counter() - t0
    del spec
    t0 = time.perf_counter()
    mux_video = _write(wav, out_path, mux_path, video_path)
    stages["write"] = time.perf_counter() - t0
    seconds = time.perf_counter() - t_start
    duration = len(wav) / SR
    return Lip2SpeechReport(
        output=str(out_path), mux=None if mux_path is None else str(mux_path),
        mux_video=mux_video, frames=n, samples=len(wav), duration_s=duration,
        face_frames=int(np.count_nonzero(info["face"])),
        chunks=len(chunk_starts(n, chunk, overlap)), chunk=chunk, overlap=overlap, seed=seed,
        gl_iters=gl_iters, seconds=round(seconds, 3),
        speed=round(duration / seconds, 3) if seconds else 0.0, weights=described,
        device=str(dev), stages={k: round(v, 3) for k, v in stages.items()})


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``avlib lip2speech VIDEO -o OUT.wav [...]``."""
    parser.add_argument("video", help="a video of the speaker's face (any frame rate, at least "
                        f"{MIN_FRAMES} frames at 25 fps); its own sound is not used")
    parser.add_argument("-o", "--output", required=True,
                        help="the speech to write: a new .wav (16-bit PCM, 16 kHz mono); see "
                             "--force")
    parser.add_argument("--mux", default=None, metavar="OUT.mp4",
                        help="also write the video with the speech as its sound track "
                             f"({', '.join(MUX_SUFFIXES)}; the picture copied when possible)")
    parser.add_argument("--weights", default=None,
                        help="a chapter-05 checkpoint (G.json of a .json/.safetensors pair) or "
                             "product folder, or an official VCA-GAN Best_*.ckpt. Default "
                             f"${ENV_WEIGHTS}, else the cpu profile's {PRODUCT} product")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                        help=f"video frames per synthesizer pass (>= {MIN_FRAMES}; default "
                             f"{DEFAULT_CHUNK}, GRID's 3 s)")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                        help="frames shared by neighbouring chunks, cross-faded (default "
                             f"{DEFAULT_OVERLAP})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the generator's noise and Griffin-Lim's initial phase "
                             f"(default {DEFAULT_SEED}): the same seed gives the same speech")
    parser.add_argument("--gl-iters", type=int, default=DEFAULT_GL_ITERS,
                        help=f"Griffin-Lim iterations (default {DEFAULT_GL_ITERS})")
    parser.add_argument("--force", action="store_true", help="replace outputs that exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib lip2speech``. Errors are raised and turned into one line on stderr and an exit
    code by :func:`avlib.cli.run_command` (2 usage, 3 input, 4 output, 5 interrupted)."""
    names = ("--chunk", "--overlap", "--seed", "--gl-iters")
    chunk, overlap, seed, gl_iters = _check_settings(args.chunk, args.overlap, args.seed,
                                                     args.gl_iters, names)
    report = lip2speech(args.video, args.output, weights=args.weights, mux=args.mux,
                        overwrite=args.force, chunk=chunk, overlap=overlap, seed=seed,
                        gl_iters=gl_iters, device=args.device, progress=not args.no_progress)
    n = report.frames
    no_face = n - report.face_frames
    print(f"video      {args.video}: {n} frames ({n / FPS:.2f} s at 25 fps)"
          + (f", {no_face} without a tracked face (interpolated)" if no_face else ""))
    print(f"weights    {report.weights}")
    print(f"chunks     {report.chunks} of up to {report.chunk} frames, overlap {report.overlap}; "
          f"seed {report.seed}, Griffin-Lim {report.gl_iters} iterations")
    print(f"wrote      {report.output}: {report.samples} samples ({report.duration_s:.2f} s, "
          f"16 kHz 16-bit PCM) in {report.seconds:.1f} s ({report.speed:.2f} s of speech per s, "
          f"{report.device})")
    if report.mux:
        how = "picture copied" if report.mux_video == "copy" else "picture re-encoded to H.264"
        print(f"muxed      {report.mux}: the video with the speech as its sound ({how})")
    stages = "  ".join(f"{k} {v:.1f} s" for k, v in report.stages.items())
    print(f"stages     {stages}")
    return EXIT_OK
