"""Wav2Lip generator and visual-quality discriminator (spec §2.4, §2.5), their official
checkpoint formats (made-up weights) and the recognition of official networks' files."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avlib.checkpoints import (
    OFFICIAL_NETWORKS,
    CheckpointMismatch,
    identify_checkpoint,
    identify_network,
    identify_state_dict,
    load_official,
)
from avlib.models import (
    ConvTranspose2dBlock,
    SyncNet,
    VocaLiST,
    Wav2Lip,
    Wav2LipConfig,
    Wav2LipDisc,
    Wav2LipDiscConfig,
    Wav2LipExpert,
    build_model,
    count_parameters,
    from_config,
    mtd_vocalist,
)

CPU = 0.125  # width of the light variants


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generator():
    return Wav2Lip()


@pytest.fixture(scope="module")
def disc():
    return Wav2LipDisc()


@pytest.fixture(scope="module")
def small_generator():
    torch.manual_seed(0)
    return Wav2Lip(width=CPU).eval()


@pytest.fixture(scope="module")
def small_disc():
    torch.manual_seed(1)
    return Wav2LipDisc(width=CPU).eval()


def made_up_weights(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's keys and shapes with fresh random values."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, ref in model.state_dict().items():
        if ref.dtype == torch.int64:
            state[key] = torch.randint(0, 1000, ref.shape, generator=generator)
        elif key.endswith("running_var"):
            state[key] = torch.rand(ref.shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(ref.shape, generator=generator)
    return state


def official_file(path, state: dict[str, torch.Tensor]):
    """Write ``state`` the way the official training scripts do (DataParallel prefixes)."""
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "optimizer": {},
                "global_step": 3, "global_epoch": 1}, path)
    return path


def meta(factory, **kwargs) -> torch.nn.Module:
    """A network without memory: enough for keys and shapes."""
    with torch.device("meta"):
        return factory(**kwargs)


# --------------------------------------------------------------------------- sizes and names
def test_generator_official_size_and_names(generator):
    state = generator.state_dict()
    assert count_parameters(generator) == 36_298_035
    assert len(state) == 352
    prefixes = {".".join(k.split(".")[:2]) for k in state}
    assert {p for p in prefixes if p.startswith("face_encoder_blocks")} == {
        f"face_encoder_blocks.{i}" for i in range(7)}
    assert {p for p in prefixes if p.startswith("audio_encoder")} == {
        f"audio_encoder.{i}" for i in range(13)}
    assert {p for p in prefixes if p.startswith("face_decoder_blocks")} == {
        f"face_decoder_blocks.{i}" for i in range(7)}
    assert {p for p in prefixes if p.startswith("output_block")} == {
        "output_block.0", "output_block.1"}
    assert all(p.split(".")[0] in {"face_encoder_blocks", "audio_encoder",
                                   "face_decoder_blocks", "output_block"} for p in prefixes)
    shapes = {
        "face_encoder_blocks.0.0.conv_block.0.weight": (16, 6, 7, 7),
        "face_encoder_blocks.6.1.conv_block.1.running_var": (512,),
        "audio_encoder.12.conv_block.0.weight": (512, 512, 1, 1),
        "audio_encoder.11.conv_block.0.weight": (512, 256, 3, 3),
        "face_decoder_blocks.0.0.conv_block.0.weight": (512, 512, 1, 1),
        "face_decoder_blocks.1.0.conv_block.0.weight": (1024, 512, 3, 3),  # ConvT: (in, out)
        "face_decoder_blocks.3.0.conv_block.0.weight": (768, 384, 3, 3),
        "face_decoder_blocks.6.0.conv_block.0.weight": (160, 64, 3, 3),
        "face_decoder_blocks.6.2.conv_block.1.num_batches_tracked": (),
        "output_block.0.conv_block.0.weight": (32, 80, 3, 3),
        "output_block.1.weight": (3, 32, 1, 1),
        "output_block.1.bias": (3,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert isinstance(generator.face_decoder_blocks[2][0], ConvTranspose2dBlock)


def test_disc_official_size_and_names(disc):
    state = disc.state_dict()
    assert count_parameters(disc) == 14_113_793
    assert len(state) == 28
    assert all(k.startswith("binary_pred.0.") or
               (k.startswith("face_encoder_blocks.") and ".conv_block.0." in k) for k in state)
    assert tuple(state["face_encoder_blocks.0.0.conv_block.0.weight"].shape) == (32, 3, 7, 7)
    assert tuple(state["face_encoder_blocks.1.0.conv_block.0.weight"].shape) == (64, 32, 5, 5)
    assert tuple(state["face_encoder_blocks.6.1.conv_block.0.weight"].shape) == (512, 512, 1, 1)
    assert tuple(state["binary_pred.0.weight"].shape) == (1, 512, 1, 1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules())
    slopes = {m.negative_slope for m in disc.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}


def test_configs_and_registry():
    assert Wav2LipConfig.official() == Wav2LipConfig() == Wav2LipConfig.named("official")
    assert Wav2LipDiscConfig.named("cpu").width == CPU
    small = from_config(Wav2LipConfig.named("cpu"))
    assert isinstance(small, Wav2Lip) and small.config == {"name": "wav2lip",
                                                           "kwargs": {"width": CPU}}
    assert isinstance(from_config(Wav2LipDiscConfig(width=CPU)), Wav2LipDisc)
    for model in (small, Wav2LipDisc(width=CPU)):
        rebuilt = build_model(model.config)
        assert type(rebuilt) is type(model)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="named sizes"):
        Wav2LipConfig.named("huge")
    with pytest.raises(ValueError, match="width"):
        Wav2LipDisc(width=0)


# --------------------------------------------------------------------------- forward passes
def test_generator_official_single_frame(generator):
    generator.eval()
    with torch.no_grad():
        out = generator(torch.randn(1, 1, 80, 16), torch.rand(1, 6, 96, 96))
    assert out.shape == (1, 3, 96, 96)
    assert 0 <= out.min() and out.max() <= 1


def test_generator_window_is_time_major_fold(small_generator):
    torch.manual_seed(2)
    batch, steps = 2, 3
    audio = torch.randn(batch, steps, 1, 80, 16)
    face = torch.rand(batch, 6, steps, 96, 96)
    with torch.no_grad():
        window = small_generator(audio, face)
        assert window.shape == (batch, 3, steps, 96, 96)
        for t in range(steps):
            frame = small_generator(audio[:, t], face[:, :, t])
            assert frame.shape == (batch, 3, 96, 96)
            torch.testing.assert_close(window[:, :, t], frame, rtol=1e-5, atol=1e-6)
    assert 0 <= window.min() and window.max() <= 1


def test_generator_rejects_wrong_shapes(small_generator):
    audio, face = torch.zeros(2, 1, 80, 16), torch.zeros(2, 6, 96, 96)
    with pytest.raises(ValueError, match="audio comes first"):
        small_generator(face, audio[:, None])  # 4-D face with 5-D audio
    with pytest.raises(ValueError, match="mel windows"):
        small_generator(face, face)  # face given first
    with pytest.raises(ValueError, match="6 channels"):
        small_generator(audio, face[:, :3])
    with pytest.raises(ValueError, match="batch"):
        small_generator(audio[:1], face)
    with pytest.raises(ValueError, match="frames"):
        small_generator(torch.zeros(2, 3, 1, 80, 16), torch.zeros(2, 6, 4, 96, 96))


def test_disc_time_major_and_lower_half(small_disc):
    torch.manual_seed(3)
    batch, steps = 2, 3
    clips = torch.rand(batch, 3, steps, 96, 96)
    with torch.no_grad():
        out = small_disc(clips)
        assert out.shape == (batch * steps, 1)
        for t in range(steps):
            for b in range(batch):
                single = small_disc(clips[b:b + 1, :, t])
                torch.testing.assert_close(out[t * batch + b], single[0], rtol=1e-5,
                                           atol=1e-6)
        # Only rows 48-95 are read.
        changed = clips.clone()
        changed[..., :48, :] = torch.rand_like(changed[..., :48, :])
        torch.testing.assert_close(small_disc(changed), out)
    assert ((out > 0) & (out < 1)).all()
    with pytest.raises(ValueError, match=r"\(B, 3, T, 96, 96\)"):
        small_disc(torch.rand(2, 6, 96, 96))


def test_perceptual_forward_on_cpu(small_disc):
    fake = torch.rand(2, 3, 2, 96, 96, requires_grad=True)
    loss = small_disc.perceptual_forward(fake)
    assert loss.ndim == 0 and loss.device.type == "cpu"
    with torch.no_grad():
        expected = -torch.log(small_disc(fake)).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    torch.testing.assert_close(
        small_disc.perceptual_forward(fake.detach()),
        F.binary_cross_entropy(small_disc(fake.detach()), torch.ones(4, 1)))


# --------------------------------------------------------------------------- official files
def test_generator_and_disc_files_load_strictly(generator, disc, tmp_path):
    for model, name, seed in ((generator, "wav2lip_gan.pth", 4),
                              (disc, "disc_checkpoint_step000003000.pth", 5)):
        state = made_up_weights(model, seed)
        path = official_file(tmp_path / name, state)
        report = load_official(model, path)
        assert report.unwrapped == ["state_dict"]
        assert report.stripped_prefix == len(state) == report.n_tensors
        assert sorted(report.ignored_entries) == ["global_epoch", "global_step", "optimizer"]
        loaded = model.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
        path.unlink()
    # A bare state dict (no wrapper, no prefixes) loads as well.
    small = Wav2Lip(width=CPU)
    state = made_up_weights(small, 6)
    assert load_official(small, state).n_tensors == 352


def test_identify_each_network(tmp_path):
    names = {net.key: net.name for net in OFFICIAL_NETWORKS.values()}
    cases = {
        "syncnet": meta(SyncNet),
        "wav2lip_expert": meta(Wav2LipExpert),
        "wav2lip": meta(Wav2Lip),
        "wav2lip_disc": meta(Wav2LipDisc),
        "vocalist": meta(VocaLiST),
        "mtd_vocalist": meta(mtd_vocalist),
    }
    for key, model in cases.items():
        state = model.state_dict()
        assert identify_network(state) == key
        assert identify_state_dict(state) == names[key]
        wrapped = {"state_dict": {"module." + k: v for k, v in state.items()}, "global_step": 1}
        assert identify_network(wrapped) == key
    # syncnet_v2.model probably lacks the BatchNorm counters; narrow variants keep their names.
    bare = {k: v for k, v in cases["syncnet"].state_dict().items()
            if not k.endswith("num_batches_tracked")}
    assert identify_network(bare) == "syncnet"
    assert identify_network(Wav2Lip(width=CPU).state_dict()) == "wav2lip"
    assert identify_network(Wav2LipDisc(width=CPU).state_dict()) == "wav2lip_disc"
    s3fd = {"conv1_1.weight": torch.zeros(64, 3, 3, 3), "conv1_1.bias": torch.zeros(64),
            "conv3_3_norm.weight": torch.zeros(256), "conf3_3.weight": torch.zeros(4, 256, 3, 3),
            "loc3_3.weight": torch.zeros(4, 256, 3, 3)}
    assert identify_state_dict(s3fd) == "the S3FD face detector's weights"
    assert identify_state_dict({"foo.weight": torch.zeros(2)}) is None
    assert identify_state_dict({"optimizer": {}}) is None
    path = official_file(tmp_path / "disc.pth", Wav2LipDisc(width=CPU).state_dict())
    assert identify_checkpoint(path) == "the visual-quality discriminator (Wav2Lip_disc_qual)"


def test_wrong_files_are_named(tmp_path):
    expert_file = official_file(tmp_path / "lipsync_expert.pth",
                                Wav2LipExpert(width=CPU).state_dict())
    with pytest.raises(CheckpointMismatch) as info:
        load_official(Wav2Lip(width=CPU), expert_file)
    message = str(info.value)
    assert "this is the lip-sync expert (SyncNet_color), not the Wav2Lip generator" in message
    assert "avlib.models.Wav2LipExpert" in message

    disc_file = official_file(tmp_path / "disc.pth", Wav2LipDisc(width=CPU).state_dict())
    with pytest.raises(CheckpointMismatch, match=(
            r"this is the visual-quality discriminator \(Wav2Lip_disc_qual\), not the lip-sync "
            r"expert \(SyncNet_color\)")):
        load_official(Wav2LipExpert(width=CPU), disc_file)

    s3fd = {"conv1_1.weight": torch.zeros(64, 3, 3, 3), "conv3_3_norm.weight": torch.zeros(256),
            "conf3_3.weight": torch.zeros(4, 256, 3, 3), "loc3_3.weight": torch.zeros(4, 256, 3, 3)}
    with pytest.raises(CheckpointMismatch, match=(
            r"this is the S3FD face detector's weights, not the lip-sync expert")):
        load_official(Wav2LipExpert(width=CPU), s3fd)

    # The same network at another width keeps the plain shape message.
    with pytest.raises(CheckpointMismatch) as info:
        load_official(Wav2LipDisc(width=0.25), disc_file)
    assert "this is" not in str(info.value) and "shape mismatches" in str(info.value)
