"""Networks of the book: official architectures by default, width options for CPU runs.

Every model stores its constructor arguments in ``model.config`` as
``{"name": <registry name>, "kwargs": {...}}`` (JSON-serialisable), and :func:`build_model`
recreates a model from such a dict: that is how :mod:`avlib.checkpoints` rebuilds saved models.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from avlib.models.blocks import Conv2dBlock, Conv3dBlock, scale_channels
from avlib.models.wav2lip import SyncNetColor, expert_loss
from avlib.models.syncnet import SyncNet
from avlib.models.vocalist import (
    CrossModalEncoder,
    SinusoidalPositions,
    VocaLiST,
    future_mask,
    mtd_vocalist,
    sinusoidal_table,
)

ModelFactory = Callable[..., nn.Module]

MODEL_REGISTRY: dict[str, ModelFactory] = {
    SyncNet.registry_name: SyncNet,
    SyncNetColor.registry_name: SyncNetColor,
    VocaLiST.registry_name: VocaLiST,
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


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MODEL_REGISTRY",
    "Conv2dBlock",
    "Conv3dBlock",
    "CrossModalEncoder",
    "SinusoidalPositions",
    "SyncNet",
    "SyncNetColor",
    "VocaLiST",
    "build_model",
    "count_parameters",
    "expert_loss",
    "future_mask",
    "mtd_vocalist",
    "register_model",
    "scale_channels",
    "sinusoidal_table",
]
