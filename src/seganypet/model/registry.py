"""Which class builds a network of each family: the one place a config becomes a network.

A family is a network class with a ``family`` name (``ModelConfig.family``) and the behaviour
callers need without asking which class they hold: ``embed``/``decode``,
``with_box_embeddings``, ``grown_to``, ``reference_order`` (:class:`~seganypet.model.network.
PromptInputs`). Its presets are plain data in :mod:`seganypet.model.presets`, read without
importing torch. A new family is its module, its presets, its name in
:data:`seganypet.model.config.FAMILIES` and its class in :data:`NETWORK_CLASSES`.
"""

from __future__ import annotations

from torch import nn

from seganypet.model.config import ModelConfig
from seganypet.model.network import SamMed3D
from seganypet.model.presets import default_config
from seganypet.model.prompt_unet import PromptUNet

NETWORK_CLASSES: dict[str, type[nn.Module]] = {cls.family: cls for cls in (SamMed3D, PromptUNet)}


def build_network(config: ModelConfig | str) -> nn.Module:
    """A fresh network (random weights) for a config or preset name, whatever its family.

    ``load_model``, the trainer and ``bench`` all build through it.
    """
    if isinstance(config, str):
        config = default_config(config)
    return NETWORK_CLASSES[config.family](config)  # ModelConfig has checked the family
