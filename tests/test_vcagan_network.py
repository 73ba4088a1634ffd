"""VCA-GAN's networks (spec §5.2-5.3): part sizes and official key shapes, output
shapes at official and CPU widths, the visual context attention's masking and layout,
the generator's noise, the ablations, the critics, the 7-part official checkpoint
(made-up weights) and the registry round trip."""
from __future__ import annotations

import fnmatch
import json

import pytest
import torch
from test_checkpoints import assert_loaded, made_up_weights
from test_wav2lip_networks import meta

from avlib.checkpoints import (
    OFFICIAL_NETWORKS,
    CheckpointMismatch,
    identify_checkpoint,
    identify_network,
    load_checkpoint,
    load_official,
    save_checkpoint,
)
from avlib.models import (
    MMAB,
    VCAGAN,
    VCAGANConfig,
    VCAGANCritics,
    VCAGANDiscriminator,
    build_model,
    count_parameters,
    from_config,
    load_vcagan_official,
)
from avlib.models.mmab import MMABAudioFront, MMABVisualFront
from avlib.models.vcagan import (
    VCAGAN_CHECKPOINT_PARTS,
    VCAGAN_CRITIC_PARTS,
    VCAGAN_PARTS,
    VisualContextAttention,
)

CPU = VCAGANConfig.named("cpu").width
VCAGAN_NAME = OFFICIAL_NETWORKS["vcagan"].name
OFFICIAL_SIZES = {
    "v_front_state_dict": 19_588_096, "gen_state_dict": 30_477_283,
    "post_state_dict": 1_744_896, "dis1_state_dict": 3_263_202,
    "dis2_state_dict": 9_850_594, "dis3_state_dict": 32_921_314,
    "s_dis_state_dict": 4_100_224,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def all_parts(model: VCAGAN, critics: VCAGANCritics) -> dict:
    return {**model.official_parts(), **critics.official_parts()}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shapes(module: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def official_meta():
    """The official parts without memory: keys, shapes, counts."""
    return all_parts(meta(VCAGAN), meta(VCAGANCritics))


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return VCAGAN().eval(), VCAGANCritics().eval()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(1)
    return VCAGAN(width=CPU).eval(), VCAGANCritics(CPU).eval()


# ------------------------------------------------------------------ sizes and names
def test_official_part_sizes(official_meta):
    assert tuple(official_meta) == VCAGAN_CHECKPOINT_PARTS
    for entry, n_params in OFFICIAL_SIZES.items():
        assert count_parameters(official_meta[entry]) == n_params, entry
    # v_front = MMAB's visual front (11,186,688) + BiGRU + fc; s_dis = MMAB's audio
    # front.
    front = official_meta["v_front_state_dict"]
    assert isinstance(front, MMABVisualFront)
    shared = sum(p.numel() for n, p in front.named_parameters()
                 if n.startswith(("frontend.", "resnet.")))
    assert shared == 11_186_688
    assert isinstance(official_meta["s_dis_state_dict"], MMABAudioFront)


SPEC_SHAPES = {  # spec §5.3's examples
    "v_front_state_dict": {
        "frontend.0.weight": (64, 1, 5, 7, 7), "frontend.2.weight": (64,),
        "resnet.layer1.0.relu1.weight": (64,),
        "resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "sentence_encoder.weight_ih_l0": (1536, 512),
        "sentence_encoder.weight_ih_l1": (1536, 1024), "fc.weight": (512, 1024)},
    "gen_state_dict": {
        "decode.0.conv1.weight": (512, 640, 5, 5), "decode.0.norm1.weight": (640,),
        "decode.0.conv1x1.weight": (512, 640, 1, 1), "att1.q.weight": (256, 2560),
        "att1.mel.weight": (1280, 256), "attconv1.weight": (128, 192, 5, 5),
        "to_mel1.2.weight": (1, 128, 1, 1)},
    "post_state_dict": {"postnet.0.weight": (128, 80, 7),
                        "postnet.6.weight": (321, 256, 1)},
    "dis1_state_dict": {"main.0.weight": (32, 1, 5, 5), "uncond.4.weight": (1, 128),
                        "cond.1.weight": (128, 640, 5, 5)},
    "s_dis_state_dict": {"Linear.weight": (512, 5120)},
}
DERIVED_SHAPES = {  # from §5.2's layer list
    "v_front_state_dict": {"sentence_encoder.weight_hh_l1_reverse": (1536, 512)},
    "gen_state_dict": {
        "att1.k.weight": (256, 512), "att1.v.weight": (256, 512),
        "att2.q.weight": (256, 2560), "att2.mel.weight": (1280, 256),
        "attconv2.weight": (64, 96, 5, 5), "g1.0.conv1x1.weight": (128, 256, 1, 1),
        "g2.0.conv1.weight": (64, 128, 5, 5), "g3.0.conv1x1.weight": (32, 64, 1, 1),
        "g3.2.conv2.weight": (32, 32, 5, 5), "to_mel3.2.weight": (1, 32, 1, 1),
        "to_mel2.0.running_var": (64,)},
    "post_state_dict": {"postnet.1.running_mean": (128,),
                        "postnet.3.conv1x1.weight": (256, 128, 1),
                        "postnet.5.conv2.weight": (256, 256, 5)},
    "dis1_state_dict": {"main.2.conv2.weight": (128, 64, 5, 5),
                        "cond.6.weight": (1, 128)},
    "dis2_state_dict": {"main.3.conv1x1.weight": (256, 128, 1, 1),
                        "cond.1.weight": (256, 768, 5, 5), "uncond.4.weight": (1, 256)},
    "dis3_state_dict": {"main.4.conv2.weight": (512, 256, 5, 5),
                        "cond.1.weight": (512, 1024, 5, 5),
                        "cond.3.weight": (512, 512, 5, 5)},
    "s_dis_state_dict": {"frontend.0.weight": (128, 1, 3, 3),
                         "Res_block.0.conv1.weight": (256, 256, 3, 3)},
}


@pytest.mark.parametrize("table", [SPEC_SHAPES, DERIVED_SHAPES],
                         ids=["spec", "derived"])
def test_official_key_shapes(official_meta, table):
    for entry, expected in table.items():
        state = official_meta[entry].state_dict()
        for key, shape in expected.items():
            assert tuple(state[key].shape) == shape, f"{entry}: {key}"


def test_official_key_layout(official_meta):
    def heads(entry):
        return {k.split(".")[0] for k in official_meta[entry].state_dict()}

    assert heads("v_front_state_dict") == {"frontend", "resnet", "sentence_encoder",
                                           "fc"}
    assert heads("gen_state_dict") == {"decode", "g1", "to_mel1", "att1", "attconv1",
                                       "g2", "to_mel2", "att2", "attconv2", "g3",
                                       "to_mel3"}
    assert heads("post_state_dict") == {"postnet"}
    for entry in ("dis1_state_dict", "dis2_state_dict", "dis3_state_dict"):
        assert heads(entry) == {"main", "uncond", "cond"}
    assert heads("s_dis_state_dict") == {"frontend", "Res_block", "Linear"}
    gen = official_meta["gen_state_dict"].state_dict()
    block = {k.split(".", 2)[2].rsplit(".", 1)[0] for k in gen
             if k.startswith("decode.0.")}
    assert block == {"norm1", "conv1", "norm2", "conv2", "conv1x1"}
    assert not any(k.startswith("g1.1.conv1x1") for k in gen)  # same width: identity
    att1 = {k.split(".")[1] for k in gen if k.startswith("att1.")}
    assert att1 == {"q", "k", "v", "mel"}
    assert "postnet.6.bias" not in official_meta["post_state_dict"].state_dict()
    dis3 = official_meta["dis3_state_dict"].state_dict()
    main = {int(k.split(".")[1]) for k in dis3 if k.startswith("main.")}
    assert main == {0, 1, 2, 3, 4}
    assert not any(".norm" in k for k in dis3)  # the critics' blocks have no norm


# ------------------------------------------------------------------ forward shapes
def test_official_output_shapes(official):
    model, critics = official
    video = torch.randn(1, 1, 4, 112, 112)
    with torch.no_grad():
        out = model(video, generator=seeded(0), return_attention=True)
    assert [tuple(m.shape) for m in out.mels] == [(1, 1, 20, 4), (1, 1, 40, 8),
                                                  (1, 1, 80, 16)]
    assert tuple(out.linear.shape) == (1, 1, 321, 16)
    assert tuple(out.phon.shape) == (1, 4, 512)
    assert tuple(out.sent.shape) == (1, 512, 4)
    assert [tuple(a.shape) for a in out.attention] == [(1, 4, 4), (1, 8, 4)]
    assert all(m.abs().max() <= 1 for m in out.mels)  # tanh: the normalised mel scale
    mel = torch.randn(2, 1, 80, 80)  # 20 video frames: the critics' smallest input
    with torch.no_grad():
        scores = critics(VCAGANCritics.pyramid(mel), torch.randn(2, 512, 20))
        audio = critics.s_dis(mel)
    assert [tuple(s.shape) for pair in scores for s in pair] == [(2, 1)] * 6
    assert tuple(audio.shape) == (2, 20, 512)


def test_cpu_output_shapes_match_the_spec(small):
    model, critics = small
    with torch.no_grad():
        out = model(torch.randn(1, 1, 40, 64, 64), generator=seeded(0))
    # Spec §5.2: T = 40 => g1 (1, 20, 40), g2 (1, 40, 80), g3 (1, 80, 160),
    # post (1, 321, 160).
    assert [tuple(m.shape[1:]) for m in out.mels] == [(1, 20, 40), (1, 40, 80),
                                                      (1, 80, 160)]
    assert tuple(out.linear.shape[1:]) == (1, 321, 160)
    dim = VCAGANConfig.named("cpu").dim
    assert tuple(out.phon.shape) == (1, 40, dim)
    assert tuple(out.sent.shape) == (1, dim, 40)
    assert out.attention is None
    with torch.no_grad():
        scores = critics(out.mels, out.sent)
    assert [tuple(s.shape) for pair in scores for s in pair] == [(1, 1)] * 6
    assert tuple(critics.s_dis(out.mels[2]).shape) == (1, 40, dim)


def test_visual_front_averages_the_whole_map(small):
    """Upstream's AvgPool2d(4) on the 4 x 4 map of 112-px input (MMAB keeps a 3 x 3
    corner)."""
    front = small[0].v_front
    video = torch.randn(2, 1, 3, 112, 112)
    with torch.no_grad():
        fmap = front.feature_map(video)
        phon, sent = front(video)
        gru, _ = front.sentence_encoder(phon)
    assert tuple(fmap.shape[-2:]) == (4, 4)
    pooled = torch.nn.AvgPool2d(4)(fmap).flatten(1).view(2, 3, -1)
    assert torch.allclose(phon, pooled, atol=1e-6)
    assert torch.allclose(sent, front.fc(gru).transpose(1, 2))


# ------------------------------------------------------------------ attention
def test_attention_masks_keys_beyond_each_length(small):
    gen = small[0].gen
    torch.manual_seed(3)
    phon = torch.randn(2, 6, gen.dim)
    sent = torch.randn(2, gen.dim, 6)
    lengths = torch.tensor([4, 6])

    def run(context, lens=lengths):
        with torch.no_grad():
            return gen(phon, context, lens, generator=seeded(5), return_attention=True)

    mels, (w1, w2) = run(sent)
    for w, queries in ((w1, 6), (w2, 12)):
        assert tuple(w.shape) == (2, queries, 6)
        assert torch.allclose(w.sum(-1), torch.ones(2, queries))
        assert torch.all(w[0, :, 4:] == 0) and torch.all(w[0, :, :4] > 0)
        assert torch.all(w[1] > 0)  # a full-length sample attends everywhere
    beyond = sent.clone()
    beyond[0, :, 4:] += 5 * torch.randn(gen.dim, 2)
    changed, (v1, v2) = run(beyond)
    for a, b in zip(mels, changed):
        assert torch.equal(a, b)  # no sample moves: sample 0's keys there are masked
    assert torch.equal(w1, v1) and torch.equal(w2, v2)
    # Controls: inside the length the context counts, and unmasked it counts
    # everywhere (mel1 comes before any attention: never).
    inside = sent.clone()
    inside[0, :, :4] += 5 * torch.randn(gen.dim, 4)
    moved, _ = run(inside)
    assert torch.equal(moved[0], mels[0]) and torch.equal(moved[2][1], mels[2][1])
    assert not torch.allclose(moved[1][0], mels[1][0])
    free, _ = run(sent, None)
    free_beyond, _ = run(beyond, None)
    assert not torch.allclose(free[2][0], free_beyond[2][0])
    assert torch.equal(run(sent, [6, 6])[0][2], free[2])  # full lengths mask nothing
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 6\]"):
        run(sent, [0, 6])
    with pytest.raises(ValueError, match="3 entries for a batch of 2"):
        run(sent, [4, 6, 6])


def test_attention_reads_channel_major_and_writes_frequency_major():
    att = VisualContextAttention(channels=2, rows=3, context_dim=4, att_dim=5,
                                 out_channels=2)
    with torch.no_grad():
        for lin in (att.q, att.k, att.v, att.mel):
            lin.weight.zero_()
            lin.bias.zero_()
        att.q.weight[0, 1 * 3 + 2] = 1.0  # query dim 0 = g[:, c=1, f=2, t]
        att.k.weight[0, 0] = 1.0  # key dim 0 = context feature 0
        att.mel.bias.copy_(torch.arange(6.0))
    g = torch.randn(1, 2, 3, 7)
    context = torch.randn(1, 4, 4)
    mask = torch.tensor([[False, False, False, True]])
    out, weights = att(context, g, mask)
    scores = g[0, 1, 2][:, None] * context[0, :, 0][None, :] / 5 ** 0.5
    expected = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
    assert torch.allclose(weights[0], expected, atol=1e-6)
    # The output Linear's feature f * C + c lands at channel c, row f (zero weights:
    # the bias alone).
    assert tuple(out.shape) == (1, 2, 3, 7)
    for c in range(2):
        for f in range(3):
            assert torch.all(out[0, c, f] == f * 2 + c)


# ------------------------------------------------------------------ noise
def test_noise_is_drawn_in_forward_from_the_generator(small):
    model = small[0]
    video = torch.randn(1, 1, 5, 48, 48)
    with torch.no_grad():
        state = torch.get_rng_state()
        a = model(video, generator=seeded(7))
        # eval mode with a generator: the global RNG is not used
        assert torch.equal(torch.get_rng_state(), state)
        b = model(video, generator=seeded(7))
        c = model(video, generator=seeded(8))
        d = model(video)
        # no generator: the global one
        assert not torch.equal(torch.get_rng_state(), state)
        e = model(video)
    for x, y in zip((*a.mels, a.linear), (*b.mels, b.linear)):
        assert torch.equal(x, y)
    assert torch.equal(a.phon, c.phon) and torch.equal(a.sent, c.sent)  # front fixed
    assert all(not torch.allclose(x, y) for x, y in zip(a.mels, c.mels))
    assert tuple(d.mels[2].shape) == (1, 1, 80, 20)
    assert not torch.allclose(d.mels[2], e.mels[2])  # fresh noise every call, in eval
    torch.manual_seed(4)
    quiet = VCAGAN(width=CPU, noise_dim=0).eval()
    assert quiet.gen.noise_channels == 0
    assert quiet.gen.decode[0].conv1.in_channels == quiet.cfg.dim
    with torch.no_grad():
        assert torch.equal(quiet(video).mels[2], quiet(video).mels[2])


# ------------------------------------------------------------------ ablations
def test_no_attention_ablation():
    with torch.device("meta"):
        full, bare = VCAGAN(), VCAGAN(attention=False)
    assert count_parameters(full.gen) - count_parameters(bare.gen) == 3_262_656
    assert count_parameters(bare.gen) == 27_214_627
    assert not any(k.startswith(("att", "attconv")) for k in bare.gen.state_dict())
    torch.manual_seed(5)
    model = VCAGAN(width=CPU, attention=False).eval()
    gen = model.gen
    phon = torch.randn(2, 6, gen.dim)
    sent = torch.randn(2, gen.dim, 6)
    with torch.no_grad():
        mels, attention = gen(phon, sent, [3, 6], generator=seeded(1),
                              return_attention=True)
        other = gen(phon, torch.randn_like(sent), generator=seeded(1))
        out = model(torch.randn(1, 1, 4, 48, 48), return_attention=True)
    assert attention is None and out.attention is None
    assert [tuple(m.shape) for m in mels] == [(2, 1, 20, 6), (2, 1, 40, 12),
                                              (2, 1, 80, 24)]
    for a, b in zip(mels, other):
        assert torch.equal(a, b)  # without attention the context never reaches the mels
    assert tuple(out.linear.shape) == (1, 1, 321, 16)


def test_without_postnet():
    model = VCAGAN(width=CPU, postnet=False).eval()
    assert model.post is None and tuple(model.official_parts()) == VCAGAN_PARTS[:2]
    assert not any(k.startswith("post.") for k in model.state_dict())
    with torch.no_grad():
        out = model(torch.randn(1, 1, 3, 48, 48))
    assert out.linear is None and tuple(out.mels[2].shape) == (1, 1, 80, 12)


# ------------------------------------------------------------------ critics
def test_discriminator_condition_is_the_time_mean_of_sent(small):
    critics = small[1]
    dim = VCAGANConfig.named("cpu").dim
    torch.manual_seed(6)
    mel = torch.randn(2, 1, 40, 44)  # dis2: 40 x 2T, T = 22 -> a (5, 5) map
    sent = torch.randn(2, dim, 22)
    with torch.no_grad():
        u, c = critics.dis2(mel, sent)
        u_perm, c_perm = critics.dis2(mel, sent[:, :, torch.randperm(22)])
        u_shift, c_shift = critics.dis2(mel, sent + 1.0)
    assert torch.allclose(c, c_perm, atol=1e-5) and torch.equal(u, u_perm)
    assert torch.equal(u, u_shift) and not torch.allclose(c, c_shift)
    pyramid = VCAGANCritics.pyramid(torch.full((1, 1, 80, 88), 0.5))
    assert [tuple(m.shape) for m in pyramid] == [(1, 1, 20, 22), (1, 1, 40, 44),
                                                 (1, 1, 80, 88)]
    assert all(torch.allclose(m, torch.full_like(m, 0.5)) for m in pyramid)
    with pytest.raises(ValueError, match="at least 80 frames"):
        critics.dis3(torch.randn(1, 1, 80, 76), sent[:1])
    with pytest.raises(ValueError, match=r"dis1 takes a \(B, 1, 20, W\) mel"):
        critics.dis1(torch.randn(1, 1, 40, 40), sent[:1])
    with pytest.raises(ValueError, match="phase must be 1, 2 or 3"):
        VCAGANDiscriminator(phase=4)
    assert isinstance(critics.s_dis, MMABAudioFront) and critics.s_dis.dropout.p == 0.0


def test_cpu_training_step_reaches_every_part():
    torch.manual_seed(7)
    model, critics = VCAGAN(width=CPU).train(), VCAGANCritics(CPU).train()
    out = model(torch.randn(2, 1, 20, 32, 32), [20, 16], generator=seeded(0))
    scores = critics(out.mels, out.sent)
    sync = (critics.s_dis(out.mels[2]) * out.phon).mean()
    loss = sum(s.mean() for pair in scores for s in pair) + out.linear.mean() + sync
    loss.backward()
    for name, part in all_parts(model, critics).items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in part.parameters()), name


# ------------------------------------------------------------------ configs
def test_configs_and_registry(small):
    model, critics = small
    assert VCAGANConfig.named("official") == VCAGANConfig() == VCAGANConfig.official()
    cpu = VCAGANConfig.named("cpu")
    assert cpu.width == CPU == 0.125 and cpu.dim == 64 and cpu.input_size == 32
    assert 500_000 < count_parameters(model) < 3_000_000
    config = json.loads(json.dumps(model.config))
    assert config == {"name": "vcagan", "kwargs": {
        "width": CPU, "attention": True, "postnet": True, "noise_dim": 128,
        "front_dropout": 0.3, "gru_dropout": 0.3, "input_size": 112}}
    rebuilt = build_model(config).eval()
    assert isinstance(rebuilt, VCAGAN) and rebuilt.cfg == model.cfg
    rebuilt.load_state_dict(model.state_dict())
    video = torch.randn(1, 1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(rebuilt(video, generator=seeded(2)).linear,
                           model(video, generator=seeded(2)).linear)
    ablation = VCAGAN(width=0.25, attention=False, postnet=False)
    again = build_model(json.loads(json.dumps(ablation.config)))
    assert again.cfg == ablation.cfg and again.post is None and not again.cfg.attention
    for made in (critics, VCAGANCritics(0.25)):
        back = build_model(json.loads(json.dumps(made.config)))
        assert isinstance(back, VCAGANCritics) and back.width == made.width
        assert shapes(back) == shapes(made)
    dis = build_model({"name": "vcagan_discriminator",
                       "kwargs": {"phase": 3, "width": 0.5}})
    assert isinstance(dis, VCAGANDiscriminator) and dis.rows == 80
    assert isinstance(from_config(cpu), VCAGAN)
    assert VCAGAN.crop_stream == "vcagan112"
    for bad, match in [({"width": 0}, "width"), ({"noise_dim": -1}, "noise_dim"),
                       ({"front_dropout": 1.0}, "front_dropout"),
                       ({"attention": "yes"}, "attention")]:
        with pytest.raises(ValueError, match=match):
            VCAGANConfig(**bad)
    with pytest.raises(ValueError, match="named sizes"):
        VCAGANConfig.named("huge")


def test_own_checkpoints_rebuild_both_modules(small, tmp_path):
    model, critics = small
    for name, module in (("synth", model), ("critics", critics)):
        save_checkpoint(tmp_path / name, module, extra={"step": 1})
        loaded, config = load_checkpoint(tmp_path / name)
        assert type(loaded) is type(module) and config == module.config
        for key, value in module.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


# ------------------------------------------------------------------ checkpoints
def made_up_checkpoint(parts: dict) -> dict:
    return {entry: made_up_weights(part, seed)
            for seed, (entry, part) in enumerate(parts.items())}


def test_official_size_checkpoint_loads_strictly(official_meta):
    checkpoint = made_up_checkpoint(official_meta)
    assert identify_network(checkpoint) == "vcagan"
    model, critics, report = load_vcagan_official(checkpoint, return_report=True)
    assert report.parts == list(VCAGAN_CHECKPOINT_PARTS)
    assert report.n_tensors == sum(len(s) for s in checkpoint.values())
    assert not model.training and not critics.training
    for entry, part in all_parts(model, critics).items():
        assert_loaded(part, checkpoint[entry])


@pytest.fixture(scope="module")
def cpu_file(tmp_path_factory):
    """An official checkpoint's layout at the CPU width, made-up weights, on disk."""
    torch.manual_seed(8)
    checkpoint = made_up_checkpoint(all_parts(VCAGAN(width=CPU), VCAGANCritics(CPU)))
    name = "Best_0412_stoi_0.724_estoi_0.609_pesq_2.008.ckpt"
    path = tmp_path_factory.mktemp("vcagan") / name
    torch.save(checkpoint, path)
    yield path, checkpoint
    path.unlink()


def test_checkpoint_file_loads(cpu_file):
    path, checkpoint = cpu_file
    patterns = OFFICIAL_NETWORKS["vcagan"].files
    assert any(fnmatch.fnmatch(path.name, p) for p in patterns)
    assert identify_checkpoint(path) == VCAGAN_NAME
    model, critics = load_vcagan_official(path, width=CPU)
    for entry, part in all_parts(model, critics).items():
        assert_loaded(part, checkpoint[entry])
    with torch.no_grad():
        out = model(torch.randn(1, 1, 20, 48, 48), generator=seeded(0))
        scores = critics(out.mels, out.sent)
    assert tuple(out.linear.shape) == (1, 1, 321, 80) and len(scores) == 3
    synth, report = VCAGAN.from_official(path, width=CPU)  # the synthesizer alone
    assert report.parts == list(VCAGAN_PARTS)
    assert report.ignored_entries == list(VCAGAN_CRITIC_PARTS)
    assert_loaded(synth.gen, checkpoint["gen_state_dict"])
    again = load_official(VCAGAN(width=CPU), path)  # a model that names its parts
    assert again.parts == list(VCAGAN_PARTS)
    prefixed = {entry: {"module." + k: v for k, v in state.items()}
                for entry, state in checkpoint.items()}
    _, _, report = load_vcagan_official(prefixed, width=CPU, return_report=True)
    assert report.stripped_prefix == sum(len(s) for s in checkpoint.values())
    no_post = {k: v for k, v in checkpoint.items() if k != "post_state_dict"}
    bare, _ = load_vcagan_official(no_post, width=CPU, postnet=False)
    assert bare.post is None
    assert_loaded(bare.v_front, checkpoint["v_front_state_dict"])


def test_checkpoint_errors(cpu_file):
    path, checkpoint = cpu_file
    missing = {k: v for k, v in checkpoint.items() if k != "dis2_state_dict"}
    with pytest.raises(CheckpointMismatch, match="lacks the entry dis2_state_dict"):
        load_vcagan_official(missing, width=CPU)
    no_post = {k: v for k, v in checkpoint.items() if k != "post_state_dict"}
    with pytest.raises(CheckpointMismatch,
                       match=r"post_state_dict.*pass postnet=False"):
        load_vcagan_official(no_post, width=CPU)
    renamed = dict(checkpoint)
    gen = dict(checkpoint["gen_state_dict"])
    gen["att1.query.weight"] = gen.pop("att1.q.weight")
    renamed["gen_state_dict"] = gen
    with pytest.raises(CheckpointMismatch, match=(
            r"(?s)part gen_state_dict.*missing keys: att1.q.weight.*"
            r"unexpected keys: att1.query.weight")):
        load_vcagan_official(renamed, width=CPU)
    with pytest.raises(CheckpointMismatch,
                       match=r"(?s)part v_front_state_dict.*expects \(64,"):
        load_vcagan_official(path)  # CPU-width weights into the official size
    with pytest.raises(CheckpointMismatch, match="part gen_state_dict.*Generator"):
        load_vcagan_official(path, width=CPU, attention=False)  # att keys unexpected
    with pytest.raises(CheckpointMismatch,
                       match="this is VCA-GAN's.*avlib.models.VCAGAN"):
        load_official(meta(MMAB), path)
