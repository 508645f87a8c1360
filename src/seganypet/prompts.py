"""Prompt types, and the simulated user that places clicks from the current error.

Coordinates are voxel indices in the order of the image's array axes, as floats so that a prompt
given in millimetres and converted keeps its sub-voxel position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Point:
    voxel: tuple[float, float, float]
    positive: bool = True


@dataclass(frozen=True)
class Box:
    """An axis-aligned box given by two opposite corners (inclusive voxel indices)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    @property
    def center(self) -> tuple[float, float, float]:
        return tuple((a + b) / 2.0 for a, b in zip(self.lo, self.hi, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class MaskPrompt:
    """A mask the user drew or imported, on the image grid; it seeds the object."""

    mask: np.ndarray

    def __hash__(self) -> int:
        return id(self)


Prompt = Point | Box | MaskPrompt


def most_interior_voxel(
    mask: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> tuple[int, int, int]:
    """The voxel of ``mask`` farthest (in mm) from its boundary: where a person would click first."""
    if not mask.any():
        raise ValueError("cannot place a click in an empty mask")
    padded = np.pad(mask, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(distance)), mask.shape))  # type: ignore[return-value]


def largest_error_region(
    prediction: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, bool] | None:
    """The largest 26-connected region of disagreement and whether it is missed foreground.

    Returns None when the prediction equals the truth.
    """
    best: tuple[int, np.ndarray, bool] | None = None
    for error, missed in ((truth & ~prediction, True), (prediction & ~truth, False)):
        components, count = ndimage.label(error, structure=np.ones((3, 3, 3), bool))
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        largest = int(np.argmax(sizes))
        if best is None or sizes[largest] > best[0]:
            best = (int(sizes[largest]), components == largest + 1, missed)
    return None if best is None else (best[1], best[2])


def next_click_at_error_centre(
    prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> Point | None:
    """The deterministic simulated user: click the centre of the largest error region.

    Positive where the prediction misses foreground, negative where it leaks.
    """
    region = largest_error_region(prediction.astype(bool), truth.astype(bool))
    if region is None:
        return None
    error, missed = region
    return Point(tuple(float(v) for v in most_interior_voxel(error, spacing)), positive=missed)


def next_click_at_random_error(
    prediction: np.ndarray, truth: np.ndarray, rng: np.random.Generator
) -> Point | None:
    """The SAM-Med3D simulated user: a random voxel of the error, positive if it is missed foreground."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    error = prediction ^ truth
    if not error.any():
        return None
    candidates = np.argwhere(error)
    voxel = candidates[rng.integers(len(candidates))]
    return Point(tuple(float(v) for v in voxel), positive=bool(truth[tuple(voxel)]))


def bounding_box(mask: np.ndarray) -> Box:
    """The tight box around a mask, as a user would draw it."""
    if not mask.any():
        raise ValueError("cannot draw a box around an empty mask")
    where = np.argwhere(mask)
    return Box(tuple(float(v) for v in where.min(0)), tuple(float(v) for v in where.max(0)))
