"""VocaLiST / MTDVocaLiST: sizes, state-dict layout, shapes, encoder semantics and both quirks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avlib.models import (
    CrossModalEncoder,
    VocaLiST,
    count_parameters,
    future_mask,
    sinusoidal_table,
)
from avlib.models.vocalist import PackedMultiheadAttention, SinusoidalPositions


def _tiny(**overrides) -> VocaLiST:
    kwargs = dict(d_model=16, n_layers=2, n_heads=4, prenet_widths=(4, 4, 8, 8, 16))
    kwargs.update(overrides)
    return VocaLiST(**kwargs)


@pytest.fixture(scope="module")
def official(official_model):
    return official_model("vocalist")


@pytest.fixture(scope="module")
def student(official_model):
    return official_model("mtd_vocalist")


# --------------------------------------------------------------------------- sizes and keys
def test_official_parameter_count_and_state_dict(official):
    assert count_parameters(official) == 80_106_561
    state = official.state_dict()
    assert len(state) == 377
    counts = {}
    for key in state:
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + 1
    assert counts == {
        "vid_prenet": 119, "aud_prenet": 98, "av_transformer": 52, "va_transformer": 52,
        "mem_transformer": 52, "fc": 2, "classifier": 2,
    }
    expected = {
        "vid_prenet.0.conv_block.0.weight": (32, 3, 7, 7, 7),
        "vid_prenet.1.conv_block.0.weight": (64, 32, 5, 5, 5),
        "vid_prenet.16.conv_block.1.running_var": (512,),
        "aud_prenet.12.conv_block.0.weight": (512, 256, 3, 3),
        "av_transformer.layers.0.self_attn.in_proj_weight": (1536, 512),
        "va_transformer.layers.3.self_attn.in_proj_bias": (1536,),
        "mem_transformer.layers.2.self_attn.out_proj.weight": (512, 512),
        "av_transformer.layers.1.fc1.weight": (2048, 512),
        "av_transformer.layers.1.fc2.weight": (512, 2048),
        "va_transformer.layers.0.layer_norms.1.bias": (512,),
        "mem_transformer.layer_norm.weight": (512,),
        "av_transformer.version": (1,),
        "av_transformer.embed_positions._float_tensor": (1,),
        "fc.weight": (512, 512),
        "classifier.weight": (1, 512),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    for unit in ("av", "va", "mem"):
        assert state[f"{unit}_transformer.version"].tolist() == [2.0]
    prenets = count_parameters(official.vid_prenet) + count_parameters(official.aud_prenet)
    transformers = sum(
        count_parameters(getattr(official, f"{u}_transformer")) for u in ("av", "va", "mem")
    )
    assert round(prenets / 1e6, 1) == 42.0 and round(transformers / 1e6, 1) == 37.8


def test_student_parameter_count(student):
    total = count_parameters(student)
    assert total == pytest.approx(13.28e6, abs=0.005e6)
    assert round(count_parameters(student.vid_prenet) / 1e6, 2) == 6.69
    assert round(count_parameters(student.aud_prenet) / 1e6, 2) == 0.76
    assert round(count_parameters(student.av_transformer) / 1e6, 2) == 1.93
    assert student.av_transformer.layers[0].self_attn.head_dim == 25
    assert len(student.state_dict()) == 377


# --------------------------------------------------------------------------- forward
def test_official_forward_shapes(official):
    shapes, handles = {}, []
    for name, index in [("vid", 1), ("vid", 4), ("vid", 8), ("vid", 14), ("vid", 15), ("vid", 16),
                        ("aud", 3), ("aud", 6), ("aud", 9), ("aud", 12), ("aud", 13)]:
        module = getattr(official, f"{name}_prenet")[index]
        handles.append(module.register_forward_hook(
            lambda _m, _i, out, key=(name, index): shapes.__setitem__(key, tuple(out.shape[1:]))
        ))
    try:
        with torch.no_grad():
            logit, extras = official(
                torch.rand(1, 15, 48, 96), torch.rand(1, 1, 80, 16) * 8 - 4,
                return_features=True, return_attention=True,
            )
    finally:
        for handle in handles:
            handle.remove()
    assert shapes == {
        ("vid", 1): (64, 46, 47, 5), ("vid", 4): (128, 23, 24, 5), ("vid", 8): (256, 12, 12, 5),
        ("vid", 14): (512, 3, 3, 5), ("vid", 15): (512, 1, 1, 5), ("vid", 16): (512, 1, 1, 5),
        ("aud", 3): (64, 27, 16), ("aud", 6): (128, 9, 16), ("aud", 9): (256, 3, 16),
        ("aud", 12): (512, 1, 16), ("aud", 13): (512, 1, 16),
    }
    assert logit.shape == (1,) and torch.isfinite(logit).all()
    features, attention = extras["features"], extras["attention"]
    assert features["vid_prenet"].shape == (1, 5, 512)
    assert features["aud_prenet"].shape == (1, 16, 512)
    assert features["av_out"].shape == features["mem_out"].shape == (1, 16, 512)
    assert features["va_out"].shape == (1, 5, 512)
    assert len(features["va_layers"]) == 4
    assert attention["av"].shape == (4, 1, 8, 16, 5)
    assert attention["va"].shape == (4, 1, 8, 5, 16)
    assert attention["mem"].shape == (4, 1, 8, 16, 5)
    assert torch.allclose(attention["av"].sum(-1), torch.ones(4, 1, 8, 16), atol=1e-5)
    # Quirk 2 seen from outside: video token 0 never attends to audio tokens 12-15.
    assert attention["va"][:, :, :, 0, 12:].abs().max() == 0
    assert attention["va"][:, :, :, 4, 12:].min() > 0


def test_student_features_for_distillation(student):
    with torch.no_grad():
        logit, extras = student(torch.rand(2, 15, 48, 96), torch.randn(2, 1, 80, 16),
                                return_features=True)
    assert logit.shape == (2,)
    assert set(extras) == {"features"}
    features = extras["features"]
    assert features["vid_prenet"].shape == (2, 5, 200)
    assert [f.shape for f in features["mem_layers"]] == [(2, 16, 200)] * 4
    assert features["pooled"].shape == features["hidden"].shape == (2, 200)
    # The logit is the classifier applied to the returned hidden feature.
    assert torch.allclose(student.classifier(features["hidden"]).squeeze(-1), logit, atol=1e-6)


def test_tiny_variant_trains_and_is_deterministic_in_eval():
    torch.manual_seed(3)
    model = _tiny()
    faces, mel = torch.rand(2, 15, 48, 96), torch.randn(2, 1, 80, 16)
    loss = F.binary_cross_entropy_with_logits(model(faces, mel), torch.tensor([1.0, 0.0]))
    loss.backward()
    assert model.vid_prenet[0].conv_block[0].weight.grad.abs().sum() > 0
    assert model.av_transformer.layers[0].self_attn.in_proj_weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(faces, mel), model(faces, mel))


def test_longer_context_geometry():
    # 25 frames with 80 mel frames (the released singing model's geometry).
    torch.manual_seed(4)
    model = _tiny().eval()
    with torch.no_grad():
        logit, extras = model(torch.rand(1, 75, 48, 96), torch.randn(1, 1, 80, 80),
                              return_attention=True)
    assert logit.shape == (1,)
    assert extras["attention"]["va"].shape == (2, 1, 4, 25, 80)


def test_input_and_option_validation():
    model = _tiny()
    with pytest.raises(ValueError, match=r"\(B, 3T, 48, 96\)"):
        model(torch.rand(1, 14, 48, 96), torch.randn(1, 1, 80, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, 80, L\)"):
        model(torch.rand(1, 15, 48, 96), torch.randn(1, 80, 16))
    with pytest.raises(ValueError, match="batch sizes"):
        model(torch.rand(2, 15, 48, 96), torch.randn(1, 1, 80, 16))
    with pytest.raises(ValueError, match="must equal d_model"):
        VocaLiST(d_model=256)
    with pytest.raises(ValueError, match="divisible"):
        _tiny(n_heads=3)


# --------------------------------------------------------------------------- encoder semantics
def _numpy_sinusoid(position: int, dim: int) -> np.ndarray:
    half = dim // 2
    freqs = np.exp(-np.arange(half) * math.log(10000.0) / (half - 1))
    return np.concatenate([np.sin(position * freqs), np.cos(position * freqs)])


def test_sinusoidal_table_layout():
    table = sinusoidal_table(6, 8).numpy()
    assert np.all(table[0] == 0)  # reserved padding row
    for p in range(1, 6):
        np.testing.assert_allclose(table[p], _numpy_sinusoid(p, 8), atol=1e-6)


def test_quirk1_step_with_zero_first_channel_gets_no_position():
    dim = 8
    encoder = CrossModalEncoder(dim, n_heads=2, n_layers=1).eval()
    tokens = torch.rand(2, 4, dim) + 0.1
    tokens[0, 1, 0] = 0.0  # exactly zero in channel 0 -> treated as padding
    tokens[1, 3, 0] = 0.0
    tokens[1, 0, 5] = 0.0  # zero elsewhere does not matter
    with torch.no_grad():
        embedded = encoder.embed(tokens).numpy()
    positions = SinusoidalPositions.positions(tokens)
    assert positions.tolist() == [[1, 0, 3, 4], [1, 2, 3, 0]]  # no renumbering after a gap
    x = tokens.numpy().astype(np.float64)
    for b in range(2):
        for t in range(4):
            pe = np.zeros(dim) if x[b, t, 0] == 0 else _numpy_sinusoid(t + 1, dim)
            np.testing.assert_allclose(embedded[b, t], math.sqrt(dim) * x[b, t] + pe, atol=1e-5)


def test_quirk2_mask_patterns():
    mask_va = future_mask(5, 16)
    hidden = torch.isinf(mask_va)
    expected = torch.zeros(5, 16, dtype=torch.bool)
    for i in range(5):
        expected[i, i + 12:] = True
    assert torch.equal(hidden, expected)
    assert hidden[0].nonzero().flatten().tolist() == [12, 13, 14, 15]
    assert hidden[3].nonzero().flatten().tolist() == [15]
    assert not hidden[4].any()
    assert not torch.isinf(future_mask(16, 5)).any()
    assert torch.equal(future_mask(4, 4), torch.triu(torch.full((4, 4), float("-inf")), 1))


def test_quirk2_masked_keys_do_not_reach_early_queries():
    torch.manual_seed(5)
    encoder = CrossModalEncoder(16, n_heads=4, n_layers=2).eval()
    video, audio = torch.rand(1, 5, 16) + 0.1, torch.rand(1, 16, 16) + 0.1
    changed = audio.clone()
    changed[:, 12:] += torch.rand(1, 4, 16)
    with torch.no_grad():
        before, _, _ = encoder(video, audio)
        after, _, _ = encoder(video, changed)
    assert torch.allclose(before[0, 0], after[0, 0], atol=1e-6)  # token 0 cannot see 12-15
    assert not torch.allclose(before[0, 4], after[0, 4], atol=1e-4)  # token 4 sees everything


def test_packed_attention_matches_torch_multihead_attention():
    torch.manual_seed(6)
    ours = PackedMultiheadAttention(16, 4).eval()
    reference = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    reference.load_state_dict(ours.state_dict())  # same packed names: in_proj_*, out_proj.*
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 16, 16)
    mask = future_mask(5, 16)
    with torch.no_grad():
        out, weights = ours(q, kv, kv, attn_mask=mask)
        ref_out, ref_weights = reference(q, kv, kv, attn_mask=mask, average_attn_weights=False)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.allclose(weights, ref_weights, atol=1e-6)


def test_encoder_matches_reference_recipe():
    """Rebuild the encoder forward from the spec's description with torch primitives."""
    torch.manual_seed(7)
    dim, heads = 16, 4
    encoder = CrossModalEncoder(dim, n_heads=heads, n_layers=3).eval()
    x_q, x_kv = torch.rand(2, 5, dim) + 0.1, torch.rand(2, 16, dim) + 0.1
    x_q[0, 2, 0] = 0.0  # keep Quirk 1 in play
    with torch.no_grad():
        ours, layer_outputs, _ = encoder(x_q, x_kv)
        table = sinusoidal_table(17, dim)
        pos_q = table[SinusoidalPositions.positions(x_q)]
        pos_kv = table[SinusoidalPositions.positions(x_kv)]
        x = math.sqrt(dim) * x_q + pos_q
        kv = math.sqrt(dim) * x_kv + pos_kv  # embedded once, reused by every layer
        for layer, layer_out in zip(encoder.layers, layer_outputs):
            mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True).eval()
            mha.load_state_dict(layer.self_attn.state_dict())
            ln0, ln1 = layer.layer_norms
            attended, _ = mha(ln0(x), ln0(kv), ln0(kv), attn_mask=future_mask(5, 16))
            x = x + attended
            x = x + layer.fc2(torch.relu(layer.fc1(ln1(x))))
            assert torch.allclose(x, layer_out, atol=1e-5)
        reference = encoder.layer_norm(x)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_value_positions_false_numbers_every_token():
    from avlib.models import VocaLiSTConfig, from_config

    tokens = torch.rand(2, 4, 8)
    tokens[0, 1, 0] = 0.0  # a post-ReLU zero in channel 0: "padding" to the reference
    quirk, plain = SinusoidalPositions(8), SinusoidalPositions(8, value_dependent=False)
    assert torch.all(quirk(tokens)[0, 1] == 0)
    assert torch.all(plain(tokens)[0, 1] == plain(tokens)[1, 1])
    assert torch.equal(quirk(tokens)[1], plain(tokens)[1])
    config = VocaLiSTConfig.small([4, 4, 8, 8, 16], 1, 4, 0.0, value_positions=False)
    net = from_config(config)
    assert not net.av_transformer.embed_positions.value_dependent
    assert VocaLiSTConfig.official().value_positions  # official weights need the quirk
    assert net.config["kwargs"]["value_positions"] is False
