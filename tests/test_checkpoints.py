"""Official checkpoint formats (made-up weights) and our safetensors + JSON checkpoints."""
from __future__ import annotations

import json
import pathlib

import pytest
import torch

from avlib.checkpoints import (
    CheckpointMismatch,
    UnsafeCheckpointError,
    load_checkpoint,
    load_official,
    read_checkpoint_info,
    save_checkpoint,
)
from avlib.models import SyncNet, SyncNetColor, VocaLiST, build_model, register_model


def made_up_weights(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict with the model's keys and shapes but fresh random values."""
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


def assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


@pytest.fixture(scope="module")
def syncnet():
    return SyncNet()


@pytest.fixture(scope="module")
def expert():
    return SyncNetColor()


@pytest.fixture(scope="module")
def vocalist():
    return VocaLiST()


# --------------------------------------------------------------------------- official formats
def test_syncnet_v2_bare_state_dict_without_bn_counters(syncnet, tmp_path):
    state = {k: v for k, v in made_up_weights(syncnet, 1).items() if "num_batches_tracked" not in k}
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    report = load_official(syncnet, path)
    assert len(report.filled_buffers) == 14
    assert "netcnnaud.1.num_batches_tracked" in report.filled_buffers
    assert report.unwrapped == [] and report.stripped_prefix == 0
    assert report.n_tensors == 102
    assert_loaded(syncnet, state)
    assert syncnet.state_dict()["netfclip.1.num_batches_tracked"].item() == 0
    assert "filled 14" in str(report)


def test_lipsync_expert_wrapped_with_module_prefix(expert, tmp_path):
    state = made_up_weights(expert, 2)
    path = tmp_path / "lipsync_expert.pth"
    torch.save(
        {
            "state_dict": {"module." + k: v for k, v in state.items()},
            "optimizer": {
                "state": {0: {"step": torch.tensor(3.0)}},
                "param_groups": [{"lr": 1e-4}],
            },
            "global_step": 250_000,
            "global_epoch": 17,
        },
        path,
    )
    report = load_official(expert, path)
    assert report.unwrapped == ["state_dict"]
    assert report.stripped_prefix == 217
    assert sorted(report.ignored_entries) == ["global_epoch", "global_step", "optimizer"]
    assert report.filled_buffers == []
    assert_loaded(expert, state)


def test_vocalist_checkpoint_with_buffers(vocalist, tmp_path):
    state = made_up_weights(vocalist, 3)
    for unit in ("av", "va", "mem"):
        state[f"{unit}_transformer.version"] = torch.tensor([2.0])
    path = tmp_path / "vocalist_5f_lrs2.pth"
    torch.save({"state_dict": state, "optimizer": {}, "global_step": 1, "global_epoch": 1}, path)
    report = load_official(vocalist, path)
    assert report.n_tensors == 377 and report.filled_buffers == []
    assert_loaded(vocalist, state)

    # Without the two encoder buffers a strict load must fail and say which keys are missing.
    no_buffers = {k: v for k, v in state.items() if not k.endswith(("version", "_float_tensor"))}
    with pytest.raises(CheckpointMismatch, match=r"6 missing keys: .*av_transformer\.version"):
        load_official(vocalist, {"state_dict": no_buffers})


def test_wrong_shape_names_key_and_shapes(expert):
    state = made_up_weights(expert, 4)
    state["face_encoder.0.conv_block.0.weight"] = torch.zeros(32, 15, 5, 5)
    with pytest.raises(CheckpointMismatch) as info:
        load_official(expert, state)
    message = str(info.value)
    assert "face_encoder.0.conv_block.0.weight" in message
    assert "(32, 15, 7, 7)" in message and "(32, 15, 5, 5)" in message
    # Shapes are never negotiable, even when strict=False.
    with pytest.raises(CheckpointMismatch, match="shape"):
        load_official(expert, state, strict=False)


def test_unexpected_keys_strict_and_relaxed():
    model = SyncNetColor(width=0.125)
    state = made_up_weights(model, 5)
    state["face_encoder.17.conv_block.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch, match=r"1 unexpected keys: face_encoder\.17"):
        load_official(model, state)
    del state["audio_encoder.13.conv_block.0.bias"]
    report = load_official(model, state, strict=False)
    assert report.unexpected == ["face_encoder.17.conv_block.0.weight"]
    assert report.missing == ["audio_encoder.13.conv_block.0.bias"]
    assert "unexpected (ignored)" in str(report)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "path": pathlib.PurePosixPath("/etc")}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused") as info:
        load_official(SyncNetColor(width=0.125), path)
    assert "PurePosixPath" in str(info.value)


def test_non_state_dict_contents_and_missing_file(tmp_path):
    model = SyncNetColor(width=0.125)
    with pytest.raises(CheckpointMismatch, match="not tensors: face_encoder"):
        load_official(model, {"state_dict": {"face_encoder.0.conv_block.0.weight": 1.0}})
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointMismatch, match="holds a list"):
        load_official(model, path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_official(model, tmp_path / "absent.pth")


# --------------------------------------------------------------------------- own checkpoints
def test_safetensors_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(8)
    model = VocaLiST(d_model=16, n_layers=1, n_heads=4, prenet_widths=(4, 4, 8, 8, 16))
    model.load_state_dict(made_up_weights(model, 6))
    tensors_path, json_path = save_checkpoint(
        tmp_path / "runs" / "tiny", model, model.config, extra={"step": 12, "loss": 0.25}
    )
    written = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert written == ["tiny.json", "tiny.safetensors"]  # no temporary files left behind
    document = json.loads(json_path.read_text())
    assert document["config"]["kwargs"]["prenet_widths"] == [4, 4, 8, 8, 16]
    assert document["extra"] == {"step": 12, "loss": 0.25}
    assert len(document["sha256"]) == 64

    for path, factory in [
        (tmp_path / "runs" / "tiny", None),
        (tensors_path, VocaLiST),
        (json_path, lambda config: build_model(config)),
    ]:
        loaded, config = load_checkpoint(path, factory)
        assert config == model.config
        assert not loaded.training
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
            assert loaded.state_dict()[key].dtype == value.dtype
    assert read_checkpoint_info(tensors_path)["extra"]["step"] == 12


def test_tampered_or_mismatched_checkpoints_fail(tmp_path):
    model = SyncNetColor(width=0.125)
    tensors_path, json_path = save_checkpoint(tmp_path / "expert", model, model.config)
    data = bytearray(tensors_path.read_bytes())
    data[-1] ^= 0xFF
    tensors_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointMismatch, match="SHA-256"):
        load_checkpoint(tmp_path / "expert")

    wrong_config = {"name": "syncnet_color", "kwargs": {"width": 0.25}}
    save_checkpoint(tmp_path / "expert", model, wrong_config)
    with pytest.raises(CheckpointMismatch, match="shape mismatches"):
        load_checkpoint(tmp_path / "expert")
    with pytest.raises(FileNotFoundError, match="did not complete"):
        load_checkpoint(tmp_path / "never_saved")
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "bad", model, model.config, extra={"tensor": torch.zeros(1)})
    assert not list(tmp_path.glob("bad*")) and not list(tmp_path.glob(".*tmp"))


def test_registry_builds_every_model_from_its_config():
    for model in (SyncNet(width=0.125, img_size=96), SyncNetColor(width=0.125),
                  VocaLiST(d_model=16, n_layers=1, n_heads=2, prenet_widths=(4, 4, 8, 8, 16))):
        config = json.loads(json.dumps(model.config))  # what a JSON file gives back
        rebuilt = build_model(config)
        assert type(rebuilt) is type(model)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()
        }
    with pytest.raises(ValueError, match="unknown model name 'wav3lip'"):
        build_model({"name": "wav3lip", "kwargs": {}})
    with pytest.raises(ValueError, match="already registered"):
        register_model("syncnet", SyncNetColor)


def test_garbage_files_give_a_clear_error(tmp_path):
    from avlib.checkpoints import CorruptCheckpointError, read_official

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint " * 20)
    for path in (empty, junk):
        with pytest.raises(CorruptCheckpointError, match="not a readable PyTorch checkpoint"):
            read_official(path)
