"""Shapes on a fine voxel canvas: superquadrics, tubes and the painter that layers them.

World coordinates are millimetres in RAS+ (x to the patient's right, y anterior, z superior);
``z`` is the height above the soles. A shape answers two questions: the world box it fits in,
and which points of an open grid (three broadcastable 1D coordinate arrays) lie inside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

Box = tuple[slice, slice, slice]
OpenGrid = tuple[np.ndarray, np.ndarray, np.ndarray]


def _any_of(values: np.ndarray, choices: Iterable[int]) -> np.ndarray:
    """``np.isin`` for a few choices, without its sorting overhead."""
    result = np.zeros(values.shape, dtype=bool)
    for choice in choices:
        result |= values == choice
    return result


def rotation(
    about_x_deg: float = 0.0, about_y_deg: float = 0.0, about_z_deg: float = 0.0
) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx; its columns are the rotated local axes in world space."""
    ax, ay, az = np.deg2rad([about_x_deg, about_y_deg, about_z_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_to(direction: np.ndarray) -> np.ndarray:
    """A rotation whose third column (local w axis) points along ``direction``."""
    w = np.asarray(direction, dtype=float)
    w = w / np.linalg.norm(w)
    helper = np.array([1.0, 0.0, 0.0]) if abs(w[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(helper, w)
    u /= np.linalg.norm(u)
    v = np.cross(w, u)
    return np.stack([u, v, w], axis=1)


@dataclass
class Superquadric:
    """An ellipsoid (exponents 2) or a boxier/rounder superquadric, rotated and placed.

    ``exponent_uv`` shapes the cross-section in the local u-v plane, ``exponent_w`` the profile
    along the local w axis (large values give a flat-ended cylinder).
    """

    center: np.ndarray
    semi_axes: np.ndarray
    orientation: np.ndarray = field(default_factory=lambda: np.eye(3))
    exponent_uv: float = 2.0
    exponent_w: float = 2.0

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=float)
        self.semi_axes = np.asarray(self.semi_axes, dtype=float)
        self.orientation = np.asarray(self.orientation, dtype=float)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        spread = np.abs(self.orientation) * self.semi_axes[None, :]
        if self.exponent_uv == 2.0 and self.exponent_w == 2.0:
            half = np.sqrt((spread**2).sum(axis=1))
        else:
            half = spread.sum(axis=1)
        return self.center - half, self.center + half

    def local(self, grid: OpenGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Local coordinates divided by the semi-axes (the unit shape is |u|,|v|,|w| <= 1)."""
        dx, dy, dz = (g - c for g, c in zip(grid, self.center, strict=True))
        r = self.orientation
        return tuple(  # type: ignore[return-value]
            (dx * r[0, k] + dy * r[1, k] + dz * r[2, k]) / self.semi_axes[k] for k in range(3)
        )

    def radius(self, grid: OpenGrid) -> np.ndarray:
        """The normalised radius: below 1 inside, 1 on the surface."""
        u, v, w = self.local(grid)
        if self.exponent_uv == 2.0 and self.exponent_w == 2.0:
            return np.sqrt(u * u + v * v + w * w)
        e1, e2 = self.exponent_uv, self.exponent_w
        cross = (np.abs(u) ** e1 + np.abs(v) ** e1) ** (e2 / e1)
        return (cross + np.abs(w) ** e2) ** (1.0 / e2)

    def inside(self, grid: OpenGrid) -> np.ndarray:
        return self.radius(grid) <= 1.0


@dataclass
class Capsule:
    """A cone segment with rounded ends: the points within r(t) of segment a-b."""

    start: np.ndarray
    end: np.ndarray
    radius_start: float
    radius_end: float

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.radius_start, self.radius_end)
        lo = np.minimum(self.start, self.end) - r
        hi = np.maximum(self.start, self.end) + r
        return lo, hi

    def inside(self, grid: OpenGrid) -> np.ndarray:
        a = np.asarray(self.start, dtype=float)
        d = np.asarray(self.end, dtype=float) - a
        length2 = float(d @ d) or 1e-9
        px, py, pz = (g - c for g, c in zip(grid, a, strict=True))
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / length2, 0.0, 1.0)
        ex, ey, ez = px - t * d[0], py - t * d[1], pz - t * d[2]
        r = self.radius_start + t * (self.radius_end - self.radius_start)
        return ex * ex + ey * ey + ez * ez <= r * r


def smooth_curve(points: Iterable[Iterable[float]], step_mm: float = 6.0) -> np.ndarray:
    """A Catmull-Rom spline through ``points``, resampled about every ``step_mm``."""
    p = np.asarray(list(points), dtype=float)
    if len(p) < 3:
        return p
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = [p[0]]
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = np.linspace(0, 1, n + 1)[1:, None]
        out.extend(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    return np.asarray(out)


def tube(points: np.ndarray, radii: np.ndarray | float) -> list[Capsule]:
    """Capsules along a polyline, the radius interpolated between its vertices."""
    points = np.asarray(points, dtype=float)
    radii = np.broadcast_to(np.asarray(radii, dtype=float), (len(points),))
    return [
        Capsule(points[i], points[i + 1], radii[i], radii[i + 1]) for i in range(len(points) - 1)
    ]


@dataclass
class Canvas:
    """Activity (SUV) and organ labels on a fine isotropic grid, painted shape over shape."""

    origin: np.ndarray  # world position of voxel (0, 0, 0)
    spacing: float
    shape: tuple[int, int, int]
    activity: np.ndarray = field(init=False)
    labels: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.origin = np.asarray(self.origin, dtype=float)
        self.activity = np.zeros(self.shape, np.float32)
        self.labels = np.zeros(self.shape, np.uint8)

    @property
    def voxel_volume_ml(self) -> float:
        return self.spacing**3 / 1000.0

    def box(self, lo: np.ndarray, hi: np.ndarray) -> Box | None:
        """The voxel slices covering the world box [lo, hi], or None where it misses the canvas."""
        first = np.floor((np.asarray(lo) - self.origin) / self.spacing).astype(int)
        last = np.ceil((np.asarray(hi) - self.origin) / self.spacing).astype(int) + 1
        first = np.maximum(first, 0)
        last = np.minimum(last, self.shape)
        if np.any(last <= first):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(first, last, strict=True))  # type: ignore[return-value]

    def grid(self, box: Box) -> OpenGrid:
        """World coordinates of the voxels in ``box`` as an open (broadcastable) grid."""
        axes = [
            (self.origin[k] + self.spacing * np.arange(box[k].start, box[k].stop)).astype(
                np.float32
            )
            for k in range(3)
        ]
        return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]

    def full_grid(self) -> OpenGrid:
        return self.grid(tuple(slice(0, n) for n in self.shape))  # type: ignore[arg-type]

    def region(
        self, shape: Superquadric | Capsule, margin: float = 0.0
    ) -> tuple[Box, OpenGrid] | None:
        lo, hi = shape.bounds()
        box = self.box(lo - margin, hi + margin)
        if box is None:
            return None
        return box, self.grid(box)

    def fill(
        self,
        box: Box,
        mask: np.ndarray,
        label: int,
        value: float | np.ndarray,
        within: Iterable[int] | None = None,
        keep: Iterable[int] | None = None,
    ) -> np.ndarray:
        """Set ``label`` and ``value`` where ``mask`` holds (``value`` a scalar or a box array).

        ``within``: paint only over these labels; ``keep``: never paint over these. Returns the
        mask actually painted.
        """
        current = self.labels[box]
        if within is not None:
            mask = mask & _any_of(current, within)
        if keep is not None:
            mask = mask & ~_any_of(current, keep)
        current[mask] = label
        target = self.activity[box]
        if np.ndim(value) == 0:
            target[mask] = value
        else:
            target[mask] = np.broadcast_to(value, mask.shape)[mask]
        return mask

    def paint(
        self,
        shape: Superquadric | Capsule,
        label: int,
        value: float,
        within: Iterable[int] | None = None,
        keep: Iterable[int] | None = None,
    ) -> None:
        found = self.region(shape)
        if found is None:
            return
        box, grid = found
        self.fill(box, shape.inside(grid), label, value, within=within, keep=keep)

    def paint_all(
        self, shapes: Iterable[Superquadric | Capsule], label: int, value: float, **options
    ) -> None:
        for shape in shapes:
            self.paint(shape, label, value, **options)
