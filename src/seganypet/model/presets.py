"""Named architectures of the SAM-Med3D family and their default configs.

``vit_b_ori`` is the layout of the released SAM-Med3D-turbo and SegAnyPET checkpoints: a 3D ViT-B
on 128³ crops (patch 16, so an 8³ token grid), windowed attention with window 14 except in the
global blocks 2, 5, 8, 11, a neck to 384 channels, and a 384-wide prompt encoder and mask decoder
giving 32³ low-resolution logits.

``small`` is built from the same modules for training and running on a CPU: 64³ crops at 3 mm
(the same 192 mm field of view as ``vit_b_ori``), patch 8 (again an 8³ grid), 256 wide, 4
blocks, window 4 (no padding) with blocks 1 and 3 global, and a 192-wide decoder.

The ``prompt_unet`` family (:mod:`seganypet.model.prompt_unet`) has its own presets in
:data:`UNET_PRESETS`: ``unet_small`` is a residual 3D U-Net on 64³ crops at 3 mm whose 32³
features are decoded per click by a light prompt U-Net. :func:`default_config` and
:func:`preset_family` know both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

from seganypet.errors import InputError
from seganypet.model.config import ModelConfig


@dataclass(frozen=True)
class ArchSpec:
    """Hyper-parameters of one SAM-Med3D-style network."""

    img_size: int
    patch_size: int
    encoder_dim: int
    encoder_depth: int
    encoder_heads: int
    window_size: int
    global_attn_indexes: tuple[int, ...]
    prompt_dim: int
    mlp_ratio: float = 4.0
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    spacing_mm: float = 1.5

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        # The mask decoder upsamples the embedding grid 4x.
        return self.grid_size * 4


PRESETS: dict[str, ArchSpec] = {
    "vit_b_ori": ArchSpec(
        img_size=128,
        patch_size=16,
        encoder_dim=768,
        encoder_depth=12,
        encoder_heads=12,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        prompt_dim=384,
        spacing_mm=1.5,
    ),
    "small": ArchSpec(
        img_size=64,
        patch_size=8,
        encoder_dim=256,
        encoder_depth=4,
        encoder_heads=8,
        window_size=4,
        global_attn_indexes=(1, 3),
        prompt_dim=192,
        decoder_mlp_dim=1024,
        iou_head_hidden_dim=128,
        spacing_mm=3.0,
    ),
}


@dataclass(frozen=True)
class UNetSpec:
    """Hyper-parameters of one ``prompt_unet`` network (see :mod:`seganypet.model.prompt_unet`).

    ``encoder_channels``: widths of the image U-Net at input/2, /4, /8 and /16 (the first is
    the width of the low-resolution features the decoder reads); ``stem_channels``: width of
    the one convolution at full input resolution. ``head_channels``: widths of the per-click
    prompt U-Net at low_res, /2 and /4. ``click_sigma``: the click Gaussians' standard
    deviation in low-resolution voxels. ``relative_uptake``: the prompt head also reads the
    crop's SUV relative to the SUVmax within ``relative_radius_mm`` of the first positive
    click, what the 41 %-of-SUVmax rule knows (:mod:`seganypet.model.prompt_unet`).
    ``stroke_channels``: the clicks along a scribble (point labels 3 and 2) get positive and
    negative maps of their own instead of joining the click maps.
    """

    img_size: int = 64
    low_res: int = 32
    spacing_mm: float = 3.0
    stem_channels: int = 16
    encoder_channels: tuple[int, ...] = (24, 32, 64, 128)
    head_channels: tuple[int, int, int] = (12, 24, 48)
    iou_hidden: int = 32
    click_sigma: float = 1.5
    normalisation: str = "suv_log"
    relative_uptake: bool = False
    relative_radius_mm: float = 15.0
    stroke_channels: bool = False


UNET_PRESETS: dict[str, UNetSpec] = {
    "unet_small": UNetSpec(),
    "unet_small_rel": UNetSpec(relative_uptake=True),
    # Scribbles in channels of their own (clicks along the line, positive and negative), so that
    # learning them leaves what a click means alone.
    "unet_small_strokes": UNetSpec(relative_uptake=True, stroke_channels=True),
    # The small-object companion: the same network on 64³ crops at 1.5 mm (9.6 cm a side), which
    # the session hands objects of a few millilitres (Session(small_object_network=...)).
    "unet_fine": UNetSpec(spacing_mm=1.5),
    # The GPU recipe's network (configs/gpu_large.yaml): twice the widths, the same crops, so a
    # laptop CPU still runs it interactively.
    "unet_medium_rel": UNetSpec(
        stem_channels=24,
        encoder_channels=(32, 64, 128, 192),
        head_channels=(16, 32, 64),
        iou_hidden=48,
        relative_uptake=True,
    ),
}

#: Presets that start from another's weights: with added input channels (zero weights, the same
#: function) or at another spacing (the same weights, as the session's zoom uses them).
GROWN_FROM: dict[str, str] = {
    "unet_small_rel": "unet_small",
    "unet_small_strokes": "unet_small_rel",
    "unet_fine": "unet_small",
}


def preset_names() -> list[str]:
    """Every preset name, of every family."""
    return sorted({*PRESETS, *UNET_PRESETS})


def preset_family(preset: str) -> str:
    """``sam_med3d`` or ``prompt_unet``; raises for an unknown preset."""
    if preset in PRESETS:
        return "sam_med3d"
    if preset in UNET_PRESETS:
        return "prompt_unet"
    raise InputError(f"unknown model preset {preset!r}; known presets: {', '.join(preset_names())}")


def get_arch(preset: str) -> ArchSpec:
    try:
        return PRESETS[preset]
    except KeyError:
        raise InputError(
            f"unknown model preset {preset!r}; known SAM-Med3D presets: {', '.join(sorted(PRESETS))}"
        ) from None


def get_unet_arch(preset: str) -> UNetSpec:
    try:
        return UNET_PRESETS[preset]
    except KeyError:
        raise InputError(
            f"unknown prompt_unet preset {preset!r}; known: {', '.join(sorted(UNET_PRESETS))}"
        ) from None


def default_config(preset: str = "vit_b_ori", **changes) -> ModelConfig:
    """The config a freshly built ``preset`` network gets (released-weight conventions)."""
    if preset_family(preset) == "prompt_unet":
        spec = get_unet_arch(preset)
        config = ModelConfig(
            preset=preset,
            family="prompt_unet",
            input_size=(spec.img_size,) * 3,
            spacing_mm=(spec.spacing_mm,) * 3,
            normalisation=spec.normalisation,
            low_res_size=(spec.low_res,) * 3,
            has_box_embeddings=True,
        )
        return config.replace(**changes) if changes else config
    arch = get_arch(preset)
    config = ModelConfig(
        preset=preset,
        input_size=(arch.img_size,) * 3,
        spacing_mm=(arch.spacing_mm,) * 3,
        normalisation="zscore_positive",
        low_res_size=(arch.low_res_size,) * 3,
        has_box_embeddings=False,
    )
    return config.replace(**changes) if changes else config


def check_config(config: ModelConfig) -> ArchSpec:
    """The preset's architecture, after checking the config's sizes agree with it."""
    if config.family != "sam_med3d":
        raise InputError(f"model config: a {config.family} config is not a SAM-Med3D network's")
    arch = get_arch(config.preset)
    if config.input_size != (arch.img_size,) * 3:
        raise InputError(
            f"model config: input_size {config.input_size} does not match preset "
            f"{config.preset!r} ({arch.img_size}³)"
        )
    if config.low_res_size != (arch.low_res_size,) * 3:
        raise InputError(
            f"model config: low_res_size {config.low_res_size} does not match preset "
            f"{config.preset!r} ({arch.low_res_size}³)"
        )
    return arch


def check_unet_config(config: ModelConfig) -> UNetSpec:
    """The ``prompt_unet`` preset's spec, after checking the config's sizes agree with it."""
    spec = get_unet_arch(config.preset)
    if config.family != "prompt_unet":
        raise InputError(f"model config: preset {config.preset!r} is of family prompt_unet")
    if config.input_size != (spec.img_size,) * 3 or config.low_res_size != (spec.low_res,) * 3:
        raise InputError(
            f"model config: sizes {config.input_size} / {config.low_res_size} do not match preset "
            f"{config.preset!r} ({spec.img_size}³ / {spec.low_res}³)"
        )
    if spec.relative_uptake and config.normalisation != "suv_log":
        raise InputError(
            f"model config: preset {config.preset!r} reads SUV back from its input, so its "
            f"normalisation must be suv_log, not {config.normalisation!r}"
        )
    return spec
