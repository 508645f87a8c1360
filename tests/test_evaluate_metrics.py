"""Evaluation metrics on shapes whose Dice, surface distances and volumes are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seganypet.evaluate.metrics import (
    dice,
    false_negative_volume_ml,
    false_positive_volume_ml,
    hausdorff_distance,
    normalised_auc,
    normalised_surface_dice,
    step_metrics,
    surface_voxels,
)


def cube(shape, corner, side) -> np.ndarray:
    mask = np.zeros(shape, bool)
    x, y, z = corner
    mask[x : x + side, y : y + side, z : z + side] = True
    return mask


def ball(shape, centre, radius_mm, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    distance = np.sqrt(sum(((grid[a] - centre[a]) * spacing[a]) ** 2 for a in range(3)))
    return distance <= radius_mm


@pytest.mark.parametrize("shift", [1, 2, 3])
@pytest.mark.parametrize("axis, spacing", [(0, (1.0, 1.0, 1.0)), (2, (2.0, 2.0, 3.0))])
def test_offset_cubes_have_known_dice_and_hd95(shift, axis, spacing):
    side = 10
    shape = (30, 30, 30)
    truth = cube(shape, (5, 5, 5), side)
    corner = [5, 5, 5]
    corner[axis] += shift
    prediction = cube(shape, tuple(corner), side)

    # Overlap (side - shift) * side²: Dice = (side - shift) / side exactly.
    assert dice(prediction, truth) == pytest.approx((side - shift) / side, abs=1e-12)
    # The face left behind (side² of the 488 surface voxels, over 5 %) lies exactly `shift`
    # voxels from the other cube's surface and nothing lies farther: HD95 = HD = shift * spacing.
    expected = shift * spacing[axis]
    assert hausdorff_distance(prediction, truth, spacing) == pytest.approx(expected)
    assert hausdorff_distance(prediction, truth, spacing, percentile=100) == pytest.approx(expected)
    # Every surface voxel is within `expected` of the other surface.
    assert normalised_surface_dice(prediction, truth, spacing, tolerance_mm=expected) == 1.0
    if expected > 2.0:
        assert normalised_surface_dice(prediction, truth, spacing, tolerance_mm=2.0) < 1.0


def test_concentric_balls_dice_hd95_and_nsd():
    shape = (41, 41, 41)
    centre = (20, 20, 20)
    inner, outer = ball(shape, centre, 8.0), ball(shape, centre, 14.0)

    expected_dice = 2 * 8.0**3 / (8.0**3 + 14.0**3)
    assert dice(inner, outer) == pytest.approx(expected_dice, rel=0.03)
    assert dice(inner, outer) == pytest.approx(2 * inner.sum() / (inner.sum() + outer.sum()))
    # Surfaces 6 mm apart (within a voxel of discretisation).
    assert hausdorff_distance(inner, outer, (1.0, 1.0, 1.0)) == pytest.approx(6.0, abs=1.0)
    # No surface voxel is within 2 mm of the other surface; every one is within 8 mm.
    assert normalised_surface_dice(inner, outer, (1.0, 1.0, 1.0), tolerance_mm=2.0) == 0.0
    assert normalised_surface_dice(inner, outer, (1.0, 1.0, 1.0), tolerance_mm=8.0) == 1.0


def test_identical_masks_are_perfect_and_distances_are_in_mm():
    shape = (20, 20, 20)
    truth = ball(shape, (10, 10, 10), 6.0)
    metrics = step_metrics(truth, truth, (2.0, 2.0, 3.0), voxel_volume_ml=0.012)
    assert (metrics.dice, metrics.nsd, metrics.hd95, metrics.fp_ml, metrics.fn_ml) == (
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
    )
    # A one-voxel shift along the 3 mm axis: HD95 3 mm, inside a 3 mm but not a 2 mm tolerance.
    shifted = np.roll(truth, 1, axis=2)
    assert hausdorff_distance(shifted, truth, (2.0, 2.0, 3.0)) == pytest.approx(3.0)
    assert normalised_surface_dice(shifted, truth, (2.0, 2.0, 3.0), tolerance_mm=3.0) == 1.0
    assert normalised_surface_dice(shifted, truth, (2.0, 2.0, 3.0), tolerance_mm=2.0) < 1.0


def test_empty_masks_follow_the_documented_convention():
    truth = cube((10, 10, 10), (2, 2, 2), 4)
    empty = np.zeros_like(truth)
    missed = step_metrics(empty, truth, (1.0, 1.0, 1.0), voxel_volume_ml=0.001)
    assert missed.dice == 0.0 and missed.nsd == 0.0 and math.isinf(missed.hd95)
    assert missed.fp_ml == 0.0 and missed.fn_ml == pytest.approx(64 * 0.001)
    both = step_metrics(empty, empty, (1.0, 1.0, 1.0), voxel_volume_ml=0.001)
    assert (both.dice, both.nsd, both.hd95) == (1.0, 1.0, 0.0)
    assert math.isinf(hausdorff_distance(truth, empty, (1.0, 1.0, 1.0)))
    assert normalised_surface_dice(truth, empty, (1.0, 1.0, 1.0)) == 0.0


def test_surface_voxels_are_the_face_boundary():
    mask = cube((7, 7, 7), (1, 1, 1), 5)
    surface = surface_voxels(mask)
    assert surface.sum() == 5**3 - 3**3
    assert not surface[3, 3, 3]
    # The array's edge counts as outside.
    assert surface_voxels(np.ones((3, 3, 3), bool)).sum() == 26


def test_autopet_false_positive_volume_uses_18_connectivity():
    truth = cube((20, 20, 20), (2, 2, 2), 4)  # voxels 2..5
    prediction = truth.copy()
    prediction[6, 6, 6] = True  # touches the truth's corner only: 26- but not 18-connected
    prediction[12:14, 12:14, 12:14] = True  # a separate 8-voxel blob
    assert false_positive_volume_ml(prediction, truth, 0.5) == pytest.approx(9 * 0.5)

    edge = truth.copy()
    edge[6, 6, 5] = True  # shares an edge with the truth's voxel (5, 5, 5): 18-connected
    assert false_positive_volume_ml(edge, truth, 0.5) == 0.0


def test_autopet_false_negative_volume_counts_untouched_true_components():
    truth = cube((20, 20, 20), (1, 1, 1), 3) | cube((20, 20, 20), (10, 10, 10), 4)
    prediction = np.zeros_like(truth)
    prediction[2, 2, 2] = True  # touches the small component only
    assert false_negative_volume_ml(prediction, truth, 0.25) == pytest.approx(64 * 0.25)
    assert false_negative_volume_ml(truth, truth, 0.25) == 0.0


def test_normalised_auc():
    assert normalised_auc([0.7]) == 0.7
    assert normalised_auc([0.4, 0.4, 0.4, 0.4]) == pytest.approx(0.4)
    assert normalised_auc([0.0, 0.5, 1.0]) == pytest.approx(0.5)
    assert normalised_auc([0.0, 1.0, 1.0]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        normalised_auc([])


def test_step_metrics_on_a_crop_equal_the_whole_image_functions():
    rng = np.random.default_rng(3)
    shape = (48, 40, 36)
    truth = ball(shape, (20, 18, 15), 7.0, (2.0, 2.0, 3.0))
    prediction = ball(shape, (23, 17, 16), 8.0, (2.0, 2.0, 3.0))
    prediction[rng.random(shape) > 0.999] = True  # scattered false positives
    spacing = (2.0, 2.0, 3.0)
    metrics = step_metrics(prediction, truth, spacing, voxel_volume_ml=0.012)
    assert metrics.dice == pytest.approx(dice(prediction, truth))
    assert metrics.nsd == pytest.approx(normalised_surface_dice(prediction, truth, spacing))
    assert metrics.hd95 == pytest.approx(hausdorff_distance(prediction, truth, spacing))
    assert metrics.fp_ml == pytest.approx(false_positive_volume_ml(prediction, truth, 0.012))
    assert metrics.fp_ml > 0
