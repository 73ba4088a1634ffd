"""The training loop of the book: resumable, logged, and wrapped in one train-or-load call.

A chapter describes training with three things: a model, a ``sample(rng) -> batch`` function that
draws a training batch, and a ``step(model, batch) -> (loss, metrics)`` function. :class:`Trainer`
runs Adam(W) over them with a progress bar, evaluates every ``eval_every`` steps, keeps a history
(losses, metrics, wall time) and saves a resumable checkpoint every ``ckpt_every`` steps: model and
optimizer tensors in safetensors, everything else (step, history, random-generator states) in
JSON, so that no checkpoint can execute code when loaded.

:func:`train_or_load` is what a chapter calls: it returns the trained model for a configuration,
training it (or finishing an interrupted training) only when ``ckpt_policy`` asks for it.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avlib.artifacts import atomic_write_json, produce_or_load
from avlib.checkpoints import load_checkpoint, save_checkpoint

Batch = dict
StepFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict]]
EvalFn = Callable[[torch.nn.Module], dict]


LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Optimisation settings. ``steps`` counts optimiser updates."""

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

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier for the update after ``step`` updates (a function of the
        step alone, so a resumed run follows the same schedule)."""
        if self.lr_schedule == "constant" or self.steps <= 1:
            return 1.0
        t = min(max(step, 0), self.steps) / self.steps
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class History:
    """Training curves: one record per logged step and one per evaluation."""

    train: list[dict] = field(default_factory=list)
    eval: list[dict] = field(default_factory=list)
    stopped_early: str | None = None

    def last_eval(self) -> dict:
        return self.eval[-1] if self.eval else {}


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
    opt.load_state_dict(state)


class Trainer:
    """Adam(W) training with evaluation, history, progress bar and resumable checkpoints.

    ``workdir`` holds ``last.model.safetensors``, ``last.optim.safetensors`` and ``last.json``;
    :meth:`fit` resumes from them when present.
    """

    def __init__(self, model: torch.nn.Module, sample: Callable[[np.random.Generator], Batch],
                 step: StepFn, cfg: TrainConfig, workdir: str | Path,
                 evaluate: EvalFn | None = None, params=None):
        self.model = model.to(cfg.device)
        self.sample, self.step_fn, self.evaluate = sample, step, evaluate
        self.cfg = cfg
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        opt_cls = torch.optim.AdamW if cfg.weight_decay else torch.optim.Adam
        self.optimizer = opt_cls(params if params is not None else model.parameters(), lr=cfg.lr,
                                 betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        for group in self.optimizer.param_groups:  # each group's own rate is the schedule's base
            group.setdefault("base_lr", group["lr"])
        self.history = History()
        self.step = 0
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.seconds = 0.0

    # ---- checkpoints -------------------------------------------------------------------------
    def save(self) -> None:
        """Write the resumable state atomically (tensors first, JSON last marks it complete)."""
        model_t = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        opt_t, opt_plain = _optimizer_to_tensors(self.optimizer)
        for name, tensors in (("last.model", model_t), ("last.optim", opt_t)):
            tmp = self.workdir / f".{name}.tmp.safetensors"
            save_file(tensors, tmp)
            tmp.replace(self.workdir / f"{name}.safetensors")
        atomic_write_json(self.workdir / "last.json", {
            "step": self.step, "seconds": self.seconds, "history": asdict(self.history),
            "optimizer": opt_plain, "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state().tolist(), "config": asdict(self.cfg)})

    def resume(self) -> bool:
        """Load the last checkpoint of ``workdir`` if there is one; returns whether it did."""
        meta_path = self.workdir / "last.json"
        if not meta_path.is_file():
            return False
        meta = json.loads(meta_path.read_text())
        self.model.load_state_dict(load_file(self.workdir / "last.model.safetensors",
                                             device=self.cfg.device))
        _optimizer_from_tensors(self.optimizer, load_file(self.workdir / "last.optim.safetensors",
                                                          device=self.cfg.device), meta["optimizer"])
        self.step, self.seconds = meta["step"], meta["seconds"]
        self.history = History(**meta["history"])
        self.rng.bit_generator.state = meta["rng"]
        torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
        return True

    # ---- loop --------------------------------------------------------------------------------
    def _eval(self) -> dict:
        if self.evaluate is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            metrics = self.evaluate(self.model)
        self.model.train()
        record = {"step": self.step, **{k: float(v) for k, v in metrics.items()}}
        self.history.eval.append(record)
        return record

    def fit(self, progress: bool = True) -> History:
        """Train up to ``cfg.steps`` updates (resuming if possible); returns the history."""
        from avlib.progress import progress_bar

        resumed = self.resume()
        cfg = self.cfg
        bar = progress_bar(cfg.steps, "training", "step", initial=self.step, disable=not progress)
        if resumed:
            bar.set_postfix_str(f"resumed at step {self.step}")
        self.model.train()
        running: dict[str, list[float]] = {}
        t_last = time.perf_counter()
        while self.step < cfg.steps:
            batch = self.sample(self.rng)
            loss, metrics = self.step_fn(self.model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at step {self.step}; "
                                         "lower the learning rate or check the inputs")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            factor = cfg.lr_factor(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            now = time.perf_counter()
            self.seconds += now - t_last
            t_last = now
            for k, v in {"loss": loss.item(), **metrics}.items():
                running.setdefault(k, []).append(float(v))
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                rec = {"step": self.step, "seconds": round(self.seconds, 2),
                       **{k: float(np.mean(v)) for k, v in running.items()}}
                self.history.train.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                running = {}
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                ev = self._eval()
                if ev:
                    bar.set_postfix(**{k: f"{v:.4f}" for k, v in ev.items() if k != "step"})
                t_last = time.perf_counter()
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                self.save()
                t_last = time.perf_counter()
            bar.update(1)
            if cfg.time_limit_s and self.seconds > cfg.time_limit_s and self.step < cfg.steps:
                self.history.stopped_early = (f"time limit {cfg.time_limit_s:.0f} s reached at step "
                                              f"{self.step} of {cfg.steps}")
                if not self.history.eval or self.history.eval[-1]["step"] != self.step:
                    self._eval()
                self.save()
                break
        bar.close()
        self.model.eval()
        return self.history


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

