"""Many windows and many videos: the SyncNet engine, batch scoring with a CSV, dataset filtering.

* :class:`SyncEngine` runs SyncNet's two streams for the sync tool: a fast inference copy of a
  :class:`~avlib.models.SyncNet` (each BatchNorm folded into the convolution before it, the lip
  stream's 3-D convolutions as 2-D ones, the first over the 15 channels of 5 stacked BGR frames,
  channels-last tensors, ``torch.inference_mode``, lip windows gathered once as uint8 instead
  of 5 float copies, audio windows 256 per pass), in float32 or under bfloat16 autocast (CPU
  and CUDA). Its embeddings equal the reference network's up to float rounding; any other
  model runs as given. :func:`embed_stream` feeds it a stream of crops, holding at most
  ``batch_size + 5`` of them.
* :func:`score_videos` (``avlib sync check A.mp4 B.mp4 ... --csv scores.csv``) measures many
  videos and appends one CSV row per video (:data:`CSV_COLUMNS`), one ``write`` of a whole line
  each, flushed to disk: a killed run leaves whole rows (a cut last line, which only a crash of
  the machine could leave, is removed by the next run), and rerunning the same command skips the
  videos already recorded. A video that cannot be measured (damaged, no audio, no face, too
  short) gets ``status=error`` and its reason; the others go on. Failures that are not the
  video's fault (disk full, I/O error, permission) are not recorded and are retried by the next
  run (exit code 6). ``workers=N`` scores N videos at a time in N processes with one torch and
  one OpenCV thread each, so decoding, face detection and the network of different videos
  overlap.
* :func:`filter_dataset` (``avlib sync filter DATASET --min-conf C --max-offset K``) scores a
  folder of videos (or a text file listing them) through the same resumable CSV and writes the
  list of clips to keep, a report of the dropped ones and why, and optionally sync-corrected
  copies made by ``avlib sync fix``'s path.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import io
import itertools
import os
import shutil
import sys
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avlib.artifacts import Busy, atomic_path, atomic_write_text, temp_path
from avlib.audio import MFCC_FRAMES_PER_VIDEO_FRAME, MFCC_WINDOW, SYNC_WINDOW_FRAMES
from avlib.cli import EXIT_INCOMPLETE, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE
from avlib.models import SyncNet
from avlib.models.syncnet import OFFICIAL_IMG_SIZE, lip_windows

__all__ = [
    "PRECISIONS",
    "AUDIO_BATCH",
    "CSV_COLUMNS",
    "VIDEO_SUFFIXES",
    "SyncEngine",
    "embed_stream",
    "network_flops",
    "ScoreTable",
    "score_videos",
    "list_videos",
    "filter_dataset",
    "add_filter_arguments",
    "main_from_args",
]

#: Arithmetic of the network: float32, or bfloat16 autocast (embeddings and distances float32).
PRECISIONS = ("fp32", "bf16")
#: Audio windows per forward pass of the fast engine (they are tiny; big batches run faster).
AUDIO_BATCH = 256
#: Columns of the scores CSV; the last five are the settings a resumed run must share.
CSV_COLUMNS = ("path", "status", "offset", "lse_d", "lse_c", "windows", "reason",
               "protocol", "precision", "cropped", "vshift", "weights")
_SETTINGS = CSV_COLUMNS[7:]
#: Suffixes :func:`list_videos` collects from a folder (case-insensitive).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv",
                  ".wmv", ".ts", ".3gp")


# ---------------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------------
def _fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
             bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv/linear layer with the eval-mode BatchNorm after it folded in
    (computed in float64, returned float32): ``bn(conv(x)) = conv'(x)``."""
    var, mean = bn.running_var.detach().double().cpu(), bn.running_mean.detach().double().cpu()
    gamma = torch.ones_like(var) if bn.weight is None else bn.weight.detach().double().cpu()
    beta = torch.zeros_like(var) if bn.bias is None else bn.bias.detach().double().cpu()
    scale = gamma / torch.sqrt(var + bn.eps)
    w = weight.detach().double().cpu() * scale.reshape(-1, *[1] * (weight.ndim - 1))
    b = torch.zeros_like(var) if bias is None else bias.detach().double().cpu()
    return w.float(), ((b - mean) * scale + beta).float()


def _as_tuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _fast_stack(seq: nn.Module) -> nn.Sequential | None:
    """A SyncNet conv stack or FC head as 2-D layers with folded BatchNorms; None when ``seq``
    holds anything else (the model then runs as given)."""
    if not isinstance(seq, nn.Sequential):
        return None
    mods, out, i = list(seq), [], 0
    while i < len(mods):
        mod = mods[i]
        bn = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(mod, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            folded = isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.running_var is not None
            if not folded and not isinstance(mod, nn.Linear):
                return None
            if folded:
                weight, bias = _fold_bn(mod.weight, mod.bias, bn)
            else:
                weight = mod.weight.detach().float().cpu()
                bias = (torch.zeros(weight.shape[0]) if mod.bias is None
                        else mod.bias.detach().float().cpu())
            if isinstance(mod, nn.Linear):
                layer = nn.Linear(weight.shape[1], weight.shape[0])
            else:
                if (mod.groups != 1 or mod.padding_mode != "zeros" or set(mod.dilation) != {1}
                        or isinstance(mod.padding, str)):
                    return None
                stride, padding = mod.stride[-2:], mod.padding[-2:]
                if weight.ndim == 5:
                    # Time: the first conv spans all 5 frames (1 step out), later ones have
                    # depth 1. The first becomes a 2-D conv over channel c * 5 + t.
                    if mod.stride[0] != 1 or mod.padding[0] != 0:
                        return None
                    if weight.shape[2] != (SYNC_WINDOW_FRAMES if i == 0 else 1):
                        return None
                    weight = weight.reshape(weight.shape[0], -1, *weight.shape[3:])
                layer = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]),
                                  stride=stride, padding=padding)
            layer.weight.data.copy_(weight)
            layer.bias.data.copy_(bias)
            out.append(layer)
            i += 2 if folded else 1
        elif isinstance(mod, nn.ReLU):
            out.append(nn.ReLU(inplace=True))
            i += 1
        elif isinstance(mod, (nn.MaxPool2d, nn.MaxPool3d)):
            n = 3 if isinstance(mod, nn.MaxPool3d) else 2
            k, s = _as_tuple(mod.kernel_size, n), _as_tuple(mod.stride or mod.kernel_size, n)
            p, d = _as_tuple(mod.padding, n), _as_tuple(mod.dilation, n)
            if set(d) != {1} or mod.return_indices or (n == 3 and (k[0], s[0], p[0]) != (1, 1, 0)):
                return None
            if set(k[-2:]) != {1} or set(s[-2:]) != {1}:  # a 1x1 pool with stride 1 is a no-op
                out.append(nn.MaxPool2d(k[-2:], s[-2:], p[-2:], ceil_mode=mod.ceil_mode))
            i += 1
        else:
            return None
    return nn.Sequential(*out)


class _FastSyncNet(nn.Module):
    """Inference copy of a SyncNet: the same function on (B, 15, S, S) lip windows (channel
    ``c * 5 + t`` = colour c of frame t, BGR, raw 0-255) and (B, 1, 13, 20) MFCC windows."""

    def __init__(self, lip, lip_head, aud, aud_head):
        super().__init__()
        self.lip, self.lip_head, self.aud, self.aud_head = lip, lip_head, aud, aud_head

    def forward_lip(self, windows: torch.Tensor) -> torch.Tensor:
        return self.lip_head(self.lip(windows).flatten(1))

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.aud_head(self.aud(mfcc).flatten(1))


# model -> (state stamp, device, fast copy or None): a model is folded once, again when its
# weights changed (their in-place version counters moved) and never kept alive by the cache.
_FAST_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _stamp(model: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in itertools.chain(model.parameters(),
                                                                       model.buffers()))


def _fast_copy(model, device: torch.device) -> _FastSyncNet | None:
    """The fast inference copy of a :class:`SyncNet` on ``device``; None for other models or
    when the copy does not reproduce the model on a probe batch (a subclass that changed it)."""
    if not isinstance(model, SyncNet):
        return None
    stamp = _stamp(model)
    cached = _FAST_CACHE.get(model)
    if cached is not None and cached[0] == stamp and cached[1] == device:
        return cached[2]
    parts = [_fast_stack(getattr(model, name, None))
             for name in ("netcnnlip", "netfclip", "netcnnaud", "netfcaud")]
    fast = None
    if all(part is not None for part in parts):
        fast = _FastSyncNet(*parts).eval().to(device)
        fast.lip.to(memory_format=torch.channels_last)
        fast.aud.to(memory_format=torch.channels_last)
        fast.requires_grad_(False)
        if not _reproduces(model, fast, device):
            fast = None
    _FAST_CACHE[model] = (stamp, device, fast)
    return fast


def _reproduces(model, fast: _FastSyncNet, device: torch.device) -> bool:
    """Whether the copy gives the model's embeddings (float32, 2 random windows)."""
    size = model.img_size
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (SYNC_WINDOW_FRAMES + 1, size, size, 3), generator=gen,
                           dtype=torch.uint8)
    mfcc = torch.randn(2, 1, 13, MFCC_WINDOW, generator=gen) * 10
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ref_lip = model.forward_lip(lip_windows(frames.numpy(), 2).to(device)).float()
            ref_aud = model.forward_aud(mfcc.to(device)).float()
            lip = fast.forward_lip(_stack_windows(frames.to(device), 2)).float()
            aud = fast.forward_aud(mfcc.to(device)).float()
    finally:
        model.train(was_training)

    def close(a, b):
        return a.shape == b.shape and bool(torch.all((a - b).abs() <= 1e-3 * (b.abs().max() + 1)))

    return close(lip, ref_lip) and close(aud, ref_aud)


def _stack_windows(frames: torch.Tensor, count: int) -> torch.Tensor:
    """uint8 frames (count + 4, S, S, 3) -> float32 (count, 15, S, S) channels-last windows,
    channel ``c * 5 + t``: one uint8 gather, no float copies of the overlapping frames."""
    size = frames.shape[1:3]
    windows = frames[: count + SYNC_WINDOW_FRAMES - 1].unfold(0, SYNC_WINDOW_FRAMES, 1)
    gathered = windows.reshape(count, *size, 3 * SYNC_WINDOW_FRAMES)  # (count, S, S, 15) uint8
    return gathered.permute(0, 3, 1, 2).float()  # channels-last strides are kept


def _mfcc_windows(mfcc: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """MFCC (13, M) -> windows start .. stop-1 as (B, 1, 13, 20): columns 4i .. 4i+19."""
    windows = mfcc.unfold(1, MFCC_WINDOW, MFCC_FRAMES_PER_VIDEO_FRAME)  # (13, W, 20) view
    if windows.shape[1] < stop:
        raise ValueError(f"MFCC has {mfcc.shape[1]} columns: too few for window {stop - 1}")
    return windows[:, start:stop].permute(1, 0, 2).unsqueeze(1).contiguous()


class SyncEngine:
    """SyncNet's two streams as the sync tool runs them, with a precision and a stopwatch.

    Args:
        model: a :class:`~avlib.models.SyncNet` (run through its fast inference copy, see the
            module doc) or any object with ``img_size`` and ``forward_lip((B, 3, 5, S, S))`` /
            ``forward_aud((B, 1, 13, 20))`` returning (B, D) (run as given, windows batched
            exactly as :func:`avlib.sync.syncnet_offset` batches them), already on ``device``.
        precision: ``"fp32"`` or ``"bf16"``: ``torch.autocast(device.type, torch.bfloat16)``
            around the network; embeddings are returned float32 either way.
        device: where the windows are sent.

    Attributes:
        seconds: wall time spent in the network so far (windows built, forward, back on CPU).
        windows: lip windows embedded so far.
        fast: whether the fast copy is used.
        audio_batch: audio windows per forward pass (None: the same batches as the video).
    """

    def __init__(self, model, precision: str = "fp32", device: str | torch.device = "cpu"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(self.device)!r} was asked for but torch sees no CUDA "
                             "GPU; use --device cpu")
        size = getattr(model, "img_size", OFFICIAL_IMG_SIZE)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"the model's img_size must be a positive int (crop side in "
                             f"pixels), got {size!r}")
        self.img_size = int(size)
        _require_model_on(model, self.device)
        self.model = model
        self._fast = _fast_copy(model, self.device)
        self.fast = self._fast is not None
        self.audio_batch = AUDIO_BATCH if self.fast else None
        self.seconds = 0.0
        self.windows = 0

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.precision == "bf16")

    def lip(self, frames: np.ndarray, count: int) -> torch.Tensor:
        """Embed the ``count`` windows of frames (count + 4, S, S, 3) uint8 BGR: (count, D)."""
        t0 = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            if self._fast is not None:
                uint8 = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
                out = self._fast.forward_lip(_stack_windows(uint8, count))
            else:
                out = self.model.forward_lip(lip_windows(frames, count).to(self.device))
            out = out.float().cpu()
        self.seconds += time.perf_counter() - t0
        self.windows += count
        return out

    def aud(self, windows: torch.Tensor) -> torch.Tensor:
        """Embed MFCC windows (B, 1, 13, 20): (B, D) float32 on the CPU."""
        t0 = time.perf_counter()
        net = self._fast if self._fast is not None else self.model
        with torch.inference_mode(), self._autocast():
            out = net.forward_aud(windows.to(self.device)).float().cpu()
        self.seconds += time.perf_counter() - t0
        return out


def _require_model_on(model, device: torch.device) -> None:
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    if first is not None and (first.device.type != device.type
                              or (device.index is not None and device.index != first.device.index)):
        raise ValueError(f"the model's weights are on {first.device} but device={str(device)!r}; "
                         f"move the model with model.to({str(device)!r})")


def embed_stream(engine: SyncEngine, crops: Iterable[np.ndarray], mfcc: torch.Tensor,
                  limit: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Embed every window of a stream of BGR crops and its audio windows.

    Windows are formed exactly as :func:`avlib.sync.syncnet_offset_stream` forms them (window
    ``w`` is scored once frame ``w + 5`` exists, upstream's ``lastframe = T - 5``; batches of
    ``batch_size``); at most ``batch_size + 5`` crops are held. The embeddings go into buffers
    sized once for the ``limit - 5`` windows the clip can have.

    Returns (video (n, D), audio (n, D)) float32 and the number of frames consumed.
    """
    n_max = limit - SYNC_WINDOW_FRAMES
    store: dict[str, torch.Tensor] = {}
    audio_done = 0

    def keep(name: str, start: int, emb: torch.Tensor) -> None:
        if name not in store:
            store[name] = torch.empty(n_max, emb.shape[1], dtype=torch.float32)
        store[name][start:start + len(emb)] = emb

    def embed(start: int, stop: int, frames: np.ndarray) -> None:
        nonlocal audio_done
        keep("video", start, engine.lip(frames, stop - start))
        while audio_done < stop:  # the fast engine runs its audio windows in bigger batches
            end = (stop if engine.audio_batch is None
                   else min(n_max, audio_done + engine.audio_batch))
            keep("audio", audio_done, engine.aud(_mfcc_windows(mfcc, audio_done, end)))
            audio_done = end

    buffer: list[np.ndarray] = []  # frames start .. count-1
    start = count = 0
    shape = (engine.img_size, engine.img_size, 3)
    for frame in crops:
        if count >= limit:
            break
        if frame.shape != shape or frame.dtype != np.uint8:
            raise ValueError(f"crop {count} is {frame.dtype} {frame.shape}, expected uint8 {shape}")
        buffer.append(frame)
        count += 1
        if count - SYNC_WINDOW_FRAMES - start == batch_size:
            embed(start, start + batch_size, np.stack(buffer[: batch_size + 4]))
            del buffer[:batch_size]
            start += batch_size
    last = count - SYNC_WINDOW_FRAMES
    if last > start:
        embed(start, last, np.stack(buffer[: last - start + 4]))
    n = max(last, 0)
    if not store:
        return torch.empty(0, 0), torch.empty(0, 0), count
    return store["video"][:n], store["audio"][:n], count




def network_flops(model) -> dict[str, int]:
    """Floating-point operations per window of each stream, counted on a probe pass: 2 per
    multiply-add of every convolution and linear layer (BatchNorm, ReLU and pooling are left
    out). ``{"lip": ..., "aud": ...}``; the full-size SyncNet needs about 3.1 GFLOP per lip
    window and 0.5 GFLOP per audio window."""
    counts = {"n": 0}

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            counts["n"] += 2 * output.numel() * module.in_features
        else:
            kernel = int(np.prod(module.kernel_size))
            counts["n"] += 2 * output.numel() * (module.in_channels // module.groups) * kernel

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear))]
    size = int(getattr(model, "img_size", OFFICIAL_IMG_SIZE))
    device = next(iter(model.parameters())).device
    result = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            counts["n"] = 0
            model.forward_lip(torch.zeros(1, 3, SYNC_WINDOW_FRAMES, size, size, device=device))
            result["lip"] = counts["n"]
            counts["n"] = 0
            model.forward_aud(torch.zeros(1, 1, 13, MFCC_WINDOW, device=device))
            result["aud"] = counts["n"]
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return result


# ---------------------------------------------------------------------------------------------
# the scores CSV
# ---------------------------------------------------------------------------------------------
def _csv_line(values: Sequence) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


class ScoreTable:
    """The scores of a batch: what earlier runs recorded in ``path`` and the rows of this one.

    Use it as a context manager. On entry the CSV is opened (created when missing, never
    replaced), locked (``flock``: a second run on the same CSV stops with exit code 7 instead of
    interleaving) and read: the last row of a path counts; a last line without its newline (a
    crash of the machine mid-write) is cut off; an empty file gets the header. :meth:`append`
    writes one whole line with one ``write`` and ``fsync``\\ s it (a failed write is cut back).
    ``path=None`` keeps the rows in memory only.

    Args:
        path: the CSV file (its folder must exist), or None.
        settings: the settings of this run (``protocol``, ``precision``, ``cropped``,
            ``vshift``, ``weights``); a CSV written with other settings is refused (exit 2)
            rather than mixed.
    """

    def __init__(self, path: str | os.PathLike | None, settings: dict):
        self.path = None if path is None else Path(path)
        self.settings = {k: _cell(settings[k]) for k in _SETTINGS}
        self.rows: dict[str, dict] = {}
        self._fd: int | None = None

    def __enter__(self) -> "ScoreTable":
        if self.path is None:
            return self
        from avlib.sync.tool import SyncToolError

        path = self.path
        if path.is_dir():
            raise SyncToolError(f"--csv {path} is a folder; give a file name such as "
                                f"{path / 'sync_scores.csv'}", EXIT_USAGE)
        if not path.parent.is_dir():
            raise SyncToolError(f"cannot write {path}: folder {path.parent} does not exist "
                                "(create it first)", EXIT_OUTPUT)
        # Created in place (never replaced: a rename could orphan the file another run has
        # just locked); the header is written under the lock, like every row.
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        except PermissionError as err:
            raise SyncToolError(f"cannot write {path}: permission denied; fix its permissions "
                                "or choose another --csv", EXIT_OUTPUT) from err
        try:
            _lock(fd, path)
            data = _read_all(fd)
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]  # a row cut by a crash: drop it
                os.ftruncate(fd, len(data))
            self._fd = fd
            if data:
                try:
                    self._read(data.decode("utf-8"))
                except UnicodeDecodeError:
                    self._read("")
            else:
                self._write(_csv_line(CSV_COLUMNS))
        except BaseException:
            self._fd = None
            os.close(fd)
            raise
        return self

    def _read(self, text: str) -> None:
        from avlib.sync.tool import SyncToolError

        reader = csv.reader(io.StringIO(text))
        header = tuple(next(reader, ()))
        if header != CSV_COLUMNS:
            raise SyncToolError(f"{self.path} is not a sync scores CSV (its header is "
                                f"{','.join(header)[:120]!r}); give a new file name", EXIT_USAGE)
        for values in reader:
            if len(values) != len(CSV_COLUMNS):
                continue
            row = dict(zip(CSV_COLUMNS, values))
            for key in _SETTINGS:
                if row[key] != self.settings[key]:
                    raise SyncToolError(
                        f"{self.path} holds scores made with {key}={row[key]} (row of "
                        f"{row['path']}), this run uses {key}={self.settings[key]}; use the "
                        "same settings to resume, or another --csv", EXIT_USAGE)
            self.rows[row["path"]] = row

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def done(self, path: str, retry_errors: bool = False) -> bool:
        """Whether ``path`` is recorded (``ok``, or ``error`` unless ``retry_errors``)."""
        row = self.rows.get(path)
        return row is not None and (row["status"] == "ok" or not retry_errors)

    def append(self, row: dict) -> dict:
        """Record one video's row (settings filled in); returns it as stored (strings)."""
        stored = {k: _cell(row.get(k, self.settings.get(k, ""))) for k in CSV_COLUMNS}
        if self._fd is not None:
            self._write(_csv_line([stored[k] for k in CSV_COLUMNS]))
        self.rows[stored["path"]] = stored
        return stored

    def _write(self, line: str) -> None:
        """One whole line, one ``write``, flushed to disk; on failure the file is cut back."""
        data = line.encode("utf-8")
        size = os.fstat(self._fd).st_size
        try:
            if os.write(self._fd, data) != len(data):
                raise OSError(errno.ENOSPC, "No space left on device (short write)")
            os.fsync(self._fd)
        except OSError as err:
            try:  # never leave a cut row behind
                os.ftruncate(self._fd, size)
            except OSError:
                pass
            if err.filename is None:
                raise type(err)(err.errno, err.strerror, str(self.path)) from err
            raise


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    return " ".join(str(value).split())  # one line


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Busy(f"{path} is being written by another sync run; wait for it to finish, or "
                   "use another --csv") from None


# ---------------------------------------------------------------------------------------------
# scoring many videos
# ---------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _scoring_state(model, options: dict) -> dict:
    """What scoring needs in one process: the model, its engine, the face detector, the
    decoding settings."""
    from avlib.data.preprocess import make_detector
    from avlib.sync import tool

    engine = SyncEngine(model, options["precision"], options["device"])
    cfg = tool.measure_config(engine.img_size, options["max_side"])
    detector = None if options["cropped"] else make_detector(cfg)
    return {"model": model, "engine": engine, "cfg": cfg, "detector": detector,
            "options": options}


def _init_worker(model, options: dict) -> None:
    import cv2

    torch.set_num_threads(1)  # one process per core: more threads would oversubscribe
    cv2.setNumThreads(1)
    if callable(getattr(model, "to", None)):
        model = model.to(options["device"])
    _WORKER.update(_scoring_state(model, options))


def _work(path: str) -> dict:
    return _score_one(path, _WORKER)


def _close_state(state: dict) -> None:
    if state.get("detector") is not None:
        state["detector"].close()


def _score_one(path: str, state: dict) -> dict:
    """One video's row: ``status`` ok / error (recorded) / failed (not recorded: retried)."""
    from avlib.data.preprocess import TRANSIENT_ERRNOS
    from avlib.data.tracking import ClipRejected
    from avlib.media import MediaError
    from avlib.sync import tool

    opts = state["options"]
    t0 = time.perf_counter()
    try:
        result, _ = tool._analyse(
            path, state["model"], opts["vshift"], opts["batch_size"], opts["device"], False,
            opts["max_side"], state["cfg"], state["detector"], protocol=opts["protocol"],
            precision=opts["precision"], cropped=opts["cropped"], tmp_dir=opts["tmp_dir"],
            engine=state["engine"])
    except (KeyboardInterrupt, SystemExit):
        raise
    except OSError as err:
        if err.errno in TRANSIENT_ERRNOS:
            return {"path": path, "status": "failed", "reason": _reason(err, True)}
        return {"path": path, "status": "error", "reason": _reason(err, True)}
    except Exception as err:  # noqa: BLE001 - one bad video must not stop the batch
        known = isinstance(err, (tool.SyncToolError, MediaError, ClipRejected))
        return {"path": path, "status": "error", "reason": _reason(err, known)}
    return {"path": path, "status": "ok", "offset": result.offset, "lse_d": result.min_dist,
            "lse_c": result.confidence, "windows": result.n_windows, "reason": "",
            "seconds": time.perf_counter() - t0}


def _reason(err: BaseException, known: bool) -> str:
    """One line: the error's message, after its short code when it has one (MediaError's
    ``truncated``, ``corrupt``, ...); unexpected errors are named as such."""
    text = " ".join(str(err).split()) or type(err).__name__
    code = getattr(err, "reason", None)
    if isinstance(code, str) and code:
        text = f"{code}: {text}"
    return text if known else f"internal error ({type(err).__name__}: {text})"


def score_videos(
    videos: Iterable[str | os.PathLike],
    model,
    csv_path: str | os.PathLike | None = None,
    *,
    workers: int = 1,
    protocol: str = "avlib",
    precision: str = "fp32",
    cropped: bool = False,
    vshift: int = 15,
    batch_size: int = 20,
    device: str | torch.device = "cpu",
    max_side: int | None = 1280,
    tmp_dir: str | os.PathLike | None = None,
    retry_errors: bool = False,
    weights: str | None = None,
    progress: bool = True,
    on_row=None,
) -> dict:
    """Measure many videos (offset, LSE-D, LSE-C), resumably, one CSV row each.

    Args:
        videos: video paths (recorded as absolute paths; repeats are measured once).
        model: a SyncNet (see :func:`avlib.sync.tool.check_video`), on ``device``; worker
            processes get a pickled copy.
        csv_path: the scores CSV (:class:`ScoreTable`): videos it records are skipped, new rows
            are appended as videos finish. None: no file.
        workers: processes measuring videos in parallel (1 = this process). Each worker uses
            one torch thread and one OpenCV thread.
        protocol, precision, cropped, vshift, batch_size, device, max_side, tmp_dir: as in
            :func:`avlib.sync.tool.lse`.
        retry_errors: measure again the videos recorded with ``status=error``.
        weights: how the CSV names the weights (a resumed run must name the same); default
            the model's class name.
        progress: a progress bar (stderr). on_row: called with each new row (a dict).

    Returns:
        dict: ``rows`` (path -> row of every requested video that has one), ``scored`` (rows
        added now), ``ok``, ``errors`` (of those), ``skipped`` (already recorded),
        ``failed`` (path -> reason of the videos that failed for a reason other than their
        content, not recorded), ``seconds``, ``clips_per_hour`` (videos measured now per
        hour of this run), ``workers``.
    """
    from avlib.progress import progress_bar
    from avlib.sync import tool

    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise tool.SyncToolError(f"workers must be a positive whole number, got {workers!r}",
                                 EXIT_USAGE)
    paths = list(dict.fromkeys(os.path.abspath(os.fspath(v)) for v in videos))
    options = {"protocol": tool._check_choice(protocol, tool.PROTOCOLS, "protocol"),
               "precision": tool._check_choice(precision, PRECISIONS, "precision"),
               "cropped": bool(cropped), "vshift": tool._check_vshift(vshift),
               "batch_size": tool._check_batch_size(batch_size),
               "device": str(tool._device(device)), "max_side": max_side, "tmp_dir": tmp_dir}
    settings = {**options, "weights": weights or type(model).__name__}
    summary = {"scored": 0, "ok": 0, "errors": 0, "skipped": 0, "failed": {},
               "workers": int(workers)}
    t0 = time.perf_counter()
    with ScoreTable(csv_path, settings) as table:
        todo = [p for p in paths if not table.done(p, retry_errors)]
        summary["skipped"] = len(paths) - len(todo)
        bar = progress_bar(len(todo), "sync check", "video", disable=not progress,
                           file=sys.stderr)

        def account(row: dict) -> None:
            if row["status"] == "failed":
                summary["failed"][row["path"]] = row["reason"]
            else:
                stored = table.append(row)
                summary["scored"] += 1
                summary["ok" if row["status"] == "ok" else "errors"] += 1
                if on_row is not None:
                    on_row({**stored, "seconds": row.get("seconds")})
            bar.update()

        try:
            if int(workers) == 1 or len(todo) <= 1:
                state = _scoring_state(model, options) if todo else {}
                try:
                    for path in todo:
                        account(_score_one(path, state))
                finally:
                    _close_state(state)
            else:
                import multiprocessing as mp

                ctx = mp.get_context("spawn")
                # Leaving the with-block terminates the workers; rows already appended stay.
                with _single_threaded_children(), ctx.Pool(
                        min(int(workers), len(todo)), initializer=_init_worker,
                        initargs=(_portable(model), options)) as pool:
                    for row in pool.imap_unordered(_work, todo, chunksize=1):
                        account(row)
        finally:
            bar.close()
        rows = {p: table.rows[p] for p in paths if p in table.rows}
    seconds = time.perf_counter() - t0
    measured = summary["scored"] + len(summary["failed"])
    summary.update(rows=rows, seconds=round(seconds, 3),
                   clips_per_hour=round(measured / seconds * 3600, 1) if measured else 0.0)
    return summary


#: Thread pools that read their size from the environment when a process starts (BLAS under
#: numpy's MFCC, OpenMP): one thread each in worker processes, which share the cores already.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_children():
    """Set :data:`_THREAD_VARIABLES` to 1 while worker processes are started; restore them."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _portable(model):
    """The model as worker processes receive it (pickled): a CPU copy of one on a GPU."""
    if isinstance(model, nn.Module):
        params = next(iter(model.parameters()), None)
        if params is not None and params.device.type != "cpu":
            import copy

            return copy.deepcopy(model).cpu()
    return model


# ---------------------------------------------------------------------------------------------
# filtering a dataset
# ---------------------------------------------------------------------------------------------
def list_videos(dataset: str | os.PathLike) -> tuple[list[Path], Path]:
    """The videos of a dataset and the folder their names are relative to.

    ``dataset`` is a folder (every file below it with a suffix of :data:`VIDEO_SUFFIXES`, any
    case, hidden names skipped, sorted) or a text file with one video path per line (blank
    lines and ``#`` comments skipped; relative paths are relative to the file's folder).
    Returns (absolute paths, base folder: the dataset folder, or the listed videos' deepest
    common folder).
    """
    from avlib.sync.tool import SyncToolError

    root = Path(dataset).expanduser()
    if root.is_dir():
        found = [p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)
                 and p.is_file()]
        videos = sorted(Path(os.path.abspath(p)) for p in found)
        base = Path(os.path.abspath(root))
        if not videos:
            raise SyncToolError(f"no videos in {root} (looked for {', '.join(VIDEO_SUFFIXES)} "
                                "files in it and its subfolders)")
        return videos, base
    if not root.is_file():
        raise SyncToolError(f"dataset not found: {root} (give a folder of videos or a text file "
                            "listing them)")
    if root.suffix.lower() in VIDEO_SUFFIXES:
        raise SyncToolError(f"{root} is a video; DATASET is a folder of videos or a text file "
                            "listing them (use `avlib sync check` for single videos)", EXIT_USAGE)
    try:
        lines = root.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise SyncToolError(f"{root} is not a text file listing videos ({err})") from err
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    videos = list(dict.fromkeys(Path(os.path.abspath(root.parent / Path(e).expanduser()))
                                for e in entries))
    if not videos:
        raise SyncToolError(f"{root} lists no videos")
    base = Path(os.path.commonpath([str(v.parent) for v in videos]))
    return videos, base


def _check_writable(path: Path, what: str) -> None:
    """Refuse an output that cannot be written, before the (long) scoring."""
    from avlib.sync.tool import SyncToolError

    if path.is_dir():
        raise SyncToolError(f"the {what} {path} is a folder; give a file name", EXIT_USAGE)
    if not path.parent.is_dir():
        raise SyncToolError(f"cannot write the {what} {path}: folder {path.parent} does not "
                            "exist (create it first)", EXIT_OUTPUT)
    probe = temp_path(path)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(probe)
    except OSError as err:
        raise SyncToolError(f"cannot write the {what} {path}: {err.strerror}", EXIT_OUTPUT) from err


def _within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _judge(row: dict | None, min_conf: float | None, max_offset: int | None) -> list[tuple]:
    """Why a video is dropped: [(reason code, detail)], empty to keep it."""
    if row is None:
        return [("not_scored", "not measured in this run (an I/O failure): rerun the command")]
    if row["status"] != "ok":
        return [("error", row["reason"])]
    reasons = []
    if min_conf is not None and float(row["lse_c"]) < min_conf:
        reasons.append(("low_confidence", f"LSE-C {float(row['lse_c']):.3f} < {min_conf:g}"))
    if max_offset is not None and abs(int(row["offset"])) > max_offset:
        reasons.append(("offset_too_large", f"|offset| {abs(int(row['offset']))} frames > "
                                            f"{max_offset}"))
    return reasons


def _correct(src: Path, dst: Path, offset: int) -> str:
    """Write the corrected copy ``dst`` of ``src`` (kept if it exists); returns what was done."""
    from avlib.sync.tool import fix_video

    if dst.exists():
        return "present"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if offset == 0:
        with atomic_path(dst, make_parents=False) as tmp:
            shutil.copyfile(src, tmp)
        return "copied"
    fix_video(src, dst, offset=offset, progress=False)
    return "shifted"


def filter_dataset(
    dataset: str | os.PathLike,
    model,
    *,
    min_conf: float | None = None,
    max_offset: int | None = None,
    csv_path: str | os.PathLike = "sync_scores.csv",
    keep_list: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    corrected_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **score_options,
) -> dict:
    """Keep the clips of a dataset whose sync SyncNet trusts; optionally correct their offsets.

    A clip is kept when it was measured (``status=ok``), its LSE-C is at least ``min_conf``
    and its ``|offset|`` at most ``max_offset`` frames (None: no such criterion). Scoring goes
    through :func:`score_videos` and its CSV, so an interrupted filter resumes where it stopped.

    Args:
        dataset: a folder of videos or a text file listing them (:func:`list_videos`).
        model: the SyncNet (see :func:`score_videos`).
        min_conf: smallest LSE-C kept. max_offset: largest ``|offset|`` kept (frames).
        csv_path: the scores CSV (resumable). keep_list: the text file of kept clips, one
            absolute path a line (default ``<csv stem>_keep.txt`` beside the CSV). report: CSV
            of the dropped clips: ``path, reason, detail, offset, lse_d, lse_c`` with reason
            ``low_confidence``, ``offset_too_large`` (both, joined by ``;``, when both apply),
            ``error`` (the video could not be measured; detail says why), ``fix_failed`` or
            ``not_scored`` (an I/O failure this run) (default ``<csv stem>_dropped.csv``).
        corrected_dir: when given, every kept clip is also written there under its path
            relative to the dataset, with its audio moved to cancel its offset
            (:func:`avlib.sync.tool.fix_video`: the video stream copied, the audio shifted;
            clips with offset 0 copied as they are, other suffixes than
            :data:`avlib.sync.tool.OUTPUT_SUFFIXES` become ``.mp4``), and the keep list names
            these copies. Copies already there are kept (delete the folder to redo them).
        progress, score_options: as in :func:`score_videos`.

    Returns:
        dict: ``kept`` (paths in the keep list), ``dropped`` (list of dicts as in the report),
        ``counts`` (reason -> clips), ``corrected`` (``shifted`` / ``copied`` / ``present`` ->
        clips), ``keep_list``, ``report``, ``scores`` (the :func:`score_videos` summary).
    """
    from avlib.sync import tool

    videos, base = list_videos(dataset)
    csv_path = Path(csv_path)
    keep_list = Path(keep_list) if keep_list else csv_path.with_name(f"{csv_path.stem}_keep.txt")
    report = Path(report) if report else csv_path.with_name(f"{csv_path.stem}_dropped.csv")
    for value, what in ((min_conf, "min_conf"), (max_offset, "max_offset")):
        if value is not None and (not np.isfinite(value) or value < 0 and what == "max_offset"):
            raise tool.SyncToolError(f"{what} must be a finite number (max_offset >= 0), got "
                                     f"{value!r}", EXIT_USAGE)
    outputs = {keep_list.resolve(), report.resolve(), csv_path.resolve()}
    if len(outputs) != 3:
        raise tool.SyncToolError("the scores CSV, the keep list and the report must be three "
                                 "different files", EXIT_USAGE)
    for path, what in ((keep_list, "keep list"), (report, "report")):
        _check_writable(path, what)
    corrected = Path(corrected_dir) if corrected_dir else None
    if corrected is not None:
        if Path(dataset).is_dir() and _within(corrected, Path(dataset)):
            raise tool.SyncToolError(f"--corrected-dir {corrected} is inside the dataset "
                                     f"{dataset}: its copies would be listed as clips; choose "
                                     "a folder outside it", EXIT_USAGE)
        if corrected.exists() and not corrected.is_dir():
            raise tool.SyncToolError(f"--corrected-dir {corrected} is a file", EXIT_USAGE)
    scores = score_videos(videos, model, csv_path, progress=progress, **score_options)
    kept, dropped, done = [], [], {"shifted": 0, "copied": 0, "present": 0}
    counts: dict[str, int] = {}
    from avlib.progress import progress_bar

    bar = progress_bar(len(videos), "corrected copies", "video", file=sys.stderr,
                       disable=not progress or corrected is None)
    for video in videos:
        bar.update()
        row = scores["rows"].get(str(video))
        reasons = _judge(row, min_conf, max_offset)
        target = video
        if not reasons and corrected is not None:
            target = corrected / video.relative_to(base)
            if int(row["offset"]) != 0 and target.suffix.lower() not in tool.OUTPUT_SUFFIXES:
                target = target.with_suffix(".mp4")
            try:
                done[_correct(video, target, int(row["offset"]))] += 1
            except tool.SyncToolError as err:
                reasons = [("fix_failed", " ".join(str(err).split()))]
            except Exception as err:  # noqa: BLE001 - a damaged stream the remux rejects
                from avlib.media import MediaError

                if not isinstance(err, MediaError):
                    raise
                reasons = [("fix_failed", " ".join(str(err).split()))]
        if not reasons:
            kept.append(str(target))
            continue
        code = ";".join(r[0] for r in reasons)
        for r in reasons:
            counts[r[0]] = counts.get(r[0], 0) + 1
        dropped.append({"path": str(video), "reason": code,
                        "detail": "; ".join(r[1] for r in reasons),
                        **{k: (row or {}).get(k, "") for k in ("offset", "lse_d", "lse_c")}})
    bar.close()
    atomic_write_text(keep_list, "".join(f"{p}\n" for p in kept), make_parents=False)
    columns = ("path", "reason", "detail", "offset", "lse_d", "lse_c")
    atomic_write_text(report, _csv_line(columns) + "".join(
        _csv_line([d[c] for c in columns]) for d in dropped), make_parents=False)
    return {"kept": kept, "dropped": dropped, "counts": counts, "corrected": done,
            "keep_list": str(keep_list), "report": str(report), "scores": scores}


# ---------------------------------------------------------------------------------------------
# command line (wired by avlib.sync.tool)
# ---------------------------------------------------------------------------------------------
def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """``avlib sync filter DATASET --min-conf C --max-offset K [...]``."""
    from avlib.sync import tool

    p.add_argument("dataset", help="a folder of videos (searched recursively) or a text file "
                                   "listing one video per line")
    p.add_argument("--min-conf", type=float, default=None, metavar="C",
                   help="keep clips whose LSE-C (confidence) is at least C")
    p.add_argument("--max-offset", type=int, default=None, metavar="K",
                   help="keep clips whose |AV offset| is at most K frames")
    p.add_argument("--csv", default="sync_scores.csv",
                   help="scores CSV, resumable (default sync_scores.csv)")
    p.add_argument("--keep-list", default=None, metavar="TXT",
                   help="kept clips, one path a line (default <csv stem>_keep.txt)")
    p.add_argument("--report", default=None, metavar="CSV",
                   help="dropped clips and why (default <csv stem>_dropped.csv)")
    p.add_argument("--corrected-dir", default=None, metavar="DIR",
                   help="also write the kept clips here, their audio shifted to cancel their "
                        "offsets (the keep list then names these copies)")
    tool.measure_options(p)
    tool.batch_options(p)


def _print_row(row: dict) -> None:
    from tqdm import tqdm

    if row["status"] == "ok":
        offset = int(row["offset"])
        line = (f"ok     {offset:+3d} frames ({offset * 40:+5d} ms)  "
                f"LSE-D {float(row['lse_d']):7.3f}  LSE-C {float(row['lse_c']):7.3f}  "
                f"{row['path']}")
    else:
        line = f"error  {row['path']}: {row['reason']}"
    tqdm.write(line, file=sys.stdout)


def _print_summary(summary: dict, csv_path) -> None:
    where = f" in {csv_path}" if csv_path else ""
    print(f"scored     {summary['scored']} videos ({summary['ok']} ok, {summary['errors']} "
          f"errors) in {summary['seconds']:.1f} s ({summary['clips_per_hour']:.0f} videos/hour, "
          f"{summary['workers']} worker{'s' if summary['workers'] != 1 else ''}); "
          f"{summary['skipped']} already recorded{where}")
    if summary["failed"]:
        print(f"failed     {len(summary['failed'])} videos for a reason other than their content "
              "(not recorded; rerun the same command to retry them):")
        for path, reason in list(summary["failed"].items())[:10]:
            print(f"           {path}: {reason}")


def main_from_args(args: argparse.Namespace) -> int:
    """``avlib sync check VIDEO... --csv`` and ``avlib sync filter``; 0, or 6 when videos
    failed for a reason other than their content (rerun to retry them)."""
    from avlib.sync import tool

    model, _ = tool._load_syncnet(args.weights)
    model.to(tool._device(args.device))
    options = tool.measure_kwargs(args)
    score_options = dict(workers=args.workers, vshift=args.vshift, batch_size=args.batch_size,
                         device=args.device, retry_errors=args.retry_errors,
                         weights=tool.weights_label(args.weights), **options)
    if args.action == "check":
        summary = score_videos(args.video, model, args.csv, progress=not args.quiet,
                               on_row=_print_row, **score_options)
        _print_summary(summary, args.csv)
        return EXIT_INCOMPLETE if summary["failed"] else EXIT_OK
    done = filter_dataset(args.dataset, model, min_conf=args.min_conf,
                          max_offset=args.max_offset, csv_path=args.csv,
                          keep_list=args.keep_list, report=args.report,
                          corrected_dir=args.corrected_dir, progress=not args.quiet,
                          **score_options)
    scores = done["scores"]
    _print_summary(scores, args.csv)
    total = len(done["kept"]) + len(done["dropped"])
    print(f"kept       {len(done['kept'])} of {total} clips -> {done['keep_list']}")
    words = {"low_confidence": f"low confidence (LSE-C < {args.min_conf})",
             "offset_too_large": f"offset too large (|offset| > {args.max_offset})",
             "error": "could not be measured", "fix_failed": "correction failed",
             "not_scored": "not measured (rerun)"}
    parts = ", ".join(f"{n} {words.get(k, k)}" for k, n in sorted(done["counts"].items()))
    print(f"dropped    {len(done['dropped'])}" + (f": {parts}" if parts else "")
          + f" -> {done['report']}")
    if args.corrected_dir:
        c = done["corrected"]
        print(f"corrected  {args.corrected_dir}: {c['shifted']} shifted, {c['copied']} copied "
              f"unchanged (offset 0), {c['present']} already there")
    return EXIT_INCOMPLETE if scores["failed"] else EXIT_OK
