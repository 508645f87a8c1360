"""Prompt types, and the simulated user that places clicks from the current error.

Coordinates are voxel indices in the order of the image's array axes, as floats so that a prompt
given in millimetres and converted keeps its sub-voxel position.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from seganypet.errors import InputError, plain


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

POINT_FORM = '{"point": [x, y, z], "positive": true}'
BOX_FORM = '{"box": [x0, y0, z0, x1, y1, z1]}'


def prompt_to_dict(prompt: Point | Box) -> dict[str, Any]:
    """The JSON form of a point or a box (see :func:`prompt_from_dict`)."""
    if isinstance(prompt, Point):
        return {"point": [float(v) for v in prompt.voxel], "positive": bool(prompt.positive)}
    if isinstance(prompt, Box):
        return {"box": [float(v) for v in (*prompt.lo, *prompt.hi)]}
    raise TypeError(f"{type(prompt).__name__} has no JSON form")


def prompt_from_dict(data: object, where: str = "a prompt") -> Point | Box:
    """A point or a box from its JSON form, checked strictly.

    ``{"point": [x, y, z], "positive": true}`` (``positive`` optional, true by default) or
    ``{"box": [x0, y0, z0, x1, y1, z1]}`` (two opposite corners). Coordinates are numbers;
    ``positive`` is a JSON boolean (the string ``"false"`` is refused, never read as true); any
    other key is refused, so that a misspelt one is not silently ignored. ``where`` names the
    prompt in the error message.
    """
    if not isinstance(data, dict):
        raise InputError(f"{where}: a prompt is {POINT_FORM} or {BOX_FORM}, got {_json_type(data)}")
    kinds = [kind for kind in ("point", "box") if kind in data]
    if len(kinds) != 1:
        raise InputError(
            f"{where}: a prompt has exactly one of 'point' or 'box' ({POINT_FORM} or {BOX_FORM})"
        )
    allowed = {"point", "positive"} if kinds[0] == "point" else {"box"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InputError(
            f"{where}: unknown key {unknown[0]!r} in a {kinds[0]} prompt; it takes "
            + (POINT_FORM if kinds[0] == "point" else BOX_FORM)
        )
    if kinds[0] == "box":
        corners = _numbers(data["box"], 6, f"{where}: 'box'")
        return Box(tuple(corners[:3]), tuple(corners[3:]))  # type: ignore[arg-type]
    positive = data.get("positive", True)
    if not isinstance(positive, bool):
        raise InputError(
            f"{where}: 'positive' must be true or false (a JSON boolean), got {_json_type(positive)}"
        )
    return Point(tuple(_numbers(data["point"], 3, f"{where}: 'point'")), positive)  # type: ignore[arg-type]


def _numbers(value: object, count: int, what: str) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise InputError(f"{what} takes a list of {count} numbers, got {_json_type(value)}")
    for v in value:
        if isinstance(v, int) and not _holds_exactly(v):
            shown = f"the integer {v}" if abs(v) < 10**20 else "an integer of over 20 digits"
            raise InputError(
                f"{what} takes coordinates, got {shown}, too large to hold exactly; give voxel "
                "indices or millimetres"
            )
    numbers = [float(v) for v in value]
    if not all(math.isfinite(v) for v in numbers):
        raise InputError(f"{what} takes finite numbers, got {plain(numbers)}")
    return numbers


def _holds_exactly(integer: int) -> bool:
    """Whether a float holds this integer exactly (a JSON integer may have hundreds of digits)."""
    try:
        return float(integer) == integer
    except OverflowError:
        return False


def _json_type(value: object) -> str:
    """A value as its JSON type and text: ``the string "false"``, ``a list of 2 items``."""
    if isinstance(value, str):  # quoted, with escapes where it holds a line break
        return f"the string {json.dumps(value[:40], ensure_ascii=not value[:40].isprintable())}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return f"the number {plain(value)}"
    if isinstance(value, list):
        text = json.dumps(value, default=str)
        return f"a list of {len(value)} item{'s' * (len(value) != 1)} {text[:80]}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def most_interior_voxel(
    mask: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> tuple[int, int, int]:
    """The voxel of ``mask`` farthest (in mm) from its boundary: where a person would click first."""
    if not mask.any():
        raise ValueError("cannot place a click in an empty mask")
    padded = np.pad(mask, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(distance)), mask.shape))  # type: ignore[return-value]


def hottest_voxel(values: np.ndarray, mask: np.ndarray) -> tuple[int, int, int]:
    """The voxel of ``mask`` with the highest value (the first in scan order on ties): where a
    PET reader clicks."""
    if not mask.any():
        raise ValueError("cannot place a click in an empty mask")
    index = np.argmax(np.where(mask, values, -np.inf))
    return tuple(int(i) for i in np.unravel_index(int(index), mask.shape))  # type: ignore[return-value]


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
