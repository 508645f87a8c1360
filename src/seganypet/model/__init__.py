"""The SegAnyPET / SAM-Med3D network: presets, the promptable interface and checkpoints.

- :class:`PromptableNetwork`: the two calls (``embed``, ``decode``) the interactive session uses
  for every model family; :class:`ModelConfig`: crop size, spacing, normalisation and more.
- :class:`SamMed3D`: the network (presets ``vit_b_ori`` for the released weights, ``small``);
  :class:`PromptUNet`: the ``prompt_unet`` family (preset ``unet_small``);
  :func:`build_network`: a fresh network of any family from a config or preset name.
- :func:`load_model`, :func:`save_model`, :func:`convert_checkpoint`: checkpoints, read safely.
"""

from seganypet.model.boxes import BOX_OUTSIDE_LOGIT, box_mask
from seganypet.model.checkpoint import (
    convert_checkpoint,
    describe,
    load_model,
    load_small_object_model,
    read_config,
    save_model,
)
from seganypet.model.config import NORMALISATIONS, ModelConfig, normalise_crop
from seganypet.model.network import PromptableNetwork, SamMed3D
from seganypet.model.presets import PRESETS, UNET_PRESETS, ArchSpec, UNetSpec, default_config
from seganypet.model.prompt_unet import PromptUNet
from seganypet.model.registry import build_network
from seganypet.model.runtime import configure_threads

__all__ = [
    "BOX_OUTSIDE_LOGIT",
    "NORMALISATIONS",
    "PRESETS",
    "ArchSpec",
    "ModelConfig",
    "UNET_PRESETS",
    "PromptUNet",
    "PromptableNetwork",
    "SamMed3D",
    "UNetSpec",
    "build_network",
    "box_mask",
    "configure_threads",
    "convert_checkpoint",
    "default_config",
    "describe",
    "load_model",
    "load_small_object_model",
    "normalise_crop",
    "read_config",
    "save_model",
]
