"""MTDVocaLiST distillation: q/k/v exposure, the loss's terms, gradients, training, train-or-load."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from avlib.sync import distill
from avlib.artifacts import ArtifactMissing
from avlib.sync.distill import DistillRecipe, MTDLoss, layer_map, relation_kl, relation_log_probs
from avlib.models import VocaLiST, VocaLiSTConfig
from avlib.models.vocalist import future_mask, time_folded_weight
from avlib.data.store import ClipStore
from avlib.train import Optimizers, TrainConfig

TEACHER = {"d_model": 16, "prenet_widths": [4, 4, 8, 8, 16], "n_layers": 2, "n_heads": 4}
STUDENT = {"d_model": 8, "prenet_widths": [2, 2, 4, 4, 8], "n_layers": 1, "n_heads": 4}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models spend their time in thread hand-offs, which a busy machine makes very slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(seed: int, **kwargs) -> VocaLiST:
    torch.manual_seed(seed)
    return VocaLiST(**kwargs)


def _batch(seed: int, n: int = 4) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {"faces": torch.rand(n, 15, 48, 96, generator=gen),
            "mel": torch.rand(n, 1, 80, 16, generator=gen) * 8 - 4,
            "y": torch.tensor([1.0, 0.0] * (n // 2))}


@pytest.fixture(scope="module")
def store(toy_sync_store) -> ClipStore:
    return toy_sync_store


# --------------------------------------------------------------------------- q/k/v and relations
def test_exposed_qkv_reproduce_the_attention_maps():
    model = _model(0, **TEACHER).eval()
    batch = _batch(0, 2)
    with torch.no_grad():
        _, extras = model(batch["faces"], batch["mel"], return_attention=True, return_qkv=True)
    qkv, attention = extras["qkv"], extras["attention"]
    assert set(qkv) == {"av", "va", "mem"} and len(qkv["va"]) == 2
    assert qkv["va"][0]["q"].shape == (2, 4, 5, 4)  # video queries, head_dim 16 / 4
    assert qkv["va"][0]["k"].shape == qkv["va"][0]["v"].shape == (2, 4, 16, 4)
    for unit in ("av", "va", "mem"):
        for layer in range(2):
            q, k = qkv[unit][layer]["q"], qkv[unit][layer]["k"]
            mask = future_mask(q.shape[2], k.shape[2])
            logp = relation_log_probs(q, k, heads=4, temperature=1.0, mask=mask)
            torch.testing.assert_close(logp.exp(), attention[unit][layer], atol=1e-5, rtol=1e-4)


def test_time_folded_prenet_matches_conv3d_values_and_gradients():
    # The CPU fast path of VocaLiST.prenets (time folded into Conv2d channels) in float64.
    model = _model(0, **TEACHER).double()
    plain = copy.deepcopy(model)
    plain.fold_time = False
    batch = _batch(4, n=2)
    faces, mel = batch["faces"].double(), batch["mel"].double()
    for mode in ("train", "eval"):
        for m in (model, plain):
            getattr(m, mode)()
            m.zero_grad()
        (fast, _), (slow, _) = model.prenets(faces, mel), plain.prenets(faces, mel)
        torch.testing.assert_close(fast, slow, atol=1e-10, rtol=1e-9)
        fast.square().sum().backward()
        slow.square().sum().backward()
        for (name, p), q in zip(model.named_parameters(), plain.parameters()):
            if name.startswith("vid_prenet") and name.endswith("conv_block.0.weight"):
                torch.testing.assert_close(p.grad, q.grad, atol=1e-9, rtol=1e-7)
    # Running statistics moved identically in train mode.
    torch.testing.assert_close(model.vid_prenet[0].conv_block[1].running_var,
                               plain.vid_prenet[0].conv_block[1].running_var)
    # The folded weight: block (t_out, t_in) is the time slice t_in - t_out + pad, else zero.
    w = torch.randn(2, 3, 1, 1, 3)
    folded = time_folded_weight(w, frames=4, pad_t=1).view(2, 4, 3, 4)
    assert torch.equal(folded[:, 1, :, 2], w[:, :, 0, 0, 2])
    assert torch.equal(folded[:, 2, :, 1], w[:, :, 0, 0, 0])
    assert not folded[:, 0, :, 3].any()


def test_relations_resplit_heads_and_ignore_masked_keys():
    torch.manual_seed(1)
    q, k = torch.randn(2, 4, 5, 6), torch.randn(2, 4, 16, 6)
    mask = future_mask(5, 16)  # the V->A unit's partial mask (Quirk 2)
    logp = relation_log_probs(q, k, heads=2, mask=mask)
    assert logp.shape == (2, 2, 5, 16)
    assert torch.isinf(logp[:, :, 0, 12:]).all() and torch.isfinite(logp[:, :, 4]).all()
    assert relation_kl(logp, logp).abs() < 1e-7
    other = relation_log_probs(q, torch.randn(2, 4, 16, 6), heads=2, mask=mask)
    kl = relation_kl(logp, other)
    assert torch.isfinite(kl) and kl > 0  # masked keys (-inf in both) add nothing, not NaN


def test_layer_map_is_identity_or_uniform():
    assert layer_map(4, 4) == [0, 1, 2, 3]
    assert layer_map(2, 4) == [1, 3]
    assert layer_map(1, 3) == [2]
    with pytest.raises(ValueError):
        layer_map(0, 4)


# --------------------------------------------------------------------------- the loss
def test_loss_is_the_task_loss_when_the_student_is_the_teacher():
    teacher = _model(0, **TEACHER).eval()
    student = copy.deepcopy(teacher).eval()
    criterion = MTDLoss.for_models(teacher, student, relations=("attn", "qq", "kk", "vv"))
    assert len(criterion.projections) == 0  # equal widths: no projection
    batch = _batch(1)
    with torch.no_grad():
        logit, s_extras = student(batch["faces"], batch["mel"], return_features=True, return_qkv=True)
        t_logit, t_extras = teacher(batch["faces"], batch["mel"], return_features=True, return_qkv=True)
        terms = criterion.terms(logit, t_logit, s_extras, t_extras)
        loss, metrics = criterion(logit, t_logit, batch["y"], s_extras, t_extras)
    assert len(terms) == len(criterion.term_names) == 2 + 3 * 2 + 3 * 4 * 2 + 1
    assert criterion.term_names[-1] == "prediction"
    assert terms.abs().max() < 1e-6
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, batch["y"])
    assert abs(float(loss) - float(bce)) < 1e-5 and metrics["distill"] < 1e-5


def test_feature_terms_vanish_when_the_projection_maps_student_onto_teacher():
    torch.manual_seed(2)
    criterion = MTDLoss(teacher_dim=6, student_dim=3, teacher_layers=2, student_layers=2,
                        relation_heads=1, relations=(), prediction=False)
    assert set(criterion.projections) == {"vid", "aud", "av", "va", "mem"}
    weight = torch.randn(6, 3)
    with torch.no_grad():
        for proj in criterion.projections.values():
            proj.weight.copy_(weight)

    def feats(width_map):
        return {"vid_prenet": width_map(torch.randn(2, 5, 3)),
                "aud_prenet": width_map(torch.randn(2, 16, 3)),
                **{f"{u}_layers": [width_map(torch.randn(2, 5, 3)) for _ in range(2)]
                   for u in ("av", "va", "mem")}}

    torch.manual_seed(3)
    student = feats(lambda x: x)
    torch.manual_seed(3)
    teacher = feats(lambda x: x @ weight.T)
    terms = criterion.terms(None, None, {"features": student}, {"features": teacher})
    assert terms.shape == (8,) and terms.abs().max() < 1e-10
    with torch.no_grad():
        criterion.projections["vid"].weight.mul_(2.0)
    # Normalised by the teacher's variance: doubling the projection costs exactly var(t)/var(t).
    vid = criterion.terms(None, None, {"features": student}, {"features": teacher})[0]
    torch.testing.assert_close(vid, torch.tensor(1.0) * (teacher["vid_prenet"].square().mean()
                                                        / teacher["vid_prenet"].var()))


def test_prediction_term_is_a_binary_kl():
    teacher = torch.tensor([2.0, -1.0, 0.0])
    assert distill.prediction_kl(teacher, teacher).abs() < 1e-6
    student = torch.tensor([0.5, 0.5, 0.5])
    p, q = torch.sigmoid(teacher), torch.sigmoid(student)
    expected = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    torch.testing.assert_close(distill.prediction_kl(teacher, student), expected)
    # Temperature T compares sigmoid(z / T) and scales by T^2.
    torch.testing.assert_close(distill.prediction_kl(teacher, student, 2.0),
                               4 * distill.prediction_kl(teacher / 2, student / 2))


def test_loss_validates_its_options():
    with pytest.raises(ValueError, match="unknown relations"):
        MTDLoss(16, 8, 2, 1, relation_heads=4, relations=("attn", "xy"))
    with pytest.raises(ValueError, match="must divide both widths"):
        MTDLoss(16, 6, 2, 1, relation_heads=4)
    with pytest.raises(ValueError, match="nothing to distil"):
        MTDLoss(16, 8, 2, 1, relation_heads=4, relations=(), features=False, prediction=False)
    with pytest.raises(ValueError, match="must be a VocaLiST"):
        MTDLoss.for_models(torch.nn.Linear(2, 2), _model(0, **STUDENT))


# --------------------------------------------------------------------------- gradients, steps
class _Recorder(Optimizers):
    """Optimizers whose step only runs backward, so a test can look at the gradients."""

    def step(self, name, loss, *, retain_graph=False):
        self.stepped = name
        loss.backward()


def _step(recipe: DistillRecipe, batch: dict):
    models = recipe.build()
    cfg = TrainConfig(lr=1e-3)
    opt = _Recorder(recipe.optimizers(models, cfg), cfg)
    models["teacher"].eval().requires_grad_(False)  # what the trainer does to frozen models
    metrics = recipe.training_step(models, batch, opt)
    return models, opt, metrics


def test_gradients_flow_only_into_the_student_and_the_loss_parameters(store):
    teacher = _model(0, **TEACHER).eval()
    recipe = DistillRecipe(teacher, store, VocaLiSTConfig(**STUDENT), weight_lr=0.1)
    assert recipe.trainable(None) == ("student", "criterion") and recipe.outputs == ("student",)
    models, opt, metrics = _step(recipe, _batch(2, n=2))
    assert opt.stepped == "student"
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    for part in ("student", "criterion"):
        for name, p in models[part].named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    criterion = models["criterion"]
    assert criterion.log_vars.grad.abs().sum() > 0
    assert criterion.projections["vid"].weight.grad.abs().sum() > 0
    assert {"loss", "task", "distill", "weighted", "acc"} <= set(metrics)
    groups = opt["student"].param_groups
    assert groups[1]["params"][0] is criterion.log_vars and groups[1]["lr"] == 0.1
    n_trained = sum(1 for _ in models["student"].parameters()) + sum(
        1 for _ in criterion.parameters())
    assert len(groups[0]["params"]) + 1 == n_trained


def test_a_few_steps_reduce_the_loss_on_fixed_inputs():
    # After the prenets (forward_tokens) so that a dozen steps take milliseconds; the prenet
    # terms still train the projections, the rest trains the student's transformers.
    teacher = _model(0, **TEACHER).eval()
    student = _model(1, **STUDENT)
    criterion = MTDLoss.for_models(teacher, student)
    params = [{"params": [p for n, p in student.named_parameters() if "prenet" not in n]
               + list(criterion.projections.parameters())},
              {"params": [criterion.log_vars], "lr": 0.02}]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    gen = torch.Generator().manual_seed(3)
    video_t, audio_t = torch.rand(4, 5, 16, generator=gen), torch.rand(4, 16, 16, generator=gen)
    video_s, audio_s = torch.rand(4, 5, 8, generator=gen), torch.rand(4, 16, 8, generator=gen)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        t_logit, t_extras = teacher.forward_tokens(video_t, audio_t, return_features=True,
                                                   return_qkv=True)
    history = []
    for _ in range(15):
        logit, s_extras = student.forward_tokens(video_s, audio_s, return_features=True,
                                                 return_qkv=True)
        loss, metrics = criterion(logit, t_logit, y, s_extras, t_extras)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append((float(loss.detach()), metrics["distill"]))
    assert history[-1][0] < history[0][0]
    assert history[-1][1] < history[0][1]  # the raw imitation error falls too


def test_prediction_only_distillation_needs_no_features(store):
    teacher = _model(0, **TEACHER).eval()
    recipe = DistillRecipe(teacher, store, VocaLiSTConfig(**STUDENT), relations=(),
                           features=False)
    models, _, metrics = _step(recipe, _batch(5, n=2))
    assert models["criterion"].term_names == ["prediction"]
    assert np.isfinite(metrics["loss"])
    assert models["student"].classifier.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- training, caching
def test_distill_trains_keeps_the_teacher_and_caches_by_config(store, tmp_path):
    teacher = _model(0, **TEACHER).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = TrainConfig(steps=2, lr=1e-3, eval_every=2, ckpt_every=2, log_every=1, seed=0)
    student_cfg = VocaLiSTConfig(**STUDENT)
    student, history, folder = distill.distill(teacher, student_cfg, store, cfg, "auto", tmp_path,
                                               batch_size=2, val_batches=1, progress=False)
    assert isinstance(student, VocaLiST) and student.d_model == 8 and not student.training
    assert len(history.train) == 2 and {"task", "distill", "acc"} <= set(history.train[0])
    assert {"val_loss", "val_f1", "val_f1_official"} <= set(history.eval[-1])
    assert folder.parent.name == distill.PRODUCT_NAME
    assert sorted(p.name for p in folder.glob("*.safetensors")) == ["student.safetensors"]
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    # Same configuration: loaded, not retrained.
    again, _, folder2 = distill.distill(teacher, student_cfg, store, cfg, "load", tmp_path,
                                        batch_size=2, val_batches=1, progress=False)
    assert folder2 == folder
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(),
                                                   again.state_dict().values()))
    # Another teacher is another product.
    other = _model(5, **TEACHER)
    with pytest.raises(ArtifactMissing):
        distill.distill(other, student_cfg, store, cfg, "load", tmp_path, batch_size=2,
                        val_batches=1, progress=False)


def test_weights_fingerprint_follows_the_values():
    a, b = _model(0, **STUDENT), _model(0, **STUDENT)
    assert distill.weights_fingerprint(a) == distill.weights_fingerprint(b)
    with torch.no_grad():
        b.classifier.bias.add_(1.0)
    assert distill.weights_fingerprint(a) != distill.weights_fingerprint(b)


def test_shared_video_batches_pair_each_window_with_its_audio_windows(store):
    # the teacher's batches (one video window, its true audio and m false ones) distil too
    teacher = _model(0, **TEACHER).eval()
    recipe = DistillRecipe(teacher, store, VocaLiSTConfig(**STUDENT), batch_size=2,
                           negatives=3, near_shift=0.5)
    batch = recipe.batch(np.random.default_rng(0))
    assert batch["audio_sets"].shape[:2] == (2, 4)
    inputs, y, weight = distill._pairs_of(batch)
    assert y.tolist() == [1.0, 0.0, 0.0, 0.0] * 2
    assert float(weight.sum()) == pytest.approx(1.0)
    assert float(weight[y == 1].sum()) == pytest.approx(0.5)  # genuine and false: half each
    # sharing the video prenet gives the logits of the flattened pairs
    shared, _ = distill._run(teacher, *inputs, {"return_features": True})
    flat = teacher(batch["video"].repeat_interleave(4, dim=0),
                   batch["audio_sets"].reshape(8, 1, 80, 16))
    torch.testing.assert_close(shared, flat, rtol=1e-4, atol=1e-5)
    models, opt, metrics = _step(recipe, batch)
    assert opt.stepped == "student" and np.isfinite(metrics["loss"])
    assert 0.0 <= metrics["acc"] <= 1.0
    assert all(p.grad is not None for p in models["student"].parameters())
    # the sampling is part of the product key; the papers' pairs keep theirs
    paper = DistillRecipe(teacher, store, VocaLiSTConfig(**STUDENT), batch_size=2)
    assert paper.key() != recipe.key()
    assert paper.key()["negatives"] == 1 and paper.key()["options"] == {}
