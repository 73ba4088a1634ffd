"""Networks of the book: official architectures by default, width options for CPU runs.

Every model stores its constructor arguments in ``model.config`` as
``{"name": <registry name>, "kwargs": {...}}`` (JSON-serialisable), and :func:`build_model`
recreates a model from such a dict: that is how :mod:`avlib.checkpoints` rebuilds saved models.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from torch import nn

from avlib.models.blocks import (
    Conv2dBlock,
    Conv3dBlock,
    ConvTranspose2dBlock,
    LeakyConv2dBlock,
    scale_channels,
)
from avlib.models.mmab import MMAB, MMABConfig, MMABOutput, mmab_loss
from avlib.models.syncnet import SyncNet, SyncNetConfig, contrastive_loss
from avlib.models.syncvsr import SyncVSR, SyncVSRConfig, audio_token_loss
from avlib.models.vcagan import (
    VCAGAN,
    VCAGANConfig,
    VCAGANCritics,
    VCAGANDiscriminator,
    VCAGANOutput,
    load_vcagan_official,
)
from avlib.models.wav2lip import (
    Wav2Lip,
    Wav2LipConfig,
    Wav2LipDisc,
    Wav2LipDiscConfig,
    Wav2LipExpert,
    Wav2LipExpertConfig,
    expert_loss,
)
from avlib.models.vocalist import (
    CrossModalEncoder,
    SinusoidalPositions,
    VocaLiST,
    VocaLiSTConfig,
    future_mask,
    mtd_vocalist,
    sinusoidal_table,
)

ModelFactory = Callable[..., nn.Module]

#: The Wav2Lip expert's name before avlib 0.2; still reads checkpoints saved under it.
SyncNetColor = Wav2LipExpert

MODEL_REGISTRY: dict[str, ModelFactory] = {
    SyncNet.registry_name: SyncNet,
    Wav2LipExpert.registry_name: Wav2LipExpert,
    "syncnet_color": Wav2LipExpert,  # checkpoints saved before avlib 0.2
    VocaLiST.registry_name: VocaLiST,
    Wav2Lip.registry_name: Wav2Lip,
    Wav2LipDisc.registry_name: Wav2LipDisc,
    SyncVSR.registry_name: SyncVSR,
    MMAB.registry_name: MMAB,
    VCAGAN.registry_name: VCAGAN,
    VCAGANCritics.registry_name: VCAGANCritics,
    VCAGANDiscriminator.registry_name: VCAGANDiscriminator,
}


def register_model(name: str, factory: ModelFactory) -> None:
    """Make ``factory(**kwargs)`` buildable by :func:`build_model` under ``name``."""
    existing = MODEL_REGISTRY.get(name)
    if existing is not None and existing is not factory:
        raise ValueError(f"model name {name!r} is already registered to {existing!r}")
    MODEL_REGISTRY[name] = factory


def build_model(config: Mapping) -> nn.Module:
    """Recreate a model from ``{"name": str, "kwargs": dict}`` (e.g. a saved ``model.config``)."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise ValueError(
            f"a model config is a dict with keys 'name' and 'kwargs', got {config!r}"
        )
    name = config["name"]
    if name not in MODEL_REGISTRY:
        raise ValueError(
            f"unknown model name {name!r}; known: {sorted(MODEL_REGISTRY)} "
            "(register new ones with avlib.models.register_model)"
        )
    kwargs = config.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"config['kwargs'] must be a dict, got {type(kwargs).__name__}")
    return MODEL_REGISTRY[name](**kwargs)


def from_config(config) -> nn.Module:
    """The network a config dataclass describes (``SyncNetConfig`` -> ``SyncNet``, ...)."""
    for factory in MODEL_REGISTRY.values():
        if getattr(factory, "config_class", None) is type(config):
            return factory(**dataclasses.asdict(config))
    raise ValueError(f"no registered network takes a {type(config).__name__}")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MODEL_REGISTRY",
    "Conv2dBlock",
    "Conv3dBlock",
    "ConvTranspose2dBlock",
    "CrossModalEncoder",
    "LeakyConv2dBlock",
    "MMAB",
    "MMABConfig",
    "MMABOutput",
    "SinusoidalPositions",
    "SyncNet",
    "SyncNetColor",
    "SyncNetConfig",
    "SyncVSR",
    "SyncVSRConfig",
    "VCAGAN",
    "VCAGANConfig",
    "VCAGANCritics",
    "VCAGANDiscriminator",
    "VCAGANOutput",
    "VocaLiST",
    "VocaLiSTConfig",
    "Wav2Lip",
    "Wav2LipConfig",
    "Wav2LipDisc",
    "Wav2LipDiscConfig",
    "Wav2LipExpert",
    "Wav2LipExpertConfig",
    "audio_token_loss",
    "build_model",
    "contrastive_loss",
    "from_config",
    "count_parameters",
    "expert_loss",
    "future_mask",
    "load_vcagan_official",
    "mmab_loss",
    "mtd_vocalist",
    "register_model",
    "scale_channels",
    "sinusoidal_table",
]
