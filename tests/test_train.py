import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avlib import train
from avlib.models import SyncNetColor


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
    assert (tmp_path / "last.json").is_file() and (tmp_path / "last.optim.safetensors").is_file()


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
        return SyncNetColor(width=0.0625)

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
