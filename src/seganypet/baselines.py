"""Classical seeded PET segmentations: the comparison rows of every evaluation.

Each method picks an SUV threshold and keeps the 26-connected region of voxels at or above it
(``>=``) that contains the seed voxel (an index into the image array). The mask is a boolean
array on the image's own grid.

Choices, fixed here so that every evaluation row means the same thing:

- Fixed thresholds (``suv2.5``, ``suv4.0``) and PERCIST: a seed below the threshold gives an
  empty mask with status ``seed_below_threshold``; the seed is never moved.
- Percentage of the local SUVmax (``pct41``, ``pct50``): the local maximum is the hottest voxel
  within ``LOCAL_MAX_RADIUS_MM`` (10 mm, a sphere in mm) of the seed; the search then climbs,
  re-centring the sphere on that voxel until the hottest voxel is the centre itself (at most
  ``MAX_CLIMB_STEPS`` times), so that a seed anywhere in a large lesion reaches its peak. The
  region grows from the seed, or from the local maximum when the seed is below the threshold.
- PERCIST: threshold 1.5 × liver mean + 2 × liver SD (sample SD, ddof=1), the liver reference
  being the voxels of a 3 cm diameter sphere centred on the voxel the caller gives. The formula
  is applied in the image's units (PERCIST specifies SUL; pass an SUL image for the original).
- ``max_volume_ml`` (optional, every method): a region larger than this is discarded (empty mask,
  status ``exceeded_max_volume``) as a leak into the background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal

import numpy as np
from scipy import ndimage

from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.quant import CONNECTIVITY_26, sphere_kernel

LOCAL_MAX_RADIUS_MM = 10.0
MAX_CLIMB_STEPS = 20
LIVER_VOI_DIAMETER_MM = 30.0

Status = Literal["ok", "seed_below_threshold", "no_uptake_near_seed", "exceeded_max_volume"]
Voxel = tuple[int, int, int]


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's mask and how it was obtained.

    ``grown_from`` is the voxel the region grew from (the seed, or the local maximum it moved
    to), None when nothing grew. ``reference`` holds the values behind the threshold, e.g.
    ``local_suv_max`` or ``liver_mean`` and ``liver_sd``.
    """

    mask: np.ndarray
    method: str
    threshold: float
    seed_voxel: Voxel
    grown_from: Voxel | None
    status: Status
    reference: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def fixed_threshold(
    image: PetImage,
    seed_voxel: Sequence[int],
    threshold: float,
    max_volume_ml: float | None = None,
) -> BaselineResult:
    """The region of SUV >= ``threshold`` connected to the seed (empty if the seed is below)."""
    seed = _seed(image, seed_voxel)
    return _grow(image, seed, seed, float(threshold), f"suv{threshold:g}", max_volume_ml, {})


def percent_of_local_max(
    image: PetImage,
    seed_voxel: Sequence[int],
    percent: float,
    search_radius_mm: float = LOCAL_MAX_RADIUS_MM,
    max_volume_ml: float | None = None,
) -> BaselineResult:
    """The region of SUV >= ``percent`` % of the local SUVmax near the seed, connected to it."""
    if not 0 < percent <= 100:
        raise InputError(f"the percentage of SUVmax must be in (0, 100], got {percent}")
    seed = _seed(image, seed_voxel)
    peak = local_max(image, seed, search_radius_mm)
    peak_value = float(image.array[peak])
    method = f"pct{percent:g}"
    reference = {"local_suv_max": peak_value}
    threshold = percent / 100.0 * peak_value
    if peak_value <= 0:
        return _empty(image, method, threshold, seed, "no_uptake_near_seed", reference)
    start = seed if image.array[seed] >= threshold else peak
    return _grow(image, seed, start, threshold, method, max_volume_ml, reference)


def percist(
    image: PetImage,
    seed_voxel: Sequence[int],
    liver_center_voxel: Sequence[int] | None = None,
    max_volume_ml: float | None = None,
) -> BaselineResult:
    """The region above the PERCIST threshold (1.5 × liver mean + 2 × liver SD) around the seed."""
    if liver_center_voxel is None:
        raise InputError(
            "the PERCIST baseline needs a liver reference: pass liver_center_voxel=(i, j, k), "
            "the voxel index of the centre of a 3 cm sphere in normal liver (right lobe)"
        )
    seed = _seed(image, seed_voxel)
    liver_mean, liver_sd = liver_reference(image, liver_center_voxel)
    threshold = 1.5 * liver_mean + 2.0 * liver_sd
    reference = {"liver_mean": liver_mean, "liver_sd": liver_sd}
    return _grow(image, seed, seed, threshold, "percist", max_volume_ml, reference)


def liver_reference(image: PetImage, liver_center_voxel: Sequence[int]) -> tuple[float, float]:
    """Mean and sample SD of the image in the 3 cm diameter liver sphere around the given voxel.

    A sphere partly outside the image uses the voxels inside it; less than half inside is refused.
    """
    center = _seed(image, liver_center_voxel, what="liver_center_voxel")
    voxels = _sphere_voxels(image, center, LIVER_VOI_DIAMETER_MM / 2)
    full_count = int(sphere_kernel(image.spacing, LIVER_VOI_DIAMETER_MM / 2).sum())
    if 2 * len(voxels) < full_count:
        raise InputError(
            f"the liver sphere at voxel {center} lies mostly outside the image "
            f"({len(voxels)} of {full_count} voxels inside); centre it in the liver, at least "
            f"{LIVER_VOI_DIAMETER_MM / 2:g} mm from the image edge"
        )
    values = image.array[tuple(voxels.T)].astype(np.float64)
    spread = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), spread


def local_max(image: PetImage, seed_voxel: Sequence[int], radius_mm: float) -> Voxel:
    """The hottest voxel within ``radius_mm`` of the seed, climbing as the module describes."""
    current = _seed(image, seed_voxel)
    for _ in range(MAX_CLIMB_STEPS):
        candidates = _sphere_voxels(image, current, radius_mm)
        values = image.array[tuple(candidates.T)]
        best: Voxel = tuple(int(i) for i in candidates[int(np.argmax(values))])  # type: ignore[assignment]
        if image.array[best] <= image.array[current]:
            break
        current = best
    return current


def grow_region(array: np.ndarray, seed: Voxel, threshold: float) -> np.ndarray:
    """The 26-connected region of ``array >= threshold`` that contains ``seed`` (maybe empty)."""
    if not array[seed] >= threshold:
        return np.zeros(array.shape, dtype=bool)
    components, _ = ndimage.label(array >= threshold, structure=CONNECTIVITY_26)
    return components == components[seed]


BaselineMethod = Callable[..., BaselineResult]

BASELINES: dict[str, BaselineMethod] = {
    "suv2.5": partial(fixed_threshold, threshold=2.5),
    "suv4.0": partial(fixed_threshold, threshold=4.0),
    "pct41": partial(percent_of_local_max, percent=41.0),
    "pct50": partial(percent_of_local_max, percent=50.0),
    "percist": percist,
}


def run_baseline(
    name: str, image: PetImage, seed_voxel: Sequence[int], **kwargs: object
) -> BaselineResult:
    """Run the baseline registered as ``name`` (see ``BASELINES``) from ``seed_voxel``."""
    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return replace(BASELINES[name](image, seed_voxel, **kwargs), method=name)


def _grow(
    image: PetImage,
    seed: Voxel,
    start: Voxel,
    threshold: float,
    method: str,
    max_volume_ml: float | None,
    reference: dict[str, float],
) -> BaselineResult:
    mask = grow_region(image.array, start, threshold)
    if not mask.any():
        return _empty(image, method, threshold, seed, "seed_below_threshold", reference)
    if max_volume_ml is not None and mask.sum() * image.voxel_volume_ml > max_volume_ml:
        reference = {**reference, "rejected_volume_ml": float(mask.sum() * image.voxel_volume_ml)}
        return _empty(image, method, threshold, seed, "exceeded_max_volume", reference)
    return BaselineResult(mask, method, threshold, seed, start, "ok", reference)


def _empty(
    image: PetImage,
    method: str,
    threshold: float,
    seed: Voxel,
    status: Status,
    reference: dict[str, float],
) -> BaselineResult:
    empty = np.zeros(image.shape, dtype=bool)
    return BaselineResult(empty, method, threshold, seed, None, status, reference)


def _sphere_voxels(image: PetImage, center: Voxel, radius_mm: float) -> np.ndarray:
    """Voxel indices (n × 3) inside the image whose centres lie within the sphere."""
    kernel = sphere_kernel(image.spacing, radius_mm)
    half = np.array([(k - 1) // 2 for k in kernel.shape])
    voxels = np.argwhere(kernel) - half + np.asarray(center)
    inside = ((voxels >= 0) & (voxels < np.asarray(image.shape))).all(axis=1)
    return voxels[inside]


def _seed(image: PetImage, voxel: Sequence[int], what: str = "seed_voxel") -> Voxel:
    try:
        index = np.asarray(voxel, dtype=np.float64)
    except (TypeError, ValueError):
        index = np.empty(0)
    if index.shape != (3,) or not np.isfinite(index).all():
        raise InputError(f"{what} must be three voxel indices (i, j, k), got {voxel!r}")
    if not np.array_equal(index, np.rint(index)):
        raise InputError(f"{what} must be integer voxel indices, got {voxel!r}")
    ijk = tuple(int(i) for i in np.rint(index))
    if any(not 0 <= i < n for i, n in zip(ijk, image.shape, strict=True)):
        raise InputError(
            f"{what} {ijk} lies outside the image of shape {image.shape}; give a voxel index "
            "in the image's array order"
        )
    return ijk  # type: ignore[return-value]
