"""Where the session's crops go and how their logits blend (seganypet.tiling), on their own."""

from __future__ import annotations

import numpy as np
import torch

from seganypet.tiling import (
    CERTAIN_LOGIT,
    Tile,
    blend,
    cover_whole_object,
    faces_at_border,
    grid,
    low_res_from_canonical,
    sample_volume,
    seed_in_overlap,
    tile_around,
    tile_at,
)

ONE = np.ones(3)


def test_a_tile_stays_inside_the_image_and_centres_where_the_image_is_smaller():
    tile = tile_around(np.array([2.0, 50.0, 97.0]), ONE, 16, (100, 100, 100))
    np.testing.assert_allclose(tile.origin, [0, 42, 84])
    assert tile.contains([2.0, 50.0, 97.0]) and not tile.contains([2.0, 50.0, 30.0])
    small = tile_at(np.array([5.0, 0, 0]), ONE, 16, (10, 40, 40))
    np.testing.assert_allclose(small.origin[0], (9 - 15) / 2)  # centred on the short axis
    assert small.canonical_range((10, 40, 40))[0] == slice(0, 10)


def _with_logits(tile: Tile, canonical: np.ndarray, low: int = 8) -> Tile:
    tile.low_res_logits = low_res_from_canonical(tile, canonical, low)
    return tile


def test_blending_two_overlapping_tiles_of_one_field_has_no_seam():
    shape = (48, 20, 20)
    field = np.broadcast_to(np.linspace(-4, 4, shape[0])[:, None, None], shape).astype(np.float32)
    left = _with_logits(tile_at(np.zeros(3), ONE, 32, shape), field)
    right = _with_logits(tile_at(np.array([16.0, 0, 0]), ONE, 32, shape), field)
    logits, covered = blend([left, right], shape)
    assert covered.all()
    inner = (slice(4, 44), slice(4, 16), slice(4, 16))
    np.testing.assert_allclose(logits[inner], field[inner], atol=0.3)
    step = np.diff(logits[4:44, 10, 10])
    assert step.max() - step.min() < 0.1, "a straight ramp stays straight across the overlap"
    alone, covered = blend([left], shape)
    assert not covered[40:].any() and (alone[40:] == -CERTAIN_LOGIT).all()


def test_faces_at_the_border_count_only_where_the_image_goes_on():
    shape = (64, 64, 64)
    blob = np.full(shape, -5.0, np.float32)
    blob[10:40, 20:30, 20:30] = 5.0
    tile = _with_logits(tile_at(np.array([16.0, 0, 0]), ONE, 32, shape), blob)
    assert (0, -1) in faces_at_border(tile, shape)  # the blob goes on below the tile
    edge = _with_logits(tile_at(np.zeros(3), ONE, 32, shape), blob)
    assert all(face[1] == 1 for face in faces_at_border(edge, shape) if face[0] == 0)


def test_covering_a_large_object_adds_seeded_tiles_until_it_is_whole():
    shape = (96, 40, 40)
    blob = np.full(shape, -5.0, np.float32)
    blob[8:88, 12:28, 12:28] = 5.0

    def predict(tile: Tile) -> None:  # a "network" that sees the blob wherever it is put
        tile.low_res_logits = low_res_from_canonical(tile, blob, 8)

    first = tile_around(np.array([48.0, 20, 20]), ONE, 32, shape)
    predict(first)
    tiles = [first]
    cover_whole_object(tiles, first, predict, shape, max_tiles=12)
    assert len(tiles) > 2
    logits, _ = blend(tiles, shape)
    assert ((logits > 0) == (blob > 0))[:, 14:26, 14:26].mean() > 0.97
    for tile in tiles[1:]:
        for seed in tile.seed_points:
            assert seed.positive and blob[tuple(np.rint(seed.voxel).astype(int))] > 0


def test_a_seed_lies_in_the_mask_where_the_two_tiles_overlap():
    tile = Tile(origin=np.zeros(3), step=ONE, size=16)
    neighbour = Tile(origin=np.array([8.0, 0, 0]), step=ONE, size=16)
    mask = np.zeros((16, 16, 16), bool)
    mask[4:16, 6:10, 6:10] = True
    seed = seed_in_overlap(tile, neighbour, mask)
    assert seed is not None and neighbour.contains(seed.voxel, margin=2)
    assert mask[tuple(int(v) for v in seed.voxel)]
    assert (
        seed_in_overlap(tile, Tile(origin=np.array([40.0, 0, 0]), step=ONE, size=16), mask) is None
    )


def test_sampling_is_trilinear_and_zero_outside():
    volume = torch.arange(8, dtype=torch.float32).reshape(2, 2, 2)
    coords = grid([torch.tensor([0.0, 0.5, 1.0, 3.0])] * 3)
    values = sample_volume(volume, coords)
    assert values[0, 0, 0] == 0 and values[2, 2, 2] == 7
    assert torch.isclose(values[1, 1, 1], volume.mean())
    assert values[3, 3, 3] == 0
