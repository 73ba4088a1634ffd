"""SyncNet (syncnet_v2) and the Wav2Lip expert SyncNet_color: sizes, keys, shapes, loss."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avlib.models import Conv2dBlock, SyncNet, Wav2LipExpert, count_parameters, expert_loss
from avlib.models.syncnet import MIN_IMG_SIZE


def _shapes_at(module: torch.nn.Sequential, indices, *inputs) -> dict[int, tuple]:
    """Run ``module`` once and record the output shape of the given Sequential indices."""
    shapes, handles = {}, []
    for i in indices:
        def hook(_m, _inp, out, i=i):
            shapes[i] = tuple(out.shape[1:])
        handles.append(module[i].register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


@pytest.fixture(scope="module")
def syncnet(official_model):
    return official_model("syncnet")


@pytest.fixture(scope="module")
def expert(official_model):
    return official_model("wav2lip_expert")


# --------------------------------------------------------------------------- SyncNet
def test_syncnet_parameter_count_and_keys(syncnet):
    assert count_parameters(syncnet) == 13_631_616
    state = syncnet.state_dict()
    prefixes = {key.split(".")[0] for key in state}
    assert prefixes == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"}
    expected = {
        "netcnnaud.0.weight": (64, 1, 3, 3),
        "netcnnaud.18.weight": (512, 256, 5, 4),
        "netcnnlip.0.weight": (96, 3, 5, 7, 7),
        "netcnnlip.4.weight": (256, 96, 1, 5, 5),
        "netcnnlip.18.weight": (512, 256, 1, 6, 6),
        "netfcaud.0.weight": (512, 512),
        "netfcaud.1.running_var": (512,),
        "netfcaud.3.weight": (1024, 512),
        "netfclip.3.bias": (1024,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    conv_indices = sorted(
        {int(k.split(".")[1]) for k in state if k.startswith("netcnnaud.") and k.endswith("weight")}
    )
    assert conv_indices == [0, 1, 4, 5, 8, 9, 11, 12, 14, 15, 18, 19]  # conv + BN pairs
    assert sum(k.endswith("num_batches_tracked") for k in state) == 14


def test_syncnet_intermediate_shapes(syncnet):
    frames = torch.rand(1, 3, 5, 224, 224) * 255
    lip = _shapes_at(syncnet.netcnnlip, [0, 3, 4, 7, 13, 17, 20], frames)
    assert lip == {
        0: (96, 1, 109, 109),
        3: (96, 1, 54, 54),
        4: (256, 1, 26, 26),
        7: (256, 1, 13, 13),
        13: (256, 1, 13, 13),
        17: (256, 1, 6, 6),
        20: (512, 1, 1, 1),
    }
    aud = _shapes_at(syncnet.netcnnaud, [3, 7, 13, 17, 20], torch.randn(1, 1, 13, 20))
    assert aud == {
        3: (64, 13, 20), 7: (192, 11, 9), 13: (256, 11, 9), 17: (256, 5, 4), 20: (512, 1, 1),
    }


def test_syncnet_forward_shapes_and_errors(syncnet):
    mfcc = torch.randn(2, 1, 13, 20) * 10
    frames = torch.rand(2, 3, 5, 224, 224) * 255
    with torch.no_grad():
        audio, video = syncnet(mfcc, frames)
        lipfeat = syncnet.forward_lipfeat(frames)
    assert audio.shape == video.shape == (2, 1024)
    assert lipfeat.shape == (2, 512)
    assert torch.isfinite(audio).all() and torch.isfinite(video).all()
    with pytest.raises(ValueError, match=r"\(B, 1, 13, 20\)"):
        syncnet.forward_aud(torch.randn(2, 13, 20))
    with pytest.raises(ValueError, match="BGR"):
        syncnet.forward_lip(torch.rand(2, 5, 3, 224, 224))


@pytest.mark.parametrize("img_size", [112, 96, MIN_IMG_SIZE])
def test_syncnet_small_variants(img_size):
    torch.manual_seed(1)
    model = SyncNet(width=0.25, emb_dim=64, img_size=img_size).eval()
    assert count_parameters(model) < 13_631_616 / 10
    with torch.no_grad():
        frames = torch.rand(2, 3, 5, img_size, img_size) * 255
        audio, video = model(torch.randn(2, 1, 13, 20), frames)
    assert audio.shape == video.shape == (2, 64)
    assert model.config == {
        "name": "syncnet",
        "kwargs": {"width": 0.25, "emb_dim": 64, "img_size": img_size},
    }


def test_syncnet_rejects_tiny_crops_and_bad_width():
    with pytest.raises(ValueError, match="at least"):
        SyncNet(img_size=MIN_IMG_SIZE - 1)
    with pytest.raises(ValueError, match="width"):
        SyncNet(width=0)


# --------------------------------------------------------------------------- Wav2LipExpert
def test_expert_parameter_count_and_keys(expert):
    assert count_parameters(expert) == 16_435_072
    state = expert.state_dict()
    assert len(state) == 217
    face_blocks = {int(k.split(".")[1]) for k in state if k.startswith("face_encoder.")}
    audio_blocks = {int(k.split(".")[1]) for k in state if k.startswith("audio_encoder.")}
    assert face_blocks == set(range(17)) and audio_blocks == set(range(14))
    assert tuple(state["face_encoder.0.conv_block.0.weight"].shape) == (32, 15, 7, 7)
    assert tuple(state["face_encoder.1.conv_block.0.weight"].shape) == (64, 32, 5, 5)
    assert tuple(state["audio_encoder.12.conv_block.0.weight"].shape) == (512, 256, 3, 3)
    assert tuple(state["audio_encoder.3.conv_block.1.num_batches_tracked"].shape) == ()
    # Every block owns a biased conv and a BatchNorm with its three buffers.
    per_block = {k.split("conv_block.")[1] for k in state}
    assert per_block == {
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked",
    }


def test_expert_intermediate_shapes(expert):
    indices = [0, 1, 3, 4, 8, 11, 14, 15, 16]
    face = _shapes_at(expert.face_encoder, indices, torch.rand(1, 15, 48, 96))
    assert face == {
        0: (32, 48, 96), 1: (64, 46, 47), 3: (64, 46, 47), 4: (128, 23, 24), 8: (256, 12, 12),
        11: (512, 6, 6), 14: (512, 3, 3), 15: (512, 1, 1), 16: (512, 1, 1),
    }
    audio = _shapes_at(expert.audio_encoder, [0, 3, 6, 9, 12, 13], torch.randn(1, 1, 80, 16))
    assert audio == {
        0: (32, 80, 16), 3: (64, 27, 16), 6: (128, 9, 6), 9: (256, 3, 3), 12: (512, 1, 1),
        13: (512, 1, 1),
    }


def test_expert_embeddings_are_unit_and_non_negative(expert):
    with torch.no_grad():
        audio, face = expert(torch.randn(2, 1, 80, 16), torch.rand(2, 15, 48, 96))
    assert audio.shape == face.shape == (2, 512)
    assert torch.allclose(audio.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(face.norm(dim=1), torch.ones(2), atol=1e-5)
    assert (audio >= 0).all() and (face >= 0).all()
    cosine = F.cosine_similarity(audio, face)
    assert ((cosine >= 0) & (cosine <= 1 + 1e-6)).all()
    with pytest.raises(ValueError, match=r"\(B, 15, 48, 96\)"):
        expert(torch.randn(2, 1, 80, 16), torch.rand(2, 3, 96, 96))
    with pytest.raises(ValueError, match=r"\(B, 1, 80, 16\)"):
        expert(torch.randn(2, 80, 16), torch.rand(2, 15, 48, 96))


def test_expert_small_width_trains_one_step():
    torch.manual_seed(2)
    model = Wav2LipExpert(width=0.125)
    assert model.emb_dim == 64
    mel, faces = torch.randn(4, 1, 80, 16), torch.rand(4, 15, 48, 96)
    audio, face = model(mel, faces)
    loss = expert_loss(audio, face, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss)
    grad = model.face_encoder[0].conv_block[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_expert_loss_matches_bce_on_cosine():
    audio = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    face = torch.tensor([[1.0, 1.0], [1.0, 1.0], [3.0, 1.0]])
    y = torch.tensor([[1.0], [1.0], [0.0]])  # (B, 1) as in the Wav2Lip training loop
    cosine = torch.tensor([2**-0.5, 1.0, 1 / 10**0.5])
    eps = 1e-7
    clamped = cosine.clamp(eps, 1 - eps)
    manual = -(torch.log(clamped[0]) + torch.log(clamped[1]) + torch.log(1 - clamped[2])) / 3
    assert torch.allclose(expert_loss(audio, face, y), manual, atol=1e-6)


def test_expert_loss_is_finite_at_the_edges():
    # A dead (all-zero) embedding has cosine 0; identical embeddings have cosine 1.
    dead = torch.zeros(2, 4, requires_grad=True)
    alive = torch.ones(2, 4, requires_grad=True)
    dead_loss = expert_loss(dead, alive, torch.tensor([1.0, 1.0]))
    same_loss = expert_loss(alive, alive, torch.tensor([0.0, 0.0]))
    (dead_loss + same_loss).backward()
    # The clamp bounds each term by -log(eps) (about 16) instead of BCE's internal 100.
    assert dead_loss.item() == pytest.approx(-math.log(1e-7), rel=1e-3)
    assert 10 < same_loss.item() < 17
    assert torch.isfinite(alive.grad).all() and torch.isfinite(dead.grad).all()
    with pytest.raises(ValueError, match="one target per pair"):
        expert_loss(alive, alive, torch.ones(3))
    with pytest.raises(ValueError, match="equal shape"):
        expert_loss(alive, torch.ones(2, 5), torch.ones(2))


def test_conv_block_residual_and_validation():
    block = Conv2dBlock(4, 4, 3, 1, 1, residual=True).eval()
    with torch.no_grad():
        block.conv_block[0].weight.zero_()
        block.conv_block[0].bias.zero_()
    x = torch.randn(1, 4, 5, 5)
    # Zero conv + fresh BatchNorm in eval is the identity on zeros: the output is relu(x).
    assert torch.allclose(block(x), torch.relu(x))
    with pytest.raises(ValueError, match="residual"):
        Conv2dBlock(4, 8, 3, 1, 1, residual=True)
