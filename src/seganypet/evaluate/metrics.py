"""Segmentation metrics of one object at one step: overlap, surface distances, autoPET volumes.

Every distance is in millimetres on the image's own (possibly anisotropic) grid, measured between
voxel centres with scipy's exact Euclidean distance transform (``sampling=spacing``).

- **Dice**: ``2 |P ∩ G| / (|P| + |G|)``; 1 when both masks are empty, 0 when one is.
- **Surface voxels**: the voxels of a mask with at least one of their 6 face neighbours outside it
  (the array's edge counts as outside).
- **NSD** (normalised surface Dice, Nikolov et al. 2021) at tolerance τ (default 2 mm): the
  fraction of the surface voxels of both masks lying within τ of the other mask's surface,
  ``(|{p ∈ ∂P : d(p, ∂G) ≤ τ}| + |{g ∈ ∂G : d(g, ∂P) ≤ τ}|) / (|∂P| + |∂G|)``. Surface voxels are
  counted, not surface areas (as MONAI's ``compute_surface_dice``).
- **HD95**: the larger of the two directed 95th percentiles of the surface distances,
  ``max(P95 {d(p, ∂G)}, P95 {d(g, ∂P)})`` (numpy's linear percentile), as MONAI and nnU-Net
  report it.
- **Empty masks**: when both masks are empty NSD is 1 and HD95 0; when exactly one is empty there
  is no surface to measure to, so NSD is 0 and HD95 is ``inf`` (summaries take medians, and count
  the infinite values, instead of averaging them).
- **autoPET volumes** (autoPET IV challenge definition, 18-connected components): the
  false-positive volume is the volume of the predicted components that do not overlap the truth;
  the false-negative volume is the volume of the true components the prediction does not overlap.

Every function accepts whole-image masks; the work is done on the bounding box of both masks
(padded by one voxel), which gives exactly the whole-image values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

NSD_TOLERANCE_MM = 2.0
HD_PERCENTILE = 95.0
AUTOPET_CONNECTIVITY = ndimage.generate_binary_structure(3, 2)  # 18-connectivity
FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)  # 6-connectivity

Spacing = Sequence[float]


@dataclass(frozen=True)
class StepMetrics:
    """The metrics of one prediction against one object's ground truth."""

    dice: float
    nsd: float
    hd95: float
    fp_ml: float
    fn_ml: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """The Dice coefficient of two masks (1 when both are empty)."""
    prediction, truth = _as_bool(prediction), _as_bool(truth)
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` with a face neighbour outside it (the array's edge is outside)."""
    mask = _as_bool(mask)
    return mask & ~ndimage.binary_erosion(mask, structure=FACE_NEIGHBOURS, border_value=0)


def surface_distances(
    prediction: np.ndarray, truth: np.ndarray, spacing: Spacing
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of one mask to the other mask's surface.

    Returns ``(prediction → truth, truth → prediction)``; both masks must be non-empty.
    """
    prediction, truth = _as_bool(prediction), _as_bool(truth)
    if not prediction.any() or not truth.any():
        raise ValueError("surface distances need two non-empty masks")
    box = _union_box(prediction, truth, margin=1)
    prediction_surface = surface_voxels(prediction[box])
    truth_surface = surface_voxels(truth[box])
    sampling = [float(s) for s in spacing]
    to_truth = ndimage.distance_transform_edt(~truth_surface, sampling=sampling)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=sampling)
    return to_truth[prediction_surface], to_prediction[truth_surface]


def normalised_surface_dice(
    prediction: np.ndarray,
    truth: np.ndarray,
    spacing: Spacing,
    tolerance_mm: float = NSD_TOLERANCE_MM,
) -> float:
    """The fraction of both surfaces within ``tolerance_mm`` of the other (see the module)."""
    prediction, truth = _as_bool(prediction), _as_bool(truth)
    empty = _empty_case(prediction, truth)
    if empty is not None:
        return 1.0 if empty == "both" else 0.0
    to_truth, to_prediction = surface_distances(prediction, truth, spacing)
    return _nsd_from_distances(to_truth, to_prediction, tolerance_mm)


def hausdorff_distance(
    prediction: np.ndarray,
    truth: np.ndarray,
    spacing: Spacing,
    percentile: float = HD_PERCENTILE,
) -> float:
    """The larger directed ``percentile`` of the surface distances, mm (HD95 by default)."""
    prediction, truth = _as_bool(prediction), _as_bool(truth)
    empty = _empty_case(prediction, truth)
    if empty is not None:
        return 0.0 if empty == "both" else float("inf")
    to_truth, to_prediction = surface_distances(prediction, truth, spacing)
    return _hd_from_distances(to_truth, to_prediction, percentile)


def false_positive_volume_ml(
    prediction: np.ndarray, truth: np.ndarray, voxel_volume_ml: float
) -> float:
    """Volume of the 18-connected predicted components that do not touch the truth (autoPET)."""
    return _unmatched_volume_ml(_as_bool(prediction), _as_bool(truth), voxel_volume_ml)


def false_negative_volume_ml(
    prediction: np.ndarray, truth: np.ndarray, voxel_volume_ml: float
) -> float:
    """Volume of the 18-connected true components the prediction does not touch (autoPET)."""
    return _unmatched_volume_ml(_as_bool(truth), _as_bool(prediction), voxel_volume_ml)


def step_metrics(
    prediction: np.ndarray,
    truth: np.ndarray,
    spacing: Spacing,
    voxel_volume_ml: float,
    tolerance_mm: float = NSD_TOLERANCE_MM,
) -> StepMetrics:
    """Every metric of the module for one prediction, sharing one crop and one pair of EDTs."""
    prediction, truth = _as_bool(prediction), _as_bool(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {prediction.shape} and {truth.shape}")
    empty = _empty_case(prediction, truth)
    if empty == "both":
        return StepMetrics(dice=1.0, nsd=1.0, hd95=0.0, fp_ml=0.0, fn_ml=0.0)
    box = _union_box(prediction, truth, margin=1)
    prediction, truth = prediction[box], truth[box]
    if empty is not None:
        nsd, hd95 = 0.0, float("inf")
    else:
        to_truth, to_prediction = surface_distances(prediction, truth, spacing)
        nsd = _nsd_from_distances(to_truth, to_prediction, tolerance_mm)
        hd95 = _hd_from_distances(to_truth, to_prediction, HD_PERCENTILE)
    return StepMetrics(
        dice=dice(prediction, truth),
        nsd=nsd,
        hd95=hd95,
        fp_ml=false_positive_volume_ml(prediction, truth, voxel_volume_ml),
        fn_ml=false_negative_volume_ml(prediction, truth, voxel_volume_ml),
    )


def normalised_auc(values: Sequence[float]) -> float:
    """Trapezoid area under a curve sampled at steps 1..n, divided by the n - 1 step intervals.

    The result is on the values' own scale (a constant curve c gives c); one value gives itself.
    autoPET IV integrates the same trapezoids without the division.
    """
    curve = np.asarray(values, dtype=np.float64)
    if curve.ndim != 1 or len(curve) == 0:
        raise ValueError("the area under a curve needs at least one value")
    if len(curve) == 1:
        return float(curve[0])
    return float(((curve[1:] + curve[:-1]) / 2.0).sum() / (len(curve) - 1))


# ------------------------------------------------------------------------------ helpers


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask != 0


def _empty_case(prediction: np.ndarray, truth: np.ndarray) -> str | None:
    has_prediction, has_truth = bool(prediction.any()), bool(truth.any())
    if has_prediction and has_truth:
        return None
    if not has_prediction and not has_truth:
        return "both"
    return "one"


def _union_box(a: np.ndarray, b: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of ``a | b`` grown by ``margin`` voxels, clipped to the array."""
    where = np.argwhere(a | b)
    lo = np.maximum(where.min(0) - margin, 0)
    hi = np.minimum(where.max(0) + margin + 1, a.shape)
    return tuple(slice(int(x), int(y)) for x, y in zip(lo, hi, strict=True))


def _nsd_from_distances(
    to_truth: np.ndarray, to_prediction: np.ndarray, tolerance_mm: float
) -> float:
    within = int((to_truth <= tolerance_mm).sum()) + int((to_prediction <= tolerance_mm).sum())
    return within / (len(to_truth) + len(to_prediction))


def _hd_from_distances(to_truth: np.ndarray, to_prediction: np.ndarray, percentile: float) -> float:
    return float(max(np.percentile(to_truth, percentile), np.percentile(to_prediction, percentile)))


def _unmatched_volume_ml(mask: np.ndarray, other: np.ndarray, voxel_volume_ml: float) -> float:
    """Volume of the components of ``mask`` that share no voxel with ``other``."""
    if not mask.any():
        return 0.0
    components, count = ndimage.label(mask, structure=AUTOPET_CONNECTIVITY)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    touched = np.unique(components[other & mask])
    unmatched = np.ones(count + 1, dtype=bool)
    unmatched[0] = False
    unmatched[touched] = False
    return float(sizes[unmatched].sum() * voxel_volume_ml)
