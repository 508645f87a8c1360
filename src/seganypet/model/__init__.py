"""The SegAnyPET / SAM-Med3D network: presets, the promptable interface and checkpoints.

- :class:`PromptableNetwork`: the two calls (``embed``, ``decode``) the interactive session uses
  for every model family; :class:`ModelConfig`: crop size, spacing, normalisation and more.
- :class:`SamMed3D`: the network (presets ``vit_b_ori`` for the released weights, ``small``);
  :class:`PromptUNet`: the ``prompt_unet`` family (preset ``unet_small``);
  :func:`build_network`: a fresh network of any family from a config or preset name.
- :func:`load_model`, :func:`save_model`, :func:`convert_checkpoint`: checkpoints, read safely.
"""

from seganypet.lazy import lazy_exports

_EXPORTS = {
    "BOX_OUTSIDE_LOGIT": "seganypet.model.boxes",
    "box_mask": "seganypet.model.boxes",
    "convert_checkpoint": "seganypet.model.checkpoint",
    "describe": "seganypet.model.checkpoint",
    "load_model": "seganypet.model.checkpoint",
    "load_small_object_model": "seganypet.model.checkpoint",
    "read_config": "seganypet.model.checkpoint",
    "save_model": "seganypet.model.checkpoint",
    "NORMALISATIONS": "seganypet.model.config",
    "ModelConfig": "seganypet.model.config",
    "normalise_crop": "seganypet.model.config",
    "PromptableNetwork": "seganypet.model.network",
    "SamMed3D": "seganypet.model.network",
    "PRESETS": "seganypet.model.presets",
    "UNET_PRESETS": "seganypet.model.presets",
    "ArchSpec": "seganypet.model.presets",
    "UNetSpec": "seganypet.model.presets",
    "default_config": "seganypet.model.presets",
    "PromptUNet": "seganypet.model.prompt_unet",
    "build_network": "seganypet.model.registry",
    "configure_threads": "seganypet.model.runtime",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
