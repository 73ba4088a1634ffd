"""The SyncVSR recipe (avlib.vsr.recipes) on a tiny synthetic word set: setup checks, the
network it builds, AdamW's groups, batches, a few real training steps, predict, the product."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from avlib.models.syncvsr import SyncVSRConfig
from avlib.train import TrainConfig, Trainer, train_recipe
from avlib.vsr import recipes as R
from avlib.vsr.data import WordSet, augment, word_boundary

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, S, PER_WORD = 8, 32, 6  # short clips keep the steps fast; the network takes any length
VOCAB = ("LOW", "MIDDLE", "TOP")
TOKEN_VOCAB = 32
#: The cpu size with one layer and no dropout: a few dozen steps learn the toy words reliably.
TINY = SyncVSRConfig.named("cpu", depth=1, layer_dropout=0.0, ff_dropout=0.0, token_vocab=TOKEN_VOCAB)


def toy_words(seed: int, per_word: int = PER_WORD) -> WordSet:
    """Noisy gray clips with a bright bar whose height tells the word (top, middle, bottom rows:
    a mirror or a mild crop keeps it)."""
    rng = np.random.default_rng(seed)
    video, labels = [], []
    for c in range(len(VOCAB)):
        for _ in range(per_word):
            clip = rng.integers(40, 80, (T, S, S)).astype(np.uint8)
            y = 4 + 10 * (2 - c)  # LOW at the bottom, TOP at the top
            clip[:, y:y + 8, 10:22] = 230
            video.append(clip)
            labels.append(c)
    n = len(labels)
    return WordSet(video=torch.from_numpy(np.stack(video)), labels=np.asarray(labels, np.int64),
                   boundary=torch.from_numpy(np.stack([word_boundary(0.2, T)] * n)), audio=None,
                   ids=[f"{VOCAB[c]}/{i}" for i, c in enumerate(labels)], speakers=["s1"] * n,
                   vocabulary=VOCAB)


def word_tokens(words: WordSet) -> np.ndarray:
    """(N, 4 T, 2) audio tokens that say the word (learnable from the video)."""
    codes = words.labels[:, None, None] * 7 + np.arange(2)[None, None]
    return np.broadcast_to(codes, (len(words), 4 * T, 2)).copy()


def clip_tokens(words: WordSet) -> np.ndarray:
    """(N, 4 T, 2) tokens that name the clip: they show which clips a batch drew."""
    return np.broadcast_to(np.arange(len(words))[:, None, None], (len(words), 4 * T, 2)).copy()


@pytest.fixture(scope="module")
def train_set():
    return toy_words(0)


@pytest.fixture(scope="module")
def val_set():
    return toy_words(1, per_word=2)


def setup(name="toy", **kw):
    base = dict(lam=0.0, tokens="none", model=TINY, batch_size=12, time_mask=2)
    base.update(kw)
    return R.SyncVSRSetup(name=name, **base)


def train_cfg(**kw):
    base = dict(steps=40, lr=5e-4, warmup_steps=3, lr_schedule="cosine", grad_clip=1.0,
                eval_every=1000, ckpt_every=1000, log_every=5, seed=0)
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------------------------ setup
def test_setup_validation():
    with pytest.raises(ValueError, match="lam > 0 needs audio tokens"):
        R.SyncVSRSetup(name="x", lam=10.0, tokens="none")
    with pytest.raises(ValueError, match="tokens must be one of"):
        R.SyncVSRSetup(name="x", tokens="wav2vec")
    with pytest.raises(ValueError, match="lam must be >= 0"):
        R.SyncVSRSetup(name="x", lam=-1.0)
    with pytest.raises(ValueError, match="cutmix is a probability"):
        R.SyncVSRSetup(name="x", cutmix=1.5)
    s = R.SyncVSRSetup(name="x", lam=0.0, tokens="none", model={"depth": 1}, crop_scale=[0.7, 1])
    assert isinstance(s.model, SyncVSRConfig) and s.model.depth == 1
    assert s.crop_scale == (0.7, 1.0)
    assert R.SyncVSRSetup(name="x").lam == 10.0  # the paper's weight by default


def test_recipe_sets_the_networks_words_classes_and_size_from_the_data(train_set, val_set):
    recipe = R.SyncVSRRecipe(train_set, val_set, setup(model=SyncVSRConfig.named("cpu", depth=1)))
    model = recipe.config.model
    assert model.vocabulary == VOCAB and model.n_classes == 3 and model.input_size == S
    assert model.depth == 1  # the rest of the size is kept
    net = recipe.build()["net"]
    assert net.cfg.vocabulary == VOCAB and net.category_classifier.out_features == 3
    assert recipe.name == "vsr_toy"
    assert recipe.key_extra == {"tokens": None, "data": None, "n_train": len(train_set)}


def test_recipe_checks_its_inputs(train_set, val_set):
    with pytest.raises(ValueError, match="pass the training clips' tokens"):
        R.SyncVSRRecipe(train_set, val_set, setup(lam=10.0, tokens="learned"))
    with pytest.raises(ValueError, match="tokens has 3 clips but train has 18"):
        R.SyncVSRRecipe(train_set, val_set, setup(lam=10.0, tokens="learned"),
                        word_tokens(train_set)[:3])
    other = dataclasses.replace(val_set, vocabulary=("A", "B", "C"))
    with pytest.raises(ValueError, match="share one vocabulary"):
        R.SyncVSRRecipe(train_set, other, setup())


def test_adamw_decays_matrices_only():
    net = R.SyncVSRRecipe(toy_words(0, 1), toy_words(0, 1), setup()).build()["net"]
    cfg = TrainConfig(lr=3e-4, weight_decay=0.01, betas=(0.9, 0.98))
    opt = R.adamw(net, cfg)
    decay, plain = opt.param_groups
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in plain["params"])
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters()) and len(set(ids)) == len(ids)
    biases = {id(net.category_classifier.bias), id(net.encoder.layers[0][0][0].g),
              id(net.stem3d[1].weight)}  # a bias, an RMSNorm gain, a BatchNorm weight
    assert biases <= {id(p) for p in plain["params"]}
    assert id(net.category_classifier.weight) in {id(p) for p in decay["params"]}
    assert opt.defaults["eps"] == 1e-6 and opt.defaults["betas"] == (0.9, 0.98)
    assert all(g["lr"] == 3e-4 for g in opt.param_groups)


# ------------------------------------------------------------------------------------ batches
def test_batch_shapes_targets_and_determinism(train_set, val_set):
    plain = R.SyncVSRRecipe(train_set, val_set, setup(batch_size=5))
    b = plain.batch(np.random.default_rng(0))
    assert set(b) == {"video", "boundary", "target"}  # no tokens without lambda
    assert b["video"].shape == (5, 1, T, S, S) and b["video"].dtype == torch.float32
    assert b["boundary"].shape == (5, T) and b["target"].shape == (5, 3)
    assert torch.equal(b["target"].sum(1), torch.ones(5)) and torch.equal(b["target"].max(1).values,
                                                                          torch.ones(5))
    again = plain.batch(np.random.default_rng(0))
    assert all(torch.equal(b[k], again[k]) for k in b)
    other = plain.batch(np.random.default_rng(1))
    assert not torch.equal(b["video"], other["video"])

    with_tokens = R.SyncVSRRecipe(train_set, val_set, setup(lam=10.0, tokens="learned", batch_size=5),
                                  clip_tokens(train_set))
    b = with_tokens.batch(np.random.default_rng(0))
    assert b["tokens"].shape == (5, 4 * T, 2) and b["tokens"].dtype == torch.long
    picks = b["tokens"][:, 0, 0].numpy()  # the clips drawn, and their targets
    np.testing.assert_array_equal(b["target"].argmax(1).numpy(), train_set.labels[picks])
    np.testing.assert_array_equal(b["boundary"].numpy(), train_set.boundary[picks].numpy())


def test_batches_draw_from_the_training_fraction_only(train_set, val_set):
    recipe = R.SyncVSRRecipe(train_set, val_set, setup(lam=1.0, tokens="learned", fraction=0.3,
                                                       batch_size=64), clip_tokens(train_set))
    assert len(recipe.index) == 6 and recipe.key_extra["n_train"] == 6  # 2 of the 6 per word
    drawn = set(recipe.batch(np.random.default_rng(0))["tokens"][:, :, 0].flatten().tolist())
    assert drawn == set(recipe.index.tolist())


def test_cutmix_batches_have_soft_targets(train_set, val_set):
    recipe = R.SyncVSRRecipe(train_set, val_set, setup(lam=1.0, tokens="learned", cutmix=1.0),
                             clip_tokens(train_set))
    b = recipe.batch(np.random.default_rng(0))
    torch.testing.assert_close(b["target"].sum(1), torch.ones(12))
    assert (b["target"].max(1).values < 1).any()  # some clips mixed two words
    assert b["tokens"].shape == (12, 4 * T, 2)
    # every clip's tokens now come from at most two clips, in one contiguous run each
    for row in b["tokens"][:, :, 0]:
        assert len(row.unique()) <= 2 and (row[1:] != row[:-1]).sum() <= 2


# ------------------------------------------------------------------------------------ training
def _fit(recipe, cfg, tmp_path):
    trainer = Trainer(recipe, cfg, tmp_path)
    return trainer, trainer.fit(progress=False)


def test_training_learns_the_toy_words(train_set, val_set, tmp_path):
    recipe = R.SyncVSRRecipe(train_set, val_set, setup())
    trainer, history = _fit(recipe, train_cfg(eval_every=40), tmp_path)
    first, last = history.train[0], history.train[-1]
    assert last["loss"] < 0.3 * first["loss"] and last["acc"] >= 0.9
    assert "token_loss" not in last  # undefined (NaN) without tokens: left out of the logs
    net = trainer.models["net"]
    acc = (R.predict(net, train_set).argmax(1).numpy() == train_set.labels).mean()
    assert acc >= 0.9
    assert history.eval[-1]["step"] == 40 and history.eval[-1]["val_acc"] >= 0.8
    assert math.isfinite(history.eval[-1]["val_loss"])


def test_the_token_loss_falls_with_lambda(train_set, val_set, tmp_path):
    recipe = R.SyncVSRRecipe(train_set, val_set, setup(lam=10.0, tokens="phonemes"),
                             word_tokens(train_set), tokens_id="words")
    assert recipe.key_extra["tokens"] == "words"
    _, history = _fit(recipe, train_cfg(), tmp_path)
    first, last = history.train[0], history.train[-1]
    assert first["token_loss"] > 2.0  # about ln(32) untrained
    assert last["token_loss"] < 0.3 * first["token_loss"]
    assert last["word_loss"] < 0.5 * first["word_loss"]
    assert last["loss"] == pytest.approx(last["word_loss"] + 10 * last["token_loss"], rel=1e-4)


def test_lambda_zero_leaves_the_audio_head_untouched(train_set, val_set, tmp_path):
    recipe = R.SyncVSRRecipe(train_set, val_set, setup(lam=0.0, tokens="learned"),
                             word_tokens(train_set), tokens_id="words")
    assert recipe.key_extra["tokens"] is None  # the tokens do not change this product
    torch.manual_seed(0)  # the trainer's seed before build()
    start = recipe.build()["net"].state_dict()
    trainer, history = _fit(recipe, train_cfg(steps=4, log_every=4), tmp_path)
    after = trainer.models["net"].state_dict()
    for k in ("audio_projection.weight", "audio_projection.bias"):
        assert torch.equal(after[k], start[k])
    assert not torch.equal(after["category_classifier.weight"], start["category_classifier.weight"])
    rec = history.train[-1]
    assert rec["loss"] == pytest.approx(rec["word_loss"]) and rec["token_loss"] > 2.0  # reported only


# ------------------------------------------------------------------------------------ predict
def test_predict_and_flip_tta(train_set, val_set):
    torch.manual_seed(0)
    net = R.SyncVSRRecipe(train_set, val_set, setup()).build()["net"]
    net.train()
    logits = R.predict(net, train_set, batch=4)  # 18 clips: a last batch of 2
    assert logits.shape == (18, 3) and logits.dtype == torch.float32
    assert net.training  # the mode is restored
    net.eval()
    with torch.no_grad():
        want = net(augment(train_set.video, train=False), train_set.boundary)[0]
    torch.testing.assert_close(logits, want, atol=1e-4, rtol=1e-4)
    mirrored = dataclasses.replace(train_set, video=train_set.video.flip(-1))
    tta = R.predict(net, train_set, flip_tta=True)
    torch.testing.assert_close(tta, (logits + R.predict(net, mirrored)) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(tta, logits)


# ------------------------------------------------------------------------------------ product
def test_train_recipe_round_trip(train_set, val_set, tmp_path):
    recipe = R.SyncVSRRecipe(train_set, val_set, setup(lam=10.0, tokens="phonemes"),
                             word_tokens(train_set), tokens_id="words", data_id="toy")
    cfg = train_cfg(steps=3, log_every=1, eval_every=3)
    models, history, folder = train_recipe(recipe, cfg, "auto", tmp_path, extra_key=recipe.key_extra,
                                           progress=False)
    net = models["net"]
    assert net.cfg.vocabulary == VOCAB and net.cfg.n_classes == 3 and net.cfg.input_size == S
    assert net.cfg.depth == 1 and not net.training
    assert len(history.train) == 3 and history.eval[-1]["step"] == 3
    assert not list(folder.glob("last.*"))  # the resumable state is gone
    again, _, folder2 = train_recipe(recipe, cfg, "load", tmp_path, extra_key=recipe.key_extra,
                                     progress=False)
    assert folder2 == folder
    for k, v in net.state_dict().items():
        assert torch.equal(again["net"].state_dict()[k], v)
    torch.testing.assert_close(R.predict(again["net"], val_set), R.predict(net, val_set))
