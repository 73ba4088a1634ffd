"""The one trainer of the book: recipes, exact resume, JSON-lines logs, bf16, torchrun DDP.

Everything trainable in the book is a :class:`Recipe`: a small class that says which networks to
build, which of them to optimise and with what, how to draw a batch and what one training step
does. A classifier is one model and one optimizer; a GAN is a generator and a discriminator with
two optimizers (and maybe a frozen expert judging the generator); distillation is a student, a
frozen teacher and an extra optimizer for the loss's own weights. The protocol::

    class MyRecipe(Recipe):
        name = "my_product"
        def build(self) -> dict[str, nn.Module]           # {"G": g, "D": d, "expert": frozen}
        def trainable(self, models) -> tuple[str, ...]    # default: models with trainable params
        def optimizers(self, models, cfg) -> dict[str, torch.optim.Optimizer]
                                                          # default: one Adam(W) per trainable model
        def batch(self, rng: np.random.Generator) -> dict # one GLOBAL batch
        def training_step(self, models, batch, opt: Optimizers) -> dict[str, float]
                                                          # calls opt.step(name, loss); has "loss"
        def validate(self, models) -> dict[str, float]    # default {}: no validation

:class:`Trainer` runs a recipe for ``cfg.steps`` steps. Its rules:

- **Models.** Moved to the device; models not in ``trainable`` are *frozen* (eval mode,
  ``requires_grad=False``); trainable ones are in train mode during steps, in eval mode under
  ``torch.no_grad`` during :meth:`Recipe.validate`, and every model is in eval mode after
  :meth:`Trainer.fit`. ``torch.manual_seed(cfg.seed)`` runs before :meth:`Recipe.build`.
- **Updates.** ``opt.step(name, loss)`` (:class:`Optimizers`) checks that the loss is finite
  (else :class:`FloatingPointError`), zeroes that optimizer's gradients, back-propagates,
  averages the gradients over the processes (DDP), clips them (``cfg.grad_clip``), sets the
  learning rate of every parameter group to its base rate x ``cfg.lr_factor(step)`` and steps.
- **Precision.** ``cfg.precision``: ``"fp32"``, ``"bf16"`` (``torch.autocast`` with bfloat16
  around ``training_step`` and ``validate``; weights and optimizer states stay fp32) or
  ``"auto"`` (bf16 on CUDA, fp32 elsewhere).
- **Logs.** Every ``cfg.log_every`` steps a record of the step's means (``loss`` and the other
  metrics) joins ``History.train``; every ``cfg.eval_every`` steps the validation metrics join
  ``History.eval``. Both are also appended, one JSON object a line (``step``, ``seconds``,
  ``kind`` = ``"train"``/``"eval"``, ``metrics``), to ``workdir/log.jsonl``.
- **Exact resume.** Every ``cfg.ckpt_every`` steps, at the end and when ``cfg.time_limit_s`` is
  spent, the trainer writes ``last.<model>.safetensors`` for every model,
  ``last.optim.<name>.safetensors`` for every optimizer and then ``last.json`` (step, history,
  optimizers' non-tensor state and base learning rates, numpy/torch/CUDA random states): no
  checkpoint file can execute code when loaded. ``last.json`` is the commit point: the tensor
  files are first written beside their final names and renamed only once it is written, so a
  kill at any instant leaves a consistent checkpoint. :meth:`Trainer.fit` resumes from it, drops
  the log lines written after it, and continues exactly as the uninterrupted run would have:
  same weights and optimizer states, bit for bit, same log (wall-clock seconds aside).
- **DDP.** Under ``torchrun`` (``WORLD_SIZE`` > 1) the trainer joins the process group (NCCL on
  CUDA with device ``cuda:LOCAL_RANK``, gloo on the CPU). Every process draws the same global
  batch from the same seeded generator and keeps its contiguous shard of every tensor
  (:func:`shard_batch`); ``opt.step`` averages the gradients, so an update equals the one-process
  update on the global batch (up to float summation order, for losses that are means over the
  batch and models without batch norm). Logged metrics are averaged over the processes; only
  rank 0 validates, writes checkpoints and logs, and shows a progress bar.

:func:`train_recipe` is what a chapter calls: the trained models of a recipe, loaded when the
product exists, trained (or an interrupted training finished) otherwise, keyed by the recipe's
configuration, the training settings and the source of the avlib code it depends on
(:func:`recipe_code`). :class:`SimpleRecipe` and :func:`train_or_load` keep the older
function-style API (a model, ``sample(rng)`` and ``step(model, batch) -> (loss, metrics)``).
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avlib.artifacts import (
    ArtifactMissing,
    atomic_write_json,
    atomic_write_text,
    is_complete,
    produce_or_load,
    product_dir,
    read_metadata,
)
from avlib.checkpoints import load_checkpoint, save_checkpoint

Batch = dict
StepFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict]]
EvalFn = Callable[[torch.nn.Module], dict]

LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16", "auto")
CHECKPOINT_FORMAT = "avlib-trainer/2"
LOG_NAME = "log.jsonl"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # model and optimizer names end up in file names
_PENDING = ".next"  # suffix of tensor files written but not yet committed by last.json


@dataclass
class TrainConfig:
    """Optimisation settings. ``steps`` counts training steps (calls of ``training_step``)."""

    steps: int = 1000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    eval_every: int = 200
    ckpt_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    time_limit_s: float | None = None  # stop early (and say so) when the budget is spent
    lr_schedule: str = "constant"  # "constant", or "cosine": decay to min_lr_ratio x lr at `steps`
    min_lr_ratio: float = 0.05  # the cosine schedule's final fraction of the learning rate
    precision: str = "auto"  # "fp32", "bf16" (autocast), "auto": bf16 on CUDA, fp32 elsewhere
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps to lr, then the schedule

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if int(self.warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier for the update after ``step`` updates (a function of the
        step alone, so a resumed run follows the same schedule)."""
        warm = int(self.warmup_steps)
        if warm and step < warm:
            return (max(step, 0) + 1) / warm
        if self.lr_schedule == "constant" or self.steps - warm <= 1:
            return 1.0
        t = min(step - warm, self.steps - warm) / (self.steps - warm)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    def autocast_dtype(self, device: str | torch.device) -> torch.dtype | None:
        """bfloat16 when training on ``device`` runs under autocast, ``None`` for plain fp32."""
        if self.precision == "bf16" or (
                self.precision == "auto" and torch.device(device).type == "cuda"):
            return torch.bfloat16
        return None


@dataclass
class History:
    """Training curves: one record per logged step and one per evaluation."""

    train: list[dict] = field(default_factory=list)
    eval: list[dict] = field(default_factory=list)
    stopped_early: str | None = None

    def last_eval(self) -> dict:
        return self.eval[-1] if self.eval else {}


def adam(params, cfg: TrainConfig, *, lr: float | None = None,
         betas: tuple[float, float] | None = None) -> torch.optim.Optimizer:
    """Adam (AdamW when ``cfg.weight_decay``) over ``params`` with the settings of ``cfg``;
    ``lr`` and ``betas`` override them (e.g. ``betas=(0.5, 0.999)`` for a GAN)."""
    opt_cls = torch.optim.AdamW if cfg.weight_decay else torch.optim.Adam
    return opt_cls(params, lr=cfg.lr if lr is None else lr,
                   betas=tuple(cfg.betas if betas is None else betas),
                   weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------------------------------
# Optimizer state <-> safetensors + JSON
# ---------------------------------------------------------------------------------------------
def _optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors (safetensors) and JSON-able rest."""
    state = opt.state_dict()
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, entries in state["state"].items():
        plain["state"][str(idx)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(idx)][name] = value
    return tensors, plain


def _optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, plain: dict) -> None:
    state = {"param_groups": plain["param_groups"], "state": {}}
    for idx, entries in plain["state"].items():
        state["state"][int(idx)] = dict(entries)
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state["state"].setdefault(int(idx), {})[name] = value
    opt.load_state_dict(state)  # casts the moments to each parameter's device and dtype


# ---------------------------------------------------------------------------------------------
# Distributed data parallelism
# ---------------------------------------------------------------------------------------------
def init_distributed(device: str | torch.device = "cpu") -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)`` of this process.

    Under ``torchrun`` (environment ``WORLD_SIZE`` > 1) this joins the process group when it is
    not joined yet: backend NCCL when ``device`` is CUDA (the device becomes
    ``cuda:LOCAL_RANK``), gloo otherwise. A single process gets ``(0, 1, device)``.
    """
    device = torch.device(device)
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size(), device
        return 0, 1, device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def shard_batch(batch: Mapping, rank: int, world_size: int) -> dict:
    """This process's part of a global batch: rows ``[r*B/W, (r+1)*B/W)`` of every tensor with
    a leading (batch) dimension ``B``; other values (numbers, strings, 0-d tensors) are kept."""
    if world_size == 1:
        return dict(batch)
    shard = {}
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() > 0:
            rows = value.shape[0]
            if rows % world_size:
                raise ValueError(
                    f"batch entry {key!r} has {rows} rows, which {world_size} processes cannot "
                    "share equally: make the global batch size a multiple of the world size")
            n = rows // world_size
            value = value[rank * n:(rank + 1) * n]
        shard[key] = value
    return shard


def _to_device(batch: Mapping, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _average_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """All-reduce the gradients of ``params`` and divide by the world size (one flat buffer per
    device and dtype). Every process must have gradients for the same parameters."""
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------
class Recipe:
    """Base class of everything trainable (see the module docstring for the protocol).

    Subclasses set ``name`` (the product name) and override :meth:`build`, :meth:`batch` and
    :meth:`training_step`; :meth:`trainable`, :meth:`optimizers` and :meth:`validate` have
    defaults. A recipe whose result depends on settings keeps them in a dataclass ``config``
    attribute: :func:`train_recipe` puts it in the product key.
    """

    name: str = ""
    #: The models :func:`train_recipe` saves as the product (None: every trainable model).
    #: A loss with parameters of its own (distillation's weights) is trained, not kept.
    outputs: tuple[str, ...] | None = None

    def build(self) -> dict[str, torch.nn.Module]:
        """The named models, e.g. ``{"net": net}`` or ``{"G": g, "D": d, "expert": frozen}``."""
        raise NotImplementedError

    def trainable(self, models: dict[str, torch.nn.Module]) -> tuple[str, ...]:
        """Names of the models to optimise; the others are frozen. Default: the models with at
        least one parameter requiring grad. (An override may take no argument.)"""
        return tuple(n for n, m in models.items() if any(p.requires_grad for p in m.parameters()))

    def optimizers(self, models: dict[str, torch.nn.Module],
                   cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers. Default: :func:`adam` over each trainable model, named after it.
        The learning rate of each parameter group when returned is its base rate."""
        return {n: adam(models[n].parameters(), cfg) for n in _trainable(self, models)}

    def batch(self, rng: np.random.Generator) -> dict:
        """One global training batch: tensors with a leading batch dimension, or other values.
        The trainer moves the tensors to the device (and shards them under DDP)."""
        raise NotImplementedError

    def training_step(self, models: dict[str, torch.nn.Module], batch: dict,
                      opt: "Optimizers") -> dict[str, float]:
        """Forward passes and ``opt.step(name, loss)`` for each update; returns the metrics of
        the step, among them ``"loss"``: the same names at every step, NaN for one that is
        undefined on a batch (it is left out of the logged means)."""
        raise NotImplementedError

    def validate(self, models: dict[str, torch.nn.Module]) -> dict[str, float]:
        """Validation metrics (called in eval mode under ``torch.no_grad``); ``{}``: none."""
        return {}


def _trainable(recipe: Recipe, models: dict) -> tuple[str, ...]:
    """``recipe.trainable(models)``, or ``recipe.trainable()`` for an override without one."""
    method = recipe.trainable
    names = method() if not inspect.signature(method).parameters else method(models)
    names = tuple(names)
    unknown = set(names) - set(models)
    if unknown:
        raise ValueError(f"trainable() names {sorted(unknown)}, but build() made {sorted(models)}")
    return names


class SimpleRecipe(Recipe):
    """The function-style API as a recipe: one model (named ``"model"``), one Adam(W).

    ``sample(rng) -> batch``; ``step(model, batch) -> (loss, metrics)``; ``evaluate(model) ->
    metrics`` (optional); ``params``: parameter groups for the optimizer (default: all the
    model's parameters); ``name``: the product name.
    """

    def __init__(self, model: torch.nn.Module, sample: Callable[[np.random.Generator], Batch],
                 step: StepFn, evaluate: EvalFn | None = None, params=None, name: str = "model"):
        self.model, self.sample, self.step_fn, self.evaluate = model, sample, step, evaluate
        self.params, self.name = params, name

    def build(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def trainable(self, models) -> tuple[str, ...]:
        return ("model",)

    def optimizers(self, models, cfg):
        params = self.params if self.params is not None else models["model"].parameters()
        return {"model": adam(params, cfg)}

    def batch(self, rng):
        return self.sample(rng)

    def training_step(self, models, batch, opt):
        loss, metrics = self.step_fn(models["model"], batch)
        opt.step("model", loss)
        return {"loss": float(loss.detach()), **metrics}

    def validate(self, models):
        return self.evaluate(models["model"]) if self.evaluate is not None else {}


class PlateauSchedule(torch.nn.Module):
    """Halve the learning rate when a validation metric stops improving (MMAB's schedule).

    A module of buffers only, so that a recipe returns it from ``build()`` beside its networks
    (``{"net": net, "plateau": PlateauSchedule()}``): the trainer then checkpoints and resumes
    its state with the models, and never optimises it. The recipe calls :meth:`update` with the
    metric in ``validate`` and passes ``lr_scale=plateau.scale`` to ``opt.step``.

    Args:
        patience: validations without a better metric before the rate is multiplied by
            ``factor`` (MMAB: 5 epochs, 0.5).
        factor: the multiplier.
        higher_is_better: the metric's direction (accuracy: True).
    """

    def __init__(self, patience: int = 5, factor: float = 0.5, higher_is_better: bool = True):
        super().__init__()
        if int(patience) < 1 or not 0.0 < float(factor) < 1.0:
            raise ValueError(f"patience must be >= 1 and factor in (0, 1), got {patience}, {factor}")
        self.patience, self.factor, self.higher = int(patience), float(factor), bool(higher_is_better)
        self.register_buffer("best", torch.tensor(-math.inf))
        self.register_buffer("bad", torch.tensor(0))
        self.register_buffer("lr_scale", torch.tensor(1.0))

    @property
    def scale(self) -> float:
        return float(self.lr_scale)

    def update(self, metric: float) -> bool:
        """Record one validation; True when this one lowered the rate."""
        value = float(metric) if self.higher else -float(metric)
        if value > float(self.best):
            self.best.fill_(value)
            self.bad.zero_()
            return False
        self.bad.add_(1)
        if int(self.bad) >= self.patience:
            self.lr_scale.mul_(self.factor)
            self.bad.zero_()
            return True
        return False


class Optimizers(Mapping):
    """The named optimizers of a training, as ``training_step`` sees them.

    ``opt["G"]`` is the torch optimizer; ``opt.step("G", loss)`` performs one update of it (see
    the module docstring); ``opt.global_step`` is the number of training steps done before the
    current one; ``opt.base_lrs[name]`` the base learning rate of each parameter group.
    """

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer], cfg: TrainConfig,
                 world_size: int = 1, device_type: str = "cpu", autocast: bool = False):
        for name, opt in optimizers.items():
            if not _NAME.match(name):
                raise ValueError(f"optimizer name {name!r}: use letters, digits, '_' or '-'")
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(f"optimizer {name!r} is a {type(opt).__name__}, not an Optimizer")
        self._optimizers = dict(optimizers)
        self.cfg, self.world_size = cfg, world_size
        self._device_type, self._autocast = device_type, autocast
        self.global_step = 0
        self.base_lrs = {n: [float(g["lr"]) for g in o.param_groups]
                         for n, o in self._optimizers.items()}

    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        try:
            return self._optimizers[name]
        except KeyError:
            raise KeyError(f"no optimizer {name!r}; the recipe has {sorted(self)}") from None

    def __iter__(self):
        return iter(self._optimizers)

    def __len__(self) -> int:
        return len(self._optimizers)

    def params(self, name: str) -> list[torch.Tensor]:
        """Every parameter optimised by optimizer ``name``."""
        return [p for group in self[name].param_groups for p in group["params"]]

    def step(self, name: str, loss: torch.Tensor, *, retain_graph: bool = False,
             lr_scale: float = 1.0) -> None:
        """One update of optimizer ``name`` from ``loss`` (a scalar tensor). ``lr_scale``
        multiplies the scheduled learning rate of this update (a :class:`PlateauSchedule`'s
        ``scale``, for instance)."""
        opt = self[name]
        if loss.numel() != 1:
            raise ValueError(f"optimizer {name!r} got a loss of shape {tuple(loss.shape)}; "
                             "reduce it to a scalar (e.g. .mean())")
        value = loss.detach().float().reshape(())
        if self.world_size > 1:  # every process sees a non-finite loss anywhere, and stops
            value = value.clone()
            torch.distributed.all_reduce(value)
        if not torch.isfinite(value):
            raise FloatingPointError(
                f"the loss of optimizer {name!r} became {value.item()} at step "
                f"{self.global_step}; lower the learning rate or check the inputs")
        no_autocast = (torch.autocast(self._device_type, enabled=False) if self._autocast
                       else contextlib.nullcontext())
        with no_autocast:
            opt.zero_grad(set_to_none=True)
            loss.backward(retain_graph=retain_graph)
            params = self.params(name)
            if self.world_size > 1:
                _average_gradients(params, self.world_size)
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            factor = self.cfg.lr_factor(self.global_step) * float(lr_scale)
            for group, base in zip(opt.param_groups, self.base_lrs[name]):
                group["lr"] = base * factor
            opt.step()


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------
def _tensors_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses views and shared storage: hand it contiguous CPU copies
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def _read_tensors(path: Path, step: int) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, checking that it belongs to checkpoint ``step``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint in {path.parent} is "
                                "incomplete; delete its last.* files to start over")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        saved = (f.metadata() or {}).get("step")
        if saved != str(step):
            raise ValueError(f"{path} belongs to step {saved}, last.json to step {step}")
        return {k: f.get_tensor(k) for k in f.keys()}


class Trainer:
    """Train a :class:`Recipe` (see the module docstring), resuming from ``workdir``.

    ``Trainer(recipe, cfg, workdir)``. The older form ``Trainer(model, sample, step, cfg,
    workdir, evaluate=None, params=None)`` is still accepted: it wraps the model in a
    :class:`SimpleRecipe` (same as :meth:`from_functions`).

    Attributes: ``models`` (dict), ``optimizers`` (:class:`Optimizers`), ``step`` (training
    steps done), ``history`` (:class:`History`), ``device``, ``rank``, ``world_size``,
    ``trainable_names``; ``model`` and ``optimizer`` when there is only one of each.
    """

    def __init__(self, recipe, cfg, workdir, *legacy, evaluate: EvalFn | None = None,
                 params=None):
        if isinstance(recipe, torch.nn.Module):  # Trainer(model, sample, step, cfg, workdir)
            if len(legacy) != 2:
                raise TypeError("Trainer(model, sample, step, cfg, workdir) takes 5 arguments")
            recipe = SimpleRecipe(recipe, cfg, workdir, evaluate=evaluate, params=params)
            cfg, workdir = legacy
        elif legacy or evaluate is not None or params is not None:
            raise TypeError("Trainer(recipe, cfg, workdir): evaluate and params belong to the "
                            "recipe (see SimpleRecipe)")
        self.recipe, self.cfg = recipe, cfg
        self.rank, self.world_size, self.device = init_distributed(cfg.device)
        self.is_main = self.rank == 0
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.amp_dtype = cfg.autocast_dtype(self.device)

        torch.manual_seed(cfg.seed)
        models = recipe.build()
        if not isinstance(models, Mapping) or not all(
                isinstance(m, torch.nn.Module) for m in models.values()):
            raise TypeError("Recipe.build() must return a dict of named nn.Module")
        for name in models:
            if not _NAME.match(name):
                raise ValueError(f"model name {name!r}: use letters, digits, '_' or '-'")
        self.models = dict(models)
        self.trainable_names = _trainable(recipe, self.models)
        for name, model in self.models.items():
            model.to(self.device)
            if name not in self.trainable_names:  # a frozen expert or teacher
                model.eval().requires_grad_(False)
        self.optimizers = Optimizers(recipe.optimizers(self.models, cfg), cfg, self.world_size,
                                     self.device.type, autocast=self.amp_dtype is not None)
        if self.world_size > 1:  # every process starts from rank 0's weights
            with torch.no_grad():
                for model in self.models.values():
                    for tensor in model.state_dict().values():
                        torch.distributed.broadcast(tensor, 0)
        self.history = History()
        self.step = 0
        self.rng = np.random.default_rng(cfg.seed)
        self.seconds = 0.0
        self._running: dict[str, list[float]] = {}

    @classmethod
    def from_functions(cls, model: torch.nn.Module, sample, step: StepFn, cfg: TrainConfig,
                       workdir: str | Path, evaluate: EvalFn | None = None,
                       params=None) -> "Trainer":
        """The function-style trainer: ``Trainer(SimpleRecipe(model, ...), cfg, workdir)``."""
        return cls(SimpleRecipe(model, sample, step, evaluate=evaluate, params=params), cfg,
                   workdir)

    @property
    def model(self) -> torch.nn.Module:
        if len(self.models) != 1:
            raise AttributeError(f"this trainer has several models: {sorted(self.models)}")
        return next(iter(self.models.values()))

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if len(self.optimizers) != 1:
            raise AttributeError(f"this trainer has several optimizers: {sorted(self.optimizers)}")
        return next(iter(self.optimizers.values()))

    @property
    def log_path(self) -> Path:
        return self.workdir / LOG_NAME

    # ---- checkpoints -------------------------------------------------------------------------
    def save(self) -> None:
        """Write the resumable state (rank 0 only): tensor files beside their final names, then
        ``last.json`` (the commit point), then the renames."""
        if not self.is_main:
            return
        files = {f"last.{n}": _tensors_of(m) for n, m in self.models.items()}
        plain = {}
        for name, opt in self.optimizers.items():
            files[f"last.optim.{name}"], plain[name] = _optimizer_to_tensors(opt)
        for stem, tensors in files.items():
            save_file(tensors, str(self.workdir / f".{stem}.safetensors{_PENDING}"),
                      metadata={"step": str(self.step)})
        meta = {
            "format": CHECKPOINT_FORMAT, "recipe": self.recipe.name, "step": self.step,
            "seconds": self.seconds, "history": asdict(self.history), "running": self._running,
            "models": sorted(self.models),
            "optimizers": plain,
            "base_lrs": self.optimizers.base_lrs, "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state().tolist(), "config": asdict(self.cfg)}
        if self.device.type == "cuda":
            meta["cuda_rng"] = torch.cuda.get_rng_state(self.device).tolist()
        atomic_write_json(self.workdir / "last.json", meta)
        self._commit(self.step)

    def _commit(self, step: int | None) -> None:
        """Rename the pending tensor files of checkpoint ``step`` to their final names; delete
        pending files of any other step (a save killed before its ``last.json``)."""
        for pending in self.workdir.glob(f".last.*.safetensors{_PENDING}"):
            with safe_open(str(pending), framework="pt") as f:
                saved = (f.metadata() or {}).get("step")
            if step is not None and saved == str(step):
                os.replace(pending, self.workdir / pending.name[1:-len(_PENDING)])
            else:
                pending.unlink()

    def _recover(self) -> dict | None:
        """Rank 0, before resuming: finish or drop a half-written checkpoint and cut the log
        back to the checkpoint's step. Returns the checkpoint's ``last.json`` (or ``None``)."""
        meta_path = self.workdir / "last.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        if meta is not None and meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{meta_path} was written by an older trainer and cannot be resumed;"
                             " delete the last.* files of that folder to start over")
        step = meta["step"] if meta else None
        self._commit(step)
        if self.log_path.is_file():
            kept = []
            for line in self.log_path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if step is not None and record.get("step", math.inf) <= step:
                    kept.append(line + "\n")
            atomic_write_text(self.log_path, "".join(kept))
        return meta

    def resume(self) -> bool:
        """Load the checkpoint of ``workdir`` if there is one; returns whether it did."""
        meta_path = self.workdir / "last.json"
        if self.is_main:
            self._recover()
        self._barrier()
        if not meta_path.is_file():
            return False
        meta = json.loads(meta_path.read_text())
        step = meta["step"]
        if sorted(meta["models"]) != sorted(self.models) or \
                sorted(meta["optimizers"]) != sorted(self.optimizers):
            raise ValueError(
                f"the checkpoint in {self.workdir} holds models {meta['models']} and optimizers "
                f"{sorted(meta['optimizers'])}, the recipe has {sorted(self.models)} and "
                f"{sorted(self.optimizers)}: use another folder or delete its last.* files")
        for name, model in self.models.items():
            model.load_state_dict(_read_tensors(self.workdir / f"last.{name}.safetensors", step))
        for name, opt in self.optimizers.items():
            tensors = _read_tensors(self.workdir / f"last.optim.{name}.safetensors", step)
            _optimizer_from_tensors(opt, tensors, meta["optimizers"][name])
        self.optimizers.base_lrs = {n: list(v) for n, v in meta["base_lrs"].items()}
        self.step, self.seconds = step, meta["seconds"]
        self.history = History(**meta["history"])
        self._running = {k: list(v) for k, v in meta["running"].items()}
        self.rng.bit_generator.state = meta["rng"]
        torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
        if self.device.type == "cuda" and "cuda_rng" in meta:
            torch.cuda.set_rng_state(torch.tensor(meta["cuda_rng"], dtype=torch.uint8),
                                     self.device)
        return True

    # ---- loop --------------------------------------------------------------------------------
    def _barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _log(self, kind: str, metrics: dict) -> None:
        if self.is_main:
            line = json.dumps({"step": self.step, "seconds": round(self.seconds, 2),
                               "kind": kind, "metrics": metrics}, sort_keys=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def _eval(self) -> dict:
        """Validate (rank 0 only) and record the metrics; ``{}`` when the recipe has none."""
        if not self.is_main:
            return {}
        trainable = [self.models[n] for n in self.trainable_names]
        for model in trainable:
            model.eval()
        with torch.no_grad(), self._autocast():
            metrics = self.recipe.validate(self.models)
        for model in trainable:
            model.train()
        if not metrics:
            return {}
        metrics = {k: float(v) for k, v in metrics.items()}
        self.history.eval.append({"step": self.step, **metrics})
        self._log("eval", metrics)
        return {"step": self.step, **metrics}

    def _reduce(self, metrics: dict[str, float], stop: bool) -> tuple[dict[str, float], bool]:
        """Metrics averaged over the processes, and whether any process wants to stop."""
        if self.world_size == 1:
            return metrics, stop
        # A metric can be undefined on one process's shard (NaN: e.g. a mean over genuine pairs
        # when the shard holds none): average over the processes where it is defined.
        keys = sorted(metrics)
        finite = [math.isfinite(metrics[k]) for k in keys]
        values = torch.tensor([metrics[k] if ok else 0.0 for k, ok in zip(keys, finite)]
                              + [float(ok) for ok in finite] + [float(stop)],
                              dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(values)
        values = values.tolist()
        sums, counts = values[:len(keys)], values[len(keys):2 * len(keys)]
        means = {k: (v / c if c else float("nan")) for k, v, c in zip(keys, sums, counts)}
        return means, values[-1] > 0

    def fit(self, progress: bool = True) -> History:
        """Train up to ``cfg.steps`` steps (resuming if possible); returns the history."""
        from avlib.progress import progress_bar

        resumed = self.resume()
        cfg = self.cfg
        bar = progress_bar(cfg.steps, "training", "step", initial=self.step,
                           disable=not progress or not self.is_main)
        if resumed:
            bar.set_postfix_str(f"resumed at step {self.step}")
        for name in self.trainable_names:
            self.models[name].train()
        t_last = time.perf_counter()
        while self.step < cfg.steps:
            batch = shard_batch(self.recipe.batch(self.rng), self.rank, self.world_size)
            batch = _to_device(batch, self.device)
            self.optimizers.global_step = self.step
            with self._autocast():
                metrics = self.recipe.training_step(self.models, batch, self.optimizers)
            if "loss" not in metrics:
                raise KeyError("training_step must return a dict of metrics with a 'loss'")
            metrics = {"loss": float(metrics["loss"]),
                       **{k: float(v) for k, v in metrics.items() if k != "loss"}}
            self.step += 1
            now = time.perf_counter()
            self.seconds += now - t_last
            t_last = now
            over = bool(cfg.time_limit_s) and self.seconds > cfg.time_limit_s
            metrics, over = self._reduce(metrics, over)
            for k, v in metrics.items():
                if math.isfinite(v):  # undefined on this batch (NaN): left out of the mean
                    self._running.setdefault(k, []).append(v)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                means = {k: float(np.mean(v)) for k, v in self._running.items() if v}
                self.history.train.append({"step": self.step, "seconds": round(self.seconds, 2),
                                           **means})
                self._log("train", means)
                bar.set_postfix(loss=f"{means['loss']:.4f}")
                self._running = {}
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                ev = self._eval()
                if ev:
                    bar.set_postfix(**{k: f"{v:.4f}" for k, v in ev.items() if k != "step"})
                t_last = time.perf_counter()
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                self.save()
                t_last = time.perf_counter()
            bar.update(1)
            if over and self.step < cfg.steps:
                self.history.stopped_early = (f"time limit {cfg.time_limit_s:.0f} s reached at "
                                              f"step {self.step} of {cfg.steps}")
                if not self.history.eval or self.history.eval[-1]["step"] != self.step:
                    self._eval()
                self.save()
                break
        bar.close()
        for model in self.models.values():
            model.eval()
        self._barrier()
        return self.history


# ---------------------------------------------------------------------------------------------
# Train or load
# ---------------------------------------------------------------------------------------------
def train_or_load(name: str, config: dict, build: Callable[[], torch.nn.Module],
                  fit: Callable[[torch.nn.Module, Path], History], policy: str,
                  artifacts_root: str | Path, producer: str | None = None,
                  code: tuple[str, ...] = ()):
    """The trained model for ``config``: loaded if it exists, else trained by ``fit``.

    ``build()`` makes a fresh model; ``fit(model, workdir)`` trains it (a :class:`Trainer` with
    ``workdir`` resumes an interrupted run). Returns ``(model, history, folder)``; the model is
    in eval mode on the CPU, history a :class:`History`. ``code`` names the modules whose
    source determines the result (model, data sampling, loss): see ``produce_or_load``.
    """

    def produce(folder: Path) -> dict:
        model = build()
        history = fit(model, folder)
        save_checkpoint(folder / "model", model.cpu(), extra={"name": name})
        atomic_write_json(folder / "history.json", asdict(history))
        for p in folder.glob("last.*"):  # the resumable state is not needed once finished
            p.unlink()
        return {"final_eval": history.last_eval(), "stopped_early": history.stopped_early}

    folder = produce_or_load(name, config, produce, policy, artifacts_root, producer=producer,
                             resumable=True, code=code)
    model, _ = load_checkpoint(folder / "model")
    history = History(**json.loads((folder / "history.json").read_text()))
    return model, history, folder


def _avlib_root() -> Path:
    return Path(__file__).resolve().parent


def _unit_of(module: str) -> str | None:
    """The avlib unit a module belongs to: ``avlib.<x>`` (a module, or a whole subpackage);
    ``None`` for modules outside avlib, for ``avlib`` itself and for names that are no module
    (``from avlib import __version__``)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "avlib":
        return None
    path = _avlib_root() / parts[1]
    if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
        return f"avlib.{parts[1]}"
    return None


def _unit_files(unit: str) -> list[tuple[str, Path]]:
    """``(module name, file)`` of every source file of an avlib unit."""
    root = _avlib_root()
    path = root / unit.split(".")[1]
    if path.is_dir():
        files = sorted(path.rglob("*.py"))
    else:
        files = [path.with_suffix(".py")]
    named = []
    for f in files:
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        named.append((".".join(parts), f))
    return named


def _imported(module: str, path: Path) -> set[str]:
    """Absolute names a source file imports (``import``/``from ... import`` anywhere in it,
    functions included); for ``from a import b`` both ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base)
                source = f"{prefix}.{node.module}" if node.module else prefix
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def recipe_code(recipe: Recipe) -> tuple[str, ...]:
    """The avlib modules and packages whose source determines what ``recipe`` trains.

    Found statically: the ``import`` statements (functions included) of the recipe's module,
    then of every avlib module reached, transitively. A module inside a subpackage stands for
    the whole top-level subpackage (``avlib.models.vocalist`` -> ``"avlib.models"``);
    ``avlib.train`` is always included. A recipe defined outside avlib (a notebook, a test)
    contributes the avlib code it imports, not its own source.
    """
    start = type(recipe).__module__
    loaded = sys.modules.get(start)
    start_file = getattr(loaded, "__file__", None)
    if start_file is None:
        spec = None
        with contextlib.suppress(ImportError, ValueError):
            import importlib.util
            spec = importlib.util.find_spec(start)
        start_file = spec.origin if spec is not None and spec.has_location else None
    units: set[str] = set()
    todo = ["avlib.train"]
    if _unit_of(start):
        todo.append(_unit_of(start))
    elif start_file and str(start_file).endswith(".py"):
        todo.extend(u for u in map(_unit_of, _imported(start, Path(start_file))) if u)
    while todo:
        unit = todo.pop()
        if unit in units:
            continue
        units.add(unit)
        for module, path in _unit_files(unit):
            todo.extend(u for u in map(_unit_of, _imported(module, path)) if u and u not in units)
    return tuple(sorted(units))


_RESERVED = ("artifact", "history", "last", "log")  # file stems of a product folder


def train_recipe(recipe: Recipe, cfg: TrainConfig, policy: str, artifacts_root: str | Path, *,
                 producer: str | None = None, extra_key: dict | None = None,
                 progress: bool = True, not_in_key: tuple[str, ...] = ()
                 ) -> tuple[dict[str, torch.nn.Module], History, Path]:
    """The trained models of ``recipe``: loaded when the product exists, else trained.

    The product ``recipe.name`` is keyed by ``{"recipe": name, "config": asdict(recipe.config)
    (when the recipe has a dataclass ``config``), "train": asdict(cfg), **extra_key}`` and by
    the source of :func:`recipe_code`. Training runs a :class:`Trainer` in the product's
    ``.partial`` folder (an interrupted run resumes there); then every trainable model is saved
    with :func:`avlib.checkpoints.save_checkpoint` (so it must have a ``config`` that
    :func:`avlib.models.build_model` understands) together with ``history.json`` and
    ``log.jsonl``, and the ``last.*`` files are deleted. ``policy``: ``"load"``, ``"train"`` or
    ``"auto"`` (see :func:`avlib.artifacts.produce_or_load`).

    Returns ``(models, history, folder)``: the trainable models by name, on the CPU in eval
    mode, loaded back from the product. Under torchrun every process trains; rank 0 publishes.
    ``not_in_key`` names :class:`TrainConfig` fields that do not change the weights (the device,
    logging intervals) and are left out of the key.
    """
    if not recipe.name:
        raise ValueError(f"{type(recipe).__name__} has no name: set the class attribute `name`")
    key: dict = {"recipe": recipe.name}
    config = getattr(recipe, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        key["config"] = asdict(config)
    key["train"] = {k: v for k, v in asdict(cfg).items() if k not in not_in_key}
    key.update(extra_key or {})
    code = recipe_code(recipe)

    def produce(folder: Path) -> dict:
        trainer = Trainer(recipe, cfg, folder)
        reserved = [n for n in (recipe.outputs or trainer.trainable_names) if n in _RESERVED]
        if reserved:
            raise ValueError(f"model names {reserved} are reserved for the product's files")
        history = trainer.fit(progress=progress)
        outputs = tuple(recipe.outputs or trainer.trainable_names)
        for name in outputs:
            save_checkpoint(folder / name, trainer.models[name].cpu(),
                            extra={"recipe": recipe.name, "model": name, "steps": trainer.step})
        atomic_write_json(folder / "history.json", asdict(history))
        for p in folder.glob("last.*"):  # the resumable state is not needed once finished
            p.unlink()
        return {"models": list(outputs), "final_eval": history.last_eval(),
                "stopped_early": history.stopped_early}

    rank, world, _ = init_distributed(cfg.device)
    if rank == 0:
        folder = produce_or_load(recipe.name, key, produce, policy, artifacts_root,
                                 producer=producer, resumable=True, code=code)
    else:  # train beside rank 0 (which alone writes), then read what it published
        folder = product_dir(artifacts_root, recipe.name, key, code)
        if policy == "train" or not is_complete(folder):
            if policy == "load":
                raise ArtifactMissing(f"no {recipe.name!r} product under {folder}")
            Trainer(recipe, cfg, folder.with_name(folder.name + ".partial")).fit(progress=False)
    if world > 1:
        torch.distributed.barrier()
    names = read_metadata(folder)["metadata"]["models"]
    models = {name: load_checkpoint(folder / name)[0] for name in names}
    history = History(**json.loads((folder / "history.json").read_text()))
    return models, history, folder
