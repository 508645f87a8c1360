"""Which class builds a network of each family: the one place a config becomes a network."""

from __future__ import annotations

from torch import nn

from seganypet.model.config import ModelConfig
from seganypet.model.network import SamMed3D
from seganypet.model.presets import default_config
from seganypet.model.prompt_unet import PromptUNet


def build_network(config: ModelConfig | str) -> nn.Module:
    """A fresh network (random weights) for a config or preset name, whatever its family.

    The one place that maps a :class:`ModelConfig` to a network class; ``load_model``, the
    trainer and ``bench`` all build through it.
    """
    if isinstance(config, str):
        config = default_config(config)
    if config.family == "prompt_unet":
        return PromptUNet(config)
    return SamMed3D(config)
