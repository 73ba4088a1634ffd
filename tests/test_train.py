import importlib.util
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from avlib import train
from avlib.artifacts import ArtifactMissing
from avlib.models import Wav2LipExpert, register_model

WORKER = Path(__file__).with_name("_train_worker.py")
_spec = importlib.util.spec_from_file_location("_train_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def _subprocess_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _log_without_seconds(folder) -> list[dict]:
    lines = (Path(folder) / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def _problem():
    w_true = torch.tensor([[2.0, -1.0, 0.5]])

    def sample(rng):
        x = torch.from_numpy(rng.normal(size=(16, 3)).astype(np.float32))
        return {"x": x, "y": x @ w_true.T}

    def step(model, batch):
        loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return loss, {}

    return sample, step


def _eval(model):
    x = torch.eye(3)
    return {"w_err": float((model(x).squeeze() - model.bias - torch.tensor([2.0, -1.0, 0.5])).abs().max())}


class _Killed(Exception):
    pass


def _interrupt_then_resume(sample, step, cfg, workdir, init, kill_at, groups=lambda m: None):
    """Train from ``init`` with a step that dies at call ``kill_at``, then resume in a fresh
    Trainer; returns the resumed model and the step of the checkpoint left by the dead run."""
    calls = {"n": 0}

    def dying_step(model, batch):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise _Killed
        return step(model, batch)

    part = torch.nn.Linear(3, 1)
    part.load_state_dict(init)
    with pytest.raises(_Killed):
        train.Trainer(part, sample, dying_step, cfg, workdir, params=groups(part)).fit(progress=False)
    checkpoint_step = json.loads((Path(workdir) / "last.json").read_text())["step"]
    again = torch.nn.Linear(3, 1)
    train.Trainer(again, sample, step, cfg, workdir, params=groups(again)).fit(progress=False)
    return again, checkpoint_step


def test_trainer_learns_and_logs(tmp_path):
    sample, step = _problem()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    cfg = train.TrainConfig(steps=300, lr=0.05, eval_every=100, ckpt_every=100, log_every=50)
    hist = train.Trainer(model, sample, step, cfg, tmp_path, evaluate=_eval).fit(progress=False)
    assert [r["step"] for r in hist.eval] == [100, 200, 300]
    assert hist.eval[-1]["w_err"] < 0.05
    assert hist.train[-1]["loss"] < hist.train[0]["loss"]
    assert (tmp_path / "last.json").is_file() and (tmp_path / "last.optim.model.safetensors").is_file()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in lines if r["kind"] == "eval"] == \
        [("eval", 100), ("eval", 200), ("eval", 300)]
    assert [r["metrics"]["loss"] for r in lines if r["kind"] == "train"] == \
        [r["loss"] for r in hist.train]


def test_resume_matches_uninterrupted_run(tmp_path):
    sample, step = _problem()
    cfg = train.TrainConfig(steps=60, lr=0.01, eval_every=30, ckpt_every=20, log_every=10)
    torch.manual_seed(1)
    full = torch.nn.Linear(3, 1)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    train.Trainer(full, sample, step, cfg, tmp_path / "full").fit(progress=False)
    again, checkpoint_step = _interrupt_then_resume(sample, step, cfg, tmp_path / "part", init, kill_at=45)
    assert checkpoint_step == 40
    for k in init:
        assert torch.equal(again.state_dict()[k], full.state_dict()[k])
    assert _log_without_seconds(tmp_path / "part") == _log_without_seconds(tmp_path / "full")


def test_cosine_schedule_values_and_validation():
    cfg = train.TrainConfig(steps=100, lr=1.0, lr_schedule="cosine", min_lr_ratio=0.1)
    assert cfg.lr_factor(0) == pytest.approx(1.0)
    assert cfg.lr_factor(50) == pytest.approx(0.55)
    assert cfg.lr_factor(100) == pytest.approx(0.1)
    assert cfg.lr_factor(1000) == pytest.approx(0.1)
    factors = [cfg.lr_factor(k) for k in range(101)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))
    assert train.TrainConfig(steps=100).lr_factor(70) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        train.TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="min_lr_ratio"):
        train.TrainConfig(min_lr_ratio=2.0)


def test_warmup_then_cosine():
    cfg = train.TrainConfig(steps=110, lr_schedule="cosine", min_lr_ratio=0.0, warmup_steps=10)
    assert [cfg.lr_factor(k) for k in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert cfg.lr_factor(10) == pytest.approx(1.0)  # the cosine starts after the warm-up
    assert cfg.lr_factor(60) == pytest.approx(0.5)
    assert cfg.lr_factor(110) == pytest.approx(0.0)
    assert train.TrainConfig(steps=50, warmup_steps=5).lr_factor(30) == 1.0  # constant after it
    with pytest.raises(ValueError, match="warmup_steps"):
        train.TrainConfig(warmup_steps=-1)


def test_cosine_schedule_sets_every_group_and_resumes_identically(tmp_path):
    sample, step = _problem()
    cfg = train.TrainConfig(steps=40, lr=0.02, lr_schedule="cosine", min_lr_ratio=0.2,
                            eval_every=20, ckpt_every=10, log_every=10)
    torch.manual_seed(3)
    full = torch.nn.Linear(3, 1)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    groups = [{"params": [full.weight]}, {"params": [full.bias], "lr": 0.5}]
    trainer = train.Trainer(full, sample, step, cfg, tmp_path / "full", params=groups)
    trainer.fit(progress=False)
    last = cfg.lr_factor(cfg.steps - 1)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.02 * last, 0.5 * last])

    # interrupted after 25 updates (checkpoint at 20), then resumed: the same weights
    again, checkpoint_step = _interrupt_then_resume(
        sample, step, cfg, tmp_path / "part", init, kill_at=26,
        groups=lambda m: [{"params": [m.weight]}, {"params": [m.bias], "lr": 0.5}])
    assert checkpoint_step == 20
    for k in init:
        assert torch.allclose(again.state_dict()[k], full.state_dict()[k])


def test_time_limit_stops_early(tmp_path):
    sample, step = _problem()
    cfg = train.TrainConfig(steps=10**6, lr=0.01, time_limit_s=0.3, log_every=10)
    hist = train.Trainer(torch.nn.Linear(3, 1), sample, step, cfg, tmp_path).fit(progress=False)
    assert hist.stopped_early and "time limit" in hist.stopped_early


def test_non_finite_loss_is_reported(tmp_path):
    def sample(rng):
        return {}

    def step(model, batch):
        return model.weight.sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match="learning rate"):
        train.Trainer(torch.nn.Linear(3, 1), sample, step, train.TrainConfig(steps=3), tmp_path).fit(progress=False)


def test_train_or_load_policies(tmp_path):
    calls = []

    def build():
        return Wav2LipExpert(width=0.0625)

    def fit(model, workdir):
        calls.append(workdir)
        return train.History(eval=[{"step": 1, "loss": 0.5}])

    cfg = {"width": 0.0625}
    with pytest.raises(FileNotFoundError, match="02_syncnet"):
        train.train_or_load("expert", cfg, build, fit, "load", tmp_path, producer="02_syncnet")
    m1, h1, f1 = train.train_or_load("expert", cfg, build, fit, "auto", tmp_path)
    m2, h2, f2 = train.train_or_load("expert", cfg, build, fit, "auto", tmp_path)
    assert len(calls) == 1 and f1 == f2 and h2.eval == [{"step": 1, "loss": 0.5}]
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    assert not list(f1.glob("last.*"))


# ---- recipes ------------------------------------------------------------------------------------
def test_recipe_with_frozen_expert_and_two_optimizers(tmp_path):
    cfg = train.TrainConfig(steps=6, lr=0.01, log_every=2, eval_every=3, ckpt_every=3,
                            precision="fp32")
    trainer = train.Trainer(worker.TinyGAN(), cfg, tmp_path)
    expert0 = {k: v.clone() for k, v in trainer.models["expert"].state_dict().items()}
    assert trainer.trainable_names == ("G", "D") and sorted(trainer.optimizers) == ["D", "G"]
    assert not any(p.requires_grad for p in trainer.models["expert"].parameters())
    assert not trainer.models["expert"].training
    assert trainer.optimizers["D"].param_groups[0]["betas"] == (0.5, 0.999)
    assert trainer.optimizers.base_lrs == {"D": [0.01], "G": [0.02]}
    hist = trainer.fit(progress=False)
    assert [r["step"] for r in hist.train] == [2, 4, 6] and set(hist.train[0]) >= {"d", "g"}
    assert [r["step"] for r in hist.eval] == [3, 6]
    assert not any(m.training for m in trainer.models.values())
    for k, v in trainer.models["expert"].state_dict().items():
        assert torch.equal(v, expert0[k])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last.D.safetensors", "last.G.safetensors", "last.expert.safetensors",
                     "last.json", "last.optim.D.safetensors", "last.optim.G.safetensors",
                     "log.jsonl"]
    with pytest.raises(AttributeError, match="several models"):
        trainer.model


@pytest.mark.slow
def test_kill_and_rerun_is_bit_identical(tmp_path):
    """A training SIGKILLed inside its 11th step (checkpoint at step 8, log lines up to step 10)
    and rerun with the same command ends with the same weights, optimizer states, random states
    and log as an uninterrupted run, bit for bit."""

    def run(folder, *args):
        return subprocess.run([sys.executable, str(WORKER), "gan", str(folder), *args],
                              capture_output=True, text=True, timeout=120, env=_subprocess_env())

    full = run(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    part = tmp_path / "part"
    killed = run(part, "11")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert json.loads((part / "last.json").read_text())["step"] == 8
    assert max(r["step"] for r in _log_without_seconds(part)) == 10  # lines to be dropped
    again = run(part, "11")
    assert again.returncode == 0, again.stderr[-3000:]

    for stem in ("last.G", "last.D", "last.expert", "last.optim.G", "last.optim.D"):
        a = load_file(tmp_path / "full" / f"{stem}.safetensors")
        b = load_file(part / f"{stem}.safetensors")
        assert sorted(a) == sorted(b) and a, stem
        for k in a:
            assert torch.equal(a[k], b[k]), (stem, k)
    meta_a = json.loads((tmp_path / "full" / "last.json").read_text())
    meta_b = json.loads((part / "last.json").read_text())
    for key in ("step", "optimizers", "base_lrs", "rng", "torch_rng", "running"):
        assert meta_a[key] == meta_b[key], key
    strip = lambda recs: [{k: v for k, v in r.items() if k != "seconds"} for r in recs]  # noqa
    assert strip(meta_a["history"]["train"]) == strip(meta_b["history"]["train"])
    assert meta_a["history"]["eval"] == meta_b["history"]["eval"]
    assert _log_without_seconds(part) == _log_without_seconds(tmp_path / "full")
    torch.manual_seed(worker.GAN_CFG.seed)  # the frozen expert never moved
    expert = worker.TinyGAN().build()["expert"]
    for k, v in expert.state_dict().items():
        assert torch.equal(v, load_file(part / "last.expert.safetensors")[k])


class _Crash(Exception):
    pass


def _crash_on_call(function, n):
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise _Crash
        return function(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("where", ["before last.json", "after last.json"])
def test_checkpoint_cut_mid_write_resumes_exactly(tmp_path, monkeypatch, where):
    """A save cut before its ``last.json`` is dropped (resume from the previous checkpoint); one
    cut after it, before the renames, is completed (resume from it)."""
    sample, step = _problem()
    cfg = train.TrainConfig(steps=30, lr=0.01, eval_every=30, ckpt_every=10, log_every=5)
    torch.manual_seed(1)
    full = torch.nn.Linear(3, 1)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    train.Trainer(full, sample, step, cfg, tmp_path / "full").fit(progress=False)

    part = torch.nn.Linear(3, 1)
    part.load_state_dict(init)
    with monkeypatch.context() as m:
        if where == "before last.json":  # the 2nd save (step 20) dies after its tensor files
            m.setattr(train, "atomic_write_json", _crash_on_call(train.atomic_write_json, 2))
        else:  # _commit runs at resume, then after each save: the step-20 save dies before it
            m.setattr(train.Trainer, "_commit", _crash_on_call(train.Trainer._commit, 3))
        with pytest.raises(_Crash):
            train.Trainer(part, sample, step, cfg, tmp_path / "part").fit(progress=False)
    assert list((tmp_path / "part").glob(".last.*.next"))
    again = torch.nn.Linear(3, 1)
    trainer = train.Trainer.from_functions(again, sample, step, cfg, tmp_path / "part")
    assert trainer.resume() and trainer.step == (10 if where == "before last.json" else 20)
    assert not list((tmp_path / "part").glob(".last.*.next"))
    trainer.fit(progress=False)
    for k in init:
        assert torch.equal(again.state_dict()[k], full.state_dict()[k])
    assert _log_without_seconds(tmp_path / "part") == _log_without_seconds(tmp_path / "full")


def test_shard_batch():
    batch = {"x": torch.arange(8).reshape(8, 1), "scale": torch.tensor(3.0), "tag": "a"}
    shard = train.shard_batch(batch, 1, 4)
    assert shard["x"].flatten().tolist() == [2, 3]
    assert shard["scale"] is batch["scale"] and shard["tag"] == "a"
    assert train.shard_batch(batch, 0, 1)["x"] is batch["x"]
    with pytest.raises(ValueError, match="multiple of the world size"):
        train.shard_batch({"x": torch.zeros(6, 2)}, 0, 4)


class _PrecisionProbe(worker.TinyMLP):
    def __init__(self):
        self.seen = []

    def training_step(self, models, batch, opt):
        out = models["net"](batch["x"])
        self.seen.append(out.dtype)
        loss = F.mse_loss(out.float(), batch["y"])
        opt.step("net", loss)
        return {"loss": float(loss.detach())}


def test_bf16_autocast_on_cpu(tmp_path):
    assert train.TrainConfig().autocast_dtype("cpu") is None
    assert train.TrainConfig().autocast_dtype("cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        train.TrainConfig(precision="fp16")
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        recipe = _PrecisionProbe()
        cfg = train.TrainConfig(steps=3, lr=0.01, precision=precision)
        trainer = train.Trainer(recipe, cfg, tmp_path / precision)
        hist = trainer.fit(progress=False)
        assert recipe.seen == [dtype] * 3 and np.isfinite(hist.train[-1]["loss"])
        assert all(p.dtype == torch.float32 for p in trainer.models["net"].parameters())


class _NanGenerator(worker.TinyGAN):
    def training_step(self, models, batch, opt):
        opt.step("D", models["D"](batch["real"]).mean())
        opt.step("G", models["G"](batch["real"]).mean() * float("nan"))
        return {"loss": 0.0}


def test_non_finite_loss_names_the_optimizer(tmp_path):
    with pytest.raises(FloatingPointError, match="optimizer 'G' became nan at step 0"):
        train.Trainer(_NanGenerator(), train.TrainConfig(steps=3), tmp_path).fit(progress=False)


# ---- train_recipe ---------------------------------------------------------------------------------
class _TinyRegression(nn.Module):
    registry_name = "test_train_tiny_regression"

    def __init__(self, n_in: int = 3):
        super().__init__()
        self.lin = nn.Linear(n_in, 1)
        self.config = {"name": self.registry_name, "kwargs": {"n_in": n_in}}

    def forward(self, x):
        return self.lin(x)


register_model(_TinyRegression.registry_name, _TinyRegression)


@dataclass
class _RegressionConfig:
    n_in: int = 3


class _RegressionRecipe(train.Recipe):
    name = "test_regression"

    def __init__(self):
        self.config, self.calls = _RegressionConfig(), 0

    def build(self):
        return {"net": _TinyRegression(self.config.n_in)}

    def batch(self, rng):
        x = torch.from_numpy(rng.normal(size=(16, self.config.n_in)).astype(np.float32))
        return {"x": x, "y": x.sum(dim=1, keepdim=True)}

    def training_step(self, models, batch, opt):
        self.calls += 1
        loss = F.mse_loss(models["net"](batch["x"]), batch["y"])
        opt.step("net", loss)
        return {"loss": float(loss.detach())}

    def validate(self, models):
        return {"w_err": float((models["net"].lin.weight - 1).abs().max())}


def test_train_recipe_trains_once_then_loads(tmp_path):
    cfg = train.TrainConfig(steps=40, lr=0.05, eval_every=20, ckpt_every=20, log_every=10)
    first = _RegressionRecipe()
    models, hist, folder = train.train_recipe(first, cfg, "auto", tmp_path, progress=False)
    assert first.calls == 40 and list(models) == ["net"]
    assert isinstance(models["net"], _TinyRegression) and not models["net"].training
    assert [r["step"] for r in hist.eval] == [20, 40] and hist.eval[-1]["w_err"] < 0.5
    assert not list(folder.glob("last.*")) and (folder / "log.jsonl").is_file()
    second = _RegressionRecipe()
    models2, hist2, folder2 = train.train_recipe(second, cfg, "load", tmp_path)
    assert second.calls == 0 and folder2 == folder and hist2 == hist
    for k, v in models["net"].state_dict().items():
        assert torch.equal(v, models2["net"].state_dict()[k])
    with pytest.raises(ArtifactMissing, match="05_test"):
        train.train_recipe(second, cfg, "load", tmp_path, producer="05_test",
                           extra_key={"data": "other"})


def test_recipe_code_follows_imports(tmp_path, monkeypatch):
    (tmp_path / "recipe_code_probe.py").write_text(
        "import numpy\n"
        "from avlib import train\n\n\n"
        "class Probe(train.Recipe):\n"
        "    def build(self):\n"
        "        from avlib.models.vocalist import VocaLiST\n"
        "        return {'net': VocaLiST()}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location("recipe_code_probe",
                                                  tmp_path / "recipe_code_probe.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "recipe_code_probe", module)
    spec.loader.exec_module(module)
    code = train.recipe_code(module.Probe())
    # avlib.train's own imports come with it; a subpackage module stands for the subpackage
    assert {"avlib.train", "avlib.models", "avlib.artifacts", "avlib.checkpoints"} <= set(code)
    assert all(name.count(".") == 1 for name in code) and "avlib.book" not in code
    inside = type("Inside", (train.Recipe,), {"__module__": "avlib.models.vocalist"})
    assert {"avlib.models", "avlib.train"} <= set(train.recipe_code(inside()))
    assert "avlib.models" in train.recipe_code(_RegressionRecipe())


# ---- DDP ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(tmp_path):
    """Two gloo processes under torchrun, each on half of the global batch of 16, end with the
    weights of one process on the whole batch, within 1e-5 (max abs difference): the maths is
    the same (mean of two half-batch mean gradients = full-batch mean gradient), only the float
    summation order differs, which leaves rounding differences of order 1e-7 after 20 steps."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), "ddp", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env=_subprocess_env())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ddp = load_file(out / "weights.safetensors")
    one = train.Trainer(worker.TinyMLP(), worker.DDP_CFG, tmp_path / "one")
    one.fit(progress=False)
    for k, v in one.models["net"].state_dict().items():
        assert (v - ddp[k]).abs().max() <= 1e-5, k
    log_ddp, log_one = _log_without_seconds(out / "work"), _log_without_seconds(tmp_path / "one")
    assert [(r["kind"], r["step"]) for r in log_ddp] == [(r["kind"], r["step"]) for r in log_one]
    for a, b in zip(log_ddp, log_one):  # rank 0 alone logs; the loss is averaged over ranks
        for k in b["metrics"]:
            assert a["metrics"][k] == pytest.approx(b["metrics"][k], abs=1e-5)


def test_plateau_schedule_halves_after_patience_and_scales_updates():
    plateau = train.PlateauSchedule(patience=2, factor=0.5)
    assert [plateau.update(v) for v in (0.5, 0.6, 0.6, 0.55)] == [False, False, False, True]
    assert plateau.scale == 0.5 and int(plateau.bad) == 0
    assert [plateau.update(v) for v in (0.59, 0.58)] == [False, True]
    assert plateau.scale == 0.25
    assert plateau.update(0.7) is False and plateau.scale == 0.25  # a better metric keeps it
    lower = train.PlateauSchedule(patience=1, higher_is_better=False)
    assert lower.update(1.0) is False and lower.update(0.5) is False and lower.update(0.6) is True
    state = plateau.state_dict()  # buffers: a resume restores the schedule exactly
    again = train.PlateauSchedule(patience=2)
    again.load_state_dict(state)
    assert again.scale == 0.25 and float(again.best) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="patience"):
        train.PlateauSchedule(patience=0)

    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(net.weight)
    opts = train.Optimizers({"net": torch.optim.SGD(net.parameters(), lr=1.0)},
                            train.TrainConfig(steps=10))
    loss = net(torch.ones(1, 1)).sum()  # gradient 1
    opts.step("net", loss, lr_scale=0.25)
    assert net.weight.item() == pytest.approx(0.75)
