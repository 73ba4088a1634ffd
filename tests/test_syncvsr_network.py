"""SyncVSR's word-level LRW lip reader (spec §4.2): names, shapes and sizes of the official
network, its parts on constructed inputs (rotary positions, RMSNorm, the audio-token loss), and
its official Lightning checkpoint format (made-up weights, with and without the vq-wav2vec
tokenizer keys that fairseq-era files carry)."""
from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from test_checkpoints import assert_loaded, made_up_weights
from test_wav2lip_networks import meta

from avlib.checkpoints import (
    OFFICIAL_NETWORKS,
    CheckpointMismatch,
    UnsafeCheckpointError,
    identify_checkpoint,
    identify_network,
    identify_state_dict,
    load_official,
)
from avlib.models import (
    SyncVSR,
    SyncVSRConfig,
    Wav2LipDisc,
    audio_token_loss,
    build_model,
    count_parameters,
    from_config,
)
from avlib.models.syncvsr import Attention, RMSNorm, RotaryEmbedding, apply_rotary

UNUSED = ("resnet.conv1.", "resnet.bn1.", "resnet.fc.")  # built by timm, never called upstream
SYNCVSR_NAME = "SyncVSR's LRW word lip reader (TransformerLightningModule)"
OFFICIAL_FILE = "LRW_CKPT_epoch_167_step_213864.ckpt"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def official_meta():
    """The official network without memory: names, shapes and counts."""
    return meta(SyncVSR)


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return SyncVSR().eval()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(1)
    return SyncVSR(**vars_of(SyncVSRConfig.named("cpu"))).eval()


def vars_of(config: SyncVSRConfig) -> dict:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def codec_keys(n_layers: int = 3, device: str | None = None) -> dict[str, torch.Tensor]:
    """Made-up frozen vq-wav2vec tensors, once as ``wav2vec.*`` and once as the CutMix copy
    ``cutmix.wav2vec.*`` (names in fairseq's style; shapes small, they are never read)."""
    generator = torch.Generator().manual_seed(99)
    codec = {}
    for i in range(n_layers):
        codec[f"feature_extractor.conv_layers.{i}.0.weight"] = (8, 1 if i == 0 else 8, 3)
        codec[f"feature_aggregator.conv_layers.{i}.0.weight"] = (8, 8, 2)
    codec["vector_quantizer.embedding"] = (320, 4)
    codec["vector_quantizer.projection.weight"] = (4, 8)
    out = {}
    for prefix in ("wav2vec.", "cutmix.wav2vec."):
        for key, shape in codec.items():
            out[prefix + key] = (torch.empty(shape, device="meta") if device == "meta"
                                 else torch.randn(shape, generator=generator))
    return out


def lightning_checkpoint(state: dict[str, torch.Tensor], codec: dict | None = None) -> dict:
    """A checkpoint laid out as PyTorch Lightning saves SyncVSR's TransformerLightningModule
    (plain types only in the hyper-parameters)."""
    return {
        "epoch": 167,
        "global_step": 213_864,
        "pytorch-lightning_version": "1.9.4",
        "state_dict": {**state, **(codec or {})},
        "hyper_parameters": {"config": {"model": {"hidden": 512, "depth": 12, "heads": 8},
                                        "optimizer": {"lr": 1e-4, "betas": (0.9, 0.999)},
                                        "word_boundary": True, "audio_alignment": 4}},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(3.0),
                                            "exp_avg": torch.zeros(2)}},
                              "param_groups": [{"lr": 1e-4, "weight_decay": 0.01,
                                                "params": [0]}]}],
        "lr_schedulers": [{"base_lrs": [1e-4], "last_epoch": 3, "_step_count": 4,
                           "lr_lambdas": [None]}],
        "callbacks": {"ModelCheckpoint{'monitor': 'val/acc', 'mode': 'max'}": {
            "best_model_score": torch.tensor(0.93), "best_model_path": "ckpt/best.ckpt",
            "dirpath": "ckpt", "best_k_models": {}}},
    }


LIGHTNING_ENTRIES = sorted(["epoch", "global_step", "pytorch-lightning_version",
                            "hyper_parameters", "optimizer_states", "lr_schedulers", "callbacks"])


@pytest.fixture(scope="module")
def official_file(official, tmp_path_factory):
    """The official checkpoint's layout with made-up weights (written once: 255 MB)."""
    state = made_up_weights(official, 7)
    path = tmp_path_factory.mktemp("syncvsr") / OFFICIAL_FILE
    torch.save(lightning_checkpoint(state, codec_keys()), path)
    yield path, state
    path.unlink()


# --------------------------------------------------------------------------- sizes and names
def test_official_size_and_names(official_meta):
    state = official_meta.state_dict()
    assert len(state) == 254
    assert count_parameters(official_meta) == 63_850_213
    used = sum(p.numel() for n, p in official_meta.named_parameters() if not n.startswith(UNUSED))
    assert used == 63_327_677
    assert count_parameters(official_meta.encoder) == 50_571_540
    assert {k.split(".")[0] for k in state} == {
        "cls_token", "stem3d", "resnet", "encoder", "audio_projection", "category_classifier"}
    assert {k.split(".")[1] for k in state if k.startswith("resnet.")} == {
        "conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}
    shapes = {
        "cls_token": (1, 1, 513),
        "stem3d.0.weight": (64, 1, 5, 7, 7),
        "stem3d.1.running_var": (64,),
        "resnet.conv1.weight": (64, 3, 7, 7),
        "resnet.bn1.weight": (64,),
        "resnet.layer1.0.conv1.weight": (64, 64, 3, 3),
        "resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "resnet.layer2.0.downsample.1.running_mean": (128,),
        "resnet.layer4.1.bn2.weight": (512,),
        "resnet.fc.weight": (1000, 512),
        "resnet.fc.bias": (1000,),
        "encoder.layers.0.0.0.g": (513,),
        "encoder.layers.0.1.to_q.weight": (512, 513),
        "encoder.layers.0.1.to_k.weight": (512, 513),
        "encoder.layers.0.1.to_v.weight": (512, 513),
        "encoder.layers.0.1.to_out.weight": (513, 512),
        "encoder.layers.1.1.ff.0.proj.weight": (4104, 513),
        "encoder.layers.1.1.ff.0.proj.bias": (4104,),
        "encoder.layers.1.1.ff.3.weight": (513, 2052),
        "encoder.layers.1.1.ff.3.bias": (513,),
        "encoder.layers.23.1.ff.3.weight": (513, 2052),
        "encoder.rotary_pos_emb.inv_freq": (16,),
        "audio_projection.weight": (2560, 513),
        "audio_projection.bias": (2560,),
        "category_classifier.weight": (500, 513),
        "category_classifier.bias": (500,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")}
    assert layers == set(range(24))
    for i in range(24):  # even: attention (no biases); odd: GLU feed-forward
        keys = {k.split(".", 3)[3] for k in state if k.startswith(f"encoder.layers.{i}.")}
        assert keys == ({"0.0.g", "1.to_q.weight", "1.to_k.weight", "1.to_v.weight",
                         "1.to_out.weight"} if i % 2 == 0 else
                        {"0.0.g", "1.ff.0.proj.weight", "1.ff.0.proj.bias", "1.ff.3.weight",
                         "1.ff.3.bias"}), i
    assert not any("final_norm" in k or "wav2vec" in k for k in state)


def test_configs_and_registry(small):
    assert SyncVSRConfig.official() == SyncVSRConfig() == SyncVSRConfig.named("official")
    assert SyncVSRConfig().dim == 513 and SyncVSRConfig(word_boundary=False).dim == 512
    assert SyncVSRConfig().rotary_dim == 32 and SyncVSRConfig().audio_logits == 2560
    config = json.loads(json.dumps(small.config))  # what a JSON file gives back
    assert config["name"] == "syncvsr" and config["kwargs"]["widths"] == [16, 32, 64, 128]
    rebuilt = build_model(config)
    assert isinstance(rebuilt, SyncVSR) and rebuilt.cfg == small.cfg
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in small.state_dict().items()}
    assert isinstance(from_config(SyncVSRConfig.named("cpu")), SyncVSR)
    with pytest.raises(ValueError, match="named sizes"):
        SyncVSRConfig.named("huge")
    with pytest.raises(ValueError, match="widths"):
        SyncVSRConfig(widths=(8, 16, 32))
    with pytest.raises(ValueError, match="layer_dropout"):
        SyncVSRConfig(layer_dropout=1.0)


# --------------------------------------------------------------------------- forward passes
def test_official_forward_shapes(official):
    boundary = torch.zeros(1, 29)
    boundary[:, 10:19] = 1
    with torch.no_grad():
        words, tokens = official(torch.randn(1, 1, 29, 96, 96), boundary)
    assert words.shape == (1, 500) and tokens.shape == (1, 29, 8, 320)
    assert torch.isfinite(words).all() and torch.isfinite(tokens).all()


def test_small_forward_shapes_and_layouts(small):
    torch.manual_seed(2)
    video, boundary = torch.randn(2, 1, 5, 48, 48), torch.ones(2, 5)
    with torch.no_grad():
        words, tokens = small(video, boundary)
        assert words.shape == (2, 500) and tokens.shape == (2, 5, 8, 320)
        assert small.frame_features(video).shape == (2, 5, 128)
        words4, tokens4 = small(video[:, 0], boundary)  # (B, T, H, W) is read as gray
    torch.testing.assert_close(words4, words)
    torch.testing.assert_close(tokens4, tokens)
    with pytest.raises(ValueError, match="gray"):
        small(torch.randn(2, 3, 5, 48, 48), boundary)

    no_wb = SyncVSR(**{**vars_of(SyncVSRConfig.named("cpu")), "word_boundary": False}).eval()
    assert no_wb.cls_token.shape == (1, 1, 128)
    with torch.no_grad():
        assert no_wb(video)[0].shape == (2, 500)


def test_word_boundary_channel_matters(small):
    torch.manual_seed(3)
    video = torch.randn(1, 1, 6, 48, 48)
    whole, middle = torch.ones(1, 6), torch.zeros(1, 6)
    middle[:, 2:4] = 1
    with torch.no_grad():
        a_words, a_tokens = small(video, whole)
        b_words, b_tokens = small(video, middle)
        c_words, _ = small(video, middle.clone())
    assert not torch.allclose(a_words, b_words) and not torch.allclose(a_tokens, b_tokens)
    torch.testing.assert_close(b_words, c_words)
    with pytest.raises(ValueError, match=r"word_boundary=True.*pass boundary"):
        small(video)
    with pytest.raises(ValueError, match=r"boundary must be \(B, T\) = \(1, 6\)"):
        small(video, torch.ones(1, 5))


def test_unused_resnet_stem_and_fc_get_no_gradient(small):
    model = SyncVSR(**vars_of(SyncVSRConfig.named("cpu")))
    model.load_state_dict(small.state_dict())
    model.eval()  # no layer dropout: every used parameter takes part
    words, tokens = model(torch.randn(2, 1, 4, 32, 32), torch.ones(2, 4))
    (words.sum() + tokens.sum()).backward()
    for name, param in model.named_parameters():
        if name.startswith(UNUSED):
            assert param.grad is None, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- parts
def test_rotary_positions():
    rot, n = 8, 6
    rotary = RotaryEmbedding(rot)
    torch.testing.assert_close(rotary.inv_freq, 10000 ** (-torch.arange(0, rot, 2) / rot))
    freqs = rotary(n)
    assert freqs.shape == (n, rot)
    torch.manual_seed(4)
    q, k = torch.randn(12), torch.randn(12)  # 12 > rot: the last 4 dimensions do not rotate
    rq, rk = apply_rotary(q.expand(n, -1), freqs), apply_rotary(k.expand(n, -1), freqs)
    torch.testing.assert_close(rq[0], q)  # position 0 is the identity
    torch.testing.assert_close(rq[:, rot:], q[rot:].expand(n, -1))
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(n))  # a rotation
    assert not torch.allclose(rq[1], q)
    dots = rq @ rk.T  # dots[i, j] = <R_i q, R_j k>: a function of j - i only
    for offset in range(-n + 1, n):
        diagonal = torch.diagonal(dots, offset)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), rtol=0, atol=1e-5)
    assert not torch.allclose(torch.diagonal(dots, 1)[0], torch.diagonal(dots, 2)[0])
    # Pairs (i, i + rot/2) rotate by the angle position * inv_freq[i].
    angle = 3 * rotary.inv_freq[1]
    unit = torch.zeros(rot)
    unit[1] = 1
    turned = apply_rotary(unit, freqs[3])
    torch.testing.assert_close(turned[[1, 1 + rot // 2]], torch.stack([angle.cos(), angle.sin()]))


@pytest.mark.parametrize("rotate_values", [True, False])
def test_attention_rotates_values_only_when_asked(rotate_values):
    heads, dim_head, n = 2, 4, 5
    dim = heads * dim_head
    attention = Attention(dim, heads, dim_head, 0.0, rotate_values).eval()
    with torch.no_grad():  # q = k = 0: uniform attention; v and the output: identities
        attention.to_q.weight.zero_()
        attention.to_k.weight.zero_()
        attention.to_v.weight.copy_(torch.eye(dim))
        attention.to_out.weight.copy_(torch.eye(dim))
    torch.manual_seed(5)
    x = torch.randn(dim).expand(1, n, dim)  # the same vector at every position
    freqs = RotaryEmbedding(dim_head)(n)
    with torch.no_grad():
        out = attention(x, freqs)
    heads_v = x.view(1, n, heads, dim_head).transpose(1, 2)
    if rotate_values:
        expected = apply_rotary(heads_v, freqs).mean(dim=2, keepdim=True)  # mean of R_j v
        expected = expected.expand(-1, -1, n, -1).transpose(1, 2).reshape(1, n, dim)
        assert not torch.allclose(out, x, atol=1e-4)
    else:
        expected = x
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_rms_norm_on_constructed_vectors():
    norm = RMSNorm(2)
    with torch.no_grad():
        norm.g.copy_(torch.tensor([1.0, 2.0]))
    # ||(3, 4)|| = 5, times 2^-1/2: (3, 4) / (5 / sqrt 2) * g.
    out = norm(torch.tensor([[3.0, 4.0]]))
    root2 = 2 ** 0.5
    torch.testing.assert_close(out, torch.tensor([[3 * root2 / 5, 2 * 4 * root2 / 5]]))
    torch.testing.assert_close(norm(torch.tensor([30.0, 40.0])), out[0])  # scale-free
    assert torch.equal(norm(torch.zeros(1, 2)), torch.zeros(1, 2))  # eps: no NaN


def test_audio_token_loss_ordering():
    b, t, steps, groups, vocab = 2, 3, 4, 2, 7
    generator = torch.Generator().manual_seed(6)
    tokens = torch.randint(0, vocab, (b, steps * t + 2, groups), generator=generator)
    logits = torch.zeros(b, t, steps * groups, vocab)
    for i in range(b):
        for f in range(t):
            for s in range(steps):
                for g in range(groups):  # label s * groups + g of frame f = token (4f + s, g)
                    logits[i, f, s * groups + g, tokens[i, steps * f + s, g]] = 100.0
    assert audio_token_loss(logits, tokens) < 1e-6  # the 2 extra token steps are cut
    swapped = tokens[..., [1, 0]]  # groups in the wrong order
    shifted = tokens.roll(1, dims=1)  # steps off by one
    for wrong in (swapped, shifted):
        assert (wrong[:, :steps * t] != tokens[:, :steps * t]).any()
        assert audio_token_loss(logits, wrong) > 10
    padded = tokens.clone()
    padded[0, 5, 1] = -1  # ignored (padding), whatever the logits say there
    padded[1, 0, 0] = -100  # every negative code is padding
    messy = logits.clone()
    messy[0, 1, 1 * groups + 1] = torch.randn(vocab) * 50
    messy[1, 0, 0] = torch.randn(vocab) * 50
    assert audio_token_loss(messy, padded) < 1e-6
    assert audio_token_loss(messy, tokens) > 1e-3
    with pytest.raises(ValueError, match="need 12 token steps"):
        audio_token_loss(logits, tokens[:, :11])


# --------------------------------------------------------------------------- official files
def test_official_lightning_file_loads_strictly(official, official_file):
    path, state = official_file
    report = load_official(official, path)
    assert report.unwrapped == ["state_dict"]
    assert sorted(report.ignored_entries) == LIGHTNING_ENTRIES
    assert report.n_tensors == 254 and report.stripped_prefix == 0
    assert report.filled_buffers == [] and report.missing == report.unexpected == []
    assert sorted(report.skipped) == sorted(codec_keys())
    assert "vq-wav2vec" in report.skipped_reason
    assert_loaded(official, state)
    text = str(report)
    assert "skipped 16 keys (cutmix.wav2vec.*, wav2vec.*)" in text and "vq-wav2vec" in text
    assert identify_checkpoint(path) == SYNCVSR_NAME == OFFICIAL_NETWORKS["syncvsr"].name
    assert OFFICIAL_NETWORKS["syncvsr"].files == (OFFICIAL_FILE,)


def test_syncvsr_file_into_another_network_is_named(official_file):
    path, _ = official_file
    with pytest.raises(CheckpointMismatch) as info:
        load_official(meta(Wav2LipDisc), path)
    message = str(info.value)
    assert f"this is {SYNCVSR_NAME}, not the visual-quality discriminator" in message
    assert "load it into avlib.models.SyncVSR" in message
    # The other way round: a discriminator's weights offered to SyncVSR.
    disc = {"state_dict": meta(Wav2LipDisc).state_dict(), "global_step": 1}
    with pytest.raises(CheckpointMismatch, match=(
            r"this is the visual-quality discriminator \(Wav2Lip_disc_qual\), not SyncVSR")):
        load_official(meta(SyncVSR), disc)


def test_lightning_file_without_codec_and_key_errors(small, tmp_path):
    model = SyncVSR(**vars_of(SyncVSRConfig.named("cpu")))
    state = made_up_weights(small, 8)
    path = tmp_path / "small.ckpt"
    torch.save(lightning_checkpoint(state), path)  # fairseq absent at training time
    report = load_official(model, path)
    assert report.skipped == [] and report.skipped_reason == "" and "skipped" not in str(report)
    assert report.n_tensors == len(state) == len(model.state_dict())
    assert_loaded(model, state)

    missing = {k: v for k, v in state.items() if k != "encoder.layers.1.1.ff.3.bias"}
    torch.save(lightning_checkpoint(missing, codec_keys()), path)
    with pytest.raises(CheckpointMismatch,
                       match=r"1 missing keys: encoder\.layers\.1\.1\.ff\.3\.bias"):
        load_official(model, path)
    # Only keys under the codec's prefixes are skipped; anything else is unexpected.
    for extra in ("wav2vec_proj.weight", "model.cls_token", "cutmix.mixer.weight"):
        odd = lightning_checkpoint({**state, extra: torch.zeros(3)}, codec_keys())
        with pytest.raises(CheckpointMismatch, match=rf"1 unexpected keys: {extra}"):
            load_official(model, odd)
    relaxed = load_official(model, lightning_checkpoint(
        {**missing, "wav2vec_proj.weight": torch.zeros(3)}, codec_keys()), strict=False)
    assert relaxed.missing == ["encoder.layers.1.1.ff.3.bias"]
    assert relaxed.unexpected == ["wav2vec_proj.weight"] and len(relaxed.skipped) == 16
    # Codec keys are SyncVSR's alone: another network does not skip them.
    disc = Wav2LipDisc(width=0.125)
    with pytest.raises(CheckpointMismatch, match=r"16 unexpected keys: wav2vec\."):
        load_official(disc, {**disc.state_dict(), **codec_keys()})


def test_identify_syncvsr_with_or_without_codec(official_meta):
    state = official_meta.state_dict()
    assert identify_network(state) == "syncvsr"
    assert identify_state_dict(state) == SYNCVSR_NAME
    # Many codec keys (more than the network has) do not hide it.
    many = codec_keys(n_layers=80, device="meta")
    assert len(many) > len(state)
    assert identify_network(lightning_checkpoint(state, many)) == "syncvsr"
    assert identify_network({"state_dict": many}) is None


def test_lightning_objects_in_hyper_parameters_are_refused_clearly(tmp_path, monkeypatch):
    """Lightning may pickle its AttributeDict in hyper_parameters: refused (weights_only), with a
    message that names the object and says where the weights are."""
    names = ["lightning", "lightning.fabric", "lightning.fabric.utilities",
             "lightning.fabric.utilities.data"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    attribute_dict = type("AttributeDict", (dict,), {"__module__": names[-1]})
    sys.modules[names[-1]].AttributeDict = attribute_dict
    path = tmp_path / "hparams_object.pth"
    checkpoint = lightning_checkpoint({"cls_token": torch.zeros(1, 1, 513)})
    checkpoint["hyper_parameters"] = attribute_dict(lr=1e-4)
    torch.save(checkpoint, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_official(meta(SyncVSR), path)
    message = str(info.value)
    assert "lightning.fabric.utilities.data.AttributeDict" in message
    assert "Lightning checkpoint" in message and '["state_dict"]' in message
