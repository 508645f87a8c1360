"""What a promptable network needs around its weights: its input geometry and normalisation.

A :class:`ModelConfig` travels with every checkpoint we write (as JSON in the safetensors
metadata, see :mod:`seganypet.model.checkpoint`) so that the code that crops, resamples and
normalises an image for the network never has to guess.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch

from seganypet.errors import InputError

#: Normalisations a config may name.
#:
#: ``zscore_positive``: subtract the mean and divide by the standard deviation of the crop's
#: voxels that are > 0, applied to every voxel of the crop. This is what SAM-Med3D and SegAnyPET
#: trained with (torchio ``ZNormalization(masking_method=lambda x: x > 0)``: the sample standard
#: deviation, n - 1 in the denominator); the released weights expect it. ``suv_log``:
#: ``sign(x) * log1p(|x|)`` of the SUV, the same map for every crop, so a voxel's value keeps its
#: absolute SUV meaning (an SUV 4 lesion looks the same in a crop of quiet lung and in one holding
#: the bladder, which a per-crop z-score would rescale) while the long tail of hot organs is
#: compressed (SUV 0-30 to 0-3.4); the sign keeps reconstruction's small negative values finite.
#: It needs the image in SUV (the session and training both assume it). ``none``: the crop goes
#: in as it is.
NORMALISATIONS = ("zscore_positive", "suv_log", "none")

#: Model families: ``sam_med3d`` (:class:`~seganypet.model.network.SamMed3D`) and
#: ``prompt_unet`` (:class:`~seganypet.model.prompt_unet.PromptUNet`).
FAMILIES = ("sam_med3d", "prompt_unet")

CONFIG_VERSION = 2  # 2: training_cases


def _triple(value: Any, name: str, kind: type) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value, value)
    try:
        items = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(
            f"model config: {name} must be a number or 3 numbers, got {value!r}"
        ) from None
    if len(items) != 3 or any(v <= 0 for v in items):
        raise InputError(f"model config: {name} must be 3 positive numbers, got {value!r}")
    return items


def _training_cases(value: Any) -> tuple[tuple[str, str], ...]:
    """``training_cases`` from pairs or from the JSON form ``[{"case", "image_sha256"}]``."""
    cases = []
    for item in value or ():
        if isinstance(item, dict):
            item = (item.get("case"), item.get("image_sha256"))
        if (
            not isinstance(item, (tuple, list))
            or len(item) != 2
            or not all(isinstance(part, str) and part for part in item)
        ):
            raise InputError(
                "model config: training_cases must hold objects with a case name and an "
                f"image_sha256 digest, got {item!r}"
            )
        cases.append((item[0], item[1]))
    return tuple(cases)


@dataclass(frozen=True)
class ModelConfig:
    """Everything outside the weights that a promptable network's user must know.

    Sizes and spacings are per array axis of the crop tensor ``(D, H, W)``, the axis order in
    which points are given too.

    - ``preset``: the architecture (a key of :data:`seganypet.model.presets.PRESETS`).
    - ``family``: which kind of network, one of :data:`FAMILIES`.
    - ``input_size``: the crop the network takes, in voxels.
    - ``spacing_mm``: the voxel size the crop must be resampled to (1.5 mm for the released
      SegAnyPET / SAM-Med3D weights).
    - ``normalisation``: one of :data:`NORMALISATIONS`.
    - ``low_res_size``: the size of the logits :meth:`decode` returns (and takes back as
      ``mask_logits``); upsample them to ``input_size`` for a full-resolution mask.
    - ``has_box_embeddings``: the network has learned box-corner embeddings
      (``prompt_encoder.point_embeddings.2/3``). The released weights do not; for them a box is
      mapped to points, see :mod:`seganypet.model.boxes`.
    - ``description``: free text (provenance of the weights).
    - ``training_cases``: the cases the weights were trained on, as ``(case, image digest)``
      pairs (:meth:`seganypet.image.PetImage.content_digest`); ``seganypet evaluate`` refuses to
      score them as if they were unseen. Empty when not recorded (released checkpoints).
    """

    preset: str = "vit_b_ori"
    family: str = "sam_med3d"
    input_size: tuple[int, int, int] = (128, 128, 128)
    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)
    normalisation: str = "zscore_positive"
    low_res_size: tuple[int, int, int] = (32, 32, 32)
    has_box_embeddings: bool = False
    description: str = ""
    training_cases: tuple[tuple[str, str], ...] = ()
    version: int = field(default=CONFIG_VERSION)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", _triple(self.input_size, "input_size", int))
        object.__setattr__(self, "low_res_size", _triple(self.low_res_size, "low_res_size", int))
        object.__setattr__(self, "spacing_mm", _triple(self.spacing_mm, "spacing_mm", float))
        object.__setattr__(self, "has_box_embeddings", bool(self.has_box_embeddings))
        object.__setattr__(self, "training_cases", _training_cases(self.training_cases))
        if self.normalisation not in NORMALISATIONS:
            raise InputError(
                f"model config: unknown normalisation {self.normalisation!r}; "
                f"expected one of {', '.join(NORMALISATIONS)}"
            )
        if self.family not in FAMILIES:
            raise InputError(f"model config: unknown model family {self.family!r}")

    def replace(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("input_size", "low_res_size", "spacing_mm"):
            out[key] = list(out[key])
        out["training_cases"] = [
            {"case": case, "image_sha256": digest} for case, digest in self.training_cases
        ]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise InputError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"model config: unknown fields {', '.join(unknown)}")
        version = int(data.get("version", CONFIG_VERSION))
        if version > CONFIG_VERSION:
            raise InputError(
                f"model config version {version} is newer than this seganypet understands "
                f"({CONFIG_VERSION}); upgrade seganypet"
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"model config is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def normalise_crop(crop: np.ndarray | torch.Tensor, method: str) -> torch.Tensor:
    """Normalise one crop ``(D, H, W)`` (or ``(B, 1, D, H, W)``) as a config's ``normalisation``.

    Returns float32 ``(B, 1, D, H, W)``. With ``zscore_positive`` the statistics come from the
    voxels > 0 of each crop; a crop with no such voxel becomes all zeros, one whose positive
    voxels are all equal is only shifted.
    """
    x = torch.as_tensor(np.asarray(crop) if not isinstance(crop, torch.Tensor) else crop)
    x = x.to(torch.float32)
    if x.ndim == 3:
        x = x[None, None]
    if x.ndim != 5 or x.shape[1] != 1:
        raise InputError(
            f"expected a crop (D, H, W) or (B, 1, D, H, W), got shape {tuple(x.shape)}"
        )
    if method == "none":
        return x.clone()
    if method == "suv_log":
        return torch.sign(x) * torch.log1p(x.abs())
    if method != "zscore_positive":
        raise InputError(f"unknown normalisation {method!r}; expected one of {NORMALISATIONS}")
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        item = x[b]
        positive = item[item > 0].to(torch.float64)
        if positive.numel() == 0:
            out[b] = 0.0
            continue
        mean = positive.mean()
        std = positive.std() if positive.numel() > 1 else torch.zeros((), dtype=torch.float64)
        scale = 1.0 / std if std > 0 else 1.0
        out[b] = ((item.to(torch.float64) - mean) * scale).to(torch.float32)
    return out
