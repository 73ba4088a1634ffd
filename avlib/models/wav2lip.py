"""Wav2Lip's expert lip-sync discriminator ``SyncNet_color`` (spec §2.3).

A face encoder embeds the lower halves of five 96x96 BGR frames stacked as 15 channels, an
audio encoder embeds a 16-frame Wav2Lip mel window (0.2 s), and both 512-d embeddings are
L2-normalised. Training scores a pair by their cosine similarity and applies binary cross
entropy (:func:`expert_loss`). Block indices follow the official ``lipsync_expert.pth`` keys
(``face_encoder.{0..16}.conv_block.*``, ``audio_encoder.{0..13}.conv_block.*``).

The module also holds the generator :class:`Wav2Lip` (spec §2.4) and the visual-quality
discriminator :class:`Wav2LipDisc` (``Wav2Lip_disc_qual``, spec §2.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avlib.models.blocks import (
    Conv2dBlock,
    ConvTranspose2dBlock,
    LeakyConv2dBlock,
    build_conv_stack,
    scale_channels,
)

FACE_SHAPE = (15, 48, 96)  # 5 frames x BGR, lower half (rows 48-95) of 96x96 crops
MEL_SHAPE = (1, 80, 16)  # 80 mel bins x 16 frames at 80 Hz = 0.2 s


def _face_layout(c):
    """Rows (out, kernel, stride, padding, residual) of the face encoder, 17 blocks."""
    return [
        (c(32), 7, 1, 3, False),  # 0: 32 x 48 x 96
        (c(64), 5, (1, 2), 1, False),  # 1: 64 x 46 x 47
        (c(64), 3, 1, 1, True),
        (c(64), 3, 1, 1, True),
        (c(128), 3, 2, 1, False),  # 4: 128 x 23 x 24
        (c(128), 3, 1, 1, True),
        (c(128), 3, 1, 1, True),
        (c(128), 3, 1, 1, True),
        (c(256), 3, 2, 1, False),  # 8: 256 x 12 x 12
        (c(256), 3, 1, 1, True),
        (c(256), 3, 1, 1, True),
        (c(512), 3, 2, 1, False),  # 11: 512 x 6 x 6
        (c(512), 3, 1, 1, True),
        (c(512), 3, 1, 1, True),
        (c(512), 3, 2, 1, False),  # 14: 512 x 3 x 3
        (c(512), 3, 1, 0, False),  # 15: 512 x 1 x 1
        (c(512), 1, 1, 0, False),  # 16: 512 x 1 x 1
    ]


def _audio_layout(c):
    """Rows (out, kernel, stride, padding, residual) of the audio encoder, 14 blocks."""
    return [
        (c(32), 3, 1, 1, False),  # 0: 32 x 80 x 16
        (c(32), 3, 1, 1, True),
        (c(32), 3, 1, 1, True),
        (c(64), 3, (3, 1), 1, False),  # 3: 64 x 27 x 16
        (c(64), 3, 1, 1, True),
        (c(64), 3, 1, 1, True),
        (c(128), 3, 3, 1, False),  # 6: 128 x 9 x 6
        (c(128), 3, 1, 1, True),
        (c(128), 3, 1, 1, True),
        (c(256), 3, (3, 2), 1, False),  # 9: 256 x 3 x 3
        (c(256), 3, 1, 1, True),
        (c(256), 3, 1, 1, True),
        (c(512), 3, 1, 0, False),  # 12: 512 x 1 x 1
        (c(512), 1, 1, 0, False),  # 13: 512 x 1 x 1
    ]


CROP = 96  #: side of the face crops the expert (and VocaLiST) read


def face_halves(frames: np.ndarray) -> np.ndarray:
    """The face stream's per-frame input: (T, 96, 96, 3) uint8 **BGR** crops -> (T, 3, 48, 96)
    float32 lower halves (rows 48-95) in [0, 1], channels first.

    Computed as float64 / 255 then rounded to float32, like upstream's numpy division followed by
    ``torch.FloatTensor``. :func:`face_windows` stacks five of them into the network's input.
    Shared by the Wav2Lip expert, the Wav2Lip generator's sync loss and VocaLiST.
    """
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[1:] != (CROP, CROP, 3) or arr.dtype != np.uint8:
        raise ValueError(f"expected (T, {CROP}, {CROP}, 3) uint8 BGR face crops, got "
                         f"{arr.shape} {arr.dtype}")
    return (arr[:, CROP // 2:].transpose(0, 3, 1, 2) / 255.0).astype(np.float32)


def face_windows(halves, starts) -> torch.Tensor:
    """Five consecutive lower halves from each start, frame-major: ``halves`` (T, 3, 48, 96)
    (array or tensor), ``starts`` (B,) -> (B, 15, 48, 96) (f0 B,G,R, f1 B,G,R, ...)."""
    halves = torch.as_tensor(halves)
    index = torch.as_tensor(starts, dtype=torch.long)[:, None] + torch.arange(5)
    windows = halves[index]  # (B, 5, 3, 48, 96)
    return windows.reshape(windows.shape[0], 15, *halves.shape[2:])


@dataclass(frozen=True)
class Wav2LipExpertConfig:
    """The size of a :class:`Wav2LipExpert`. The default is the released ``lipsync_expert.pth``."""

    width: float = 1.0  #: channel multiplier (the embedding size is ``round(512 * width)``)

    @classmethod
    def official(cls) -> "Wav2LipExpertConfig":
        return cls()

    @classmethod
    def named(cls, size: str) -> "Wav2LipExpertConfig":
        """A named size: ``"official"`` or ``"cpu"`` (width 1/8)."""
        if size not in EXPERT_SIZES:
            raise ValueError(f"unknown Wav2LipExpert size {size!r}; named sizes: "
                             f"{sorted(EXPERT_SIZES)}")
        return EXPERT_SIZES[size]


EXPERT_SIZES = {"official": Wav2LipExpertConfig(), "cpu": Wav2LipExpertConfig(0.125)}


class Wav2LipExpert(nn.Module):
    """Wav2Lip's lip-sync expert (``SyncNet_color`` upstream; before avlib 0.2 ``SyncNetColor``).

    Args:
        width: channel multiplier (1.0 = official, 16,435,072 parameters; the embedding size
            is ``round(512 * width)``).
    """

    registry_name = "wav2lip_expert"
    config_class = Wav2LipExpertConfig
    crop_stream = "face96"  #: the store's crops it reads (96 x 96 BGR faces; lower halves used)
    similarity = "cosine"  #: pairs are scored by the cosine of the embeddings

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.config = {"name": self.registry_name, "kwargs": {"width": width}}

        def c(n: int) -> int:
            return scale_channels(n, width)

        self.emb_dim = c(512)
        self.face_encoder = build_conv_stack(Conv2dBlock, FACE_SHAPE[0], _face_layout(c))
        self.audio_encoder = build_conv_stack(Conv2dBlock, MEL_SHAPE[0], _audio_layout(c))

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a mel window and a 5-frame face window.

        Args:
            mel: (B, 1, 80, 16) Wav2Lip mel (values in [-4, 4]), 16 frames at 80 Hz.
            faces: (B, 15, 48, 96) lower halves of 5 consecutive 96x96 **BGR** crops scaled to
                [0, 1], frame-major channels (f0 B,G,R, f1 B,G,R, ...).

        Returns:
            ``(audio_emb, face_emb)``, each (B, emb_dim), L2-normalised and non-negative.
        """
        if mel.ndim != 4 or tuple(mel.shape[1:]) != MEL_SHAPE:
            raise ValueError(
                f"Wav2LipExpert expects mel windows of shape (B, 1, 80, 16), got {tuple(mel.shape)}"
            )
        if faces.ndim != 4 or tuple(faces.shape[1:]) != FACE_SHAPE:
            raise ValueError(
                "Wav2LipExpert expects faces of shape (B, 15, 48, 96): the lower halves of 5 "
                f"BGR 96x96 crops stacked frame-major; got {tuple(faces.shape)}"
            )
        audio_emb = self.audio_encoder(mel).flatten(1)
        face_emb = self.face_encoder(faces).flatten(1)
        return F.normalize(audio_emb, p=2, dim=1), F.normalize(face_emb, p=2, dim=1)


def expert_loss(
    audio_emb: torch.Tensor, face_emb: torch.Tensor, y: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """Binary cross entropy on the cosine similarity of the two embeddings (Wav2Lip's loss).

    BCE needs a probability. The cosine is one here because both encoders end in a ReLU:
    embeddings are non-negative, so their cosine lies in [0, 1] (0 = orthogonal = off-sync,
    1 = same direction = in sync). The cosine is clamped to ``[eps, 1 - eps]`` because an exact
    0 or 1 (a dead embedding, or rounding just above 1) would make BCE return its clamped
    log value of 100 and a useless gradient.

    Args:
        audio_emb: (B, D) audio embeddings (need not be normalised).
        face_emb: (B, D) face embeddings.
        y: (B,) or (B, 1) targets, 1 = in sync, 0 = off sync.

    Returns:
        Scalar mean loss.
    """
    if audio_emb.shape != face_emb.shape or audio_emb.ndim != 2:
        raise ValueError(
            f"expert_loss needs two (B, D) embeddings of equal shape, got {tuple(audio_emb.shape)}"
            f" and {tuple(face_emb.shape)}"
        )
    target = y.reshape(-1).to(audio_emb.dtype)
    if target.shape[0] != audio_emb.shape[0]:
        raise ValueError(
            f"y must hold one target per pair ({audio_emb.shape[0]}), got {tuple(y.shape)}"
        )
    similarity = F.cosine_similarity(audio_emb, face_emb, dim=1)
    return F.binary_cross_entropy(similarity.clamp(eps, 1.0 - eps), target)


# --------------------------------------------------------------------------- generator (§2.4)
GEN_FACE_SHAPE = (6, CROP, CROP)  # [masked target BGR || reference BGR], /255
GEN_OUT_SHAPE = (3, CROP, CROP)  # BGR in [0, 1] (sigmoid)


def _generator_face_layout(c):
    """The seven face-encoder blocks, each a list of rows (out, kernel, stride, padding,
    residual); the generator keeps the feature map after every block for the decoder."""

    def down(channels: int, n_residual: int):
        # A stride-2 3x3 convolution halves the map, then residual 3x3 blocks.
        return [(c(channels), 3, 2, 1, False)] + [(c(channels), 3, 1, 1, True)] * n_residual

    return [
        [(c(16), 7, 1, 3, False)],  # 0: 16 x 96 x 96
        down(32, 2),  # 1: 32 x 48 x 48
        down(64, 3),  # 2: 64 x 24 x 24
        down(128, 2),  # 3: 128 x 12 x 12
        down(256, 2),  # 4: 256 x 6 x 6
        down(512, 1),  # 5: 512 x 3 x 3
        [(c(512), 3, 1, 0, False), (c(512), 1, 1, 0, False)],  # 6: 512 x 1 x 1
    ]


def _generator_audio_layout(c):
    """The generator's audio encoder: the expert's (:func:`_audio_layout`) with a single
    residual block after the 256-channel layer, 13 blocks in all."""
    rows = _audio_layout(c)
    return rows[:11] + rows[12:]


#: Decoder blocks 1-6: (transposed-conv output channels, stride, padding, output_padding,
#: residual 3x3 blocks after it). Block 0 is a 1x1 convolution on the audio embedding.
_DECODER_UP = [
    (512, 1, 0, 0, 1),  # 1: 1x1 -> 3x3
    (512, 2, 1, 1, 2),  # 2: -> 6x6
    (384, 2, 1, 1, 2),  # 3: -> 12x12
    (256, 2, 1, 1, 2),  # 4: -> 24x24
    (128, 2, 1, 1, 2),  # 5: -> 48x48
    (64, 2, 1, 1, 2),  # 6: -> 96x96
]


def _check_width(width: float) -> None:
    scale_channels(1, width)  # raises on width <= 0


def _fold_time(x: torch.Tensor, time_dim: int) -> torch.Tensor:
    """``(B, ..., T at time_dim, ...)`` -> ``(T * B, ...)`` with the time axis removed, in
    time-major order: row ``t * B + b`` is frame ``t`` of sample ``b`` (the order upstream gets
    by concatenating the per-frame slices along the batch)."""
    moved = x.movedim(time_dim, 0)  # (T, B, ...)
    return moved.reshape(moved.shape[0] * moved.shape[1], *moved.shape[2:])


@dataclass(frozen=True)
class Wav2LipConfig:
    """The size of a :class:`Wav2Lip` generator. The default is the released ``wav2lip.pth``
    / ``wav2lip_gan.pth``."""

    width: float = 1.0  #: channel multiplier of every block (the output stays 3 channels)

    @classmethod
    def official(cls) -> "Wav2LipConfig":
        return cls()

    @classmethod
    def named(cls, size: str) -> "Wav2LipConfig":
        """A named size: ``"official"`` or ``"cpu"`` (width 1/8)."""
        if size not in GENERATOR_SIZES:
            raise ValueError(f"unknown Wav2Lip size {size!r}; named sizes: "
                             f"{sorted(GENERATOR_SIZES)}")
        return GENERATOR_SIZES[size]


GENERATOR_SIZES = {"official": Wav2LipConfig(), "cpu": Wav2LipConfig(0.125)}


class Wav2Lip(nn.Module):
    """Wav2Lip's generator (class ``Wav2Lip`` upstream, spec §2.4).

    A face encoder (U-Net style, seven blocks whose outputs are kept) reads the 6-channel face
    input; an audio encoder turns the 16-frame mel window into a ``512 x 1 x 1`` embedding,
    which is the decoder's starting point. After each decoder block the matching encoder
    feature is concatenated (decoder output first, deepest feature first), and an output block
    (3x3 conv block, 1x1 conv, sigmoid) produces the BGR face.

    Args:
        width: channel multiplier (1.0 = official: 36,298,035 parameters, 352 state-dict
            entries, the keys of ``wav2lip.pth``).
    """

    registry_name = "wav2lip"
    config_class = Wav2LipConfig
    crop_stream = "face96"  #: the store's crops it reads (96 x 96 BGR faces)

    def __init__(self, width: float = 1.0):
        super().__init__()
        _check_width(width)
        self.config = {"name": self.registry_name, "kwargs": {"width": width}}

        def c(n: int) -> int:
            return scale_channels(n, width)

        blocks = []
        enc_channels = []
        channels = GEN_FACE_SHAPE[0]
        for layout in _generator_face_layout(c):
            blocks.append(build_conv_stack(Conv2dBlock, channels, layout))
            channels = layout[-1][0]
            enc_channels.append(channels)
        self.face_encoder_blocks = nn.ModuleList(blocks)
        self.audio_encoder = build_conv_stack(Conv2dBlock, MEL_SHAPE[0],
                                              _generator_audio_layout(c))

        # Decoder: block 0 maps the audio embedding, then each block upsamples; the encoder
        # features are concatenated after every block, deepest first.
        skips = list(enc_channels)
        decoder = [nn.Sequential(Conv2dBlock(c(512), c(512), 1, 1, 0))]
        channels = c(512) + skips.pop()
        for out, stride, padding, output_padding, n_residual in _DECODER_UP:
            layers = [ConvTranspose2dBlock(channels, c(out), 3, stride, padding, output_padding)]
            layers += [Conv2dBlock(c(out), c(out), 3, 1, 1, residual=True)
                       for _ in range(n_residual)]
            decoder.append(nn.Sequential(*layers))
            channels = c(out) + skips.pop()
        self.face_decoder_blocks = nn.ModuleList(decoder)
        self.output_block = nn.Sequential(
            Conv2dBlock(channels, c(32), 3, 1, 1),
            nn.Conv2d(c(32), GEN_OUT_SHAPE[0], 1, 1, 0),
            nn.Sigmoid(),
        )

    def forward(self, audio: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        """Generate faces. **Audio comes first**, as upstream.

        Two layouts are accepted:

        * one frame per sample: ``audio`` (B, 1, 80, 16), ``face`` (B, 6, 96, 96) ->
          (B, 3, 96, 96);
        * a window of T frames: ``audio`` (B, T, 1, 80, 16), ``face`` (B, 6, T, 96, 96) ->
          (B, 3, T, 96, 96). The frames are independent: they are folded into the batch
          **time-major** exactly as upstream (row ``t * B + b`` holds frame ``t`` of sample
          ``b``, i.e. the per-frame slices ``audio[:, t]`` / ``face[:, :, t]`` concatenated
          along the batch for t = 0..T-1), and the output is cut back into T chunks of B and
          stacked on dim 2. Frame t of the 5-D output equals the 4-D output for frame t.

        ``face`` is BGR scaled to [0, 1] with channels [target frame with rows 48-95 zeroed
        (3) || reference frame (3)]; ``audio`` is the Wav2Lip mel window of that frame. The
        output is BGR in [0, 1] (sigmoid).
        """
        if audio.ndim == 4 and face.ndim == 4:
            self._check_frame(tuple(audio.shape), tuple(face.shape), 1)
            return self._generate(audio, face)
        if audio.ndim == 5 and face.ndim == 5:
            batch, steps = audio.shape[0], audio.shape[1]
            self._check_frame((audio.shape[0], *audio.shape[2:]),
                              (face.shape[0], face.shape[1], *face.shape[3:]), steps)
            if face.shape[2] != steps:
                raise ValueError(
                    f"Wav2Lip: audio holds {steps} frames (dim 1) but face holds "
                    f"{face.shape[2]} (dim 2); audio (B, T, 1, 80, 16), face (B, 6, T, 96, 96)")
            out = self._generate(_fold_time(audio, 1), _fold_time(face, 2))  # (T*B, 3, H, W)
            return out.reshape(steps, batch, *out.shape[1:]).permute(1, 2, 0, 3, 4)
        raise ValueError(
            "Wav2Lip expects audio (B, 1, 80, 16) with face (B, 6, 96, 96), or windows audio "
            f"(B, T, 1, 80, 16) with face (B, 6, T, 96, 96); got audio {tuple(audio.shape)} and "
            f"face {tuple(face.shape)} (audio comes first)")

    @staticmethod
    def _check_frame(audio_shape: tuple, face_shape: tuple, steps: int) -> None:
        per_frame = "(B, 1, 80, 16)" if steps == 1 else "(B, T, 1, 80, 16)"
        if tuple(audio_shape[1:]) != MEL_SHAPE:
            raise ValueError(f"Wav2Lip expects audio {per_frame} mel windows (audio first, then "
                             f"face); got audio with per-frame shape {tuple(audio_shape[1:])}")
        if tuple(face_shape[1:]) != GEN_FACE_SHAPE:
            raise ValueError(
                "Wav2Lip expects faces with 6 channels (masked target BGR || reference BGR) of "
                f"96 x 96 pixels; got per-frame shape {tuple(face_shape[1:])}")
        if audio_shape[0] != face_shape[0]:
            raise ValueError(f"Wav2Lip: audio batch {audio_shape[0]} != face batch "
                             f"{face_shape[0]}")

    def _generate(self, audio: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        x = face
        features = []
        for block in self.face_encoder_blocks:
            x = block(x)
            features.append(x)
        x = self.audio_encoder(audio)  # (N, 512, 1, 1)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), features.pop()), dim=1)
        return self.output_block(x)


# --------------------------------------------------------------------------- quality disc (§2.5)
def _disc_layout(c):
    """The seven blocks of the visual-quality discriminator: rows (out, kernel, stride,
    padding), no norm, LeakyReLU(0.01). Input: lower half 3 x 48 x 96."""
    return [
        [(c(32), 7, 1, 3)],  # 0: 32 x 48 x 96
        [(c(64), 5, (1, 2), 2), (c(64), 5, 1, 2)],  # 1: 64 x 48 x 48
        [(c(128), 5, 2, 2), (c(128), 5, 1, 2)],  # 2: 128 x 24 x 24
        [(c(256), 5, 2, 2), (c(256), 5, 1, 2)],  # 3: 256 x 12 x 12
        [(c(512), 3, 2, 1), (c(512), 3, 1, 1)],  # 4: 512 x 6 x 6
        [(c(512), 3, 2, 1), (c(512), 3, 1, 1)],  # 5: 512 x 3 x 3
        [(c(512), 3, 1, 0), (c(512), 1, 1, 0)],  # 6: 512 x 1 x 1
    ]


@dataclass(frozen=True)
class Wav2LipDiscConfig:
    """The size of a :class:`Wav2LipDisc`. The default is the released quality discriminator
    (``disc_checkpoint_step*.pth`` of ``hq_wav2lip_train.py``)."""

    width: float = 1.0  #: channel multiplier of every convolution (the output stays 1 channel)

    @classmethod
    def official(cls) -> "Wav2LipDiscConfig":
        return cls()

    @classmethod
    def named(cls, size: str) -> "Wav2LipDiscConfig":
        """A named size: ``"official"`` or ``"cpu"`` (width 1/8)."""
        if size not in DISC_SIZES:
            raise ValueError(f"unknown Wav2LipDisc size {size!r}; named sizes: "
                             f"{sorted(DISC_SIZES)}")
        return DISC_SIZES[size]


DISC_SIZES = {"official": Wav2LipDiscConfig(), "cpu": Wav2LipDiscConfig(0.125)}


class Wav2LipDisc(nn.Module):
    """Wav2Lip's visual-quality discriminator (``Wav2Lip_disc_qual`` upstream, spec §2.5).

    Convolutions without norm, each followed by LeakyReLU(0.01), read the lower half (rows
    48-95) of each 96x96 BGR frame; a 1x1 convolution and a sigmoid give the probability that
    the frame is real.

    Args:
        width: channel multiplier (1.0 = official: 14,113,793 parameters, 28 state-dict
            entries).
    """

    registry_name = "wav2lip_disc"
    config_class = Wav2LipDiscConfig
    crop_stream = "face96"  #: the store's crops it reads (96 x 96 BGR faces; lower halves used)

    def __init__(self, width: float = 1.0):
        super().__init__()
        _check_width(width)
        self.config = {"name": self.registry_name, "kwargs": {"width": width}}

        def c(n: int) -> int:
            return scale_channels(n, width)

        blocks = []
        channels = 3
        for layout in _disc_layout(c):
            layers = []
            for out, kernel, stride, padding in layout:
                layers.append(LeakyConv2dBlock(channels, out, kernel, stride, padding))
                channels = out
            blocks.append(nn.Sequential(*layers))
        self.face_encoder_blocks = nn.ModuleList(blocks)
        self.binary_pred = nn.Sequential(nn.Conv2d(channels, 1, 1, 1, 0), nn.Sigmoid())

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Probability that each frame is a real face.

        Args:
            faces: (B, 3, T, 96, 96) clips or (B, 3, 96, 96) frames, BGR in [0, 1] (full
                frames: the lower half is taken here). Clips are folded into the batch
                time-major like :meth:`Wav2Lip.forward` (row ``t * B + b`` = frame t of b).

        Returns:
            (B * T, 1) probabilities in that time-major order ((B, 1) for 4-D input).
        """
        if faces.ndim == 5 and faces.shape[1] == 3 and tuple(faces.shape[3:]) == (CROP, CROP):
            faces = _fold_time(faces, 2)
        elif not (faces.ndim == 4 and tuple(faces.shape[1:]) == (3, CROP, CROP)):
            raise ValueError(
                "Wav2LipDisc expects BGR clips (B, 3, T, 96, 96) or frames (B, 3, 96, 96); got "
                f"{tuple(faces.shape)}")
        x = faces[:, :, CROP // 2:]  # lower half: 3 x 48 x 96
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).flatten(1)

    def perceptual_forward(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial loss ``BCE(D(fake), 1)`` (scalar), computed on the
        device and dtype of ``fake`` (upstream hard-codes CUDA)."""
        pred = self(fake)
        return F.binary_cross_entropy(pred, torch.ones_like(pred))
