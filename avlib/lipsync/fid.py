"""FID (Fréchet Inception Distance) of generated frames against real ones, as Wav2Lip reports it.

Wav2Lip's FID (spec §2.8, Table 1 in §2.9) is pytorch-fid run on the dumped frames of the real and
the generated videos: every image goes through the **FID variant of InceptionV3** (the network
TensorFlow's original FID code used, ported to PyTorch as ``pt_inception-2015-12-05``), its
2048-d ``pool3`` activations are summarised by their mean and covariance, and the two Gaussians
are compared with the Fréchet distance

    FID = |mu_r - mu_g|^2 + tr(S_r) + tr(S_g) - 2 tr((S_r S_g)^(1/2)).

This module rebuilds that network (:class:`FIDInceptionV3`), with the same parameter names as
the ``pt_inception-2015-12-05-6726825d.pth`` checkpoint (``Conv2d_1a_3x3.conv.weight``,
``Conv2d_1a_3x3.bn.running_mean``, ``Mixed_5b.branch1x1.conv.weight``, ... ``Mixed_7c.*``,
``fc.*``), so the user's copy of that file loads into it. **Nothing is downloaded**: FID needs
that file on disk (pass its path, or set ``$AVLIB_FID_INCEPTION``); without it :func:`fid`
explains where to put it. The network is our own code written from the published architecture
(torchvision's InceptionV3 with the FID variant's pooling changes), not a copy of pytorch-fid.

What the FID variant changes against the ImageNet InceptionV3 (and what the images go through):

* input: RGB in [0, 1], resized to **299 x 299 bilinearly** (``align_corners=False``, no
  antialiasing), scaled to **[-1, 1]** (``2 x - 1``);
* ``Mixed_5b/5c/5d`` (InceptionA), ``Mixed_6b..6e`` (InceptionC) and ``Mixed_7b``
  (InceptionE) average-pool their pooling branch **without counting the zero padding**
  (``count_include_pad=False``); ``Mixed_7c`` max-pools that branch instead (3 x 3, stride 1);
* 1008 classes in ``fc`` (unused here) and no auxiliary classifier;
* output: the global average of ``Mixed_7c`` (N, 2048), before dropout and ``fc``.

Statistics are float64 with the unbiased covariance (``np.cov(rowvar=False)``), as pytorch-fid.
The matrix square root: :func:`frechet_distance` uses ``scipy.linalg.sqrtm`` of ``S_r S_g`` when
SciPy is installed (pytorch-fid's computation, with its fallback of adding ``1e-6 I`` when the
root is not finite), or, with ``method="eigh"`` (and when SciPy is absent), the identity
``tr((S_r S_g)^(1/2)) = tr((S_r^(1/2) S_g S_r^(1/2))^(1/2))`` computed with two symmetric
eigendecompositions: the same number, ten times faster at 2048 dimensions and exact for the
rank-deficient covariances of small sets. :func:`fid_from_features` adds ``method="gram"``:
with fewer images than dimensions the trace is the nuclear norm of the (N_r x N_g) cross-Gram
matrix of the centred features, which needs no 2048 x 2048 matrix at all.

FID is biased by the number of images (small sets read high): compare numbers computed on
sets of the same size only, and use thousands of frames for a number worth reporting (the
paper's sets are whole test splits).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ENV_CHECKPOINT",
    "CHECKPOINT_NAME",
    "FID_DIMS",
    "FIDInceptionV3",
    "FIDCheckpointMissing",
    "load_inception",
    "inception_features",
    "activation_statistics",
    "frechet_distance",
    "fid_from_features",
    "fid",
]

#: Environment variable naming the user's FID Inception checkpoint.
ENV_CHECKPOINT = "AVLIB_FID_INCEPTION"
#: File name under which pytorch-fid publishes the FID Inception weights.
CHECKPOINT_NAME = "pt_inception-2015-12-05-6726825d.pth"
#: Dimension of the pool3 features.
FID_DIMS = 2048
#: Input side the network was trained and evaluated at.
INPUT_SIZE = 299
_N_CLASSES = 1008  # the 2015 TensorFlow graph has 1008 outputs (1000 classes + 8 unused)
_BN_EPS = 1e-3
_SQRTM_EPS = 1e-6  # pytorch-fid's diagonal offset when the matrix root is not finite


class FIDCheckpointMissing(FileNotFoundError):
    """No FID Inception checkpoint was given, or the file named does not exist."""


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------
class _ConvBN(nn.Module):
    """Convolution without bias, BatchNorm (eps 0.001), ReLU: keys ``conv.*`` and ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3 x 3 average, stride 1, padding 1, the padding not counted (the FID variant)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """35 x 35 block (``Mixed_5b/5c/5d``): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-1x1."""

    def __init__(self, c_in: int, pool_out: int):
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, 64, 1)
        self.branch5x5_1 = _ConvBN(c_in, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(c_in, pool_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class _ReductionB(nn.Module):
    """35 -> 17 reduction (``Mixed_6a``): 3x3/2 | 1x1-3x3-3x3/2 | max/2."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = _ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions (``Mixed_6b..6e``)."""

    def __init__(self, c_in: int, mid: int):
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, 192, 1)
        self.branch7x7_1 = _ConvBN(c_in, mid, 1)
        self.branch7x7_2 = _ConvBN(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(mid, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(c_in, mid, 1)
        self.branch7x7dbl_2 = _ConvBN(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(mid, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(_avg3(x))], 1)


class _ReductionD(nn.Module):
    """17 -> 8 reduction (``Mixed_7a``): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max/2."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = _ConvBN(c_in, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tower = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            tower = layer(tower)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), tower,
                          F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 outputs (``Mixed_7b``: average pool without the
    padding; ``Mixed_7c``: max pool, both 3 x 3 stride 1 in the FID variant)."""

    def __init__(self, c_in: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = _ConvBN(c_in, 320, 1)
        self.branch3x3_1 = _ConvBN(c_in, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """The FID variant of InceptionV3 (``pt_inception-2015-12-05``): images -> pool3 features.

    ``forward(x)`` takes RGB images (N, 3, H, W) in [0, 1] (any H, W), resizes them to
    ``input_size`` bilinearly, maps them to [-1, 1] and returns the (N, 2048) global average of
    ``Mixed_7c``. :meth:`logits` adds the 1008-way ``fc`` layer (not used by FID).

    ``input_size`` other than 299 exists for fast tests of the plumbing only: features at
    another size are not FID features. The smallest size the strides allow is 75.
    """

    def __init__(self, input_size: int = INPUT_SIZE):
        super().__init__()
        if int(input_size) < 75:
            raise ValueError(f"input_size must be at least 75 pixels, got {input_size}")
        self.input_size = int(input_size)
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _ReductionB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _ReductionD(768)
        self.Mixed_7b = _BlockE(1280, "avg")
        self.Mixed_7c = _BlockE(2048, "max")
        self.fc = nn.Linear(FID_DIMS, _N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 2048) pool3 features."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (N, 3, H, W), got shape {tuple(x.shape)}")
        size = self.input_size
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x.mean((2, 3))

    forward = features

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1008) class scores of the 2015 graph (for checking a loaded checkpoint)."""
        return self.fc(self.features(x))


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def _missing_message(what: str) -> str:
    return (
        f"{what}. FID needs the weights of the FID Inception network, pytorch-fid's "
        f"{CHECKPOINT_NAME} (the 2015-12-05 TensorFlow Inception ported to PyTorch, ~91 MB); "
        "nothing is downloaded here. Copy that file to disk (for instance "
        f"~/.cache/avlib/{CHECKPOINT_NAME}) and pass its path, fid(..., checkpoint=PATH) or "
        f"load_inception(PATH), or set the environment variable {ENV_CHECKPOINT}=PATH. "
        "The ImageNet InceptionV3 of torchvision is a different network: its FID numbers do "
        "not compare with published ones."
    )


def _checkpoint_path(checkpoint: str | os.PathLike | None) -> Path:
    from_env = checkpoint is None
    value = os.environ.get(ENV_CHECKPOINT, "") if from_env else checkpoint
    if value is None or str(value).strip() == "":
        raise FIDCheckpointMissing(_missing_message(
            f"no FID Inception checkpoint given and ${ENV_CHECKPOINT} is not set"))
    path = Path(value).expanduser()
    if not path.is_file():
        origin = f" (from ${ENV_CHECKPOINT})" if from_env else ""
        raise FIDCheckpointMissing(_missing_message(
            f"the FID Inception checkpoint {path}{origin} does not exist"))
    return path


def load_inception(checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                   input_size: int = INPUT_SIZE) -> FIDInceptionV3:
    """The FID Inception network with the user's ``pt_inception-2015-12-05`` weights, in eval
    mode on ``device``.

    ``checkpoint``: the ``.pth`` file (a bare state dict, read with ``torch.load(...,
    weights_only=True)``: no code in the file runs); None reads ``$AVLIB_FID_INCEPTION``.
    Missing BatchNorm ``num_batches_tracked`` counters are filled; any other missing,
    unexpected or misshapen tensor raises :class:`avlib.checkpoints.CheckpointMismatch`.

    Raises:
        FIDCheckpointMissing: no path given (and the variable unset) or the file is absent.
    """
    from avlib.checkpoints import load_official

    path = _checkpoint_path(checkpoint)
    model = FIDInceptionV3(input_size=input_size)
    load_official(model, path)
    return model.eval().to(device)


# --------------------------------------------------------------------------------------------
# features and statistics
# --------------------------------------------------------------------------------------------
def _as_images(frames, order: str) -> np.ndarray:
    if order not in ("rgb", "bgr"):
        raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r}")
    images = np.asarray(frames)
    if images.ndim == 3 and images.shape[-1] == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 images (N, H, W, 3), got {images.dtype} "
                         f"{images.shape}")
    if len(images) == 0:
        raise ValueError("no frames given")
    return images if order == "rgb" else images[..., ::-1]


@torch.no_grad()
def inception_features(frames, model: FIDInceptionV3 | None = None, *, order: str = "bgr",
                       batch_size: int = 50, device: str | torch.device = "cpu",
                       checkpoint: str | os.PathLike | None = None) -> np.ndarray:
    """Pool3 features (N, 2048) float64 of uint8 images (N, H, W, 3) in ``order``.

    ``model``: a loaded :class:`FIDInceptionV3`; None loads ``checkpoint`` (or
    ``$AVLIB_FID_INCEPTION``) with :func:`load_inception`. Images are fed as pytorch-fid feeds
    its PNGs: RGB scaled to [0, 1], then resized and normalised inside the network. A list of
    arrays of different sizes works too (each batch is stacked after resizing).
    """
    if model is None:
        model = load_inception(checkpoint, device)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(frames, (list, tuple)) and frames and \
            len({np.asarray(f).shape for f in frames}) > 1:  # mixed sizes: one at a time
        return np.concatenate([inception_features(f, model, order=order, device=device)
                               for f in frames])
    images = _as_images(frames, order)
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device  # `device` only places a model loaded here
    out = np.empty((len(images), FID_DIMS), np.float64)
    try:
        for a in range(0, len(images), int(batch_size)):
            batch = np.ascontiguousarray(images[a:a + int(batch_size)])
            x = torch.from_numpy(batch).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
            out[a:a + len(batch)] = model(x).double().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def activation_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), float64 (N >= 2)."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need features (N, D) with N >= 2 to estimate a covariance, got "
                         f"shape {feats.shape}")
    return feats.mean(0), np.cov(feats, rowvar=False)


def _have_scipy() -> bool:
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _trace_sqrt_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def _trace_sqrt_scipy(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    import warnings

    import scipy.linalg

    def root(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "matrix is singular": handled below, as pytorch-fid
            warnings.simplefilter("ignore")
            out = scipy.linalg.sqrtm(a @ b)
        return out[0] if isinstance(out, tuple) else out

    covmean = root(sigma1, sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * _SQRTM_EPS
        covmean = root(sigma1 + offset, sigma2 + offset)
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > 1e-3:
            raise ValueError(f"the matrix square root has an imaginary part of {imaginary:.3g} "
                             "on its diagonal; use method='eigh'")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "auto") -> float:
    """Fréchet distance of two Gaussians: ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)``.

    ``method``: ``"scipy"`` (``scipy.linalg.sqrtm`` of ``S1 S2``, pytorch-fid's way; a
    ``1e-6 I`` offset is added when the root is not finite), ``"eigh"`` (symmetric
    eigendecompositions, no SciPy needed), or ``"auto"``: SciPy when it is installed, else eigh.
    The result is clipped at 0 (round-off can make the distance of a set to itself -1e-9).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = len(mu1)
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 "
                         f"{mu2.shape}, sigma2 {sigma2.shape}")
    if method == "auto":
        method = "scipy" if _have_scipy() else "eigh"
    if method == "scipy":
        trace_root = _trace_sqrt_scipy(sigma1, sigma2)
    elif method == "eigh":
        trace_root = _trace_sqrt_eigh(sigma1, sigma2)
    else:
        raise ValueError(f"method must be 'auto', 'scipy' or 'eigh', got {method!r}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root
    return float(max(value, 0.0))


def fid_from_features(features1, features2, method: str = "auto") -> float:
    """FID of two feature sets (N1, D), (N2, D) (float64 statistics, unbiased covariances).

    ``method``: as :func:`frechet_distance`, plus ``"gram"``: ``tr((S1 S2)^½)`` as the nuclear
    norm of ``X1 X2^T / sqrt((N1 - 1)(N2 - 1))`` (X = centred features), exact and fast when
    the sets are smaller than D. ``"auto"`` takes ``"gram"`` when both sets are smaller than
    D, else SciPy (or eigh without SciPy).
    """
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {f1.shape}, {f2.shape}")
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError("each set needs at least 2 images to estimate a covariance")
    d = f1.shape[1]
    if method == "auto" and max(len(f1), len(f2)) < d:
        method = "gram"
    if method != "gram":
        return frechet_distance(*activation_statistics(f1), *activation_statistics(f2), method)
    x1, x2 = f1 - f1.mean(0), f2 - f2.mean(0)
    cross = (x1 @ x2.T) / np.sqrt((len(f1) - 1) * (len(f2) - 1))
    trace_root = np.linalg.svd(cross, compute_uv=False).sum()
    diff = f1.mean(0) - f2.mean(0)
    tr1 = (x1 * x1).sum() / (len(f1) - 1)
    tr2 = (x2 * x2).sum() / (len(f2) - 1)
    return float(max(diff @ diff + tr1 + tr2 - 2 * trace_root, 0.0))


def fid(real_frames, fake_frames, checkpoint: str | os.PathLike | None = None, *,
        model: FIDInceptionV3 | None = None, order: str = "bgr", batch_size: int = 50,
        device: str | torch.device = "cpu", method: str = "auto") -> float:
    """FID between real and generated frames (uint8 (N, H, W, 3) in ``order``, each set any
    size; Wav2Lip compares all frames of the real test videos with all generated frames).

    ``checkpoint``: the user's ``pt_inception-2015-12-05-6726825d.pth``; None reads
    ``$AVLIB_FID_INCEPTION``; ``model`` (a loaded :class:`FIDInceptionV3`) skips loading.
    ``method``: see :func:`fid_from_features`.

    Raises:
        FIDCheckpointMissing: neither a model nor a checkpoint (nor the variable) is given, or
            the file does not exist; the message says what file FID needs and where to put it.
    """
    if model is None:
        model = load_inception(checkpoint, device)
    real = inception_features(real_frames, model, order=order, batch_size=batch_size,
                              device=device)
    fake = inception_features(fake_frames, model, order=order, batch_size=batch_size,
                              device=device)
    return fid_from_features(real, fake, method)
