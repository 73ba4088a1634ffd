"""MMAB, the visual-audio memory lip reader (spec §5.7-5.8): sizes and names of the official
parts, the AvgPool2d(3) quirk, the memory's addressing and losses on constructed inputs, the
modes of the model, the official multi-part checkpoint (made-up weights), and its mel input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_checkpoints import assert_loaded, made_up_weights
from test_wav2lip_networks import meta

from avlib.audio import mmab_mel
from avlib.checkpoints import (
    OFFICIAL_NETWORKS,
    CheckpointMismatch,
    identify_checkpoint,
    identify_network,
    load_official,
    load_official_parts,
)
from avlib.models import MMAB, MMABConfig, SyncNet, build_model, count_parameters, from_config, mmab_loss
from avlib.models.mmab import MMAB_PARTS, Memory, spatial_pool

MMAB_NAME = OFFICIAL_NETWORKS["mmab"].name
LRW_SAMPLES = 18_560  # int(29 / 25 * 16000): the loader's centre crop of an LRW clip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fields(config: MMABConfig) -> dict:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def official_meta(backend: str) -> MMAB:
    return meta(MMAB, **fields(MMABConfig.released(backend)))


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(1)
    return MMAB(**fields(MMABConfig.named("cpu", n_classes=10))).eval()


# --------------------------------------------------------------------------- sizes and names
@pytest.mark.parametrize("backend, sizes", [
    ("gru", {"v_front_state_dict": (11_186_688, 137), "a_front_state_dict": (4_100_224, 30),
             "mem_state_dict": (1_140_224, 8), "back_state_dict": (8_389_108, 18)}),
    ("mstcn", {"v_front_state_dict": (11_186_688, 137), "a_front_state_dict": (4_100_224, 30),
               "mem_state_dict": (1_222_144, 8), "back_state_dict": (25_187_828, 206)}),
])
def test_official_part_sizes(backend, sizes):
    model = official_meta(backend)
    parts = model.official_parts()
    assert tuple(parts) == MMAB_PARTS
    for entry, (n_params, n_entries) in sizes.items():
        assert count_parameters(parts[entry]) == n_params, entry
        assert len(parts[entry].state_dict()) == n_entries, entry
    assert model.cfg.n_slot == {"gru": 88, "mstcn": 168}[backend]


def test_official_key_names_and_shapes():
    gru, tcn = official_meta("gru"), official_meta("mstcn")
    v = gru.v_front.state_dict()
    assert {k.split(".")[0] for k in v} == {"frontend", "resnet"}
    for key, shape in {"frontend.0.weight": (64, 1, 5, 7, 7), "frontend.2.weight": (64,),
                       "resnet.layer1.0.relu1.weight": (64,), "resnet.layer4.1.relu2.weight": (512,),
                       "resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
                       "resnet.layer4.0.downsample.1.running_var": (512,)}.items():
        assert tuple(v[key].shape) == shape, key
    assert "frontend.0.bias" not in v
    a = gru.a_front.state_dict()
    assert {k.split(".")[0] for k in a} == {"frontend", "Res_block", "Linear"}
    for key, shape in {"frontend.0.weight": (128, 1, 3, 3), "frontend.0.bias": (128,),
                       "frontend.2.weight": (128,), "frontend.3.weight": (256, 128, 3, 3),
                       "frontend.5.weight": (256,), "Res_block.0.conv1.weight": (256, 256, 3, 3),
                       "Res_block.0.bn2.running_mean": (256,), "Linear.weight": (512, 5120)}.items():
        assert tuple(a[key].shape) == shape, key
    assert not any("relu" in k for k in a)  # the audio block's activations are plain ReLUs
    m = gru.mem.state_dict()
    assert {k: tuple(t.shape) for k, t in m.items()} == {
        "key": (88, 512), "value": (88, 512), "q_embd.weight": (512, 512), "q_embd.bias": (512,),
        "v_embd.weight": (512, 512), "v_embd.bias": (512,), "fusion.weight": (512, 1024),
        "fusion.bias": (512,)}
    g = gru.back.state_dict()
    assert tuple(g["gru.weight_ih_l0"].shape) == (1536, 512)
    assert tuple(g["gru.weight_ih_l1_reverse"].shape) == (1536, 1024)
    assert tuple(g["fc.weight"].shape) == (500, 1024)
    t = tcn.back.state_dict()
    net = "tcn.mb_ms_tcn.network"
    for key, shape in {f"{net}.0.cbcr0_0.conv.weight": (256, 512, 3),
                       f"{net}.0.cbcr0_2.conv.weight": (256, 512, 7),
                       f"{net}.0.cbcr1_1.conv.weight": (256, 768, 5),
                       f"{net}.3.cbcr1_2.batchnorm.running_mean": (256,),
                       f"{net}.2.cbcr0_1.non_lin.weight": (256,),
                       f"{net}.0.downsample.weight": (768, 512, 1),
                       f"{net}.3.downsample.weight": (768, 768, 1),
                       f"{net}.3.relu_final.weight": (768,),
                       "tcn.tcn_output.weight": (500, 768)}.items():
        assert tuple(t[key].shape) == shape, key
    assert {int(k.split(".")[3]) for k in t if k.startswith(net)} == {0, 1, 2, 3}
    dilations = [m.conv.dilation[0] for m in tcn.back.modules() if hasattr(m, "pad")][::6]
    assert dilations == [1, 2, 4, 8]


def test_configs_and_registry(small):
    assert MMABConfig.official() == MMABConfig() == MMABConfig.named("official") == MMABConfig.released()
    assert MMABConfig.released("mstcn").n_slot == 168
    cpu = MMABConfig.named("cpu")
    assert cpu.dim == 128 and cpu.input_size == 32 and cpu.mel_bins_out == 20
    config = json.loads(json.dumps(small.config))
    assert config["name"] == "mmab" and config["kwargs"]["front_widths"] == [16, 16, 32, 64, 128]
    rebuilt = build_model(config)
    assert isinstance(rebuilt, MMAB) and rebuilt.cfg == small.cfg
    assert isinstance(from_config(MMABConfig.named("cpu")), MMAB)
    assert MMAB.crop_stream == "vcagan112" and MMAB.audio_feature == "mmab_mel"
    words = tuple(f"w{i}" for i in range(10))
    assert MMABConfig.named("cpu", n_classes=10, vocabulary=list(words)).vocabulary == words
    for bad, match in [({"vocabulary": ("a",)}, "vocabulary"), ({"backend": "lstm"}, "backend"),
                       ({"dim": 256}, "last visual width"), ({"tcn_channels": 100}, "split evenly"),
                       ({"tcn_kernels": (3, 4)}, "odd"), ({"n_mels": 30}, "multiple of 4"),
                       ({"pool": "max"}, "pool"), ({"fusion_dropout": 1.0}, "fusion_dropout")]:
        with pytest.raises(ValueError, match=match):
            MMABConfig(**bad)
    with pytest.raises(ValueError, match="named sizes"):
        MMABConfig.named("huge")


# --------------------------------------------------------------------------- the pooling quirk
def test_avgpool3_reads_only_the_top_left_of_a_4x4_map():
    torch.manual_seed(0)
    fmap = torch.randn(2, 5, 4, 4)
    pooled = spatial_pool(fmap)
    assert torch.allclose(pooled, fmap[:, :, :3, :3].mean(dim=(2, 3)))
    assert torch.allclose(pooled, torch.nn.AvgPool2d(3)(fmap).flatten(1))  # upstream's output
    changed = fmap.clone()
    changed[:, :, 3, :] += 100.0  # the last row and column never count
    changed[:, :, :, 3] -= 50.0
    assert torch.equal(spatial_pool(changed), pooled)
    changed[:, :, 0, 0] += 9.0
    assert torch.allclose(spatial_pool(changed), pooled + 1.0)
    assert torch.allclose(spatial_pool(fmap, "mean"), fmap.mean(dim=(2, 3)))
    small_map = torch.randn(2, 5, 2, 2)  # CPU crops: below 3 x 3 the whole map is averaged
    assert torch.allclose(spatial_pool(small_map), small_map.mean(dim=(2, 3)))


def test_official_visual_front_pools_the_4x4_map_of_112px():
    torch.manual_seed(0)
    front = MMAB(**fields(MMABConfig())).v_front.eval()
    video = torch.randn(1, 1, 2, 112, 112)
    with torch.no_grad():
        fmap = front.feature_map(video)
        out = front(video)
    assert tuple(fmap.shape) == (2, 512, 4, 4)
    assert tuple(out.shape) == (1, 2, 512)
    assert torch.allclose(out[0], fmap[:, :, :3, :3].mean(dim=(2, 3)), atol=1e-6)


# --------------------------------------------------------------------------- the memory
def identity_memory(keys: torch.Tensor, values: torch.Tensor, radius: float = 16.0) -> Memory:
    n_slot, dim = keys.shape
    mem = Memory(radius, n_slot, dim).eval()
    with torch.no_grad():
        mem.key.copy_(keys)
        mem.value.copy_(values)
        for lin in (mem.q_embd, mem.v_embd):
            lin.weight.copy_(torch.eye(dim))
            lin.bias.zero_()
    return mem


def test_memory_addressing_and_recall():
    keys = torch.eye(4)[:3] * 2.0  # three orthogonal slots in 4 dimensions
    values = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 3.0, 0]])
    mem = identity_memory(keys, values)
    query = torch.tensor([[[0.0, 5.0, 0, 0], [0.0, 0, 0.1, 0]]])  # slot 1, slot 2 directions
    address = mem.address(query)
    assert tuple(address.shape) == (1, 2, 3)
    expected = np.exp(16.0) / (np.exp(16.0) + 2.0)  # cos 1 against cos 0 twice, radius 16
    assert address[0, 0, 1].item() == pytest.approx(expected, rel=1e-6) and expected > 0.9999
    assert address[0, 1, 2].item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(address.sum(-1), torch.ones(1, 2))
    # A query between two slots splits the weight evenly.
    half = mem.address(torch.tensor([[[1.0, 1.0, 0, 0]]]))[0, 0]
    assert half[0].item() == pytest.approx(half[1].item()) and half[2] < 1e-4
    te, tr, recon, add = mem(query, inference=True)
    assert tr is None and recon is None and add is None
    recall = address.view(2, 3) @ values
    manual = mem.fusion(torch.cat([query, recall.view(1, 2, 4)], dim=2))  # eval: no dropout
    assert torch.allclose(te, manual, atol=1e-6)
    assert torch.equal(mem.last_key_address, address)
    with pytest.raises(ValueError, match="inference=True"):
        mem(query)


def test_memory_gradients_and_losses():
    torch.manual_seed(0)
    mem = Memory(16.0, n_slot=5, dim=6).eval()
    query = torch.randn(2, 3, 6, requires_grad=True)
    value = torch.randn(2, 3, 6, requires_grad=True)
    te, tr, recon, add = mem(query, value)
    assert tuple(te.shape) == tuple(tr.shape) == (2, 3, 6)
    assert recon.shape == add.shape == (1,)
    te.sum().backward(retain_graph=True)
    assert mem.value.grad is None  # the recall reads detached values
    assert mem.key.grad is not None and mem.q_embd.weight.grad is not None
    mem.zero_grad(set_to_none=True)
    recon.sum().backward(retain_graph=True)
    assert mem.value.grad is not None and mem.key.grad is None
    assert mem.v_embd.weight.grad is not None and value.grad is None  # v_embd reads value.detach()
    mem.zero_grad(set_to_none=True)
    add.sum().backward(retain_graph=True)
    assert mem.key.grad is not None and mem.value.grad is None and mem.v_embd.weight.grad is None
    tr.sum().backward()
    assert value.grad is not None  # the audio front learns through the audio-visual path
    assert add.item() >= 0.0


def test_memory_losses_on_constructed_cases():
    keys = torch.eye(4)[:3]
    mem = identity_memory(keys, keys.clone())  # key and value memories point the same way
    query = torch.tensor([[[0.0, 3.0, 0, 0], [2.0, 0, 0.5, 0]]])
    _, _, recon, add = mem(query, query.clone())
    assert add.item() == pytest.approx(0.0, abs=1e-6)  # identical addressings: KL 0
    # Different addressings: the batch-mean KL of the value addressing from the key addressing.
    other = torch.tensor([[[3.0, 0, 0, 0], [0, 0, 2.0, 0]]])
    _, _, recon, add = mem(query, other)
    p_key = mem.address(query).view(2, 3)
    p_val = torch.softmax(16.0 * F.normalize(other.view(2, 4), dim=1) @ keys.T, dim=1)
    kl = (p_val * (p_val.log() - p_key.log())).sum() / 2
    assert add.item() == pytest.approx(kl.item(), rel=1e-5) and add.item() > 1.0
    # Reconstruction: the value addressing reads the value memory back, MSE against the audio.
    expected = F.mse_loss(p_val @ keys, other.view(2, 4))
    assert recon.item() == pytest.approx(expected.item(), rel=1e-6)
    assert recon.item() == pytest.approx(0.25 * (2.0 ** 2 + 1.0 ** 2) / 2, rel=1e-4)  # |3-1|, |2-1|


# --------------------------------------------------------------------------- modes
def test_modes_shapes_and_loss(small):
    torch.manual_seed(2)
    video = torch.randn(2, 1, 5, 32, 32)
    audio = torch.randn(2, 1, 80, 20)
    target = torch.tensor([3, 7])
    out = small(video)
    assert tuple(out.logits.shape) == (2, 10) and out.logits_av is None and out.add_loss is None
    assert tuple(out.key_address.shape) == (2, 5, 88)
    out = small(video, audio)
    assert tuple(out.logits_av.shape) == (2, 10)
    assert out.recon_loss.dim() == 0 and out.add_loss.dim() == 0
    losses = mmab_loss(out, target)
    assert set(losses) == {"total", "ce_memory", "ce_av", "add", "recon"}
    terms = ("ce_memory", "ce_av", "add", "recon")
    assert losses["total"].item() == pytest.approx(sum(losses[k].item() for k in terms))
    assert set(mmab_loss(small(video), target)) == {"total", "ce_memory"}
    av = small(video, audio, mode="audiovisual")
    assert torch.allclose(av.logits, out.logits_av)  # eval: no dropout, same tr_fusion
    assert tuple(small(video, mode="visual").logits.shape) == (2, 10)
    assert tuple(small(audio=audio, mode="audio").logits.shape) == (2, 10)
    assert torch.allclose(small.classify(video, audio), small(video).logits)  # test path: video only
    flipped = small.classify(video, flip=True)
    assert torch.allclose(flipped, small(video).logits + small(video.flip(-1)).logits, atol=1e-5)
    with pytest.raises(ValueError, match="4 frames per video frame"):
        small(video, torch.randn(2, 1, 80, 24))
    with pytest.raises(ValueError, match="needs audio"):
        small(video, mode="audiovisual")
    with pytest.raises(ValueError, match="mode"):
        small(video, mode="fusion")
    with pytest.raises(ValueError, match=r"\(B, 1, 80, 4T\)"):
        small(audio=torch.randn(2, 1, 40, 20), mode="audio")


def test_cpu_training_step_reaches_every_part():
    torch.manual_seed(3)
    model = MMAB(**fields(MMABConfig.named("cpu", n_classes=4, backend="mstcn"))).train()
    out = model(torch.randn(3, 1, 4, 32, 32), torch.randn(3, 1, 80, 16))
    mmab_loss(out, torch.tensor([0, 1, 2]))["total"].backward()
    for name, part in model.official_parts().items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), name


# --------------------------------------------------------------------------- official checkpoint
@pytest.fixture(scope="module", params=["gru", "mstcn"])
def official_file(request, tmp_path_factory):
    """An official checkpoint's layout with made-up weights (one dict of four state dicts)."""
    backend = request.param
    reference = official_meta(backend)
    checkpoint = {entry: made_up_weights(part, seed)
                  for seed, (entry, part) in enumerate(reference.official_parts().items())}
    name = {"gru": "GRU_Back_Ckpt.ckpt", "mstcn": "MSTCN_Back_Ckpt.ckpt"}[backend]
    path = tmp_path_factory.mktemp("mmab") / name
    torch.save(checkpoint, path)
    yield backend, path, checkpoint
    path.unlink()


def test_official_checkpoint_loads_strictly(official_file):
    backend, path, checkpoint = official_file
    assert path.name in OFFICIAL_NETWORKS["mmab"].files
    assert identify_checkpoint(path) == MMAB_NAME and identify_network(checkpoint) == "mmab"
    model, report = MMAB.from_official(path)
    assert model.cfg.backend == backend and model.cfg.n_slot == {"gru": 88, "mstcn": 168}[backend]
    assert not model.training and report.parts == list(MMAB_PARTS)
    assert report.n_tensors == sum(len(s) for s in checkpoint.values())
    for entry, part in model.official_parts().items():
        assert_loaded(part, checkpoint[entry])
    with torch.no_grad():
        logits = model.classify(torch.randn(1, 1, 2, 112, 112))
    assert tuple(logits.shape) == (1, 500)  # made-up weights: values may overflow
    # load_official takes it too, into a model that names its parts; extra entries are ignored.
    again = load_official(model, {**checkpoint, "optimizer": {"lr": 0.1}})
    assert again.ignored_entries == ["optimizer"] and again.parts == list(MMAB_PARTS)


def test_official_checkpoint_errors(official_file):
    backend, path, checkpoint = official_file
    slots = {"gru": 88, "mstcn": 168}[backend]
    other = meta(MMAB, backend="mstcn" if backend == "gru" else "gru", n_slot=slots)
    with pytest.raises(CheckpointMismatch, match="part back_state_dict"):
        load_official(other, path)
    with pytest.raises(CheckpointMismatch, match=r"(?s)part mem_state_dict.*expects \(40, 512\)"):
        load_official(meta(MMAB, backend=backend, n_slot=40), path)
    with pytest.raises(CheckpointMismatch, match="MMAB's LRW lip reader.*from_official"):
        load_official(meta(SyncNet), path)
    model = official_meta(backend)
    incomplete = {k: v for k, v in checkpoint.items() if k != "mem_state_dict"}
    with pytest.raises(CheckpointMismatch, match="lacks the entry mem_state_dict"):
        load_official_parts(model.official_parts(), incomplete)
    holed = dict(checkpoint)
    holed["a_front_state_dict"] = {k: v for k, v in checkpoint["a_front_state_dict"].items()
                                   if k != "Linear.weight"}
    torch.manual_seed(0)
    small = MMAB(**fields(MMABConfig.named("cpu")))
    before = small.v_front.frontend[0].weight.clone()
    with pytest.raises(CheckpointMismatch, match="part v_front_state_dict"):
        load_official(small, holed)  # official widths into the CPU size: shapes differ
    assert torch.equal(small.v_front.frontend[0].weight, before)  # nothing half-loaded
    with pytest.raises(CheckpointMismatch, match=r"(?s)a_front_state_dict\].*missing keys: Linear.weight"):
        load_official_parts(model.official_parts(), holed)


# --------------------------------------------------------------------------- the mel input
def tone_and_noise(n: int = LRW_SAMPLES) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n) / 16000
    wav = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    return (wav + 0.02 * rng.standard_normal(n)).astype(np.float32)


def direct_band(wav: np.ndarray, band: int) -> np.ndarray:
    """One band of MMAB's mel written out: reflect pad 200, periodic hann 400 every 160, power
    / sum(w^2), an HTK triangle, 10 log10, CMVN (unbiased), last frame dropped."""
    x = wav.astype(np.float64)
    n = np.arange(400)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / 400)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, 200, mode="reflect"), 400)[::160]
    power = np.abs(np.fft.rfft(frames * w, axis=1)) ** 2 / np.sum(w ** 2)  # (T, 201)
    mel = 2595 * np.log10(1 + np.array([0.0, 8000.0]) / 700)
    points = 700 * (10 ** (np.linspace(mel[0], mel[1], 82) / 2595) - 1)
    lo, centre, hi = points[band: band + 3]
    freqs = np.linspace(0, 8000, 201)
    tri = np.maximum(0, np.minimum((freqs - lo) / (centre - lo), (hi - freqs) / (hi - centre)))
    db = 10 * np.log10(np.maximum(power @ tri, 1e-10))
    z = (db - db.mean()) / (1e-10 + db.std(ddof=1))
    return z[:-1]


def test_mmab_mel_shape_cmvn_and_crop():
    wav = tone_and_noise()
    mel = mmab_mel(wav)
    assert mel.shape == (80, 116) and mel.dtype == np.float32
    full = mmab_mel(wav, n_frames=117)  # every frame of the centred STFT: CMVN is exact there
    assert np.allclose(full.mean(axis=1), 0, atol=1e-5)
    assert np.allclose(full.std(axis=1, ddof=1), 1, atol=1e-4)
    assert not np.allclose(full.std(axis=1, ddof=0), 1, atol=1e-3)  # unbiased, not population
    assert np.array_equal(mel, full[:, :116])  # the crop comes after CMVN
    # Without the dropped (reflect-padded edge) frame the statistics are only close to 0 / 1.
    # (the edge frame can be an outlier: 5 sigma in band 12 of this signal).
    std = mel.std(axis=1, ddof=1)
    assert np.allclose(mel.mean(axis=1), 0, atol=0.1) and 0.85 < std.min() and std.max() < 1.05
    padded = mmab_mel(wav, n_frames=120)
    assert np.array_equal(padded[:, :117], full) and not padded[:, 117:].any()
    assert mmab_mel(wav[:16000]).shape == (80, 100)
    int16 = np.round(wav * 32767).astype(np.int16)
    assert np.allclose(mmab_mel(int16), mmab_mel(int16.astype(np.float32) / 32768), atol=1e-5)
    with pytest.raises(ValueError, match="16000"):
        mmab_mel(wav, sr=22050)


@pytest.mark.parametrize("band", [5, 40, 79])
def test_mmab_mel_band_against_numpy(band):
    wav = tone_and_noise()
    assert np.allclose(mmab_mel(wav)[band], direct_band(wav, band), atol=1e-4)


def test_mmab_mel_against_torchaudio():
    torchaudio = pytest.importorskip("torchaudio")
    wav = tone_and_noise()
    chain = torch.nn.Sequential(
        torchaudio.transforms.Spectrogram(win_length=400, hop_length=160, power=2, normalized=True),
        torchaudio.transforms.MelScale(n_mels=80, sample_rate=16000),
        torchaudio.transforms.AmplitudeToDB())
    db = chain(torch.from_numpy(wav.astype(np.float64)).unsqueeze(0))[0]
    ref = ((db - db.mean(1, keepdim=True)) / (1e-10 + db.std(1, keepdim=True)))[:, :-1]
    assert np.allclose(mmab_mel(wav), ref.numpy(), atol=1e-4)
