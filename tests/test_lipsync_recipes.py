"""Wav2Lip training windows (the quirks on constructed inputs) and the generator recipes."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from avlib import audio as A
from avlib.lipsync import data as D
from avlib.lipsync import recipes as R
from avlib.models import VocaLiSTConfig, Wav2LipExpert, expert_loss, from_config
from avlib.models.wav2lip import face_halves, face_windows
from avlib.train import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = 0.0625


@pytest.fixture(scope="module")
def store(toy_sync_store):
    return toy_sync_store


@pytest.fixture(scope="module")
def expert():
    torch.manual_seed(0)
    return Wav2LipExpert(width=TINY).eval()


def _setup(name="wav2lip", **kw):
    return dataclasses.replace(R.with_widths(R.SETUPS[name], TINY), **kw)


def _cfg(**kw):
    base = dict(steps=2, lr=1e-3, eval_every=1, ckpt_every=1, log_every=1, seed=0)
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------------------------ windows
def test_window_holds_masked_target_reference_and_shifted_mels(store):
    windows = D.Wav2LipWindows(store, "train")
    clip, f, w = windows.clips[0], 6, 11
    s = windows.sample(clip, f, w)
    target = store.frames(clip, "face96", f, 5)
    reference = store.frames(clip, "face96", w, 5)
    assert s["x"].shape == (6, 5, 96, 96) and s["gt"].shape == (3, 5, 96, 96)
    np.testing.assert_array_equal(s["x"][:3, :, 48:], 0)  # the mouth half is hidden
    np.testing.assert_allclose(s["x"][:3, :, :48], s["gt"][:, :, :48])
    np.testing.assert_allclose(s["gt"], target.transpose(3, 0, 1, 2) / 255.0, atol=1e-6)
    np.testing.assert_allclose(s["x"][3:], reference.transpose(3, 0, 1, 2) / 255.0, atol=1e-6)
    mel = store.feature(clip, "wav2lip_mel").astype(np.float32)
    for k in range(5):  # the official quirk: frame f+k reads audio from frame f+k-1 on
        start = (80 * (f + k - 1)) // 25
        np.testing.assert_array_equal(s["indiv_mels"][k, 0], mel[:, start:start + 16])
    np.testing.assert_array_equal(s["mel"][0], mel[:, (80 * f) // 25:(80 * f) // 25 + 16])


def test_without_the_quirk_each_frame_reads_its_own_audio(store):
    windows = D.Wav2LipWindows(store, "train", mel_shift=0)
    clip = windows.clips[0]
    s = windows.sample(clip, 6, 0)
    mel = store.feature(clip, "wav2lip_mel").astype(np.float32)
    np.testing.assert_array_equal(s["indiv_mels"][0, 0], s["mel"][0])
    np.testing.assert_array_equal(s["indiv_mels"][2, 0], mel[:, 25:41])  # floor(80*8/25) = 25
    assert 0 in windows.starts[clip]


def test_frame_mel_starts_on_constructed_frames():
    assert D.frame_mel_starts(1) == [0, 3, 6, 9, 12]  # floor(3.2 k) for frames 0..4
    assert D.frame_mel_starts(1, shift=0) == [3, 6, 9, 12, 16]
    with pytest.raises(ValueError, match="no mel window"):
        D.frame_mel_starts(0)


def test_draws_reject_frame_zero_and_pick_another_reference(store):
    windows = D.Wav2LipWindows(store, "train")
    rng = np.random.default_rng(0)
    n_mel = store.feature(windows.clips[0], "wav2lip_mel").shape[-1]
    for _ in range(200):
        clip, f, w = windows.draw(rng)
        assert f >= 1 and w != f
        assert 0 <= w <= store.n_frames(clip) - 5
        assert A.mel_start_index(f + 3) + 16 <= n_mel


def test_batch_shapes_and_vocalist_mel(store):
    windows = D.Wav2LipWindows(store, "train", vocalist_mel=True)
    b = windows.batch(np.random.default_rng(1), 3)
    assert b["x"].shape == (3, 6, 5, 96, 96) and b["gt"].shape == (3, 3, 5, 96, 96)
    assert b["indiv_mels"].shape == (3, 5, 1, 80, 16) and b["mel"].shape == (3, 1, 80, 16)
    assert b["vocalist_mel"].shape == (3, 1, 80, 16)
    assert all(v.dtype == torch.float32 for v in b.values())


def test_no_clip_long_enough_is_a_clear_error(store):
    with pytest.raises(ValueError, match="no clip of split 'nope'"):
        D.Wav2LipWindows(store, "nope")


def test_generated_lower_halves_are_the_experts_input_layout(store):
    clip = store.select(split="train")[0]["id"]
    frames = store.frames(clip, "face96", 3, 5)
    as_generated = torch.from_numpy(D.to_channels_first(frames))[None]  # (1, 3, 5, 96, 96)
    expected = face_windows(face_halves(frames), [0])
    torch.testing.assert_close(R.lower_half_windows(as_generated), expected)


# ------------------------------------------------------------------------------------ losses
def test_sync_loss_is_the_experts_bce_on_the_generated_window(store, expert):
    b = D.Wav2LipWindows(store, "train").batch(np.random.default_rng(2), 2)
    with torch.no_grad():
        got = R.sync_loss(expert, b["gt"], b)
        a, v = expert(b["mel"], R.lower_half_windows(b["gt"]))
        want = expert_loss(a, v, torch.ones(2))
    torch.testing.assert_close(got, want)


def test_vocalist_judge_reads_vocalist_mel(store):
    torch.manual_seed(0)
    judge = from_config(VocaLiSTConfig(d_model=16, prenet_widths=(4, 4, 8, 8, 16), n_layers=1,
                                       n_heads=2)).eval()
    b = D.Wav2LipWindows(store, "train", vocalist_mel=True).batch(np.random.default_rng(3), 2)
    loss = R.sync_loss(judge, b["gt"], b)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_setups_and_judges_are_checked(store, expert):
    assert R.SETUPS["wav2lip_gan"].disc_wt == 0.07 and R.SETUPS["wav2lip_gan"].syncnet_wt == 0.03
    assert R.SETUPS["wav2lip"].syncnet_wt == 0.01 and R.SETUPS["wav2lip"].sync_threshold == 0.75
    assert R.SETUPS["no_expert"].syncnet_wt == 0
    with pytest.raises(ValueError, match="pass its frozen judge"):
        R.Wav2LipRecipe(store, _setup())
    with pytest.raises(TypeError, match="VocaLiST"):
        R.Wav2LipRecipe(store, _setup("vocalist_judge"), expert)
    with pytest.raises(ValueError, match="needs a discriminator"):
        R.Wav2LipSetup(disc_wt=0.1)
    R.Wav2LipRecipe(store, _setup("no_expert"))  # no sync loss: no judge needed


# ------------------------------------------------------------------------------------ training
def test_the_switch_opens_below_the_threshold_and_weighs_the_loss(store, expert, tmp_path):
    recipe = R.Wav2LipRecipe(store, _setup(sync_threshold=100.0), expert, batch_size=2,
                             val_batches=1)
    trainer = Trainer(recipe, _cfg(steps=3), tmp_path / "run")
    hist = trainer.fit(progress=False)
    assert [r["val_sync_wt"] for r in hist.eval] == [0.01, 0.01, 0.01]
    first, later = hist.train[0], hist.train[1]
    assert first["sync_wt"] == 0 and later["sync_wt"] == 0.01  # opened by step 1's validation
    assert "sync" not in first  # not computed while the switch is closed
    torch.testing.assert_close(torch.tensor(later["loss"]),
                               torch.tensor(0.99 * later["l1"] + 0.01 * later["sync"]))
    assert R.Wav2LipRecipe.switch_step(hist) == 1
    assert "sync loss on at step 1" in recipe.summary(hist)
    # resumed: the switch is part of the checkpoint
    more = Trainer(R.Wav2LipRecipe(store, _setup(sync_threshold=100.0), expert, batch_size=2,
                                   val_batches=1), _cfg(steps=4), tmp_path / "run")
    hist = more.fit(progress=False)
    assert hist.train[-1]["sync_wt"] == 0.01 and int(more.models["switch"].opened_at) == 1


def test_a_closed_switch_is_warned_about(store, expert, tmp_path):
    recipe = R.Wav2LipRecipe(store, _setup(sync_threshold=0.0, warn_after=1), expert,
                             batch_size=2, val_batches=1)
    with pytest.warns(R.SyncSwitchWarning, match="still off after 1 steps"):
        hist = Trainer(recipe, _cfg(steps=2), tmp_path / "run").fit(progress=False)
    assert all(r["val_sync_wt"] == 0 for r in hist.eval)
    assert "never switched on" in recipe.summary(hist)


def test_the_ablation_never_opens_but_still_measures_sync(store, expert, tmp_path):
    recipe = R.Wav2LipRecipe(store, _setup("no_expert", sync_threshold=100.0), expert,
                             batch_size=2, val_batches=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", R.SyncSwitchWarning)
        hist = Trainer(recipe, _cfg(steps=2), tmp_path / "run").fit(progress=False)
    assert all(r["val_sync_wt"] == 0 and np.isfinite(r["val_sync"]) for r in hist.eval)
    assert "never used" in recipe.summary(hist)


def test_gan_recipe_trains_both_and_publishes_g_and_d(store, expert, tmp_path):
    recipe = R.Wav2LipRecipe(store, _setup("wav2lip_gan", sync_threshold=100.0), expert,
                             batch_size=2, val_batches=1, judge_id="toy-expert")
    models, hist, folder = R.train(recipe, _cfg(steps=2), "auto", tmp_path, progress=False)
    assert sorted(models) == ["D", "G"]
    last = hist.train[-1]
    assert {"gen", "d_real", "d_fake"} <= set(last)
    torch.testing.assert_close(
        torch.tensor(last["loss"]),
        torch.tensor(0.9 * last["l1"] + 0.03 * last["sync"] + 0.07 * last["gen"]))
    again, _, folder2 = R.train(recipe, _cfg(steps=2), "load", tmp_path, progress=False)
    assert folder2 == folder
    for k, v in models["G"].state_dict().items():
        torch.testing.assert_close(again["G"].state_dict()[k], v)


def test_a_branch_starts_from_the_warm_generator(store, expert, tmp_path):
    warm = R.Wav2LipRecipe(store, _setup("no_expert"), batch_size=2, val_batches=1)
    models, _, folder = R.train(warm, _cfg(steps=1), "auto", tmp_path, progress=False)
    branch = R.Wav2LipRecipe(store, _setup(), expert, batch_size=2, val_batches=1,
                             init=models["G"], init_id=folder.name)
    built = branch.build()["G"]
    for k, v in models["G"].state_dict().items():
        torch.testing.assert_close(built.state_dict()[k], v)
    assert branch.key()["init"] == folder.name
    with pytest.raises(ValueError, match="init_id"):
        R.Wav2LipRecipe(store, _setup(), expert, init=models["G"])
    wide = R.Wav2LipRecipe(store, _setup(width=0.125), expert, init=models["G"], init_id="x")
    with pytest.raises(ValueError, match="does not fit"):
        wide.build()
