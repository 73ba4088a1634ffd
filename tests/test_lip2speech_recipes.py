"""Lip-to-speech data and recipes: clips from a store, windows, the losses on constructed
inputs, and short trainings of the three setups through the one trainer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avlib.audio import SAMPLES_PER_FRAME, vcagan_features
from avlib.data.store import ClipStore, StoreWriter
from avlib.lip2speech import data as l2sdata
from avlib.lip2speech import recipes as l2srec
from avlib.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCE = "bin blue at f two now"


def _clip(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Mouths whose dark band widens with each frame's loudness, and the noise that is heard."""
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.02, 0.6, frames)
    wav = rng.standard_normal(frames * SAMPLES_PER_FRAME) * gains.repeat(SAMPLES_PER_FRAME)
    video = np.full((frames, 112, 112), 150, np.uint8)
    for t, g in enumerate(gains):
        half = int(4 + 60 * g)
        video[t, 56 - half:56 + half, 20:92] = 30
    return video, wav.clip(-1, 1).astype(np.float32)


def _write(writer, cid, split, frames, seed, kind="grid", transcript=SENTENCE):
    video, wav = _clip(seed, frames)
    meta = {"dataset": "corpus", "split": split, "speaker": f"s{seed % 3}",
            "transcript": transcript, "extra": {"kind": kind}}
    writer.write_clip(cid, meta, {"vcagan112": video}, wav, {}, orders={"vcagan112": "gray"})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ClipStore:
    writer = StoreWriter(tmp_path_factory.mktemp("l2s_store"))
    for i in range(4):
        _write(writer, f"grid/s{i}/train{i}", "train", 48, seed=i)
    _write(writer, "grid/s0/short", "train", 12, seed=9)
    _write(writer, "grid/s0/words", "train", 48, seed=8, transcript="hello")
    _write(writer, "grid/s1/val0", "val", 40, seed=10)
    _write(writer, "grid/s2/val1", "val", 48, seed=11)
    _write(writer, "grid/s5/unseen0", "test_unseen", 44, seed=30)
    _write(writer, "sync/test/x", "test_unseen", 44, seed=40, kind="sync")
    writer.finalize()
    return ClipStore(writer.root)


@pytest.fixture(scope="module")
def clips(store):
    return {s: l2sdata.load_clips(store, s) for s in ("train", "val", "test_unseen")}


def test_clips_hold_crops_targets_and_words_and_record_what_they_skip(store, clips):
    train = clips["train"]
    assert len(train) == 4 and train.words[0] == tuple(SENTENCE.split())
    reasons = dict(train.skipped)
    assert "12 frames" in reasons["grid/s0/short"]
    assert "6-word GRID sentence" in reasons["grid/s0/words"]
    assert clips["test_unseen"].ids == ["grid/s5/unseen0"]  # the sync clip is not GRID
    video, wav = _clip(0, 48)
    np.testing.assert_allclose(train.audio[0], wav, atol=2 / 32768)  # stored as int16
    mel, lin = vcagan_features(train.audio[0])
    assert mel.shape[1] == 48 * 4 + 1, "the STFT's extra last frame is cropped"
    assert train.video[0].shape == (48, 112, 112)
    np.testing.assert_allclose(train.mel[0], mel[:, :192], atol=1e-3)
    np.testing.assert_allclose(train.linear[0], lin[:, :192], rtol=1e-3, atol=1e-3)
    assert train.audio[0].shape == (48 * SAMPLES_PER_FRAME,)


def test_a_store_without_the_crop_says_so(tmp_path):
    writer = StoreWriter(tmp_path / "s")
    video, wav = _clip(0, 44)
    writer.write_clip("grid/s0/a", {"split": "train", "transcript": SENTENCE,
                                    "extra": {"kind": "grid"}},
                      {"mouth96": video[:, :96, :96]}, wav, {}, orders={"mouth96": "gray"})
    writer.finalize()
    out = l2sdata.load_clips(ClipStore(writer.root), "train")
    assert len(out) == 0 and "no vcagan112 stream" in out.skipped[0][1]


def test_windows_are_normalised_aligned_and_augmented(clips):
    train = clips["train"]
    rng = np.random.default_rng(0)
    plain = train.batch(np.random.default_rng(1), 3, 20, augment=False)
    assert plain["video"].shape == (3, 1, 20, 112, 112)
    assert plain["mel"].shape == (3, 1, 80, 80) and plain["linear"].shape == (3, 1, 321, 80)
    assert plain["lengths"].tolist() == [20, 20, 20]
    # the normalisation of a uint8 frame, and the mel window under the video window
    i = int(plain["clip"][0])
    raw = train.video[i]
    starts = [t for t in range(len(raw) - 19)
              if np.allclose(l2sdata.normalise_video(raw[t:t + 20]),
                             plain["video"][0, 0])]
    assert starts, "the window is a normalised slice of its clip"
    t0 = starts[0]
    np.testing.assert_array_equal(plain["mel"][0, 0].numpy(),
                                  train.mel[i][:, 4 * t0:4 * (t0 + 20)])
    augmented = train.batch(rng, 32, 20)
    fill = l2sdata.normalise_video(np.uint8(l2sdata.ERASE_FILL))
    assert abs(float(fill)) < 0.02, "the patch is 0 after Normalize (nearest gray level)"
    erased = (augmented["video"][:, 0] == fill)  # (B, T, H, W); the toy mouths hold no 105
    per_frame = erased.flatten(2).sum(2)  # erased pixels of each frame
    assert bool((per_frame == per_frame[:, :1]).all()), "the same patch in every frame"
    assert bool((per_frame[:, 0] > 0).all()) and int(per_frame.max()) <= 56 * 56
    assert bool((per_frame[:, 0] < 56 * 56).any()), "patches may be cut by the border"
    assert bool(erased.all(dim=1).flatten(1).sum(1).eq(per_frame[:, 0]).all())
    with pytest.raises(ValueError, match="no clip has 60 frames"):
        train.batch(rng, 1, 60)


def test_whole_clips_are_padded_with_their_lengths(clips):
    val = clips["val"]
    batch = val.clips([0, 1])
    assert batch["lengths"].tolist() == [40, 48]
    assert batch["video"].shape == (2, 1, 48, 112, 112)
    assert float(batch["video"][0, :, 40:].abs().sum()) == 0.0
    assert float(batch["mel"][0, 0, :, 160:].max()) == -1.0  # the floor of the log-mel


def test_sync_nce_rewards_aligned_features_and_ignores_padding():
    torch.manual_seed(0)
    v = torch.randn(2, 10, 16)
    lengths = torch.tensor([10, 6])
    aligned = l2srec.sync_nce(v, v + 0.05 * torch.randn_like(v), lengths, 0.1)
    shuffled = l2srec.sync_nce(v, v[:, torch.randperm(10)], lengths, 0.1)
    assert float(aligned) < 0.1 < float(shuffled)
    other = v.clone()
    other[1, 6:] = torch.randn(4, 16)
    same = l2srec.sync_nce(v, v, lengths, 0.1)
    assert torch.allclose(same, l2srec.sync_nce(v, other, lengths, 0.1)), \
        "frames past a clip's length are neither anchors nor candidates"


def test_the_generator_sync_term_keeps_upstreams_absolute_value():
    v = torch.randn(1, 5, 8)
    lengths = torch.tensor([5])
    assert float(l2srec.sync_term(v, v, lengths)) == pytest.approx(4.0, abs=1e-5)
    assert float(l2srec.sync_term(v, -v, lengths)) == pytest.approx(4.0, abs=1e-5), \
        "anti-correlated audio counts as in sync (the quirk)"
    orthogonal = torch.zeros(1, 5, 8)
    orthogonal[..., 0] = 1.0
    w = torch.zeros(1, 5, 8)
    w[..., 1] = 1.0
    assert float(l2srec.sync_term(orthogonal, w, lengths)) == pytest.approx(5.0)


def test_reconstruction_is_zero_on_the_targets_and_weighs_denormalised_mels(clips):
    batch = clips["train"].batch(np.random.default_rng(0), 2, 20)
    real = l2srec.VCAGANCritics.pyramid(batch["mel"])
    loss, terms = l2srec.recon_loss(real, batch["linear"], batch)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    shifted = [m + 0.1 for m in real]
    loss, terms = l2srec.recon_loss(shifted, None, batch)
    assert float(loss) == pytest.approx(0.1 * 11.5129 / 2, rel=1e-3)  # -ln 1e-5 / 2
    assert "linear" not in terms


def _cfg(steps: int, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, lr=kw.pop("lr", 2e-3), eval_every=kw.pop("every", steps),
                       ckpt_every=steps, log_every=1, precision="fp32", **kw)


def _recipe(clips, name: str, **model):
    setup = l2srec.with_model(l2srec.SETUPS[name], width=0.0625, input_size=16, **model)
    return l2srec.VCAGANRecipe(clips["train"], clips["val"], setup, data_id="toy",
                               batch_size=2, window=20, val_clips=2)


@pytest.mark.slow
def test_the_gan_setups_train_both_and_publish_g_and_d(clips, tmp_path):
    for name in ("vcagan", "no_attention"):
        recipe = _recipe(clips, name)
        models, hist, folder = l2srec.train(recipe, _cfg(2), "train", tmp_path,
                                            progress=False)
        assert set(models) == {"G", "D"}
        assert (folder / "G.json").is_file() and (folder / "D.json").is_file()
        logged = hist.train[-1]
        for key in ("d_real", "d_fake", "r1", "d_nce", "g_adv", "g_sync", "g_nce", "recon"):
            assert np.isfinite(logged[key]), key
        assert "val_mel_l1" in hist.last_eval()
        assert models["G"].cfg.attention is (name == "vcagan")


@pytest.mark.slow
def test_the_l1_baseline_has_no_critics_learns_and_reloads(clips, tmp_path):
    recipe = _recipe(clips, "l1")
    models, hist, folder = l2srec.train(recipe, _cfg(40, every=20), "train", tmp_path,
                                        progress=False)
    assert set(models) == {"G"} and not (folder / "D.json").exists()
    assert "d_real" not in hist.train[-1]
    first = np.mean([r["recon"] for r in hist.train[:5]])
    last = np.mean([r["recon"] for r in hist.train[-5:]])
    assert last < 0.9 * first, f"reconstruction {first:.3f} -> {last:.3f}"
    again, hist2, folder2 = l2srec.train(recipe, _cfg(40, every=20), "load", tmp_path,
                                         progress=False)
    assert folder2 == folder
    for a, b in zip(models["G"].state_dict().values(), again["G"].state_dict().values()):
        assert torch.equal(a, b)
    assert hist2.train[-1]["step"] == 40


def _step_grads(clips, name):
    """One training step by hand: the parameters of G and D before and after it, and which
    of G's visual-front parameters got a gradient from each generator term."""
    from avlib.train import Optimizers

    recipe = _recipe(clips, name)
    models = recipe.build()
    cfg = TrainConfig(lr=1e-3)
    opt = Optimizers(recipe.optimizers(models, cfg), cfg)
    batch = recipe.batch(np.random.default_rng(0))
    return recipe, models, opt, batch


def test_each_step_updates_only_its_own_networks(clips):
    recipe, models, opt, batch = _step_grads(clips, "vcagan")
    g, d = models["G"], models["D"]
    g0 = {k: v.clone() for k, v in g.named_parameters()}
    out = g(batch["video"], batch["lengths"])
    metrics, real_audio = recipe._d_step(d, out, batch, opt)
    assert all(torch.equal(g0[k], v) for k, v in g.named_parameters()), \
        "the discriminator step leaves the synthesizer alone"
    assert all(p.grad is None for p in g.parameters())
    assert not real_audio.requires_grad and np.isfinite(metrics["r1"])
    d0 = {k: v.clone() for k, v in d.state_dict().items()}
    torch.manual_seed(0)
    recipe.training_step(models, batch, opt)
    changed = [k for k, v in d.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, d0[k])]
    assert changed, "the discriminator step of training_step updates D"
    moved = [k for k, v in g.named_parameters() if not torch.equal(v, g0[k])]
    assert moved, "and its generator step updates G"


def test_the_infonce_of_the_generator_step_trains_the_visual_front(clips):
    recipe, models, opt, batch = _step_grads(clips, "vcagan")
    g, d = models["G"], models["D"]
    out = g(batch["video"], batch["lengths"])
    front = list(g.v_front.parameters())
    nce = l2srec.sync_nce(out.phon, d.s_dis(batch["mel"]).detach(), batch["lengths"])
    grads = torch.autograd.grad(nce, front, allow_unused=True)
    assert any(gr is not None and float(gr.abs().sum()) > 0 for gr in grads)
    gen_grads = torch.autograd.grad(nce, list(g.gen.parameters()), allow_unused=True)
    assert all(gr is None for gr in gen_grads), "the InfoNCE reads the lips only"
    assert all(p.grad is None for p in d.parameters()), "D collects nothing here"


def test_synthesize_cuts_each_clip_to_its_length(clips):
    torch.manual_seed(0)
    net = l2srec.VCAGAN(width=0.0625, input_size=16)
    outs = l2srec.synthesize(net, clips["val"], seed=3)
    assert [o["mel"].shape for o in outs] == [(80, 160), (80, 192)]
    assert all(o["linear"].shape[0] == 321 and o["linear"].min() >= 0 for o in outs)
    again = l2srec.synthesize(net, clips["val"], seed=3)
    np.testing.assert_array_equal(outs[1]["mel"], again[1]["mel"])
    flipped = l2srec.synthesize(net, clips["val"], [1], seed=3, flip=True)
    assert flipped[0]["mel"].shape == (80, 192)
    no_post = l2srec.VCAGAN(width=0.0625, input_size=16, postnet=False)
    assert l2srec.synthesize(no_post, clips["val"], [0])[0]["linear"] is None


def test_setups_are_checked():
    with pytest.raises(TypeError):
        l2srec.with_model(l2srec.SETUPS["vcagan"], no_such_field=1)
    with pytest.raises(ValueError, match="temperature"):
        l2srec.VCAGANSetup(temperature=0)
    assert l2srec.SETUPS["no_attention"].config.attention is False
    assert l2srec.SETUPS["l1"].gan is False
