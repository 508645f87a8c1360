"""Prompts, the one value type for everything a reader gives the model, and the simulated user
that places clicks from the current error.

A prompt is a :class:`Point` (a click), a :class:`Box` (two opposite corners), a
:class:`Scribble` (a freehand line on one slice), a :class:`Lasso` (a closed outline on one slice
that fills a region) or a :class:`MaskPrompt` (a mask drawn or imported). Each has one JSON form,
read by :meth:`Prompt.from_dict` and written by :meth:`Prompt.to_dict`; the journal, ``--prompts``
files, HTTP bodies, evaluation and the demo all use it::

    {"point": [x, y, z], "positive": true}
    {"box": [x0, y0, z0, x1, y1, z1]}
    {"scribble": [[x, y, z], ...], "positive": true}
    {"lasso": [[x, y, z], ...], "positive": true}

Coordinates are voxel indices in the order of the image's array axes, as floats so that a prompt
given in millimetres and converted keeps its sub-voxel position. A prompt is checked when it is
made: a malformed one raises :class:`~seganypet.errors.InputError`.

The networks take clicks and one box. A scribble reaches them as clicks sampled along its line; a
lasso as a click inside the region it encloses with negative clicks just outside its outline
(:meth:`Prompt.clicks`), and the region itself is set in the object on its slice
(:attr:`Prompt.painted`).
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from seganypet.errors import InputError, plain

Voxel = tuple[float, float, float]

#: The most clicks a scribble or a lasso hands to the network.
MAX_CLICKS_PER_STROKE = 12
#: Pixels kept around a lasso's outline on its slice grid, room for the clicks just outside it.
LASSO_MARGIN = 3


class Prompt:
    """What every prompt type has. Subclasses register themselves under their JSON key."""

    kind: ClassVar[str]
    #: Whether the prompt shows the object's extent (then the session covers the whole object).
    outlines_object: ClassVar[bool] = False
    positive: bool = True
    _kinds: ClassVar[dict[str, type[Prompt]]] = {}
    _form: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls._form:
            Prompt._kinds[cls.kind] = cls

    # -------------------------------------------------------------- the one JSON form
    @staticmethod
    def from_dict(data: object, where: str = "a prompt") -> Prompt:
        """A prompt from its JSON form, checked strictly.

        Exactly one kind key; ``positive`` (where the kind has a sign) is a JSON boolean and true
        by default (the string ``"false"`` is refused, never read as true); coordinates are
        numbers; any other key is refused, so that a misspelt one is not silently ignored.
        ``where`` names the prompt in the error message.
        """
        forms = " or ".join(kind._form for kind in Prompt._kinds.values())
        if not isinstance(data, dict):
            raise InputError(f"{where}: a prompt is {forms}, got {_json_type(data)}")
        kinds = [name for name in Prompt._kinds if name in data]
        if len(kinds) != 1:
            names = ", ".join(repr(name) for name in Prompt._kinds)
            raise InputError(f"{where}: a prompt has exactly one of {names} ({forms})")
        cls = Prompt._kinds[kinds[0]]
        allowed = {cls.kind, "positive"} if cls._signed() else {cls.kind}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InputError(
                f"{where}: unknown key {unknown[0]!r} in a {cls.kind} prompt; it takes {cls._form}"
            )
        positive = data.get("positive", True)
        if not isinstance(positive, bool):
            raise InputError(
                f"{where}: 'positive' must be true or false (a JSON boolean), got "
                f"{_json_type(positive)}"
            )
        try:
            return cls._from_json(data[cls.kind], positive, f"{where}: {cls.kind!r}")
        except InputError as exc:
            message = str(exc)
            raise InputError(
                message if message.startswith(where) else f"{where}: {message}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see :meth:`from_dict`)."""
        raise NotImplementedError

    @classmethod
    def _signed(cls) -> bool:
        return '"positive"' in cls._form

    @classmethod
    def _from_json(cls, value: object, positive: bool, what: str) -> Prompt:
        raise NotImplementedError

    # -------------------------------------------------------------- what the session needs
    @property
    def vertices(self) -> list[Voxel]:
        """The voxels that define the prompt; each must lie inside the image."""
        raise NotImplementedError

    @property
    def anchor(self) -> Voxel:
        """Where the object's first tile is centred for this prompt."""
        return tuple(float(v) for v in np.mean(self.vertices, axis=0))  # type: ignore[return-value]

    #: Whether :meth:`clicks` samples a line the reader drew (a network may read those apart).
    clicks_along_line: ClassVar[bool] = False

    def clicks(self) -> list[Point]:
        """The clicks the network receives for this prompt."""
        return []

    def corners(self) -> tuple[Voxel, Voxel] | None:
        """The box the network receives for this prompt, if any."""
        return None

    @property
    def seed_mask(self) -> np.ndarray | None:
        """A mask that seeds the object directly, without the network."""
        return None

    @property
    def painted(self) -> tuple[np.ndarray, bool] | None:
        """Voxels (N, 3) the prompt sets inside (True) or outside (False) the object, whatever the
        network says: a lasso's region on its slice."""
        return None

    def check_inside(self, shape: Sequence[int]) -> None:
        """Refuse a prompt reaching outside an image of ``shape`` (voxel indices run from -0.5 to
        n - 0.5 along each axis)."""
        for voxel in self.vertices:
            if any(v < -0.5 or v > n - 0.5 for v, n in zip(voxel, shape, strict=True)):
                what = {"point": "point", "box": "box corner"}.get(self.kind, f"{self.kind} point")
                raise InputError(
                    f"the {what} {plain(tuple(voxel))} lies outside the image, whose voxel "
                    f"indices run from (0, 0, 0) to {tuple(int(s) - 1 for s in shape)} "
                    "(input array axis order)"
                )

    def mapped(self, to_voxel: Callable[[np.ndarray], np.ndarray]) -> Prompt:
        """The same prompt with every coordinate passed through ``to_voxel`` (mm to voxels)."""
        raise NotImplementedError

    # -------------------------------------------------------------- for reports
    @property
    def type_name(self) -> str:
        """``click+``, ``click-``, ``box``, ``scribble+``...: a column of an evaluation report."""
        name = "click" if self.kind == "point" else self.kind
        return name + ("+" if self.positive else "-") if self._signed() else name

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Point(Prompt):
    """A click at a voxel; positive inside the object, negative outside it."""

    voxel: Voxel
    positive: bool = True

    kind: ClassVar[str] = "point"
    _form: ClassVar[str] = '{"point": [x, y, z], "positive": true}'

    def __post_init__(self) -> None:
        object.__setattr__(self, "voxel", _voxel(self.voxel, "a point"))
        object.__setattr__(self, "positive", _sign(self.positive, "a point"))

    def to_dict(self) -> dict[str, Any]:
        return {"point": list(self.voxel), "positive": self.positive}

    @classmethod
    def _from_json(cls, value: object, positive: bool, what: str) -> Point:
        return cls(tuple(_numbers(value, 3, what)), positive)  # type: ignore[arg-type]

    @property
    def vertices(self) -> list[Voxel]:
        return [self.voxel]

    def clicks(self) -> list[Point]:
        return [self]

    def mapped(self, to_voxel: Callable[[np.ndarray], np.ndarray]) -> Point:
        return Point(tuple(to_voxel(np.asarray(self.voxel, float))), self.positive)  # type: ignore[arg-type]

    def describe(self) -> str:
        return f"{'+' if self.positive else '-'}{_fmt(self.voxel)}"


@dataclass(frozen=True)
class Box(Prompt):
    """An axis-aligned box given by two opposite corners (inclusive voxel indices), kept as its
    lowest and highest corner; it must be at least one voxel deep along every axis."""

    lo: Voxel
    hi: Voxel

    kind: ClassVar[str] = "box"
    outlines_object: ClassVar[bool] = True
    _form: ClassVar[str] = '{"box": [x0, y0, z0, x1, y1, z1]}'

    def __post_init__(self) -> None:
        a, b = _voxel(self.lo, "a box corner"), _voxel(self.hi, "a box corner")
        lo = tuple(min(u, v) for u, v in zip(a, b, strict=True))
        hi = tuple(max(u, v) for u, v in zip(a, b, strict=True))
        if any(h - low < 1 for low, h in zip(lo, hi, strict=True)):
            raise InputError(
                f"the box {plain(lo)}-{plain(hi)} is empty along an axis; give two opposite "
                "corners at least one voxel apart on every axis"
            )
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def center(self) -> Voxel:
        return tuple((a + b) / 2.0 for a, b in zip(self.lo, self.hi, strict=True))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {"box": [*self.lo, *self.hi]}

    @classmethod
    def _from_json(cls, value: object, positive: bool, what: str) -> Box:
        corners = _numbers(value, 6, what)
        return cls(tuple(corners[:3]), tuple(corners[3:]))  # type: ignore[arg-type]

    @property
    def vertices(self) -> list[Voxel]:
        return [self.lo, self.hi]

    def corners(self) -> tuple[Voxel, Voxel]:
        return self.lo, self.hi

    def mapped(self, to_voxel: Callable[[np.ndarray], np.ndarray]) -> Box:
        return Box(
            tuple(to_voxel(np.asarray(self.lo, float))),  # type: ignore[arg-type]
            tuple(to_voxel(np.asarray(self.hi, float))),  # type: ignore[arg-type]
        )

    def describe(self) -> str:
        return f"box {_fmt(self.lo)}-{_fmt(self.hi)}"


@dataclass(frozen=True)
class _Stroke(Prompt):
    """A line drawn on one slice: every vertex shares one coordinate, the slice's."""

    path: tuple[Voxel, ...]
    positive: bool = True

    _min_vertices: ClassVar[int] = 2

    def __post_init__(self) -> None:
        what = f"a {self.kind}"
        if not isinstance(self.path, (list, tuple)) or len(self.path) < self._min_vertices:
            raise InputError(f"{what} needs at least {self._min_vertices} points")
        path = tuple(_voxel(v, f"{what} point") for v in self.path)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "positive", _sign(self.positive, what))
        if self.slice_axis is None:
            raise InputError(
                f"{what} lies on one slice: one coordinate must be the same for all its points"
            )

    @property
    def slice_axis(self) -> int | None:
        """The axis along which every vertex has the same coordinate (the first, if several)."""
        coords = np.asarray(self.path, float)
        flat = [axis for axis in range(3) if np.ptp(coords[:, axis]) < 1e-6]
        return flat[0] if flat else None

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: [list(v) for v in self.path], "positive": self.positive}

    @classmethod
    def _from_json(cls, value: object, positive: bool, what: str) -> Prompt:
        if not isinstance(value, list):
            raise InputError(f"{what} takes a list of [x, y, z] points, got {_json_type(value)}")
        points = [tuple(_numbers(v, 3, f"{what}[{i}]")) for i, v in enumerate(value)]
        return cls(tuple(points), positive)  # type: ignore[arg-type]

    @property
    def vertices(self) -> list[Voxel]:
        return list(self.path)

    def mapped(self, to_voxel: Callable[[np.ndarray], np.ndarray]) -> Prompt:
        path = tuple(tuple(to_voxel(np.asarray(v, float))) for v in self.path)
        return type(self)(path, self.positive)  # type: ignore[arg-type]

    def describe(self) -> str:
        return f"{self.kind}{'+' if self.positive else '-'} {_fmt(self.path[0])}..{_fmt(self.path[-1])}"


@dataclass(frozen=True)
class Scribble(_Stroke):
    """A freehand line on one slice, inside the object (positive) or outside it (negative)."""

    kind: ClassVar[str] = "scribble"
    clicks_along_line: ClassVar[bool] = True
    _form: ClassVar[str] = '{"scribble": [[x, y, z], ...], "positive": true}'

    def clicks(self) -> list[Point]:
        """Clicks spread evenly along the line by its length, both ends included."""
        coords = np.asarray(self.path, float)
        steps = np.linalg.norm(np.diff(coords, axis=0), axis=1)
        length = np.r_[0.0, np.cumsum(steps)]
        count = int(np.clip(np.floor(length[-1]) + 1, 1, MAX_CLICKS_PER_STROKE))
        where = np.linspace(0.0, length[-1], count)
        samples = np.stack([np.interp(where, length, coords[:, a]) for a in range(3)], axis=1)
        return [Point(tuple(v), self.positive) for v in samples]  # type: ignore[arg-type]


@dataclass(frozen=True)
class Lasso(_Stroke):
    """A closed outline on one slice; the region it encloses is inside the object (positive)
    or outside it (negative)."""

    kind: ClassVar[str] = "lasso"
    outlines_object: ClassVar[bool] = True
    _form: ClassVar[str] = '{"lasso": [[x, y, z], ...], "positive": true}'
    _min_vertices: ClassVar[int] = 3

    @cached_property
    def _slice_grid(self) -> tuple[int, list[int], np.ndarray, np.ndarray, float]:
        """The slice axis, the two in-plane axes, the in-plane voxel of the grid's first pixel,
        the pixels the outline encloses (2-D, with room around for clicks outside it) and the
        slice's coordinate. Computed once: the session reads it at every click."""
        axis = self.slice_axis
        assert axis is not None
        coords = np.asarray(self.path, float)
        plane = [a for a in range(3) if a != axis]
        polygon = coords[:, plane]
        lo = np.floor(polygon.min(0)).astype(int) - LASSO_MARGIN
        hi = np.ceil(polygon.max(0)).astype(int) + LASSO_MARGIN
        u, v = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
        inside = _inside_polygon(u.ravel(), v.ravel(), polygon)
        inside |= _near_outline(u.ravel(), v.ravel(), polygon)
        return axis, plane, lo, inside.reshape(u.shape), float(round(coords[0, axis]))

    def region(self) -> tuple[int, np.ndarray]:
        """The slice axis and the voxels (N, 3) the outline encloses, its own included."""
        axis, plane, lo, grid, depth = self._slice_grid
        return axis, np.asarray(_in_plane(np.argwhere(grid), lo, plane, axis, depth), float)

    def clicks(self) -> list[Point]:
        """A positive lasso: a click at the region's most interior voxel, and negative clicks
        spread around it just outside the outline (the object ends there on this slice). A
        negative lasso: negative clicks spread over the region."""
        return list(self._clicks)

    @cached_property
    def _clicks(self) -> tuple[Point, ...]:
        axis, plane, lo, grid, depth_coordinate = self._slice_grid
        if not grid.any():
            return (Point(self.anchor, self.positive),)
        depth = ndimage.distance_transform_edt(np.pad(grid, 1))[1:-1, 1:-1]
        centre = np.unravel_index(int(np.argmax(depth)), grid.shape)
        where = (lo, plane, axis, depth_coordinate)
        if not self.positive:
            return tuple(_spread(grid, centre, *where, False))
        inner = ndimage.binary_dilation(grid, iterations=1)
        ring = ndimage.binary_dilation(grid, iterations=2) & ~inner
        first = _in_plane(np.asarray([centre]), *where)[0]
        outside = _spread(ring, None, *where, False, MAX_CLICKS_PER_STROKE - 4)
        return (Point(first, True), *outside)

    @cached_property
    def painted(self) -> tuple[np.ndarray, bool]:
        """The voxels the lasso fills on its slice, and whether they are inside the object."""
        return self.region()[1], self.positive


def _in_plane(
    coords: np.ndarray, lo: np.ndarray, plane: list[int], axis: int, depth: float
) -> list[Voxel]:
    voxels = np.zeros((len(coords), 3), float)
    voxels[:, plane[0]] = coords[:, 0] + lo[0]
    voxels[:, plane[1]] = coords[:, 1] + lo[1]
    voxels[:, axis] = depth
    return [tuple(float(c) for c in v) for v in voxels]  # type: ignore[misc]


def _spread(
    grid: np.ndarray,
    start: tuple[int, ...] | None,
    lo: np.ndarray,
    plane: list[int],
    axis: int,
    depth: float,
    positive: bool,
    count: int = MAX_CLICKS_PER_STROKE,
) -> list[Point]:
    """Up to ``count`` clicks spread over the pixels of ``grid`` (2-D, offset ``lo``) by
    farthest-point sampling from ``start`` (default: the first pixel), at least 2 voxels apart."""
    coords = np.argwhere(grid).astype(float)
    if len(coords) == 0:
        return []
    first = 0 if start is None else int(np.argmin(np.abs(coords - start).sum(1)))
    chosen = [first]
    distance = np.linalg.norm(coords - coords[first], axis=1)
    while len(chosen) < min(count, len(coords)):
        candidate = int(np.argmax(distance))
        if distance[candidate] < 2.0:
            break
        chosen.append(candidate)
        distance = np.minimum(distance, np.linalg.norm(coords - coords[candidate], axis=1))
    return [Point(v, positive) for v in _in_plane(coords[chosen], lo, plane, axis, depth)]


@dataclass(frozen=True, eq=False)
class MaskPrompt(Prompt):
    """A mask the user drew or imported, on the image grid; it seeds the object."""

    mask: np.ndarray

    kind: ClassVar[str] = "mask"
    outlines_object: ClassVar[bool] = True

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask, bool)
        if mask.ndim != 3 or not mask.any():
            raise InputError("the mask is empty" if mask.ndim == 3 else "a mask is a 3-D array")
        object.__setattr__(self, "mask", mask)

    @property
    def seed_mask(self) -> np.ndarray:
        return self.mask

    @property
    def vertices(self) -> list[Voxel]:
        return [tuple(float(v) for v in np.argwhere(self.mask).mean(0))]  # type: ignore[list-item]

    def check_inside(self, shape: Sequence[int]) -> None:
        if tuple(self.mask.shape) != tuple(shape):
            raise InputError(
                f"the mask's shape {self.mask.shape} differs from the image's {tuple(shape)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A summary only: a mask travels as a file, not as JSON."""
        return {"mask": {"voxels": int(self.mask.sum())}}

    def mapped(self, to_voxel: Callable[[np.ndarray], np.ndarray]) -> MaskPrompt:
        return self

    def describe(self) -> str:
        return f"mask of {int(self.mask.sum())} voxels"


def _inside_polygon(u: np.ndarray, v: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: whether each point (u, v) lies inside the closed ``polygon`` (N, 2)."""
    inside = np.zeros(u.shape, bool)
    a = polygon
    b = np.roll(polygon, -1, axis=0)
    for (au, av), (bu, bv) in zip(a, b, strict=True):
        crosses = (av > v) != (bv > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = au + (v - av) * (bu - au) / (bv - av)
        inside ^= crosses & (u < at)
    return inside


def _near_outline(u: np.ndarray, v: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each point lies within half a voxel of the outline (so a thin lasso keeps its line)."""
    near = np.zeros(u.shape, bool)
    points = np.stack([u, v], axis=1).astype(float)
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        edge = b - a
        length = float(edge @ edge)
        t = np.clip(((points - a) @ edge) / length, 0.0, 1.0) if length > 0 else np.zeros(len(u))
        closest = a + t[:, None] * edge
        near |= np.linalg.norm(points - closest, axis=1) <= 0.5
    return near


def _voxel(value: object, what: str) -> Voxel:
    try:
        voxel = np.asarray(value, float)
    except (TypeError, ValueError):
        raise InputError(f"{what} needs three numbers, got {value!r}") from None
    if voxel.shape != (3,) or not np.isfinite(voxel).all():
        shown = plain(voxel.tolist()) if voxel.dtype.kind == "f" else repr(value)
        raise InputError(f"{what} needs three finite coordinates, got {shown}")
    return tuple(float(v) for v in voxel)  # type: ignore[return-value]


def _sign(value: object, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(
            f"{what}'s 'positive' must be true or false, got {type(value).__name__} {value!r}"
        )
    return bool(value)


def _fmt(voxel: Sequence[float]) -> str:
    return "(" + " ".join(f"{v:g}" for v in voxel) + ")"


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


#: The slice a simulated scribble is drawn on: the third array axis, axial in a RAS+ NIfTI.
SCRIBBLE_AXIS = 2


def scribble_in_region(
    region: np.ndarray,
    positive: bool,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    axis: int = SCRIBBLE_AXIS,
) -> Scribble | Point:
    """A simulated reader's scribble in ``region``: a stroke along the core of the region's
    cross-section on the slice through its most interior voxel, from one end to the other.

    The core is the part of the cross-section at least half its greatest depth from the border
    (a line down the middle of an arm, around the corner of an L); the stroke is the longest
    shortest path inside it, through a vertex every other voxel. A cross-section too thin to
    hold a line gets a click at the most interior voxel instead.
    """
    region = np.asarray(region, bool)
    centre = most_interior_voxel(region, spacing)
    plane = [a for a in range(3) if a != axis]
    section = np.take(region, centre[axis], axis=axis)
    start = (centre[plane[0]], centre[plane[1]])
    components, _ = ndimage.label(section, structure=np.ones((3, 3), bool))
    section = components == components[start]
    sampling = [spacing[a] for a in plane]
    depth = ndimage.distance_transform_edt(np.pad(section, 1), sampling=sampling)[1:-1, 1:-1]
    core = section & (depth >= 0.5 * depth[start])
    far_end, _ = _farthest_along(core, start)
    other_end, path = _farthest_along(core, far_end)
    vertices = path[::2] if (len(path) - 1) % 2 == 0 else [*path[::2], path[-1]]
    if len(vertices) < 2:
        return Point(tuple(float(v) for v in centre), positive)  # type: ignore[arg-type]
    stroke = []
    for u, v in vertices:
        voxel = [float(centre[axis])] * 3
        voxel[plane[0]], voxel[plane[1]] = float(u), float(v)
        stroke.append(tuple(voxel))
    return Scribble(tuple(stroke), positive)  # type: ignore[arg-type]


def _farthest_along(
    grid: np.ndarray, start: tuple[int, int]
) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """The voxel of ``grid`` most 8-connected steps from ``start``, and the path to it."""
    parent = {start: start}
    queue = collections.deque([start])
    last = start
    while queue:
        last = queue.popleft()
        u, v = last
        for du in (-1, 0, 1):
            for dv in (-1, 0, 1):
                step = (u + du, v + dv)
                if (
                    step not in parent
                    and 0 <= step[0] < grid.shape[0]
                    and 0 <= step[1] < grid.shape[1]
                    and grid[step]
                ):
                    parent[step] = last
                    queue.append(step)
    path = [last]
    while path[-1] != start:
        path.append(parent[path[-1]])
    return last, path


def next_scribble_at_error(
    prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> Scribble | Point | None:
    """The scribbling simulated user: a stroke through the largest error region (see
    :func:`scribble_in_region`), positive where the prediction misses foreground, negative
    where it leaks."""
    region = largest_error_region(prediction.astype(bool), truth.astype(bool))
    if region is None:
        return None
    error, missed = region
    return scribble_in_region(error, missed, spacing)


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


def mask_extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest voxel index of a mask along each axis (inclusive)."""
    if not mask.any():
        raise ValueError("a mask with no voxel has no extent")
    where = np.argwhere(mask)
    return where.min(0), where.max(0)


def bounding_box(mask: np.ndarray) -> Box:
    """The tight box around a mask, as a user would draw it; along an axis where the mask is one
    voxel thick, the box reaches that voxel's faces (a box is never flat)."""
    lo, hi = (np.asarray(v, float) for v in mask_extent(mask))
    flat = hi - lo < 1
    upper = np.asarray(mask.shape, float) - 0.5
    lo = np.where(flat, np.maximum(lo - 0.5, -0.5), lo)
    hi = np.where(flat, np.minimum(hi + 0.5, upper), hi)
    return Box(tuple(lo), tuple(hi))  # type: ignore[arg-type]


def read_prompt_file(path: Path) -> tuple[list[dict], bool]:
    """Objects (``name`` and ``prompts``) from a prompts file, and whether its coordinates are
    millimetres; the format is in ``seganypet segment --help`` (:func:`prompt_objects`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such prompts file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    except ValueError:  # json's limit on the digits of an integer
        raise InputError(
            f"{path}: not a prompts file: it holds a number of thousands of digits"
        ) from None
    except RecursionError:
        raise InputError(f"{path}: not a prompts file: its JSON is nested too deeply") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the prompts file ({exc.strerror})") from None
    return prompt_objects(data, str(path))


#: The keys of an autoPET IV interactive-track click file: ``{"tumor": [[x, y, z], ...],
#: "background": [[x, y, z], ...]}``, voxel indices of the image array.
AUTOPET_CLICK_KEYS = ("tumor", "background")
#: The object an autoPET click file describes: all its lesions together.
AUTOPET_OBJECT_NAME = "lesions"


def prompt_objects(data: object, where: str) -> tuple[list[dict], bool]:
    """Objects (``name`` and checked ``prompts``) from the parsed JSON of a prompts file, and
    whether its coordinates are millimetres. ``where`` (a file, a manifest row) starts every
    error message.

    Three forms: ``{"coordinates": "voxel"|"mm", "objects": [{"name": ..., "prompts": [...]}]}``;
    a bare list of prompts (one object); and an autoPET IV click file,
    ``{"tumor": [[x, y, z], ...], "background": [[x, y, z], ...]}``, whose tumour clicks (then its
    background clicks) become the positive (then negative) points of one object, ``lesions``.
    """
    if isinstance(data, list):
        data = {"objects": [{"name": "object 1", "prompts": data}]}
    elif _is_autopet_click_file(data):
        return [_autopet_object(data, where)], False  # type: ignore[arg-type]
    objects = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(objects, list) or not objects:
        raise InputError(f'{where}: expected {{"objects": [{{"name": ..., "prompts": [...]}}]}}')
    coordinates = data.get("coordinates", "voxel")  # type: ignore[union-attr]
    if coordinates not in ("voxel", "mm"):
        raise InputError(f'{where}: "coordinates" is "voxel" or "mm", got {coordinates!r}')
    checked = []
    for i, obj in enumerate(objects):
        place = f"{where}: objects[{i}]"
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("prompts"), list)
            or not obj["prompts"]
        ):
            raise InputError(f"{place}: every object needs a non-empty list of prompts")
        name = obj.get("name", f"object {i + 1}")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{place}: 'name' must be a non-empty string")
        prompts = [
            Prompt.from_dict(prompt, f"{place}.prompts[{j}]")
            for j, prompt in enumerate(obj["prompts"])
        ]
        checked.append({"name": name, "prompts": prompts})
    return checked, coordinates == "mm"


def _is_autopet_click_file(data: object) -> bool:
    return isinstance(data, dict) and "tumor" in data and set(data) <= set(AUTOPET_CLICK_KEYS)


def _autopet_object(data: dict, where: str) -> dict:
    clicks = {}
    for key in AUTOPET_CLICK_KEYS:
        value = data.get(key, [])
        if not isinstance(value, list):
            raise InputError(
                f"{where}: an autoPET click file's {key!r} is a list of [x, y, z] voxels, got "
                f"{_json_type(value)}"
            )
        clicks[key] = value
    if not clicks["tumor"]:
        raise InputError(
            f"{where}: the autoPET click file has no tumor click; the first prompt of an object "
            "must be a positive click"
        )
    prompts = [
        Prompt.from_dict({"point": voxel, "positive": key == "tumor"}, f"{where}: {key}[{i}]")
        for key in AUTOPET_CLICK_KEYS
        for i, voxel in enumerate(clicks[key])
    ]
    return {"name": AUTOPET_OBJECT_NAME, "prompts": prompts}
