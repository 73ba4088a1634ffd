"""The MMAB recipe (avlib.vsr.recipes.MMABRecipe) on a tiny synthetic word set with audio: setup
checks, the plateau schedule inside the trainer, batches, the three training modes, predict."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from avlib.models.mmab import MMABConfig
from avlib.train import TrainConfig, Trainer, train_recipe
from avlib.vsr import recipes as R
from avlib.vsr.data import WordSet, word_boundary

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, S, PER_WORD = 8, 32, 4
VOCAB = ("LOW", "TOP")
TINY = MMABConfig.named("cpu", n_slot=8, front_dropout=0.0, gru_dropout=0.0)


def toy_words(seed: int) -> WordSet:
    """Clips with a bright bar (top or bottom) and a tone whose pitch tells the same word."""
    rng = np.random.default_rng(seed)
    video, labels, audio = [], [], []
    t = np.arange(T * 640) / 16000
    for c in range(len(VOCAB)):
        for _ in range(PER_WORD):
            clip = rng.integers(40, 80, (T, S, S)).astype(np.uint8)
            y = 4 if c else 20
            clip[:, y:y + 8, 10:22] = 230
            video.append(clip)
            labels.append(c)
            tone = 0.3 * np.sin(2 * np.pi * (300 if c else 1200) * t) + 0.01 * rng.normal(size=t.size)
            audio.append((tone * 32767).astype(np.int16))
    n = len(labels)
    return WordSet(video=torch.from_numpy(np.stack(video)), labels=np.asarray(labels, np.int64),
                   boundary=torch.from_numpy(np.stack([word_boundary(None, T)] * n)),
                   audio=np.stack(audio), ids=[f"{VOCAB[c]}/{i}" for i, c in enumerate(labels)],
                   speakers=["s1"] * n, vocabulary=VOCAB)


@pytest.fixture(scope="module")
def words():
    return toy_words(0), toy_words(1)


def test_setup_checks():
    with pytest.raises(ValueError, match="mode"):
        R.MMABSetup("x", mode="lips")
    with pytest.raises(ValueError, match="optimizer"):
        R.MMABSetup("x", optimizer="rmsprop")
    assert R.MMABSetup("x", model=dataclasses.asdict(TINY)).model == TINY


def test_word_mels_and_spec_augment(words):
    train, _ = words
    mels = R.word_mels(train)
    assert mels.shape == (len(train), 1, 80, 4 * T)
    gen = torch.Generator().manual_seed(0)
    masked = R.spec_augment(mels, gen, freq=10, time=8)
    changed = (masked != mels)
    assert changed.any() and (masked[changed] == 0).all()  # masks set values to the CMVN mean
    assert torch.equal(R.spec_augment(mels, gen, 0, 0), mels)
    with pytest.raises(ValueError, match="without audio"):
        R.word_mels(dataclasses.replace(train, audio=None))


@pytest.mark.parametrize("mode", R.MMAB_MODES)
def test_each_mode_trains_and_predicts(words, tmp_path, mode):
    train, val = words
    setup = R.MMABSetup(mode, mode=mode, model=TINY, batch_size=8, patience=1, optimizer="adamw")
    recipe = R.MMABRecipe(train, val, setup, data_id="toy")
    assert recipe.config.model.vocabulary == VOCAB and recipe.config.model.input_size == S
    batch = recipe.batch(np.random.default_rng(0))
    assert batch["video"].shape == (8, 1, T, S, S) and batch["mel"].shape == (8, 1, 80, 4 * T)
    cfg = TrainConfig(steps=6, lr=3e-3, eval_every=2, ckpt_every=3, log_every=2)
    history = Trainer(recipe, cfg, tmp_path / mode).fit(progress=False)
    metrics = history.train[-1]
    assert np.isfinite(metrics["loss"])
    has_memory = mode == "memory"
    # NaN metrics (no audio-visual path outside "memory") are left out of the logged means.
    assert ("ce_av" in metrics) == has_memory and ("recon" in metrics) == has_memory
    assert [e["val_acc"] for e in history.eval]  # validated every 2 updates
    models, _, folder = train_recipe(recipe, cfg, "auto", tmp_path / "art", extra_key=recipe.key_extra,
                                     progress=False)
    assert list(models) == ["net"]  # the plateau state is trained with, not kept in, the product
    net = models["net"]
    assert net.cfg.vocabulary == VOCAB
    mels = R.word_mels(val)
    for eval_mode in ({"memory": ("memory", "audiovisual"), "visual": ("visual",),
                       "audio": ("audio",)}[mode]):
        logits = R.mmab_predict(net, val, mels, mode=eval_mode, flip_tta=True)
        assert logits.shape == (len(val), len(VOCAB)) and torch.isfinite(logits).all()


def test_plateau_halves_the_rate_inside_the_trainer(words, tmp_path, monkeypatch):
    train, val = words
    setup = R.MMABSetup("flat", mode="visual", model=TINY, batch_size=4, patience=1)
    recipe = R.MMABRecipe(train, val, setup)
    monkeypatch.setattr(R, "mmab_predict", lambda *a, **k: torch.zeros(len(val), len(VOCAB)))
    cfg = TrainConfig(steps=6, lr=0.01, eval_every=1, ckpt_every=100, log_every=1)
    trainer = Trainer(recipe, cfg, tmp_path / "flat")
    history = trainer.fit(progress=False)
    # A constant validation accuracy never improves after the first: the rate halves each time.
    assert [e["lr_halved"] for e in history.eval] == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert trainer.models["plateau"].scale == pytest.approx(0.5 ** 5)
    assert trainer.optimizers["net"].param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** 4)
