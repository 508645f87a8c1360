"""Where a session's crops go on the image, and how their predictions are put together.

A :class:`Tile` is a cube of a network's input placed on the canonical (RAS+) image: crop voxel
``j`` lies at canonical voxel ``origin + j * step``. A tile is placed around a prompt and shifted
to stay inside the image (:func:`tile_around`). When an object reaches a tile's border where the
image goes on, :func:`cover_whole_object` moves the tile onto it and adds neighbours overlapping
by half, each seeded with a positive click in the part of the mask they share. :func:`blend` puts
every tile's logits onto the canonical grid with weights that fall to zero at each tile's border,
so the result has no seams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from seganypet.prompts import Point, most_interior_voxel

BORDER_MARGIN_VOXELS = 2
MAX_RECENTRES = 2
#: The logit that stands for "certainly inside" (its negative: certainly outside).
CERTAIN_LOGIT = 8.0


def sample_volume(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of ``volume`` (D, H, W) at voxel coordinates ``coords`` (..., 3); zero outside."""
    size = torch.tensor(volume.shape, dtype=coords.dtype)
    normalized = 2.0 * coords / (size - 1).clamp(min=1) - 1.0
    grid = normalized.flip(-1).reshape(1, 1, 1, -1, 3)
    values = F.grid_sample(
        volume[None, None].to(coords.dtype),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return values.reshape(coords.shape[:-1])


def grid(axes: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def border_weight(size: int) -> torch.Tensor:
    """1-D blending weight: rises linearly from ~0 at a tile's border to 1 over its outer quarter."""
    distance = torch.minimum(torch.arange(size), torch.arange(size).flip(0)).float() + 0.5
    return torch.clamp(distance / (size / 4.0), max=1.0)


@dataclass
class Tile:
    """A cube of the network's input, placed on the canonical image.

    Crop voxel j lies at canonical voxel coordinate ``origin + j * step``.
    """

    origin: np.ndarray
    step: np.ndarray
    size: int
    low_res_logits: torch.Tensor | None = None
    seed_points: list[Point] = field(default_factory=list)
    decoded: bool = False  # low_res_logits came from the network, not from a mask prompt
    fine: bool = False  # the session's small-object network predicts this tile

    @property
    def key(self) -> tuple[float, ...]:
        values = np.concatenate([self.origin, self.step, [float(self.fine)]])
        return tuple(np.round(values, 3).tolist())

    def to_crop(self, canonical_voxel: Sequence[float]) -> np.ndarray:
        return (np.asarray(canonical_voxel, float) - self.origin) / self.step

    def contains(self, canonical_voxel: Sequence[float], margin: float = 0.0) -> bool:
        crop = self.to_crop(canonical_voxel)
        return bool(np.all(crop >= margin) and np.all(crop <= self.size - 1 - margin))

    def canonical_range(self, shape: Sequence[int]) -> tuple[slice, ...]:
        lo = np.ceil(self.origin - 1e-6).astype(int)
        hi = np.floor(self.origin + (self.size - 1) * self.step + 1e-6).astype(int)
        return tuple(slice(max(0, a), min(n, b + 1)) for a, b, n in zip(lo, hi, shape, strict=True))


def tile_at(
    origin: np.ndarray, step: np.ndarray, size: int, shape: Sequence[int], fine: bool = False
) -> Tile:
    """A tile at ``origin``, shifted to lie inside an image of ``shape`` (centred where it is
    larger)."""
    shape = np.asarray(shape, float)
    extent = (size - 1) * step
    last = shape - 1
    fits = extent <= last
    inside = np.clip(origin, 0.0, np.where(fits, last - extent, 0.0))
    centred = (last - extent) / 2.0
    return Tile(origin=np.where(fits, inside, centred), step=step, size=size, fine=fine)


def tile_around(
    centre: np.ndarray, step: np.ndarray, size: int, shape: Sequence[int], fine: bool = False
) -> Tile:
    """A tile centred on a canonical voxel, as far as the image allows."""
    origin = np.asarray(centre, float) - (size // 2) * step
    return tile_at(origin, step, size, shape, fine)


def tile_logits(tile: Tile) -> torch.Tensor:
    """The tile's logits at full crop resolution (as the reference upsamples them)."""
    return F.interpolate(
        tile.low_res_logits, size=(tile.size,) * 3, mode="trilinear", align_corners=False
    )[0, 0]


def low_res_from_canonical(tile: Tile, logits: np.ndarray, low: int) -> torch.Tensor:
    """Canonical-grid logits sampled at the tile's ``low``-cubed low-resolution grid."""
    factor = tile.size / low
    axes = [
        torch.tensor(
            tile.origin[a] + ((np.arange(low) + 0.5) * factor - 0.5) * tile.step[a],
            dtype=torch.float32,
        )
        for a in range(3)
    ]
    values = sample_volume(
        torch.from_numpy(np.asarray(logits, np.float32) + CERTAIN_LOGIT), grid(axes)
    )
    return (values - CERTAIN_LOGIT)[None, None]


def faces_at_border(tile: Tile, shape: Sequence[int]) -> list[tuple[int, int]]:
    """The (axis, direction) faces where the tile's mask reaches its border inside the image."""
    mask = tile_logits(tile) > 0
    shape = np.asarray(shape)
    faces = []
    for axis in range(3):
        for direction, index in (
            (-1, slice(0, BORDER_MARGIN_VOXELS)),
            (1, slice(-BORDER_MARGIN_VOXELS, None)),
        ):
            edge = [slice(None)] * 3
            edge[axis] = index
            if not bool(mask[tuple(edge)].any()):
                continue
            lo = tile.origin[axis]
            hi = tile.origin[axis] + (tile.size - 1) * tile.step[axis]
            margin = BORDER_MARGIN_VOXELS * tile.step[axis]
            beyond = lo > margin if direction < 0 else hi < shape[axis] - 1 - margin
            if beyond:
                faces.append((axis, direction))
    return faces


def cover_whole_object(
    tiles: list[Tile],
    tile: Tile,
    predict: Callable[[Tile], None],
    shape: Sequence[int],
    max_tiles: int,
) -> None:
    """Move ``tile`` (one of ``tiles``) onto the object, then add overlapping tiles until the
    object is whole or there are ``max_tiles``; ``predict`` runs the network on a tile."""
    for _ in range(MAX_RECENTRES):
        if tile.low_res_logits is None or not faces_at_border(tile, shape):
            return
        mask = (tile_logits(tile) > 0).numpy()
        if not mask.any():
            return
        where = np.argwhere(mask)
        extent = where.max(0) - where.min(0) + 1
        if np.any(extent > tile.size - 2 * BORDER_MARGIN_VOXELS - 4):
            break
        centre_crop = (where.max(0) + where.min(0)) / 2.0
        centre = tile.origin + centre_crop * tile.step
        moved = tile_around(centre, tile.step, tile.size, shape, tile.fine)
        if np.allclose(moved.origin, tile.origin, atol=0.5):
            break
        tiles.remove(tile)
        tiles.append(moved)
        tile = moved
        predict(tile)

    queue = [tile]
    while queue and len(tiles) < max_tiles:
        current = queue.pop(0)
        if current.low_res_logits is None:
            continue
        crop_mask = (tile_logits(current) > 0).numpy()
        for axis, direction in faces_at_border(current, shape):
            if len(tiles) >= max_tiles:
                break
            shift = np.zeros(3)
            shift[axis] = direction * (current.size // 2) * current.step[axis]
            neighbour = tile_at(
                current.origin + shift, current.step, current.size, shape, current.fine
            )
            near = (current.size / 4) * current.step
            if any(np.all(np.abs(t.origin - neighbour.origin) < near) for t in tiles):
                continue
            seed = seed_in_overlap(current, neighbour, crop_mask)
            if seed is None:
                continue
            neighbour.seed_points.append(seed)
            tiles.append(neighbour)
            predict(neighbour)
            queue.append(neighbour)


def seed_in_overlap(tile: Tile, neighbour: Tile, crop_mask: np.ndarray) -> Point | None:
    """A positive click in the part of the mask the two tiles share, as far from its edge as
    possible."""
    coords = np.argwhere(crop_mask)
    canonical = tile.origin + coords * tile.step
    inside = np.all(
        (canonical - neighbour.origin) / neighbour.step >= neighbour.size / 8, axis=1
    ) & np.all((canonical - neighbour.origin) / neighbour.step <= neighbour.size * 7 / 8, axis=1)
    if not inside.any():
        return None
    overlap = np.zeros_like(crop_mask)
    overlap[tuple(coords[inside].T)] = True
    best = most_interior_voxel(overlap)
    return Point(tuple(float(v) for v in tile.origin + np.asarray(best) * tile.step), positive=True)


def blend(tiles: Sequence[Tile], shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every tile's logits on the canonical grid (certainly outside where no tile reaches), and
    where some tile reaches."""
    shape = tuple(int(n) for n in shape)
    weighted = np.zeros(shape, np.float32)
    weights = np.zeros(shape, np.float32)
    for tile in tiles:
        if tile.low_res_logits is None:
            continue
        region = tile.canonical_range(shape)
        axes = [
            torch.tensor(
                (np.arange(r.start, r.stop) - tile.origin[a]) / tile.step[a],
                dtype=torch.float32,
            )
            for a, r in enumerate(region)
        ]
        if any(len(a) == 0 for a in axes):
            continue
        logits = sample_volume(tile_logits(tile), grid(axes)).numpy()
        ramp = [
            np.interp(a.numpy(), np.arange(tile.size), border_weight(tile.size).numpy())
            for a in axes
        ]
        weight = ramp[0][:, None, None] * ramp[1][None, :, None] * ramp[2][None, None, :]
        weighted[region] += weight * logits
        weights[region] += weight
    covered = weights > 0
    logits = np.full(shape, -CERTAIN_LOGIT, np.float32)
    logits[covered] = weighted[covered] / weights[covered]
    return logits, covered
