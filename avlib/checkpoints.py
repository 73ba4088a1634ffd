"""Checkpoint I/O: official ``.pth`` files loaded safely, our own saved as safetensors + JSON.

Official files (spec §1.4, §2.6, §3.3, §4.2) come in these shapes:

* a bare state dict (``syncnet_v2.model``), written by 2016-17 PyTorch and therefore probably
  without the ``num_batches_tracked`` buffers that BatchNorm has had since PyTorch 0.4;
* ``{"state_dict", "optimizer", "global_step", "global_epoch"}`` (Wav2Lip's
  ``lipsync_expert.pth``, VocaLiST's ``vocalist_5f_lrs2.pth``), keys possibly prefixed by
  ``module.`` when saved from ``nn.DataParallel``;
* ``{"state_dict"}`` alone (``pure_MTDVocaLiST.pth``);
* a PyTorch Lightning checkpoint (SyncVSR's ``LRW_CKPT_epoch_167_step_213864.ckpt``, spec §4.2):
  ``{"state_dict", "epoch", "global_step", "pytorch-lightning_version", "hyper_parameters",
  "optimizer_states", "lr_schedulers", "callbacks"}``, whose state dict may also hold the frozen
  vq-wav2vec tokenizer (``wav2vec.*``, ``cutmix.wav2vec.*``) when fairseq was installed at
  training time. Such keys that a network's official files are known to carry besides the network
  (:attr:`OfficialNetwork.skipped_prefixes`) are skipped and reported, not loaded.

Wav2Lip's generator files (``wav2lip.pth``, ``wav2lip_gan.pth``) and the quality
discriminator's (``disc_checkpoint_step*.pth``) use the second shape. A fifth shape holds several
networks, one state dict per ``<part>_state_dict`` entry (MMAB's ``GRU_Back_Ckpt.ckpt`` and
``MSTCN_Back_Ckpt.ckpt``: ``v_front``, ``a_front``, ``mem``, ``back``, spec §5.8; VCA-GAN's
``Best_*.ckpt``: ``v_front``, ``gen``, ``post``, ``dis1-3``, ``s_dis``, spec §5.3):
:func:`load_official_parts` loads each entry strictly into its part, and :func:`load_official`
does so for a model that names its parts (``official_parts()``) and refuses the file, naming
it, for any other.
:func:`identify_state_dict` / :func:`identify_checkpoint` tell which official network a file
holds (by its keys and tensor shapes), and :func:`load_official` names it when it is loaded
into the wrong model.

:func:`load_official` reads any of them with ``torch.load(..., weights_only=True)`` (no
arbitrary code runs while unpickling), repairs what is safe to repair, and otherwise fails with
a :class:`CheckpointMismatch` naming the offending keys. :func:`save_checkpoint` /
:func:`load_checkpoint` handle the project's own files: ``<name>.safetensors`` (tensors) next to
``<name>.json`` (model config, user metadata, a SHA-256 of the tensor file).
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib
import inspect
import json
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file as _load_safetensors
from safetensors.torch import save_file as _save_safetensors
from torch import nn

from avlib.artifacts import atomic_path, atomic_write_json
from avlib.cli import EXIT_INPUT


WRAPPER_KEYS = ("state_dict", "model", "net")  # checked in this order
DATA_PARALLEL_PREFIX = "module."
BN_COUNTER = "num_batches_tracked"
CHECKPOINT_FORMAT = "avlib-checkpoint/1"
_MAX_LISTED = 5


class CheckpointMismatch(RuntimeError):
    """The checkpoint's keys or shapes do not fit the model."""

    exit_code = EXIT_INPUT  # on the command line: the weights given cannot be used


class UnsafeCheckpointError(ValueError):
    """The file holds pickled objects other than tensors and plain containers."""

    exit_code = EXIT_INPUT


class CorruptCheckpointError(ValueError):
    """The file is empty, truncated or not a PyTorch checkpoint at all."""

    exit_code = EXIT_INPUT


@dataclass
class LoadReport:
    """What :func:`load_official` had to do to load a file.

    Attributes:
        source: file path, or ``"<state dict>"`` for an in-memory dict.
        unwrapped: wrapper keys descended through (e.g. ``["state_dict"]``).
        ignored_entries: other top-level entries of the file (``optimizer``, ``global_step``...).
        stripped_prefix: number of keys that lost a ``module.`` prefix.
        filled_buffers: ``num_batches_tracked`` buffers absent from the file, set to 0. They
            only matter for BatchNorm with ``momentum=None``; running statistics are untouched.
        skipped: keys left out because the official files of this network are known to carry
            them besides the network (e.g. SyncVSR's ``wav2vec.*`` audio tokenizer); see
            :attr:`OfficialNetwork.skipped_prefixes`. Never loaded, whatever ``strict`` says.
        skipped_reason: what those keys are ("" when none was skipped).
        missing, unexpected: keys left unloaded / ignored (only non-empty when ``strict=False``).
        n_tensors: tensors copied into the model.
        parts: the entries of a multi-part checkpoint that were loaded, in order (keys in the
            other lists then read ``<entry>/<key>``); empty for a single state dict.
    """

    source: str
    unwrapped: list[str] = field(default_factory=list)
    ignored_entries: list[str] = field(default_factory=list)
    stripped_prefix: int = 0
    filled_buffers: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skipped_reason: str = ""
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    n_tensors: int = 0
    parts: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"loaded {self.n_tensors} tensors from {self.source}"]
        if self.parts:
            lines.append(f"  parts: {', '.join(self.parts)}")
        if self.unwrapped:
            lines.append(f"  unwrapped: {' -> '.join(self.unwrapped)}")
        if self.ignored_entries:
            lines.append(f"  ignored entries: {', '.join(self.ignored_entries)}")
        if self.stripped_prefix:
            lines.append(f"  stripped '{DATA_PARALLEL_PREFIX}' from {self.stripped_prefix} keys")
        if self.filled_buffers:
            lines.append(f"  filled {len(self.filled_buffers)} missing {BN_COUNTER} buffers with 0")
        if self.skipped:
            groups = sorted({_group_of(k) for k in self.skipped})
            reason = f": {self.skipped_reason}" if self.skipped_reason else ""
            lines.append(f"  skipped {len(self.skipped)} keys ({', '.join(groups)}){reason}")
        if self.missing:
            lines.append(f"  missing (left at init): {_first(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected (ignored): {_first(self.unexpected)}")
        return "\n".join(lines)


def _group_of(key: str) -> str:
    """``"cutmix.wav2vec.feature_extractor.0.weight"`` -> ``"cutmix.wav2vec.*"``: the skipped
    prefix a key falls under (its first component when it falls under none known)."""
    for net in OFFICIAL_NETWORKS.values():
        for prefix in sorted(net.skipped_prefixes, key=len, reverse=True):
            if key.startswith(prefix):
                return prefix + "*"
    return key.split(".", 1)[0] + ".*"


def _first(keys: list[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


# --------------------------------------------------------------------------- official files
def read_official(path: str | os.PathLike) -> object:
    """Unpickle an official ``.pth`` with ``weights_only=True`` on the CPU.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeCheckpointError: the file needs arbitrary Python objects to unpickle.
        CorruptCheckpointError: the file is empty, truncated or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err).lower()
        # A refused class or function is unsafe; anything else ("Unsupported operand 110") is
        # bytes that are no pickle.
        refused = ("global", "unrecognized function", "unsupported class")
        if not any(word in message for word in refused):
            raise CorruptCheckpointError(
                f"{path} is not a readable PyTorch checkpoint: it is empty, truncated or another "
                f"kind of file (torch said: {_unpickler_reason(err)})") from err
        refused = _refused_global(err)
        what = f"the Python object {refused}" if refused else "Python objects other than tensors"
        if path.suffix == ".ckpt" or (refused or "").startswith(_LIGHTNING_GLOBALS):
            advice = (
                "This looks like a PyTorch Lightning checkpoint: Lightning keeps hyper-parameters "
                "and callback states next to the weights, and these may hold such objects (the "
                "weights themselves are plain tensors under \"state_dict\"). If you trust the "
                "file, in a separate session take torch.load(path, weights_only=False)"
                "[\"state_dict\"] and pass that dict to load_official.")
        else:
            advice = (
                "Official checkpoints hold only tensors and plain containers: check that this is "
                "the file you meant. If you trust it, extract its state dict in a separate "
                "session and pass the dict to load_official.")
        raise UnsafeCheckpointError(
            f"{path} was refused: unpickling it needs {what}, and loading such a file could run "
            f"code from it. {advice}"
        ) from err
    except (EOFError, RuntimeError, KeyError, ValueError, AttributeError, IndexError) as err:
        size = path.stat().st_size
        raise CorruptCheckpointError(
            f"{path} ({size} bytes) is not a readable PyTorch checkpoint: it is empty, truncated "
            f"or another kind of file ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Modules whose objects Lightning checkpoints may pickle (in `refused_global`'s backquotes).
_LIGHTNING_GLOBALS = ("`lightning.", "`pytorch_lightning.", "`lightning_fabric.", "`omegaconf.",
                      "`argparse.")
# What torch's weights-only unpickler names when it refuses something, in its known wordings.
_REFUSED = (re.compile(r"GLOBAL\s+([\w.]+(?:\.[\w]+)*)"),
            re.compile(r"[Uu]nsupported global:?\s+(?:GLOBAL\s+)?([\w.]+)"),
            re.compile(r"unrecognized function\s+([\w.]+)"),
            re.compile(r"[Uu]nsupported class\s+([\w.]+)"))


def _refused_global(err: Exception) -> str | None:
    """The global (``module.name``) torch's weights-only load refused, read from its
    message; None when the message names none."""
    message = _ANSI.sub("", str(err))
    for pattern in _REFUSED:
        found = pattern.search(message)
        if found:
            return f"`{found.group(1)}`"
    return None


def _unpickler_reason(err: Exception) -> str:
    """The informative part of torch's weights-only refusal (which global was rejected)."""
    message = str(err)
    marker = "WeightsUnpickler error:"
    if marker in message:
        reason = message.split(marker, 1)[1].strip()
        return reason.split(" Please use", 1)[0].splitlines()[0]
    return message.strip().splitlines()[0] if message.strip() else type(err).__name__


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


PART_SUFFIX = "_state_dict"


def _part_entries(obj: object) -> list[str]:
    """The ``<part>_state_dict`` entries of a multi-part checkpoint (each a mapping); [] when
    ``obj`` is not one (a plain ``state_dict`` wrapper does not count)."""
    if not isinstance(obj, Mapping) or any(isinstance(obj.get(k), Mapping) for k in WRAPPER_KEYS):
        return []
    return [k for k, v in obj.items()
            if isinstance(k, str) and k.endswith(PART_SUFFIX) and isinstance(v, Mapping)]


def _multipart_message(obj: Mapping, source: str, entries: list[str]) -> str:
    net = _identify_parts(obj)
    what = f"{OFFICIAL_NETWORKS[net].name}, " if net else ""
    into = (f" ({OFFICIAL_NETWORKS[net].avlib_class}.from_official(path) builds the right one)"
            if net and OFFICIAL_NETWORKS[net].avlib_class else "")
    return (f"{source} holds {what}a checkpoint of {len(entries)} networks, one state dict per "
            f"entry ({', '.join(entries)}), not one state dict: load it into a model made of "
            f"these parts with load_official_parts, or load_official on a model that has "
            f"official_parts(){into}")


def _unwrap(obj: object, report: LoadReport) -> Mapping[str, torch.Tensor]:
    """Descend through ``{"state_dict": ...}``-style wrappers to the tensor mapping."""
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            entries = _part_entries(obj)
            if entries:
                raise CheckpointMismatch(_multipart_message(obj, report.source, entries))
            break
        report.unwrapped.append(wrapper)
        report.ignored_entries.extend(str(k) for k in obj if k != wrapper)
        obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise CheckpointMismatch(
            f"{report.source} holds a {type(obj).__name__}, not a state dict "
            f"(a mapping of parameter names to tensors)"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad or not obj:
        raise CheckpointMismatch(
            f"{report.source} does not hold a state dict: entries that are not tensors: "
            f"{_first(bad) if bad else '(empty mapping)'}; top-level wrappers understood: "
            f"{', '.join(WRAPPER_KEYS)}"
        )
    return obj


def _strip_prefix(state: Mapping[str, torch.Tensor], report: LoadReport) -> dict[str, torch.Tensor]:
    """Remove leading ``module.`` (added by ``nn.DataParallel``) from every key."""
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new_key = key
        while new_key.startswith(DATA_PARALLEL_PREFIX):
            new_key = new_key[len(DATA_PARALLEL_PREFIX):]
        if new_key != key:
            report.stripped_prefix += 1
        if new_key in cleaned:
            raise CheckpointMismatch(
                f"{report.source}: key {key!r} collides with {new_key!r} once the "
                f"'{DATA_PARALLEL_PREFIX}' prefix is removed"
            )
        cleaned[new_key] = value
    return cleaned


def _fill_bn_counters(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], report: LoadReport
) -> None:
    """Add zero ``num_batches_tracked`` buffers to BatchNorm layers whose statistics are present."""
    for key, reference in expected.items():
        if not key.endswith("." + BN_COUNTER) or key in state:
            continue
        layer = key[: -len(BN_COUNTER)]
        # Only when the rest of that BatchNorm came with the file; otherwise the layer is
        # genuinely missing and must be reported as such.
        if layer + "running_mean" in state:
            state[key] = torch.zeros_like(reference)
            report.filled_buffers.append(key)


def _network_of(model: nn.Module) -> OfficialNetwork | None:
    """The official network with known extra keys (:attr:`OfficialNetwork.skipped_prefixes`)
    that ``model`` is an instance of; None for every other model. Only those networks' classes
    are looked up (by name, at call time: this module never imports the networks)."""
    for net in OFFICIAL_NETWORKS.values():
        if not net.skipped_prefixes or net.avlib_class is None:
            continue
        module, name = net.avlib_class.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name, None)
        if inspect.isclass(cls) and isinstance(model, cls):
            return net
    return None


def _skip_known_extras(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], model: nn.Module,
    report: LoadReport,
) -> None:
    """Remove from ``state`` the keys ``model``'s official files carry besides the network
    (those under its :attr:`OfficialNetwork.skipped_prefixes` that the model does not have),
    recording them in ``report.skipped``."""
    net = _network_of(model)
    if net is None:
        return
    extra = [k for k in state if k.startswith(net.skipped_prefixes) and k not in expected]
    for key in extra:
        del state[key]
    if extra:
        report.skipped = extra
        report.skipped_reason = net.skip_reason


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    source: str,
    strict: bool = True,
) -> tuple[list[str], list[str]]:
    """Compare key sets and shapes; return ``(missing, unexpected)`` keys.

    Raises:
        CheckpointMismatch: a shape differs, or (``strict``) a key is missing or unexpected.
            The message names the first offending keys with expected vs found shapes.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if wrong_shape:
        problems.append(
            f"{len(wrong_shape)} shape mismatches: "
            + "; ".join(
                f"{k}: model expects {tuple(expected[k].shape)}, file has {tuple(state[k].shape)}"
                for k in wrong_shape[:_MAX_LISTED]
            )
        )
    if strict and missing:
        problems.append(
            f"{len(missing)} missing keys: "
            + "; ".join(f"{k} {tuple(expected[k].shape)}" for k in missing[:_MAX_LISTED])
        )
    if strict and unexpected:
        problems.append(
            f"{len(unexpected)} unexpected keys: "
            + "; ".join(f"{k} {tuple(state[k].shape)}" for k in unexpected[:_MAX_LISTED])
        )
    if problems:
        raise CheckpointMismatch(
            f"{source} does not fit the model:\n  " + "\n  ".join(problems) + "\n"
            "Check the model class and its size options (official files need the default "
            "widths), or pass strict=False to load the matching part."
        )
    return missing, unexpected


def _open(path_or_state: str | os.PathLike | Mapping, source: str | None = None) -> tuple[LoadReport, object]:
    """A fresh report and the checkpoint object (read safely when a path is given)."""
    if isinstance(path_or_state, Mapping):
        return LoadReport(source=source or "<state dict>"), path_or_state
    return LoadReport(source=source or str(path_or_state)), read_official(path_or_state)


def _prepare(model: nn.Module, raw: object, report: LoadReport, strict: bool) -> dict[str, torch.Tensor]:
    """The state dict in ``raw``, repaired and checked against ``model`` (nothing loaded yet)."""
    state = _strip_prefix(_unwrap(raw, report), report)
    expected = model.state_dict()
    _skip_known_extras(state, expected, model, report)
    _fill_bn_counters(state, expected, report)
    try:
        report.missing, report.unexpected = check_state_dict(
            expected, state, report.source, strict)
    except CheckpointMismatch as err:
        wrong = _wrong_network_message(state, expected, model)
        if wrong is None:
            raise
        raise CheckpointMismatch(f"{report.source}: {wrong}\n{err}") from None
    return state


def load_official(
    model: nn.Module,
    path_or_state: str | os.PathLike | Mapping,
    strict: bool = True,
) -> LoadReport:
    """Load an official checkpoint (file path or already-loaded object) into ``model``.

    Repairs applied, each recorded in the returned :class:`LoadReport`: descend through
    ``state_dict`` / ``model`` / ``net`` wrappers (a Lightning checkpoint's other entries are
    ignored), strip ``module.`` prefixes, fill missing BatchNorm ``num_batches_tracked`` counters
    with 0, skip the keys that ``model``'s official files are known to carry besides the network
    (:attr:`OfficialNetwork.skipped_prefixes`: SyncVSR's ``wav2vec.*`` and ``cutmix.wav2vec.*``
    audio tokenizer, only when ``model`` is a SyncVSR). Anything else that differs raises
    :class:`CheckpointMismatch` (shape differences raise even with ``strict=False``). When
    the file holds another known network than ``model`` (:func:`identify_state_dict`), the
    message says so first, e.g. "this is the visual-quality discriminator (Wav2Lip_disc_qual),
    not the lip-sync expert (SyncNet_color)".

    A multi-part checkpoint (one ``<part>_state_dict`` entry per network, e.g. MMAB's) is
    loaded with :func:`load_official_parts` when ``model`` names its parts with an
    ``official_parts()`` method returning ``{entry: module}``; any other model refuses it with
    a message that names the file's parts (and the network, when it is a known one).
    """
    report, raw = _open(path_or_state)
    parts = getattr(model, "official_parts", None)
    if callable(parts) and _part_entries(raw):
        return _load_parts(parts(), raw, report, strict)
    state = _prepare(model, raw, report, strict)
    model.load_state_dict(state, strict=strict)
    report.n_tensors = len(state) - len(report.unexpected)
    return report


def load_official_parts(
    parts: Mapping[str, nn.Module],
    path_or_obj: str | os.PathLike | Mapping,
    strict: bool = True,
    source: str | None = None,
) -> LoadReport:
    """Load a multi-part checkpoint: ``path_or_obj[entry]`` into ``parts[entry]`` for every
    entry (e.g. ``{"v_front_state_dict": model.v_front, ...}``).

    Each part gets :func:`load_official`'s repairs and checks. Every part is checked before any
    is loaded, so a failure leaves the modules untouched. Entries of the file that are not
    parts (an optimizer...) are reported in ``ignored_entries``.

    Raises:
        CheckpointMismatch: the file is not a mapping, an entry is missing, or a part's keys
            or shapes differ (the message names the entry).
    """
    report, raw = _open(path_or_obj, source)
    return _load_parts(parts, raw, report, strict)


def _load_parts(parts: Mapping[str, nn.Module], raw: object, report: LoadReport,
                strict: bool) -> LoadReport:
    if not isinstance(raw, Mapping):
        raise CheckpointMismatch(
            f"{report.source} holds a {type(raw).__name__}, not a checkpoint of several parts "
            f"(a dict with the entries {', '.join(parts)})")
    missing = [entry for entry in parts if entry not in raw]
    if missing:
        net = _identify_parts(raw)  # a complete file of another network (VCA-GAN into MMAB)
        hint = ""
        if net:
            known = OFFICIAL_NETWORKS[net]
            into = f": load it into {known.avlib_class}" if known.avlib_class else ""
            hint = f" (this is {known.name}{into})"
        raise CheckpointMismatch(
            f"{report.source} lacks the entr{'y' if len(missing) == 1 else 'ies'} "
            f"{', '.join(missing)}: it holds {', '.join(map(str, raw)) or 'nothing'}, and this "
            f"model loads {', '.join(parts)}{hint}")
    prepared = []
    for entry, module in parts.items():
        sub = LoadReport(source=f"{report.source} [{entry}]")
        try:
            state = _prepare(module, raw[entry], sub, strict)
        except CheckpointMismatch as err:
            raise CheckpointMismatch(f"part {entry} ({type(module).__name__}): {err}") from None
        prepared.append((entry, module, state, sub))
    for entry, module, state, sub in prepared:
        module.load_state_dict(state, strict=strict)
        report.parts.append(entry)
        report.n_tensors += len(state) - len(sub.unexpected)
        report.stripped_prefix += sub.stripped_prefix
        for name in ("unwrapped", "ignored_entries", "filled_buffers", "skipped", "missing", "unexpected"):
            getattr(report, name).extend(f"{entry}/{k}" for k in getattr(sub, name))
        report.skipped_reason = report.skipped_reason or sub.skipped_reason
    report.ignored_entries = [str(k) for k in raw if k not in parts] + report.ignored_entries
    return report


# --------------------------------------------------------------------------- which network
@dataclass(frozen=True)
class OfficialNetwork:
    """A network whose official weights avlib knows (see :data:`OFFICIAL_NETWORKS`).

    Attributes:
        key: short id (``"wav2lip_disc"``); also the avlib registry name where there is one.
        name: human name used in messages ("the visual-quality discriminator
            (Wav2Lip_disc_qual)").
        files: the official file names that hold it.
        avlib_class: what to load it into (``"avlib.models.Wav2LipDisc"``), or None.
        skipped_prefixes: key prefixes its official files may hold besides the network (e.g.
            SyncVSR's frozen audio tokenizer, ``"wav2vec."``): :func:`load_official` skips and
            reports them when loading into ``avlib_class``, and recognition ignores them.
        skip_reason: what those keys are, for the load report.
        parts: for a checkpoint of several networks, its ``<part>_state_dict`` entries
            (recognised by these names; loaded with :func:`load_official_parts`).
    """

    key: str
    name: str
    files: tuple[str, ...]
    avlib_class: str | None
    skipped_prefixes: tuple[str, ...] = ()
    skip_reason: str = ""
    parts: tuple[str, ...] = ()


#: The official networks :func:`identify_state_dict` recognises, by short id.
OFFICIAL_NETWORKS: dict[str, OfficialNetwork] = {net.key: net for net in (
    OfficialNetwork("syncnet", "SyncNet (syncnet_python's `S`)", ("syncnet_v2.model",),
                    "avlib.models.SyncNet"),
    OfficialNetwork("wav2lip_expert", "the lip-sync expert (SyncNet_color)",
                    ("lipsync_expert.pth",), "avlib.models.Wav2LipExpert"),
    OfficialNetwork("wav2lip", "the Wav2Lip generator (Wav2Lip)",
                    ("wav2lip.pth", "wav2lip_gan.pth"), "avlib.models.Wav2Lip"),
    OfficialNetwork("wav2lip_disc", "the visual-quality discriminator (Wav2Lip_disc_qual)",
                    ("disc_checkpoint_step*.pth",), "avlib.models.Wav2LipDisc"),
    OfficialNetwork("vocalist", "VocaLiST (SyncTransformer)", ("vocalist_5f_lrs2.pth",),
                    "avlib.models.VocaLiST"),
    OfficialNetwork("mtd_vocalist", "the MTDVocaLiST student (distilled VocaLiST)",
                    ("pure_MTDVocaLiST.pth",), "avlib.models.mtd_vocalist"),
    OfficialNetwork("syncvsr", "SyncVSR's LRW word lip reader (TransformerLightningModule)",
                    ("LRW_CKPT_epoch_167_step_213864.ckpt",), "avlib.models.SyncVSR",
                    skipped_prefixes=("wav2vec.", "cutmix.wav2vec."),
                    skip_reason="the frozen vq-wav2vec audio tokenizer (and its CutMix copy) "
                                "saved when fairseq was installed at training time; not part of "
                                "the network (its audio tokens are precomputed)"),
    OfficialNetwork("mmab", "MMAB's LRW lip reader with visual-audio memory (Visual-Audio-Memory)",
                    ("GRU_Back_Ckpt.ckpt", "MSTCN_Back_Ckpt.ckpt"), "avlib.models.MMAB",
                    parts=("v_front_state_dict", "a_front_state_dict", "mem_state_dict",
                           "back_state_dict")),
    OfficialNetwork("vcagan", "VCA-GAN's lip-to-speech synthesizer and critics "
                    "(Visual-Context-Attentional-GAN)", ("Best_*.ckpt", "Epoch_*.ckpt"),
                    "avlib.models.VCAGAN",
                    parts=("v_front_state_dict", "gen_state_dict", "post_state_dict",
                           "dis1_state_dict", "dis2_state_dict", "dis3_state_dict",
                           "s_dis_state_dict")),
    OfficialNetwork("s3fd", "the S3FD face detector's weights", ("s3fd.pth",), None),
)}

#: Keys only S3FD's ``s3fd.pth`` has (VGG16 layers plus its normalised and head layers).
_S3FD_KEYS = frozenset({
    "conv1_1.weight", "conv3_3_norm.weight", "conv4_3_norm.weight", "conv5_3_norm.weight",
    "conf3_3.weight", "loc3_3.weight", "fc7.weight", "conv7_2.weight",
})
_S3FD_MIN_KEYS = 3
_MIN_KEY_OVERLAP = 0.8  # Jaccard index of the key sets (num_batches_tracked left out)
_MIN_RANK_AGREEMENT = 0.9  # shared keys whose tensors have the official number of dimensions


@functools.lru_cache(maxsize=1)
def _reference_shapes() -> tuple[tuple[str, dict[str, tuple[int, ...]]], ...]:
    """``(id, {key: shape})`` of each official-size network avlib builds, without
    ``num_batches_tracked``. Built on the meta device (no memory, no initialisation); the
    networks are reached by name at call time, so this module never imports them."""
    models = importlib.import_module("avlib.models")
    builders = (
        ("syncnet", models.SyncNet),
        ("wav2lip_expert", models.Wav2LipExpert),
        ("wav2lip", models.Wav2Lip),
        ("wav2lip_disc", models.Wav2LipDisc),
        ("vocalist", models.VocaLiST),
        ("mtd_vocalist", models.mtd_vocalist),  # same keys as VocaLiST: told apart by shapes
        ("syncvsr", models.SyncVSR),
    )
    references = []
    with torch.device("meta"):
        for key, build in builders:
            shapes = {k: tuple(v.shape) for k, v in build().state_dict().items()
                      if not k.endswith(BN_COUNTER)}
            references.append((key, shapes))
    return tuple(references)


def _identify(state: Mapping[str, torch.Tensor]) -> str | None:
    """Id of the official network an unwrapped, prefix-free state dict holds, or None."""
    keys = {k for k in state if not k.endswith(BN_COUNTER)}
    if len(keys & _S3FD_KEYS) >= _S3FD_MIN_KEYS:
        return "s3fd"
    best, best_score = None, (0.0, 0.0)
    for net, reference in _reference_shapes():
        own = keys
        extras = OFFICIAL_NETWORKS[net].skipped_prefixes
        if extras:  # e.g. SyncVSR's audio tokenizer: not the network, however many keys it has
            own = {k for k in keys if not k.startswith(extras) or k in reference}
        shared = own & reference.keys()
        if not shared:
            continue
        overlap = len(shared) / len(own | reference.keys())
        ranks = sum(len(state[k].shape) == len(reference[k]) for k in shared) / len(shared)
        shapes = sum(tuple(state[k].shape) == reference[k] for k in shared) / len(shared)
        if overlap < _MIN_KEY_OVERLAP or ranks < _MIN_RANK_AGREEMENT:
            continue
        # Keys decide; exact shapes only break ties (VocaLiST vs its MTDVocaLiST student, whose
        # keys are identical). The first network wins a full tie (e.g. a narrow VocaLiST).
        if (overlap, shapes) > best_score:
            best, best_score = net, (overlap, shapes)
    return best


def _identify_parts(obj: object) -> str | None:
    """Id of the official multi-part network whose entries ``obj`` has, or None."""
    entries = set(_part_entries(obj))
    for net in OFFICIAL_NETWORKS.values():
        if net.parts and entries == set(net.parts):
            return net.key
    return None


def _state_of(obj: object) -> dict[str, torch.Tensor] | None:
    """The prefix-free state dict inside a checkpoint object, or None when there is none."""
    report = LoadReport(source="<state dict>")
    try:
        return _strip_prefix(_unwrap(obj, report), report)
    except CheckpointMismatch:
        return None


def identify_network(state: object) -> str | None:
    """Short id (a key of :data:`OFFICIAL_NETWORKS`, e.g. ``"wav2lip_disc"``) of the official
    network whose weights ``state`` holds, or None when it is none avlib knows.

    ``state`` is a state dict or a loaded checkpoint (``{"state_dict": ...}`` wrappers and
    ``module.`` prefixes are handled, as by :func:`load_official`). Recognition uses the key
    names and the tensors' number of dimensions, so narrow (``width < 1``) variants of the
    same network are recognised too; exact shapes tell VocaLiST from MTDVocaLiST. Keys a
    network's files are known to carry besides it (SyncVSR's ``wav2vec.*`` tokenizer) do not
    count against it. S3FD is recognised by a few of its distinctive keys
    (``conv3_3_norm.weight``, ``conf3_3.weight``, ``loc3_3.weight``...); a checkpoint of several
    networks (MMAB's) by its ``<part>_state_dict`` entries (:attr:`OfficialNetwork.parts`).
    """
    if _part_entries(state):
        return _identify_parts(state)
    cleaned = _state_of(state)
    return None if cleaned is None else _identify(cleaned)


def identify_state_dict(state: object) -> str | None:
    """Human name of the official network ``state`` holds (e.g. "the visual-quality
    discriminator (Wav2Lip_disc_qual)"), or None. See :func:`identify_network`."""
    net = identify_network(state)
    return None if net is None else OFFICIAL_NETWORKS[net].name


def identify_checkpoint(path: str | os.PathLike) -> str | None:
    """Human name of the official network in the checkpoint file at ``path``, or None.

    The file is read like :func:`load_official` reads it (``weights_only=True``), and raises
    the same errors for missing, unsafe or corrupt files.
    """
    return identify_state_dict(read_official(path))


def _wrong_network_message(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], model: nn.Module
) -> str | None:
    """The sentence "this is X, not Y" when the file holds another known network than
    ``model``; None otherwise (unknown file, or the same network at another size)."""
    found = _identify(state)
    if found is None:
        return None
    wanted = _identify(expected)
    if wanted == found:
        return None
    net = OFFICIAL_NETWORKS[found]
    if wanted is None:
        message = f"this is {net.name}, which {type(model).__name__} does not take"
    else:
        message = f"this is {net.name}, not {OFFICIAL_NETWORKS[wanted].name}"
    if net.avlib_class is not None:
        return message + f"; load it into {net.avlib_class} instead."
    return message + "; no avlib.models network takes these weights."


# --------------------------------------------------------------------------- own checkpoints
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<name>.safetensors, <name>.json)`` for a path given with or without either suffix."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return Path(f"{path}.safetensors"), Path(f"{path}.json")


def save_checkpoint(
    path_without_ext: str | os.PathLike,
    model: nn.Module,
    config: Mapping | None = None,
    extra: Mapping | None = None,
) -> tuple[Path, Path]:
    """Write ``<name>.safetensors`` (the state dict) and ``<name>.json`` atomically.

    Args:
        path_without_ext: destination without suffix (folders are created).
        model: the model to save.
        config: ``{"name", "kwargs"}`` that :func:`avlib.models.build_model` understands;
            ``None`` uses ``model.config``.
        extra: JSON-serialisable metadata (training steps, metrics, data hash...).

    Returns:
        The two paths written. The JSON is written last, so a JSON file implies a complete
        tensor file; it also records the tensor file's SHA-256.
    """
    if config is None:
        config = getattr(model, "config", None)
        if config is None:
            raise ValueError("model has no .config; pass config={'name': ..., 'kwargs': {...}}")
    tensors_path, json_path = _checkpoint_paths(path_without_ext)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": CHECKPOINT_FORMAT,
        "config": dict(config),
        "extra": dict(extra or {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    try:
        json.dumps(document)
    except TypeError as err:
        raise ValueError(f"config and extra must be JSON-serialisable: {err}") from err

    # safetensors refuses views and shared storage: hand it contiguous CPU copies.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(tensors_path) as tmp_tensors:
        _save_safetensors(tensors, str(tmp_tensors), metadata={"format": CHECKPOINT_FORMAT})
        document["sha256"] = _sha256(tmp_tensors)
    # The JSON last: its presence implies a complete tensor file with this hash.
    atomic_write_json(json_path, document, default=None)
    return tensors_path, json_path


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """The JSON document saved next to a checkpoint (config, extra, sha256, versions)."""
    _, json_path = _checkpoint_paths(path)
    if not json_path.is_file():
        raise FileNotFoundError(
            f"checkpoint metadata not found: {json_path} (save_checkpoint writes it last; a "
            "missing file means the save did not complete)"
        )
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptCheckpointError(
            f"{json_path} is not valid JSON ({err}): the checkpoint description is damaged; save the "
            "checkpoint again (or restore the file)") from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT or "config" not in document:
        raise ValueError(
            f"{json_path} is not an avlib checkpoint description ({CHECKPOINT_FORMAT})"
        )
    return document


def load_checkpoint(
    path: str | os.PathLike,
    model_factory: Callable | type[nn.Module] | None = None,
    verify_hash: bool = True,
) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_checkpoint` and load its weights strictly.

    Args:
        path: ``<name>``, ``<name>.safetensors`` or ``<name>.json``.
        model_factory: ``None`` (use the registry: :func:`avlib.models.build_model`), a model
            class (called with ``config["kwargs"]``) or a function ``config -> model``.
        verify_hash: compare the tensor file with the SHA-256 recorded in the JSON.

    Returns:
        ``(model in eval mode, config)``.
    """
    tensors_path, json_path = _checkpoint_paths(path)
    document = read_checkpoint_info(path)
    if not tensors_path.is_file():
        raise FileNotFoundError(f"checkpoint tensors not found: {tensors_path}")
    if verify_hash and document.get("sha256") and _sha256(tensors_path) != document["sha256"]:
        raise CheckpointMismatch(
            f"{tensors_path} does not match the SHA-256 recorded in {json_path}: the file was "
            "changed or replaced after saving"
        )
    config = document["config"]
    if model_factory is None:
        # The registry lives with the networks, one layer up (spine <- models): reach it by name
        # at call time, so that this module never imports the networks it stores.
        model = importlib.import_module("avlib.models").build_model(config)
    elif inspect.isclass(model_factory):
        model = model_factory(**config.get("kwargs", {}))
    else:
        model = model_factory(config)
    state = _load_safetensors(str(tensors_path))
    check_state_dict(model.state_dict(), state, str(tensors_path), strict=True)
    model.load_state_dict(state, strict=True)
    return model.eval(), config
